"""What a noisy-label run leaves behind, and how to read it back.

A run writes two files to its output folder, each atomically (a reader sees the
old or the new complete file, never half of one); `docs/records.md` documents
every key:

- ``metrics.json``: the parameters, the dataset, the per-epoch ``history`` and
  the ``final`` summary (BEST / LAST / validation-picked accuracy, ...).
- ``records.npz``: per-sample arrays (clean and noisy labels, the wrong-label
  mask, the train / validation split, per-sample losses and the method's
  selection at the recorded epochs, first-layer filters before and after).

Selection quality is measured against the known wrong-label mask: precision is
the fraction of selected samples whose label is right, recall the fraction of
right labels that were selected, ROC-AUC how well the method's score ranks
right labels above wrong ones.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from nbstudy.checkpoint import atomic_write
from nbstudy.errors import NbstudyError
from nbstudy.evaluate import confusion
from nbstudy.lnl.suspects import SUSPECTS_FILE
from nbstudy.plain import jsonable

METRICS_FILE = "metrics.json"
RECORDS_FILE = "records.npz"
PARAMS_FILE = "params.yaml"      # written when the run starts: every parameter and method option it runs with


def selection_metrics(selected, score, noisy) -> dict:
    """Precision / recall of `selected` and ROC-AUC of `score` for finding the samples whose label is right.

    selected: bool or 0/1 per sample, score: higher = more likely clean, noisy:
    the wrong-label mask. NaN entries (samples the method did not look at) are
    left out. A value that is undefined (nothing selected, one class only) is None.
    """
    selected = np.asarray(selected, dtype=float)
    score = np.asarray(score, dtype=float)
    clean = ~np.asarray(noisy, dtype=bool)
    seen = ~np.isnan(selected)
    sel, cl = selected[seen] > 0.5, clean[seen]
    precision = _ratio((sel & cl).sum(), sel.sum())
    recall = _ratio((sel & cl).sum(), cl.sum())
    scored = ~np.isnan(score)
    auc = None
    if 0 < clean[scored].sum() < scored.sum():
        auc = float(roc_auc_score(clean[scored], score[scored]))
    return {"precision": precision, "recall": recall, "auc": auc}


def _ratio(num, den):
    return float(num) / float(den) if den else None


def summarize(history: list[dict], reported: str, actual_noise_rate: float, train_time_s: float) -> dict:
    """The run's `final` dict: BEST, LAST and validation-picked test metrics of the reported network."""
    acc = np.array([h["test_acc"] for h in history])
    best = int(np.argmax(acc))  # first epoch reaching the maximum
    last = len(history) - 1
    val = [h["val_acc"] for h in history]
    pick = int(np.argmax(val)) if val[0] is not None else None
    h_last = history[last]
    return {
        "best_acc": float(acc[best]),
        "best_epoch": history[best]["epoch"],
        "last_acc": float(acc[last]),
        "val_pick_acc": None if pick is None else float(acc[pick]),
        "val_pick_epoch": None if pick is None else history[pick]["epoch"],
        "best_balanced_acc": history[best]["test_balanced_acc"],
        "last_balanced_acc": h_last["test_balanced_acc"],
        "best_macro_f1": history[best]["test_macro_f1"],
        "last_macro_f1": h_last["test_macro_f1"],
        "actual_noise_rate": float(actual_noise_rate),
        "selection_precision": h_last["selection_precision"],
        "selection_recall": h_last["selection_recall"],
        "selection_auc": h_last["selection_auc"],
        "reported_network": reported,
        "epochs": len(history),
        "train_time_s": float(train_time_s),
    }


def write_run(out: Path, setup, ctx, state: dict, final: dict) -> None:
    """A finished run's records: `setup` (`base.Setup`), the loop's `ctx` and `state`, the `final` summary.

    The final networks' test predictions (the reported network, or the ensemble's summed logits) go in as
    `test_predictions`, their confusion matrix and per-class recall (the LAST epoch's) into `final` itself, so
    the summary the loop returns is the one recorded."""
    ds = setup.dataset
    logits = [ctx.test_logits(k) for k in range(len(ctx.nets))]   # the last evaluation's, cached
    test_pred = (logits[0] if setup.method.reported == "A" else sum(logits)).argmax(1).numpy()
    final.update(confusion(ds.test_labels, test_pred, ds.num_classes))
    metrics = {
        "format": "nbstudy-train-records/1",
        "params": setup.params,
        "method_options": setup.options,
        "lr": ctx.lr,
        "batch_size": ctx.batch_size,
        "init": state["init"],
        "dataset": {"name": ds.name, "synthetic": bool(ds.synthetic), "class_names": list(ds.class_names),
                    "num_classes": ds.num_classes, "resolution": ds.resolution,
                    "n_train": len(setup.train_idx), "n_val": setup.n_val, "val_split": setup.val_split, "n_test": len(ds.test_labels),
                    "unreadable_skipped": len(ds.unreadable_skipped), "labels_file": ds.labels_file or None},
        "noise": {"kind": setup.params["noise_kind"], "rate": setup.params["noise_rate"],
                  "mask_known": setup.mask_known,
                  "actual_rate": setup.actual_noise_rate,
                  "transition_matrix": setup.transition_matrix().tolist()},
        "history": state["history"],
        "final": final,
    }
    arrays = {
        "clean_labels": setup.clean_labels,
        "noisy_labels": setup.noisy_labels,
        **({"noise_mask": setup.noise_mask} if setup.mask_known else {}),
        "train_indices": setup.train_idx,
        "val_indices": setup.val_idx,
        **({"val_noisy_labels": setup.val_labels} if setup.val_labels is not None else {}),
        "test_labels": np.asarray(ds.test_labels, dtype=np.int64),
        "test_predictions": test_pred.astype(np.int64),
        "record_epochs": np.asarray(state["record_epochs"], dtype=np.int64),
        "losses": np.stack(state["losses"]),      # the last epoch is always recorded
        "selection": np.stack(state["selection"]),
        "filters_initial": state["filters_initial"],
        "filters_final": state["filters_final"],
    }
    write_records(out, metrics, arrays)


def write_records(output_dir, metrics: dict, arrays: dict) -> None:
    """Write records.npz, then metrics.json (so metrics.json with a `final` means the run is complete)."""
    out = Path(output_dir)
    atomic_write(out / RECORDS_FILE, lambda tmp: _savez(tmp, arrays))
    text = json.dumps(jsonable(metrics), indent=1, allow_nan=False)
    atomic_write(out / METRICS_FILE, lambda tmp: Path(tmp).write_text(text))


def _savez(tmp, arrays):
    with open(tmp, "wb") as f:  # a file object stops numpy from appending '.npz' to the temp name
        np.savez_compressed(f, **arrays)



def finished_params(output_dir) -> dict | None:
    """The parameters of the finished run in output_dir (metrics.json with a `final`), or None: no run, or one
    that never finished or cannot be read (nothing finished there to keep)."""
    metrics = _finished_metrics(output_dir)
    return None if metrics is None else metrics.get("params")


def finished_final(output_dir, noisy_labels: np.ndarray, train_idx: np.ndarray) -> dict | None:
    """The `final` of the finished run in output_dir if it trained on these noisy labels and training samples
    (its parameters are checked apart), else None: a run to train. An edited labels file keeps its path, so
    the labels themselves are compared."""
    out = Path(output_dir)
    metrics = _finished_metrics(out)
    if metrics is None or not all((out / f).is_file() for f in (RECORDS_FILE, SUSPECTS_FILE)):
        return None
    try:
        with np.load(out / RECORDS_FILE) as arrays:
            same = (np.array_equal(arrays["noisy_labels"], noisy_labels)
                    and np.array_equal(arrays["train_indices"], train_idx))
    except (OSError, ValueError, KeyError):   # damaged: train again
        return None
    return metrics["final"] if same else None


def _finished_metrics(output_dir) -> dict | None:
    """metrics.json of a finished run (one with a `final`), or None."""
    try:
        metrics = json.loads((Path(output_dir) / METRICS_FILE).read_text())
    except (OSError, ValueError):
        return None
    return metrics if isinstance(metrics, dict) and "final" in metrics else None


def load_records(output_dir) -> dict:
    """Everything a run wrote: metrics.json's keys (params, history, final, ...) plus the arrays of records.npz."""
    out = Path(output_dir)
    metrics_path, arrays_path = out / METRICS_FILE, out / RECORDS_FILE
    if not metrics_path.is_file() or not arrays_path.is_file():
        raise NbstudyError(f"{out} holds no finished training run ({METRICS_FILE} and {RECORDS_FILE} missing): "
                           "give the output_dir of a completed train_noisy run")
    records = json.loads(metrics_path.read_text())
    with np.load(arrays_path) as npz:
        records.update({k: npz[k] for k in npz.files})
    return records
