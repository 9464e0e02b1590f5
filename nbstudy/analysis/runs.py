"""Find a study's training runs, read what they recorded, and gather the data each figure draws.

A study folder holds training runs anywhere below it; a run is any folder with
a ``metrics.json`` (folder names are not relied on). Each run becomes one row of
`Study.runs`: its grid parameters, its ``final`` metrics, the name of its init
("random" or the pretraining method) and its folder. The per-sample records are
read through `nbstudy.lnl.records.load_records` only, here, in `read_run`.

The figure data functions (`filters_data`, `loss_distributions`, `curves_at`,
`threshold_data`, `accuracy_data`, `measured_noise`, `noise_example`) return
plain dicts of arrays, numbers and DataFrames; `nbstudy.analysis.plots` draws
them and `nbstudy.figures.show` saves them next to the figure. Each dict
carries the grid values it was gathered at and ``synthetic``, which the figure
titles state.
"""

from __future__ import annotations

import functools
import json
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from nbstudy import noise
from nbstudy.errors import NbstudyError
from nbstudy.lnl.records import METRICS_FILE, load_records, selection_metrics
from nbstudy.models import first_layer
from nbstudy.pretrain.records import init_probes

GRID = ("init", "method", "noise_kind", "noise_rate", "seed", "backbone")


@dataclass(frozen=True)
class Study:
    """A study's folder, one row per finished training run, and whether its data is synthetic."""

    dir: Path
    runs: pd.DataFrame
    synthetic: bool

    def choices(self, column: str) -> list:
        """The sorted distinct values of a grid column, random init first."""
        values = sorted(self.runs[column].unique().tolist())
        if column == "init" and "random" in values:
            values.remove("random")
            values.insert(0, "random")
        return values

    def summary(self) -> str:
        """One line saying what the study holds, for the top of each notebook."""
        grid = "; ".join(f"{c.replace('_', ' ')}s: {', '.join(map(str, self.choices(c)))}" for c in GRID)
        tag = " — SYNTHETIC data" if self.synthetic else ""
        return f"{len(self.runs)} training runs in {self.dir} ({grid}){tag}"


def by_backbone(study: Study) -> list[tuple[str, Study]]:
    """[(backbone, the study's runs of that backbone)], in `choices` order: figures and findings never mix
    backbones, so a study of several is shown one backbone at a time."""
    return [(b, Study(study.dir, study.runs[study.runs.backbone == b].reset_index(drop=True), study.synthetic))
            for b in study.choices("backbone")]


def load_study(study_dir) -> Study:
    """Collect every finished training run below `study_dir`; in a study folder (one with the runner's
    results.csv) only the runs it lists, so runs left from an earlier version of the study file do
    not count twice."""
    if not str(study_dir):
        raise NbstudyError("study_dir is empty: set it to a study's output folder, <out>/<study name>")
    root = Path(study_dir).expanduser().resolve()
    if not root.is_dir():
        raise NbstudyError(f"study folder {root} does not exist: run `nbstudy study PARAMS.yaml` first, "
                           "or give the folder it printed")
    table = root / "results.csv"
    listed = set(pd.read_csv(table, usecols=["run"])["run"]) if table.is_file() else None
    rows, synthetic = [], False
    for path in sorted(root.rglob(METRICS_FILE)):
        if listed is not None and str(path.parent.relative_to(root)) not in listed:
            continue
        metrics = json.loads(path.read_text())
        if "final" not in metrics:  # a run still in progress
            continue
        p = metrics["params"]
        row = {k: v for k, v in p.items() if not isinstance(v, (dict, list))}
        row.setdefault("backbone", "resnet18")   # runs of before the backbone parameter trained a ResNet18
        row.update(metrics["final"], init=init_name(metrics), run=str(path.parent.relative_to(root)),
                   run_dir=str(path.parent), n_test=metrics.get("dataset", {}).get("n_test"),
                   mask_known=mask_known(metrics), **init_probes(metrics))
        rows.append(row)
        synthetic = synthetic or bool(metrics.get("dataset", {}).get("synthetic", False))
    if not rows:
        raise NbstudyError(f"no finished training run (a folder with {METRICS_FILE}) below {root}: "
                           "run the study first, or give the study's own folder")
    runs = pd.DataFrame(rows).sort_values(list(GRID), key=_random_first).reset_index(drop=True)
    return Study(root, runs, synthetic)


def _random_first(col: pd.Series) -> pd.Series:
    return col.map(lambda v: "" if v == "random" else v) if col.name == "init" else col


def mask_known(metrics: dict) -> bool:
    """Whether the run knows which of its labels are wrong (records.npz has `noise_mask`): not for given labels
    (the `labels` data set option) with no planted noise (`lnl.base.Setup.mask_known`, recorded since the
    `labels` option exists, so a run that did not record it had planted noise)."""
    return bool(metrics.get("noise", {}).get("mask_known", True))


def init_name(metrics: dict) -> str:
    """'random', or the pretraining method the run started from.

    The run records its checkpoint's metadata under ``init``; a checkpoint
    without a method is named after its folder, less the runner's hash suffix.
    """
    init = metrics["params"]["init"]
    if init == "random":
        return "random"
    method = metrics.get("init", {}).get("method")
    return method or re.sub(r"-[0-9a-f]{8}$", "", Path(init).parent.name)


def pretraining_probes(study: Study, backbone=None) -> pd.DataFrame:
    """One row per SSL init of the study, of one backbone (default the first): "init", "probe_acc" and
    "random_probe_acc" (k-NN probe accuracy, fractions; NaN when not recorded) and "helped" (False when the
    probe ended below random init's, True otherwise, an equal probe included; None when not recorded)."""
    backbone = study.choices("backbone")[0] if backbone is None else backbone
    rows = []
    for init in [i for i in study.choices("init") if i != "random"]:
        mine = study.runs[(study.runs.init == init) & (study.runs.backbone == backbone)]
        if mine.empty:
            continue
        run = mine.iloc[0]   # an init's runs of one backbone share one pretraining run
        probe, random = (float("nan") if run.get(c) is None else float(run[c])
                         for c in ("init_probe_acc", "random_probe_acc"))
        helped = None if np.isnan(probe) or np.isnan(random) else bool(probe >= random)   # equal: not below
        rows.append({"init": init, "probe_acc": probe, "random_probe_acc": random, "helped": helped})
    return pd.DataFrame(rows, columns=["init", "probe_acc", "random_probe_acc", "helped"]).astype({"helped": object})


def select(study: Study, **where) -> pd.DataFrame:
    """The runs matching every given grid value (None = any), maybe none.

    A value that no run of the study has is an error naming the values that exist.
    """
    keep = pd.Series(True, index=study.runs.index)
    for column, value in where.items():
        if value is None:
            continue
        match = study.runs[column] == value
        if not match.any():
            raise NbstudyError(f"no run with {column}={value!r} in {study.dir}: "
                               f"choose one of {', '.join(map(str, study.choices(column)))}")
        keep &= match
    return study.runs[keep]


def find_run(study: Study, **where) -> pd.Series:
    """A run matching `where`; grid values not given default to their first choice (seed 0, ...)."""
    runs = select(study, **where)
    if runs.empty:
        given = ", ".join(f"{k}={v!r}" for k, v in where.items() if v is not None)
        raise NbstudyError(f"the study in {study.dir} has no run with {given}: that combination was not run")
    for column in GRID:
        if where.get(column) is None and column in runs:
            runs = runs[runs[column] == sorted(runs[column].unique())[0]]
    return runs.iloc[0]


def grid_defaults(study: Study, noise_rate=None, noise_kind=None, seed=None, backbone=None) -> dict:
    """Fill unset grid values: the highest noise rate (where the methods differ most), the first noise kind,
    the smallest seed, the first backbone (resnet18 when the study has it): a figure never mixes backbones."""
    return {"noise_rate": max(study.choices("noise_rate")) if noise_rate is None else noise_rate,
            "noise_kind": study.choices("noise_kind")[0] if noise_kind is None else noise_kind,
            "seed": study.choices("seed")[0] if seed is None else seed,
            "backbone": study.choices("backbone")[0] if backbone is None else backbone}


@functools.lru_cache(maxsize=16)
def read_run(run_dir: str) -> dict:
    """A run's metrics and per-sample arrays (cached: sliders redraw from the same run many times)."""
    return load_records(run_dir)


def _records(study: Study, **where) -> dict | None:
    """The records of the first run matching `where`, or None when that combination was not run."""
    found = select(study, **where)
    return None if found.empty else read_run(found.iloc[0]["run_dir"])


def recorded_epochs(study: Study) -> list[int]:
    """Every epoch at which some run recorded its per-sample losses."""
    return sorted({int(e) for d in study.runs.run_dir for e in read_run(d)["record_epochs"]})


def key_epochs(study: Study, count: int = 4) -> list[int]:
    """A few recorded epochs from first to last, for static figures of how training unfolds."""
    epochs = recorded_epochs(study)
    picks = np.linspace(0, len(epochs) - 1, count).round().astype(int)
    return sorted({epochs[i] for i in picks})


def record_epoch(records: dict, epoch: int) -> int:
    """Row of the per-sample arrays for `epoch`: the last recorded epoch at or before it (or the first)."""
    epochs = records["record_epochs"]
    if len(epochs) == 0:
        raise NbstudyError("this run recorded no per-sample losses: train it with record_every >= 1")
    return max(int(np.searchsorted(epochs, epoch, side="right")) - 1, 0)


UNKNOWN_WRONG = ("trained on given labels with no planted noise: which labels are wrong is unknown, so there is no "
                 "right / wrong split to show; each run's suspects.csv ranks the labels to check (the suspects "
                 "notebook)")


def with_known_wrong_labels(study: Study) -> Study:
    """The study restricted to the runs that know which labels are wrong (planted noise), maybe none: runs on
    given labels (the `labels` data set option) with no planted noise record no wrong-label mask."""
    known = study.runs[study.runs.mask_known.astype(bool)]
    return Study(study.dir, known.reset_index(drop=True), study.synthetic)


def samples(records: dict, epoch: int) -> dict:
    """At a recorded epoch: the per-sample loss, selection and wrong-label mask of the training samples.

    Held-out (validation) samples are NaN in the records and are left out.
    """
    if "noise_mask" not in records:
        raise NbstudyError(f"{records['params']['output_dir']} {UNKNOWN_WRONG}")
    row = record_epoch(records, epoch)
    loss = records["losses"][row]
    seen = np.isfinite(loss)
    return {"epoch": int(records["record_epochs"][row]), "loss": loss[seen],
            "selection": records["selection"][row][seen], "noisy": records["noise_mask"][seen].astype(bool)}


def clean_score(s: dict) -> tuple[np.ndarray, str]:
    """A score in [0, 1], higher = more likely clean, and its name.

    DivideMix records a clean probability: that is the score. Otherwise (CE,
    Co-teaching's 0/1 kept mask) it is the min-max normalised loss turned
    around, the small-loss criterion every selecting method starts from.
    """
    sel = s["selection"]
    if np.isfinite(sel).all() and not np.isin(sel, (0.0, 1.0)).all():
        return sel.astype(float), "clean probability"
    loss = s["loss"].astype(float)
    span = loss.max() - loss.min()
    return 1 - (loss - loss.min()) / (span if span > 0 else 1), "1 - normalised loss"


def threshold_metrics(s: dict, threshold: float) -> dict:
    """Precision / recall of keeping samples whose clean score exceeds `threshold`, and the score's ROC-AUC."""
    score, _ = clean_score(s)
    return selection_metrics(score > threshold, score, s["noisy"])


def threshold_curve(s: dict, thresholds) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall (NaN where undefined) of keeping score > t, for every t in `thresholds`."""
    score, _ = clean_score(s)
    kept = score[None, :] > np.asarray(thresholds, dtype=float)[:, None]
    right = ~s["noisy"]
    hits = (kept & right).sum(axis=1).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return hits / kept.sum(axis=1), hits / right.sum()


def loss_auc(s: dict) -> float | None:
    """How well a small loss marks a right label (ROC-AUC of -loss for clean vs wrong labels)."""
    return selection_metrics(np.zeros_like(s["loss"]), -s["loss"], s["noisy"])["auc"]


def selection_curves(study: Study) -> pd.DataFrame:
    """Long table (run, grid..., epoch, metric, value) of each run's per-epoch selection precision / recall / AUC
    as the run's method computed it, for the runs that select samples."""
    rows = []
    for _, run in study.runs.iterrows():
        for h in read_run(run["run_dir"])["history"]:
            for metric in ("auc", "precision", "recall"):
                value = h.get(f"selection_{metric}")
                if value is not None:
                    rows.append({**run[list(GRID)].to_dict(), "run": run["run"], "epoch": h["epoch"],
                                 "metric": metric, "value": value})
    return pd.DataFrame(rows, columns=[*GRID, "run", "epoch", "metric", "value"])


def loss_auc_curves(study: Study) -> pd.DataFrame:
    """Table (run, grid..., epoch, loss_auc) of how well the per-sample loss separates clean from wrong labels, for every run."""
    rows = []
    for _, run in study.runs.iterrows():
        records = read_run(run["run_dir"])
        for epoch in records["record_epochs"]:
            rows.append({**run[list(GRID)].to_dict(), "run": run["run"], "epoch": int(epoch),
                         "loss_auc": loss_auc(samples(records, epoch))})
    return pd.DataFrame(rows, columns=[*GRID, "run", "epoch", "loss_auc"])


# ---- the data of each figure ---------------------------------------------------------
# Grid values left as None take `grid_defaults`.

def filters_data(study: Study, noise_rate=None, noise_kind=None, seed=None, backbone=None) -> dict:
    """The first-layer filters of the runs at one grid point (one backbone): a ResNet's first convolution
    (64, 3, k, k), a ViT's patch embedding (192, 3, p, p).

    Keys: the grid values, "synthetic", "layer" (`nbstudy.models.first_layer`'s name of
    what they are), "inits" and "methods" (the study's, in order), "initial" {init: the
    weights its runs started from} and "final" {init: {method: the weights after noisy
    training}}; a combination that was not run is absent.
    """
    g = grid_defaults(study, noise_rate, noise_kind, seed, backbone)
    inits, methods = study.choices("init"), study.choices("method")
    initial, final = {}, {}
    for init in inits:
        for method in methods:
            records = _records(study, init=init, method=method, **g)
            if records is not None:
                initial.setdefault(init, records["filters_initial"])  # an init's runs all start from these
                final.setdefault(init, {})[method] = records["filters_final"]
    return {**g, "synthetic": study.synthetic, "layer": first_layer(g["backbone"]), "inits": inits,
            "methods": methods, "initial": initial, "final": final}


def loss_distributions(study: Study, epochs, noise_rate=None, methods=None, inits=None, noise_kind=None,
                       seed=None) -> dict:
    """Histograms of the per-sample training loss of right vs wrong labels, per init and per method x epoch.

    Keys: the grid values, "synthetic", "inits", "methods", "epochs" (as asked)
    and "panels": one list per init, one entry per (method, epoch) in that
    order, None where the combination was not run, else {"init", "method",
    "epoch" (the recorded epoch shown: the last at or before the one asked),
    "loss_auc" (`loss_auc`), "edges" (40 bin edges from 0 to the 99th
    percentile; larger losses count in the last bin), "right" and "wrong" (the
    density of each group per bin, zeros for an empty group), "n_right",
    "n_wrong"}.
    """
    g = grid_defaults(study, noise_rate, noise_kind, seed)
    inits = inits or study.choices("init")
    methods = methods or study.choices("method")
    panels = []
    for init in inits:
        row = []
        for method in methods:
            records = _records(study, init=init, method=method, **g)
            row += [None if records is None else _loss_panel(init, method, samples(records, e)) for e in epochs]
        panels.append(row)
    return {**g, "synthetic": study.synthetic, "inits": list(inits), "methods": list(methods),
            "epochs": list(epochs), "panels": panels}


def _loss_panel(init: str, method: str, s: dict) -> dict:
    loss, noisy = s["loss"], s["noisy"]
    edges = np.linspace(0, max(np.quantile(loss, 0.99), 1e-6), 40)

    def density(group):
        if not group.size:
            return np.zeros(len(edges) - 1)
        return np.histogram(np.clip(group, 0, edges[-1]), edges, density=True)[0]

    return {"init": init, "method": method, "epoch": s["epoch"], "loss_auc": loss_auc(s), "edges": edges,
            "right": density(loss[~noisy]), "wrong": density(loss[noisy]), "n_right": int((~noisy).sum()),
            "n_wrong": int(noisy.sum())}


def curves_at(study: Study, curves: pd.DataFrame, noise_rate=None, noise_kind=None) -> dict:
    """The rows of `curves` (`selection_curves` or `loss_auc_curves`) at one noise rate and kind, every seed, of
    the first backbone.

    Keys: "noise_rate", "noise_kind", "synthetic", "inits", "methods" (the
    study's, in order) and "curves" (those rows).
    """
    g = grid_defaults(study, noise_rate, noise_kind)
    rows = curves[(curves.noise_rate == g["noise_rate"]) & (curves.noise_kind == g["noise_kind"])
                  & (curves.backbone == g["backbone"])]
    return {"noise_rate": g["noise_rate"], "noise_kind": g["noise_kind"], "synthetic": study.synthetic,
            "inits": study.choices("init"), "methods": study.choices("method"), "curves": rows}


def threshold_data(study: Study, method: str, epoch: int, threshold: float = 0.5, noise_rate=None, inits=None,
                   noise_kind=None, seed=None) -> dict:
    """Keeping the samples whose clean score (`clean_score`) exceeds a threshold, per init, for one method.

    Keys: the grid values, "synthetic", "method", "threshold", "inits" and
    "rows": one per init, None where not run, else {"init", "epoch" (the
    recorded epoch shown), "score_name", "edges" (41 bin edges over [0, 1]),
    "right" and "wrong" (sample counts per bin), "thresholds" (101 from 0 to
    1), "precision" and "recall" at each (NaN where undefined), "at" (precision,
    recall and the score's ROC-AUC at `threshold`, `threshold_metrics`)}.
    """
    g = grid_defaults(study, noise_rate, noise_kind, seed)
    inits = inits or study.choices("init")
    edges, thresholds = np.linspace(0, 1, 41), np.linspace(0, 1, 101)
    rows = []
    for init in inits:
        records = _records(study, init=init, method=method, **g)
        if records is None:
            rows.append(None)
            continue
        s = samples(records, epoch)
        score, name = clean_score(s)
        precision, recall = threshold_curve(s, thresholds)
        rows.append({"init": init, "epoch": s["epoch"], "score_name": name, "edges": edges,
                     "right": np.histogram(score[~s["noisy"]], edges)[0],
                     "wrong": np.histogram(score[s["noisy"]], edges)[0],
                     "thresholds": thresholds, "precision": precision, "recall": recall,
                     "at": threshold_metrics(s, threshold)})
    return {**g, "synthetic": study.synthetic, "method": method, "threshold": threshold, "inits": list(inits),
            "rows": rows}


def accuracy_data(study: Study, metrics=("best_acc", "last_acc"), noise_kind=None, backbone=None) -> dict:
    """Each run's test metrics in percent, for one noise kind and one backbone (default the first).

    Keys: "noise_kind", "synthetic", "inits", "methods" (the study's, in order)
    and "runs": a long table (run, init, method, noise_rate, seed, metric: the
    column of `Study.runs`, percent), one row per run and metric.
    """
    g = grid_defaults(study, noise_kind=noise_kind, backbone=backbone)
    kind = g["noise_kind"]
    long = select(study, noise_kind=kind, backbone=g["backbone"]).melt(
        id_vars=["run", "init", "method", "noise_rate", "seed"], value_vars=list(metrics), var_name="metric",
        value_name="percent")
    long["percent"] = long["percent"].astype(float) * 100
    return {"noise_kind": kind, "synthetic": study.synthetic, "inits": study.choices("init"),
            "methods": study.choices("method"), "runs": long, "levels": class_levels(study)}


def class_levels(study: Study) -> dict | None:
    """The class priors of the study's data set and the accuracy they give without learning, from its first run
    that recorded a test confusion matrix (runs of before 2026-12 did not: None).

    Keys: "class_names"; "train_prior" and "test_prior" ((K,) fractions: the clean labels of every training image,
    the noisy-validation share included, and the test labels); "chance" (1 / K, guessing uniformly; also the
    balanced accuracy of any constant answer) and "majority" (test accuracy of always answering the most frequent
    training class, "majority_class")."""
    if "confusion" not in study.runs:
        return None
    recorded = study.runs[study.runs.confusion.map(lambda c: isinstance(c, list))]
    if recorded.empty:
        return None
    records = read_run(recorded.iloc[0]["run_dir"])
    k, names = records["dataset"]["num_classes"], list(records["dataset"]["class_names"])
    test = np.asarray(recorded.iloc[0]["confusion"]).sum(1)
    train = np.bincount(records["clean_labels"], minlength=k)
    top = int(np.argmax(train))
    return {"class_names": names, "train_prior": train / train.sum(), "test_prior": test / test.sum(),
            "chance": 1 / k, "majority": float(test[top] / test.sum()), "majority_class": names[top]}


def confusion_data(study: Study, **where) -> dict:
    """The test confusion matrix and per-class recall at the last epoch of the first run matching `where` (grid
    values, None = any). Keys: "run", the grid values, "class_names", "confusion" ((K, K) counts, row = true
    class, column = predicted), "recall" ((K,) fractions, NaN for a class with no test image), "synthetic"."""
    run = find_run(study, **where)
    if not isinstance(run.get("confusion"), list):
        raise NbstudyError(f"{run['run']} recorded no confusion matrix (a run of before 2026-12): run it again "
                           "with this version of nbstudy")
    names = list(read_run(run["run_dir"])["dataset"]["class_names"])
    return {"run": run["run"], **{c: run[c] for c in GRID}, "class_names": names,
            "confusion": np.asarray(run["confusion"]),
            "recall": np.array([np.nan if r is None else r for r in run["recall"]], dtype=float),
            "synthetic": study.synthetic}


def measured_noise(study: Study) -> dict:
    """For each noise kind and rate of the study, the transition matrix measured on its first run's labels.

    Keys: "synthetic" and "panels": one per (kind, rate) pair, {"noise_kind",
    "noise_rate", "run" (the run's folder below the study), "class_names",
    "matrix" (K, K: `nbstudy.noise.empirical_transition` of its clean and noisy
    labels), "actual_rate" (the fraction of its labels that are wrong)}.
    """
    panels = []
    for kind in study.choices("noise_kind"):
        for rate in study.choices("noise_rate"):
            run = find_run(study, noise_kind=kind, noise_rate=rate)
            records = read_run(run["run_dir"])
            clean, noisy = records["clean_labels"], records["noisy_labels"]
            panels.append({"noise_kind": kind, "noise_rate": rate, "run": run["run"],
                           "class_names": list(records["dataset"]["class_names"]),
                           "matrix": noise.empirical_transition(clean, noisy, records["dataset"]["num_classes"]),
                           "actual_rate": noise.actual_noise_rate(clean, noisy)})
    return {"synthetic": study.synthetic, "panels": panels}


def noise_example(dataset, rate: float, kind: str = "symmetric", seed: int = 0) -> dict:
    """The dataset's training labels corrupted by one noise model, and what that did.

    Keys: "kind", "rate", "seed", "model" (K, K: the noise model's transition
    matrix), "noisy_labels" (one per training image), "measured" (K, K: the
    transition measured on them), "actual_rate" (the fraction wrong) and
    "warning": the noise model's warning (say, that the labels are
    unlearnable), or None.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = noise.transition_matrix(dataset.num_classes, rate, kind)
        noisy = noise.corrupt_labels(dataset.train_labels, dataset.num_classes, rate, kind, seed=seed)
    return {"kind": kind, "rate": rate, "seed": seed, "model": model, "noisy_labels": noisy,
            "measured": noise.empirical_transition(dataset.train_labels, noisy, dataset.num_classes),
            "actual_rate": noise.actual_noise_rate(dataset.train_labels, noisy),
            "warning": str(caught[0].message) if caught else None}


def study_dataset(study: Study):
    """The study's dataset, loaded the way its first run loaded it."""
    from nbstudy.data import load_dataset  # only the data explorer needs the images

    p = read_run(study.runs.iloc[0]["run_dir"])["params"]
    return load_dataset(p["dataset"], data_path=p.get("data_path"), resolution=p.get("resolution"),
                        seed=p.get("data_seed", p.get("seed", 0)), **(p.get("dataset_options") or {}))
