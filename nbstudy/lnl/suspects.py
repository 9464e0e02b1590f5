"""Suspects: the training samples whose given label is probably wrong, ranked, for someone to check.

Every finished training run writes ``suspects.csv``: one row per training
sample (the noisy validation split is not ranked), most suspect first, with
its index in the data set, its image file where the data set has files, the
given label, the label the trained network predicts and the method's
suspicion score (higher = more likely wrong):

- CE and Co-teaching: the per-sample cross-entropy of network A on the given
  label after the last epoch (Co-teaching's small-loss criterion, Han et al.
  2018: large loss = probably wrong);
- DivideMix: 1 - the clean probability of a two-component GMM fitted to
  network A's normalised final losses (the co-divide step of Li et al. 2020).

When the wrong labels are known (noise planted by the run), the ranking is
scored against them: precision@k and recall@k for the top ``TOP_FRACTION`` of
the training samples, and ROC-AUC of the suspicion for "label is wrong".
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from nbstudy.checkpoint import atomic_write

SUSPECTS_FILE = "suspects.csv"
TOP_FRACTION = 0.1   # precision@k and recall@k at k = 10% of the training samples: a list one can check by hand
COLUMNS = ("rank", "index", "file", "given_label", "given_class", "predicted_label", "predicted_class",
           "suspicion", "wrong_label")


def ranking(suspicion: np.ndarray) -> np.ndarray:
    """Positions of `suspicion` (N,), most suspect first; ties keep data set order (a stable sort)."""
    return np.argsort(-np.asarray(suspicion, dtype=np.float64), kind="stable")


def top_k(n: int, top_fraction: float = TOP_FRACTION) -> int:
    """The k of precision@k for n ranked samples: max(1, round(top_fraction * n))."""
    return max(1, round(top_fraction * n))


def scores(suspicion: np.ndarray, wrong: np.ndarray, top_fraction: float = TOP_FRACTION) -> dict:
    """How well `suspicion` (N,) finds the wrong labels `wrong` (N, bool).

    Returns suspects_k (`top_k`), suspects_precision_at_k (share of the top k whose
    label is wrong), suspects_recall_at_k (share of the wrong labels that are in the top k) and suspects_auc
    (ROC-AUC); each None where it is undefined (no wrong label; AUC also when every label is wrong)."""
    wrong = np.asarray(wrong, dtype=bool)
    k = top_k(len(wrong), top_fraction)
    hits = int(wrong[ranking(suspicion)[:k]].sum())
    if not wrong.any():   # nothing to find: precision and recall say nothing
        return {"suspects_k": k, "suspects_precision_at_k": None, "suspects_recall_at_k": None, "suspects_auc": None}
    auc = float(roc_auc_score(wrong, suspicion)) if not wrong.all() else None
    return {"suspects_k": k, "suspects_precision_at_k": hits / k, "suspects_recall_at_k": hits / int(wrong.sum()),
            "suspects_auc": auc}


def write(out: Path, indices: np.ndarray, suspicion: np.ndarray, given: np.ndarray, predicted: np.ndarray,
          class_names: list, files=None, wrong=None) -> Path:
    """Write <out>/suspects.csv atomically, most suspect first.

    indices: (N,) data set indices of the ranked samples; suspicion, given, predicted: (N,) aligned with them;
    files: the data set's training files (indexed by data set index) or None; wrong: (N,) bool when known,
    else the column stays empty."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(COLUMNS)
    for rank, pos in enumerate(ranking(suspicion), start=1):
        i = int(indices[pos])
        writer.writerow([rank, i, "" if files is None else files[i], int(given[pos]), class_names[given[pos]],
                         int(predicted[pos]), class_names[predicted[pos]], repr(float(suspicion[pos])),
                         "" if wrong is None else str(bool(wrong[pos])).lower()])
    # full precision: DivideMix scores crowd near 0 and 1, and rounding them would tie ranks
    return atomic_write(Path(out) / SUSPECTS_FILE, lambda tmp: Path(tmp).write_text(text.getvalue()))


def read(out):
    """suspects.csv of a finished run as a pandas DataFrame (columns: COLUMNS; pandas is imported on use)."""
    import pandas as pd

    text = {"file": str, "given_class": str, "predicted_class": str}   # class names such as "0" stay names
    return pd.read_csv(Path(out) / SUSPECTS_FILE, keep_default_na=False, na_values={"wrong_label": [""]}, dtype=text)
