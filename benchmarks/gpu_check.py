"""Run every method through the package's own entry points on a GPU, briefly: a check, not a benchmark.

CI has no GPU, so this is how the CUDA path (bf16 autocast, channels_last, pinned
non-blocking copies, device-side random streams, torch.compile) gets exercised:

    python benchmarks/gpu_check.py [--out-dir /tmp/gpu_check] [--epochs 3]

Each pretraining method trains a few epochs on the synthetic set and must beat nothing but
finish with finite losses and write its backbone; each noisy-label method then trains from
the SimCLR backbone and must write its records; CE runs with torch_compile.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nbstudy.lnl import METHODS as LNL, load_records, train_noisy  # noqa: E402
from nbstudy.pretrain import METHODS as PRETRAIN, run_pretraining  # noqa: E402

DATA = {"dataset": "synthetic", "dataset_options": {"per_class": 200, "test_per_class": 50}, "resolution": 32,
        "stem": "imagenet"}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out-dir", default="/tmp/nbstudy-gpu-check")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--device", default="cuda")
    args = ap.parse_args(argv)
    out, failures = Path(args.out_dir), []
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU'}")
    backbones = {}
    for name in PRETRAIN:
        t0 = time.perf_counter()
        try:
            path = run_pretraining(DATA, method=name, epochs=args.epochs, batch_size=128, device=args.device,
                                   output_dir=str(out / "pretrain" / name), resume=False,
                                   progress=False)
            meta = json.loads((path.parent / "pretrain_metrics.json").read_text())
            ok = all(math.isfinite(h["loss"]) for h in meta["history"])
            backbones[name] = path
            print(f"pretrain {name:10s} ok={ok} probe {meta['probe_acc']:.3f} (random {meta['random_init_probe_acc']:.3f})"
                  f" {time.perf_counter() - t0:.1f}s", flush=True)
            if not ok:
                failures.append(f"pretrain {name}: non-finite loss")
        except Exception as exc:
            failures.append(f"pretrain {name}: {type(exc).__name__}: {exc}")
            print(failures[-1], flush=True)
    for name in LNL:
        t0 = time.perf_counter()
        try:
            opts = {"warmup_epochs": 1} if name == "dividemix" else {}
            final = train_noisy(DATA, method=name, method_options=opts, noise_rate=0.4, epochs=args.epochs + 1,
                                init=str(backbones.get("simclr", "random")), device=args.device,
                                torch_compile=name == "ce", output_dir=str(out / "train" / name), progress=False)
            rec = load_records(out / "train" / name)
            print(f"train {name:10s} BEST {final['best_acc']:.3f} LAST {final['last_acc']:.3f} "
                  f"losses {rec['losses'].shape} {time.perf_counter() - t0:.1f}s compile={name == 'ce'}", flush=True)
        except Exception as exc:
            failures.append(f"train {name}: {type(exc).__name__}: {exc}")
            print(failures[-1], flush=True)
    print("FAILED:\n  " + "\n  ".join(failures) if failures else f"all methods ran on {args.device}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
