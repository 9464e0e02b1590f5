"""Figures of one noisy-label run, drawn from its records (the notebook's figures).

Each function takes plain data (a history DataFrame indexed by epoch, the
`final` dict, a transition matrix) and returns a new matplotlib Figure.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

from nbstudy.analysis.plots import transition_heatmap
from nbstudy.figures import Figure

SELECTION = ["selection_precision", "selection_recall", "selection_auc"]


def noise_figure(matrix, class_names, kind: str, rate: float, actual_rate: float) -> Figure:
    """The measured transition matrix T[i, j] = fraction of true class i given label j."""
    k = len(class_names)
    fig = Figure(figsize=(1.2 + 0.5 * k, 1 + 0.45 * k), layout="constrained")
    transition_heatmap(fig.subplots(), np.asarray(matrix), class_names,
                       f"{kind} {rate:g}: {actual_rate:.1%} of labels wrong")
    return fig


def learning_curves(hist: pd.DataFrame, final: dict) -> Figure:
    """Training loss; test accuracy of the reported network (and of each network), the noisy-validation
    accuracy, BEST and LAST marked."""
    fig = Figure(figsize=(11, 3.8), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    ax1.plot(hist.index, hist["train_loss"], marker=".")
    ax1.set(xlabel="epoch", ylabel="training loss", title="training loss")
    ax2.plot(hist.index, hist["test_acc"], marker=".", label=f"test ({final['reported_network']})")
    for col in ("test_acc_A", "test_acc_B"):
        if hist["test_acc_B"].notna().any():   # two networks: show each
            ax2.plot(hist.index, hist[col], ":", alpha=0.6, label=f"test, network {col[-1]}")
    if hist["val_acc"].notna().any():
        ax2.plot(hist.index, hist["val_acc"], "k--", alpha=0.5, label="validation (noisy labels)")
    ax2.scatter([final["best_epoch"]], [final["best_acc"]], s=90, c="tab:green", zorder=3,
                label=f"BEST {final['best_acc']:.3f} (epoch {final['best_epoch']})")
    ax2.scatter([hist.index[-1]], [final["last_acc"]], s=90, c="tab:red", marker="s", zorder=3,
                label=f"LAST {final['last_acc']:.3f}")
    ax2.set(xlabel="epoch", ylabel="accuracy", title="test accuracy")
    ax2.legend(fontsize=8)
    for ax in (ax1, ax2):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return fig


def selection_curves(hist: pd.DataFrame, actual_rate: float) -> Figure | None:
    """Precision, recall and AUC of the method's clean-sample selection per epoch; None if it selects nothing."""
    sel = hist[SELECTION].astype(float)
    if not sel.notna().any().any():
        return None
    fig = Figure(figsize=(6, 3.5), layout="constrained")
    ax = fig.subplots()
    for col in SELECTION:
        ax.plot(sel.index, sel[col], marker=".", label=col.removeprefix("selection_"))
    ax.axhline(1 - actual_rate, ls="--", c="gray", label="fraction of right labels")
    ax.set(xlabel="epoch", ylim=(0, 1.02), title="selection of right labels")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=8)
    return fig
