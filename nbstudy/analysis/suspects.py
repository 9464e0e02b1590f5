"""Suspect labels across a study: each run's `suspects.csv` ranking, cleanlab's on the same labels, top-k.

Plain data for `nbstudy.analysis.plots` and the suspects notebook: precision@k
curves (share of the k most suspect training samples whose label was planted
wrong) per method x init, beside cleanlab's ranking from a frozen backbone of
each init (`nbstudy.lnl.label_issues`), and pages of the most suspect images.
A study of several backbones is scored one backbone at a time
(`scores_per_backbone`): a ranking is only compared with those of its own backbone.
"""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd

from nbstudy.analysis import runs as R
from nbstudy.data import check_run_data
from nbstudy.errors import NbstudyError
from nbstudy.lnl import label_issues, suspects


class WrongLabelsUnknown(NbstudyError):
    """The study's runs trained on given labels with no planted noise: nothing to score a ranking against."""


@functools.lru_cache(maxsize=32)
def _table(run_dir: str) -> pd.DataFrame:
    return suspects.read(run_dir)


def precision_curve(wrong_ranked: np.ndarray) -> np.ndarray:
    """(N,) precision@k for k = 1..N of a ranking, given its wrong-label flags (N,) bool, most suspect first."""
    wrong_ranked = np.asarray(wrong_ranked, dtype=float)
    return np.cumsum(wrong_ranked) / np.arange(1, len(wrong_ranked) + 1)


def precision_at_k(study: R.Study, noise_rate=None, noise_kind=None, seed=None, baseline: bool = True,
                   dataset=None) -> dict:
    """precision@k of every run of one backbone (the first) at one noise setting (default: the highest rate)
    and, with `baseline`, of cleanlab on the same labels for each init. Returns {noise_rate, noise_kind, seed,
    backbone, wrong_fraction, k_mark (the k of results.csv's precision@k), curves: DataFrame (ranker, init, k,
    precision), summary: DataFrame (backbone, ranker, init, precision_at_k, auc)}. Errors: runs whose wrong
    labels are unknown (given labels, no planted noise) or that predate suspects.csv."""
    g = R.grid_defaults(study, noise_rate, noise_kind, seed)
    curves, summary, wrong_fraction, k_mark = [], [], None, None
    for _, run in R.select(study, **g).iterrows():
        try:
            table = _table(run["run_dir"])
        except FileNotFoundError:
            raise NbstudyError(f"{run['run_dir']} has no suspects.csv (a run of an older nbstudy): run the study "
                               "again to redo it") from None
        if table["wrong_label"].isna().all():
            raise WrongLabelsUnknown(f"{run['run']} trained on given labels with no planted noise: which labels are "
                                     "wrong is unknown, so precision@k cannot be measured; its suspects.csv is the "
                                     "list to check")
        wrong = table["wrong_label"].astype(bool).to_numpy()
        scored = suspects.scores(table["suspicion"].to_numpy(), wrong)
        wrong_fraction, k_mark = float(wrong.mean()), scored["suspects_k"]
        curves.append(_curve(run["method"], run["init"], wrong))
        summary.append(_summary(g["backbone"], run["method"], run["init"], scored))
    if baseline:
        data = dataset if dataset is not None else R.study_dataset(study)
        for init in study.choices("init"):
            found = R.select(study, init=init, **g)
            if found.empty:
                continue
            records = R.read_run(found.iloc[0]["run_dir"])
            result = label_issues.baseline_for_run(records, data)   # scored on the run's wrong-label mask
            wrong = records["noise_mask"][records["train_indices"]]
            curves.append(_curve("cleanlab", init, wrong[suspects.ranking(result["suspicion"])]))
            summary.append(_summary(g["backbone"], "cleanlab", init, result))
    return {**g, "wrong_fraction": wrong_fraction, "k_mark": k_mark,
            "curves": pd.concat(curves, ignore_index=True), "summary": pd.DataFrame(summary)}


def scores_if_known(study: R.Study, baseline: bool = True, dataset=None) -> dict | None:
    """`precision_at_k` at the defaults, or None, printing the one-line reason, when the study's wrong labels
    are unknown (given labels with no planted noise): then the suspects lists are all there is to show."""
    try:
        return precision_at_k(study, baseline=baseline, dataset=dataset)
    except WrongLabelsUnknown as e:
        print(e)
        return None


def scores_per_backbone(study: R.Study, baseline: bool = True, dataset=None) -> dict:
    """{backbone: `scores_if_known` of its runs} for each of the study's backbones (`runs.by_backbone`): scored
    once, for the figures, the findings and the summary."""
    return {backbone: scores_if_known(part, baseline, dataset) for backbone, part in R.by_backbone(study)}


def own(study: R.Study, scored: dict) -> dict | None:
    """The study's (first) backbone's entry of `scored` (`scores_per_backbone`)."""
    return scored[study.choices("backbone")[0]]


def summary(scored: dict) -> pd.DataFrame | None:
    """Every backbone's summary rows (`scores_per_backbone`) in one table; None when nothing could be scored."""
    parts = [precision["summary"] for precision in scored.values() if precision is not None]
    return pd.concat(parts, ignore_index=True) if parts else None


def finding(study: R.Study, scored: dict) -> str:
    """The closing sentence of the suspects notebook for the study's (first) backbone, from its scored rankings
    (`scored`: `scores_per_backbone`); `findings.per_backbone(finding, study, scored=...)` says each backbone's."""
    precision = own(study, scored)
    if precision is None:
        return ("Which labels are wrong is unknown here (no planted noise), so the lists cannot be scored: the "
                "top suspects above are the images to check by hand.")
    best = precision["summary"].sort_values("precision_at_k", ascending=False, kind="stable").iloc[0]
    return (f"At {precision['noise_kind']} noise {precision['noise_rate']:g} (seed {precision['seed']}), "
            f"{precision['wrong_fraction']:.0%} of the training labels are wrong. Among the {precision['k_mark']} "
            f"most suspect labels, the best ranking ({best.ranker} from {best.init} init) finds "
            f"{best.precision_at_k:.0%} wrong; a random pick would find {precision['wrong_fraction']:.0%}.")


def shared_top_k(ranked_a, ranked_b, k: int) -> np.ndarray:
    """The samples (data set indices) in the first k of both rankings (most suspect first), in ranking a's order."""
    b = set(np.asarray(ranked_b)[:k].tolist())
    return np.array([i for i in np.asarray(ranked_a)[:k].tolist() if i in b], dtype=np.int64)


def beside_cleanlab(study: R.Study, noise_rate=None, noise_kind=None, seed=None, dataset=None) -> dict:
    """Each run's list beside cleanlab's where nothing can score them (given labels, no planted noise): of a
    run's k most suspect labels (k as results.csv's precision@k: 10% of the training samples), how many
    cleanlab on the same labels from the same init also puts in its first k; a random pick would share k / N.
    The labels every list of an init puts first are the ones to check first.

    Returns {grid values, k, n (training samples), chance (k / n), table: DataFrame (backbone, ranker, init,
    k, shared_with_cleanlab), cleanlab: {init: suspects-like DataFrame (rank, index, given_label, suspicion),
    most suspect first}, flagged_by_all: {init: data set indices in the first k of every list of that init}}.
    Needs the cleanlab package (`nbstudy.lnl.label_issues`)."""
    g = R.grid_defaults(study, noise_rate, noise_kind, seed)
    data = dataset if dataset is not None else R.study_dataset(study)
    rows, lists, everyone, k, n = [], {}, {}, None, None
    for init in study.choices("init"):
        found = R.select(study, init=init, **g)
        if found.empty:
            continue
        records = R.read_run(found.iloc[0]["run_dir"])
        idx = np.asarray(records["train_indices"])
        result = label_issues.baseline_for_run(records, data)
        order = suspects.ranking(result["suspicion"])
        k, n = suspects.top_k(len(idx)), len(idx)
        theirs = idx[order]
        lists[init] = pd.DataFrame({"rank": np.arange(1, n + 1), "index": theirs,
                                    "given_label": [data.class_names[c] for c in
                                                    np.asarray(records["noisy_labels"])[theirs]],
                                    "suspicion": np.asarray(result["suspicion"])[order]})
        first = theirs
        for _, run in found.iterrows():
            ours = _table(run["run_dir"])["index"].to_numpy()
            rows.append({"backbone": g["backbone"], "ranker": run["method"], "init": init, "k": k,
                         "shared_with_cleanlab": len(shared_top_k(ours, theirs, k)) / k})
            first = shared_top_k(ours, first, k)
        everyone[init] = first
    return {**g, "k": k, "n": n, "chance": None if not n else k / n, "table": pd.DataFrame(rows),
            "cleanlab": lists, "flagged_by_all": everyone}


def beside_finding(beside: dict) -> str:
    """What `beside_cleanlab` says, in two sentences."""
    t = beside["table"]
    if t.empty:
        return "No run to set beside cleanlab's list."
    most = t.sort_values("shared_with_cleanlab", ascending=False, kind="stable").iloc[0]
    flagged = ", ".join(f"{len(v)} from {init} init" for init, v in beside["flagged_by_all"].items())
    return (f"Which labels are wrong is unknown here, so no list can be scored; they can be compared. Of its "
            f"{beside['k']} most suspect labels, {most.ranker} from {most.init} init shares "
            f"{most.shared_with_cleanlab:.0%} with cleanlab's first {beside['k']} (a random pick would share "
            f"{beside['chance']:.0%}). Every list of an init puts these first, the labels to check first: {flagged} "
            "(`flagged_by_all`).")


def _curve(ranker: str, init: str, wrong_ranked) -> pd.DataFrame:
    precision = precision_curve(wrong_ranked)
    return pd.DataFrame({"ranker": ranker, "init": init, "k": np.arange(1, len(precision) + 1),
                         "precision": precision})


def _summary(backbone: str, ranker: str, init: str, scored: dict) -> dict:
    """A summary row from `suspects.scores`."""
    return {"backbone": backbone, "ranker": ranker, "init": init, "precision_at_k": scored["suspects_precision_at_k"],
            "auc": scored["suspects_auc"]}


def top_suspects(study: R.Study, method: str, init: str, noise_rate=None, noise_kind=None, seed=None,
                 page: int = 0, per_page: int = 16, dataset=None) -> dict:
    """One page of a run's most suspect training samples: {run, page, pages, rows: DataFrame (suspects.csv
    columns), images: (n, H, W, 3) uint8, class_names}."""
    g = R.grid_defaults(study, noise_rate, noise_kind, seed)
    run = R.find_run(study, method=method, init=init, **g)
    table = _table(run["run_dir"])
    pages = max(1, -(-len(table) // per_page))
    if not 0 <= page < pages:
        raise NbstudyError(f"page {page} does not exist: {run['run']} has pages 0..{pages - 1} of {per_page}")
    rows = table.iloc[page * per_page:(page + 1) * per_page].reset_index(drop=True)
    records = R.read_run(run["run_dir"])
    data = check_run_data(dataset if dataset is not None else R.study_dataset(study), records["params"],
                          len(records["noisy_labels"]))
    return {"run": run["run"], "method": method, "init": init, **g, "page": page, "pages": pages,
            "rows": rows, "images": np.asarray(data.train_images[rows["index"].to_numpy()]),
            "class_names": list(data.class_names)}
