"""Numbers for first-layer filters, for when the pictures look alike.

Two measures per filter bank (the first-layer filters of a run's network A, as `records.npz`
keeps them before and after noisy training: a ResNet's 64 first-convolution filters
(64, 3, k, k), a ViT's 192 patch-embedding filters (192, 3, p, p)):

- **low-frequency share**: the share of the filters' energy (squared 2-D DFT
  magnitude, summed over the 3 colour channels) at spatial frequencies of at most
  one cycle per filter width, DC included. Smooth filters (blobs, gradients, the
  oriented edges pretraining tends to learn) put most energy there; i.i.d. random
  weights spread it evenly, so their share is about (number of such frequencies) / k²:
  5/9 for 3 x 3 filters, 5/49 = 0.10 for 7 x 7.
- **change from the start**: the relative L2 distance ||after - before|| / ||before|| that
  noisy training moved the filters: how much of the initialisation survived.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from nbstudy.analysis import runs as R
from nbstudy.models import first_layer


def low_frequency_share(filters) -> float:
    """Share (0..1) of the energy of `filters` (N, C, k, k) at spatial frequencies of radius <= 1 cycle per
    filter, DC included, over all N filters and C channels."""
    f = np.asarray(filters, dtype=np.float64)
    k = f.shape[-1]
    power = np.abs(np.fft.fft2(f, axes=(-2, -1))) ** 2
    freq = np.fft.fftfreq(k) * k   # cycles per filter width: 0, 1, ..., -1
    low = np.hypot(freq[:, None], freq[None, :]) <= 1
    total = power.sum()
    return float(power[..., low].sum() / total) if total > 0 else float("nan")


def random_share(k: int) -> float:
    """The low-frequency share i.i.d. random k x k weights have on average: the share of DFT bins it counts."""
    freq = np.fft.fftfreq(k) * k
    return float((np.hypot(freq[:, None], freq[None, :]) <= 1).mean())


def relative_change(before, after) -> float:
    """||after - before|| / ||before|| over the whole bank (L2, all weights)."""
    before, after = np.asarray(before, dtype=np.float64), np.asarray(after, dtype=np.float64)
    scale = np.linalg.norm(before)
    return float(np.linalg.norm(after - before) / scale) if scale > 0 else float("nan")


def filter_measures(study: R.Study, noise_rate=None, noise_kind=None, seed=None, backbone=None) -> dict:
    """Both measures for every run at one noise setting (default the highest rate) and backbone (default the
    first). Returns {noise_rate, noise_kind, seed, backbone, layer ('first convolution' or 'patch embedding'),
    synthetic, kernel (k), random_share (i.i.d. weights' share), runs: DataFrame (init, method, start_low_share,
    end_low_share, change)}."""
    g = R.grid_defaults(study, noise_rate, noise_kind, seed, backbone)
    rows, k = [], None
    for _, run in R.select(study, **g).iterrows():
        rec = R.read_run(run["run_dir"])
        k = rec["filters_initial"].shape[-1]
        rows.append({"init": run["init"], "method": run["method"],
                     "start_low_share": low_frequency_share(rec["filters_initial"]),
                     "end_low_share": low_frequency_share(rec["filters_final"]),
                     "change": relative_change(rec["filters_initial"], rec["filters_final"])})
    return {**g, "layer": first_layer(g["backbone"]), "synthetic": study.synthetic, "kernel": k,
            "random_share": random_share(k) if k else None,
            "runs": pd.DataFrame(rows)}


def finding(measures: dict) -> str:
    """What pretraining did to the first layer and how much of it noisy training kept, in numbers."""
    t = measures["runs"]
    start = t.groupby("init", sort=False)["start_low_share"].mean()
    change = t.groupby("init", sort=False)["change"].mean()
    lines = []
    if "random" in start:
        others = [i for i in start.index if i != "random"]
        if others:
            smoothest = max(others, key=lambda i: start[i])
            lines.append(f"Before noisy training, {smoothest} filters hold {start[smoothest]:.0%} of their energy at "
                         f"low spatial frequencies, against {start['random']:.0%} for random init.")
        least = min(change.index, key=lambda i: change[i])
        lines.append(f"Noisy training moved the filters by {change['random']:.0%} from random init"
                     + (f" and by {change[least]:.0%} from {least} init, the least" if least != "random" else
                        ", the least of all inits") + f" (mean over methods, {measures['noise_kind']} noise "
                     f"{measures['noise_rate']:g}).")
    backbone = measures.get("backbone", "resnet18")
    where = "" if backbone == "resnet18" else f"{backbone} ({measures['layer']}): "
    return where + " ".join(lines)
