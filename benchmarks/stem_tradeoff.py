"""The small stem against the ImageNet stem on a real small-image study: features, accuracy and time.

At 28-64 px the ResNets' ImageNet stem (7x7 stride-2 conv and a max-pool) shrinks the image 4x before the
first block; the small stem (3x3 stride 1, no max-pool) keeps it, at about 16x the compute. This runs, with
each stem, the runs of a study file that answer "what does the stem cost and buy": SimCLR pretraining (its
k-NN probe and random init's on the same features) and CE from random init at one noise rate (LAST and BEST),
with the study's own parameters (`nbstudy.study.expand`) but the stem, the pretraining epochs and the
output folders. docs/results.md ("Small images, fairly") holds what it measured.

    python benchmarks/stem_tradeoff.py parameters/breastmnist.yaml --data-root outputs \
        --pretrain-epochs 10 --noise-rate 0.2 --table benchmarks/stem-breastmnist-2026-12-02.json

Not a test: it measures, it asserts nothing. About 25 minutes on one core of a 2-core CPU for BreastMNIST.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

STEMS = ("imagenet", "small")


def study_runs(study_file: Path, noise_rate: float) -> tuple[dict, dict]:
    """(SimCLR pretraining params, random-init CE params at `noise_rate`) of the study, as it would run them."""
    from nbstudy.study import expand, load_study
    runs = expand(load_study(study_file), tempfile.mkdtemp(), "notebooks")
    simclr = next(r.params for r in runs if r.stage == "pretrain" and r.params["method"] == "simclr")
    ce = next(r.params for r in runs if r.stage == "train" and r.params["method"] == "ce"
              and r.params["init"] == "random" and r.params["noise_rate"] == noise_rate)
    return simclr, ce


def measure(study_file: Path, stem: str, pretrain_epochs: int | None, noise_rate: float, folder: Path) -> dict:
    """One stem's figures: probe, random-init probe, CE LAST / BEST, seconds of each run."""
    from nbstudy.lnl import train_noisy
    from nbstudy.pretrain import run_pretraining
    simclr, ce = study_runs(study_file, noise_rate)
    pre = {**simclr, "stem": stem, "output_dir": str(folder / f"simclr-{stem}"), "progress": False, "device": "cpu"}
    if pretrain_epochs:
        pre.update(epochs=pretrain_epochs, warmup_epochs=None)
    t0 = time.perf_counter()
    run_pretraining(pre)
    pretrain_s = time.perf_counter() - t0
    probe = json.loads((folder / f"simclr-{stem}" / "pretrain_metrics.json").read_text())
    t0 = time.perf_counter()
    final = train_noisy({**ce, "stem": stem, "output_dir": str(folder / f"ce-{stem}"), "progress": False,
                         "device": "cpu"})
    return {"stem": stem, "pretrain_epochs": pre["epochs"], "probe_acc": probe["probe_acc"],
            "random_init_probe_acc": probe["random_init_probe_acc"], "pretrain_s": round(pretrain_s, 1),
            "ce_noise_rate": noise_rate, "ce_epochs": ce["epochs"], "ce_last_acc": final["last_acc"],
            "ce_best_acc": final["best_acc"], "ce_s": round(time.perf_counter() - t0, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("study", type=Path, help="a study file, e.g. parameters/breastmnist.yaml")
    parser.add_argument("--data-root", type=Path, default=Path("."), help="the folder its data_path is relative to")
    parser.add_argument("--pretrain-epochs", type=int, default=None, help="SimCLR epochs (default: the study's)")
    parser.add_argument("--noise-rate", type=float, required=True, help="one of the study's noise rates")
    parser.add_argument("--table", type=Path, help="write the figures to this JSON file")
    args = parser.parse_args()
    study = args.study.resolve()
    os.chdir(args.data_root)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for stem in STEMS:
            rows.append(measure(study, stem, args.pretrain_epochs, args.noise_rate, Path(tmp)))
            print(json.dumps(rows[-1]), flush=True)
    result = {"study": args.study.name, "machine": f"{platform.processor() or platform.machine()}, "
              f"{os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}", "date": time.strftime("%Y-%m-%d"),
              "rows": rows}
    if args.table:
        args.table.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
