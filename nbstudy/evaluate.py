"""Forward passes over a whole image array, and the classification metrics the study reports."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics import balanced_accuracy_score, f1_score

from nbstudy import augment
from nbstudy.loader import BatchLoader
from nbstudy.runtime import autocast


@torch.no_grad()
def predict(fn, images, mean, std, device, batch_size: int = 256, indices=None,
            precision: str = "auto") -> torch.Tensor:
    """Apply `fn` (e.g. a model, or model.features) to every image, un-augmented; outputs in input order, float32 on the CPU.
    `precision`: the run's (`nbstudy.runtime.autocast`)."""
    device = torch.device(device)
    outs = []
    mean, std = augment.channel_stats(mean, std, device)
    loader = BatchLoader(images, batch_size=batch_size, shuffle=False, device=device, indices=indices)
    for _, x, in loader:
        with autocast(device, precision):
            out = fn(augment.normalize(augment.to_float(x), mean, std))
        outs.append(out.float())
    if not outs:
        return torch.empty(0)
    return torch.cat(outs).cpu()  # one copy back at the end: no wait for the GPU between batches


def classification_metrics(y_true, y_pred) -> dict:
    """Accuracy, balanced accuracy and macro-F1 (medical sets are imbalanced), as plain floats in [0, 1]."""
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    return {
        "acc": float((y_true == y_pred).mean()),
        "balanced_acc": float(balanced_accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
    }


def confusion(y_true, y_pred, num_classes: int) -> dict:
    """Confusion matrix and per-class recall of class predictions.

    y_true, y_pred: (N,) class indices in [0, num_classes). Returns {"confusion": (K, K) counts, row = true class,
    column = predicted class, as nested lists of ints; "recall": (K,) share of each true class predicted as
    itself, None for a class with no images}.
    """
    k = int(num_classes)
    counts = np.zeros((k, k), dtype=np.int64)
    np.add.at(counts, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    totals = counts.sum(1)
    recall = [float(counts[i, i] / totals[i]) if totals[i] else None for i in range(k)]
    return {"confusion": counts.tolist(), "recall": recall}
