"""Where a demo run's time goes on the CPU: one run of each kind from parameters/demo.yaml.

For SimCLR pretraining, CE, Co-teaching and DivideMix (random init, the demo's highest noise
rate), with the demo's exact parameters (`nbstudy.study.expand`):

- the run in-process under cProfile, its time split by what the training loop calls
  (data loading, training steps, evaluation passes, per-sample loss records, k-NN probes,
  suspects, checkpoints, writing the records);
- the same run through its stage notebook under papermill, as `make demo` runs it, so the
  notebook's own cost (kernel start and imports, figures, saving the notebook) is the
  difference;
- a kernel that only imports nbstudy, to split that cost.

    python benchmarks/cpu_profile.py                 # about 5 minutes on an idle 2-core CPU
    python benchmarks/cpu_profile.py --table out.json

Not a test: it measures, it asserts nothing. The table in docs/benchmarks.md (CPU section) came
from it.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import platform
import pstats
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import papermill

ROOT = Path(__file__).resolve().parents[1]
KINDS = {"SimCLR pretraining": ("pretrain", "simclr"), "CE": ("train", "ce"), "Co-teaching": ("train", "coteaching"),
         "DivideMix": ("train", "dividemix")}
LOOP = {"pretrain": ("pretrain/run.py",), "train": ("lnl/loop.py", "lnl/__init__.py")}   # each stage's loop
# (file ending, function) whose cumulative time, when the loop calls it, makes each part
PARTS = {
    "pretrain": {"data loading": [("pretrain/run.py", "load_data")],
                 "training steps": [("pretrain/run.py", "train_epoch")],
                 "k-NN probes": [("nbstudy/probe.py", "knn_accuracy")],
                 "checkpoints": [("nbstudy/resume.py", "save_state"), ("nbstudy/checkpoint.py", "save_backbone")]},
    "train": {"data loading and noise": [("lnl/loop.py", "prepare")],
              "training steps": [("lnl/ce.py", "train_epoch"), ("lnl/coteaching.py", "train_epoch"),
                                 ("lnl/dividemix.py", "train_epoch")],
              "evaluation passes": [("lnl/loop.py", "evaluate")],
              "per-sample loss records": [("lnl/base.py", "train_losses")],
              "suspects list": [("lnl/loop.py", "_write_suspects")],
              "checkpoints": [("nbstudy/resume.py", "save_state")],
              "writing the records": [("lnl/records.py", "write_run")]},
}


def demo_runs(folder: Path) -> dict:
    """{kind: the demo's Run of that kind}: random init at the demo's highest noise rate for training."""
    from nbstudy.study import expand, load_study

    study = load_study(ROOT / "parameters" / "demo.yaml")
    runs = expand(study, folder, ROOT / "notebooks")
    top = max(study["train"]["noise_rates"])
    found = {}
    for kind, (stage, method) in KINDS.items():
        found[kind] = next(r for r in runs if r.stage == stage and r.params["method"] == method
                           and (stage == "pretrain" or (r.params["init"] == "random"
                                                        and r.params["noise_rate"] == top)))
    return found


def in_process(run, out: Path) -> dict:
    """{part: seconds} of the run in this process (cProfile's cumulative times), with "total"."""
    params = {**run.params, "output_dir": str(out), "progress": False}
    if run.stage == "pretrain":
        from nbstudy.pretrain import run_pretraining as call
    else:
        from nbstudy.lnl import train_noisy as call
    profile = cProfile.Profile()
    start = time.perf_counter()
    profile.runcall(call, params)
    total = time.perf_counter() - start
    # {(file, line, function): (calls, primitive calls, tottime, cumtime, {caller: (.., .., .., cumtime)})}
    stats = pstats.Stats(profile).stats
    loop = LOOP[run.stage]
    parts = {}
    for part, functions in PARTS[run.stage].items():   # only calls made by the loop itself: parts do not overlap
        parts[part] = sum(ct for (file, _, fn), (*_, callers) in stats.items()
                          if any(file.endswith(end) and fn == name for end, name in functions)
                          for caller, (*_, ct) in callers.items() if caller[0].endswith(loop))
    parts["other"] = total - sum(parts.values())
    parts["total"] = total
    return parts


def notebook(run, out: Path) -> float:
    """Seconds to execute the run's stage notebook under papermill, as the study runner does."""
    out.mkdir(parents=True)
    start = time.perf_counter()
    papermill.execute_notebook(str(run.notebook), str(out / "run.ipynb"), kernel_name="python3", progress_bar=False,
                               parameters={**run.params, "output_dir": str(out), "progress": False}, cwd=str(out))
    return time.perf_counter() - start


def kernel_start(out: Path) -> float:
    """Seconds for papermill to start a kernel that imports nbstudy's stages and does nothing else."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "%matplotlib inline\nimport nbstudy.lnl, nbstudy.pretrain, nbstudy.figures")])
    nbformat.write(nb, out / "imports.ipynb")
    start = time.perf_counter()
    papermill.execute_notebook(str(out / "imports.ipynb"), str(out / "imports-out.ipynb"), kernel_name="python3",
                               progress_bar=False, cwd=str(out))
    return time.perf_counter() - start


def measure(save) -> dict:
    """Measure every kind; `save(result)` is called after each, so a long measurement keeps what it has."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        runs = demo_runs(tmp / "study")
        result = {"machine": f"{platform.node()} {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}",
                  "load_average_before": os.getloadavg()[0], "kernel_start_s": kernel_start(tmp), "kinds": {}}
        for kind, run in runs.items():
            parts = in_process(run, tmp / f"{run.params['method']}-inproc")
            wall = notebook(run, tmp / f"{run.params['method']}-nb")
            result["kinds"][kind] = {"parts": parts, "notebook_s": wall,
                                     "epochs": run.params["epochs"]}
            print(f"{kind}: {parts['total']:.1f} s in-process, {wall:.1f} s as a notebook", file=sys.stderr)
            result["load_average_after"] = os.getloadavg()[0]
            save(result)
        return result


def table(result: dict) -> str:
    """The markdown table of docs/benchmarks.md's CPU section."""
    parts = [p for stage in PARTS.values() for p in stage if p != "other"]
    parts = list(dict.fromkeys(parts)) + ["other"]
    kinds = list(result["kinds"])
    rows = ["| part | " + " | ".join(kinds) + " |", "|---|" + "---|" * len(kinds)]
    for part in parts:
        cells = []
        for k in kinds:
            v = result["kinds"][k]["parts"].get(part)
            cells.append("" if v is None else f"{v:.1f} s ({100 * v / result['kinds'][k]['notebook_s']:.0f}%)")
        rows.append(f"| {part} | " + " | ".join(cells) + " |")
    start = result["kernel_start_s"]
    rows.append("| kernel start and imports | " + " | ".join(
        f"{start:.1f} s ({100 * start / result['kinds'][k]['notebook_s']:.0f}%)" for k in kinds) + " |")
    rest = {k: result["kinds"][k]["notebook_s"] - result["kinds"][k]["parts"]["total"] - start for k in kinds}
    rows.append("| notebook: figures, display, saving | " + " | ".join(
        f"{rest[k]:.1f} s ({100 * rest[k] / result['kinds'][k]['notebook_s']:.0f}%)" for k in kinds) + " |")
    rows.append("| **the run as a notebook** | " + " | ".join(
        f"**{result['kinds'][k]['notebook_s']:.1f} s**" for k in kinds) + " |")
    return "\n".join(rows)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="cpu_profile.json", help="where to write the measurements (JSON)")
    parser.add_argument("--table", metavar="JSON", help="print the markdown table of an earlier measurement")
    args = parser.parse_args(argv)
    if args.table:
        print(table(json.loads(Path(args.table).read_text())))
        return
    result = measure(lambda r: Path(args.out).write_text(json.dumps(r, indent=1)))
    print(table(result))


if __name__ == "__main__":
    main()
