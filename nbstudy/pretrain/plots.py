"""Figures for the pretraining notebook: what the network is shown, and how training went.

Each drawing function takes data and returns a new matplotlib Figure (not a pyplot one), as
`nbstudy.lnl.plots` and `nbstudy.analysis.plots` do. matplotlib is imported when a figure is
drawn, so training needs no plotting library.
"""

from __future__ import annotations

import numpy as np
import torch

from nbstudy import augment


def examples(method, images, n: int = 4, seed: int = 0) -> list:
    """Rows of (image HWC in [0, 1], caption): the first n images, then the inputs `method` makes from them
    (views, rotations, puzzles) with their targets."""
    batch = np.array(images[:n])   # a copy: the images may be a read-only memmap, which torch warns about
    x = augment.to_float(torch.from_numpy(batch).permute(0, 3, 1, 2))
    x = x.to(method.mean.device)
    with torch.no_grad():
        inputs, targets = method.make_inputs(x, torch.Generator(device=x.device).manual_seed(seed))
    rows = method.examples(inputs, targets, n)
    return [[(x[i].permute(1, 2, 0).cpu().numpy(), "image"), *row] for i, row in enumerate(rows)]


def show_examples(rows: list, method_name: str):
    """The rows of `examples` as a grid of captioned images."""
    from nbstudy.figures import Figure

    cols = max(len(r) for r in rows)
    fig = Figure(figsize=(2.2 * cols, 2.3 * len(rows)), layout="tight")
    axes = fig.subplots(len(rows), cols, squeeze=False)
    for i, row in enumerate(rows):
        for ax, (img, caption) in zip(axes[i], row):
            ax.imshow(img, interpolation="nearest")
            ax.set_title(caption, fontsize=8)
        for ax in axes[i]:
            ax.axis("off")
    fig.suptitle(f"{method_name}: what the network sees", fontsize=10)
    return fig


def plot_history(metrics: dict):
    """Loss and pretext accuracy per epoch, and the k-NN probe against its random-init baseline."""
    from nbstudy.figures import Figure

    h = metrics["history"]
    epochs = [r["epoch"] for r in h]
    fig = Figure(figsize=(10, 3.5), layout="tight")
    ax_loss, ax_acc = fig.subplots(1, 2)
    ax_loss.plot(epochs, [r["loss"] for r in h], marker=".")
    ax_loss.set(xlabel="epoch", ylabel="pretext loss", title=f"{metrics['method']} loss")
    ax_acc.plot(epochs, [r["acc"] for r in h], marker=".", label="pretext accuracy")
    probed = [(r["epoch"], r["probe_acc"]) for r in h if "probe_acc" in r] + [(metrics["epochs_done"], metrics["probe_acc"])]
    ax_acc.plot(*zip(*probed), marker="o", label="k-NN probe (test)")
    ax_acc.axhline(metrics["random_init_probe_acc"], color="grey", ls="--", label="k-NN probe, random init")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", ylim=(0, 1), title="accuracy")
    ax_acc.legend(fontsize=8)
    return fig
