"""The study's results in the paper's form: rows LNL method x init, columns noise rate x (BEST, LAST).

Cells are mean ± standard deviation over seeds, in percent; with one seed only
the mean is shown. Within each LNL method the best init of each column is
marked (bold), since the question is which initialisation helps a given method.
Each noise rate's column is labelled with the fraction of labels its runs
actually made wrong ("0.8" over "37% wrong"): with few classes, symmetric noise
makes far fewer wrong than its nominal rate. `differences` gives SSL init
minus random init with confidence intervals (`nbstudy.analysis.stats`),
`pretraining` each SSL init's k-NN probe against random init's, `class_priors`
the training and test class shares side by side and `class_recall` the
per-class test recall. Captions of accuracy tables give the levels reached
without learning: the majority class's share of the test set, and chance.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from pandas.io.formats.style import Styler

from nbstudy.analysis import runs as R
from nbstudy.analysis import stats as S
from nbstudy.analysis.plots import titled
from nbstudy.errors import NbstudyError

PAPER_METRICS = S.PAPER_METRICS
OTHER_METRICS = {"val pick": "val_pick_acc", "LAST balanced": "last_balanced_acc", "LAST macro-F1": "last_macro_f1"}


@dataclass(frozen=True)
class ResultsTable:
    """Means and standard deviations (index: method, init; columns: noise rate, metric label), a title and
    `wrong`: {noise rate: mean fraction of labels its runs made wrong}, shown under each rate."""

    mean: pd.DataFrame
    std: pd.DataFrame
    title: str
    wrong: dict = field(default_factory=dict)

    @property
    def best(self) -> pd.DataFrame:
        """True where a cell has the highest mean of its column within its LNL method."""
        top = self.mean.groupby(level="method").transform("max")
        return np.isclose(self.mean, top) & self.mean.notna()

    def cells(self) -> pd.DataFrame:
        """The table as text, "mean ± std" in percent."""
        text = self.mean.map(lambda m: "" if np.isnan(m) else f"{m:.1f}")
        spread = self.std.map(lambda s: "" if np.isnan(s) else f" ± {s:.1f}")
        return text + spread

    def style(self) -> Styler:
        """The table for a notebook: best cells bold, the title as caption."""
        bold = self.best.map(lambda b: "font-weight: bold" if b else "")
        cells = self.cells()
        cells.columns = bold.columns = wrong_header(cells.columns, self.wrong)
        return (cells.style.apply(lambda _: bold, axis=None).set_caption(self.title)
                .format_index(lambda rate: f"{rate:g}", axis="columns", level=0))   # 0.6, not 0.600000

    def _repr_html_(self) -> str:
        return self.style().to_html()


def results_table(study: R.Study, metrics: dict | None = None, noise_kind=None,
                  what: str = "Test accuracy (%)") -> ResultsTable:
    """Mean ± std over seeds of each metric ({label: column of the runs, values in [0, 1]}) in percent, for one
    noise kind (default: the study's first); a study of several backbones gets a row per backbone and init."""
    metrics = metrics or PAPER_METRICS
    missing = [c for c in metrics.values() if c not in study.runs]
    if missing:
        raise NbstudyError(f"the runs have no {', '.join(missing)} column: choose metrics among "
                           f"{', '.join(c for c in study.runs.columns if c.endswith(('acc', 'f1')))}")
    kind = R.grid_defaults(study, noise_kind=noise_kind)["noise_kind"]
    runs, inits = _with_backbones(study, R.select(study, noise_kind=kind))
    long = runs.melt(id_vars=["method", "init", "noise_rate"], value_vars=list(metrics.values()),
                     var_name="column", value_name="value")
    long["metric"] = long["column"].map({c: label for label, c in metrics.items()})
    long["value"] = long["value"].astype(float) * 100
    stats = long.groupby(["method", "init", "noise_rate", "metric"])["value"].agg(["mean", "std"])
    rows = pd.MultiIndex.from_tuples([(m, i) for m in study.choices("method") for i in inits
                                      if ((runs.method == m) & (runs.init == i)).any()], names=["method", "init"])
    cols = pd.MultiIndex.from_product([sorted(runs.noise_rate.unique()), list(metrics)],
                                      names=["noise rate", "metric"])

    def table(stat):
        wide = stats[stat].unstack(["noise_rate", "metric"])
        return wide.reindex(index=rows, columns=cols)

    seeds = runs.groupby(["method", "init", "noise_rate"]).seed.nunique()
    n = f"{seeds.min()}" if seeds.min() == seeds.max() else f"{seeds.min()}-{seeds.max()}"
    title = titled(f"{what}, {kind} noise: mean ± std over {n} seed(s); "
                   f"bold = best init per method and column{levels_note(R.class_levels(study))}{probes_note(study)}",
                   study.synthetic)
    return ResultsTable(table("mean"), table("std"), title, actual_wrong(runs))


def _with_backbones(study: R.Study, runs: pd.DataFrame) -> tuple[pd.DataFrame, list]:
    """`runs` (rows of `study.runs` or of `runs.pretraining_probes` with a backbone column) and the study's inits;
    in a study of several backbones each init named with its backbone ("vit_tiny · simclr"), so that a table has a
    row per backbone and init and never averages backbones together."""
    inits, backbones = study.choices("init"), study.choices("backbone")
    if len(backbones) == 1:
        return runs, inits
    return runs.assign(init=runs.backbone + " · " + runs.init), [f"{b} · {i}" for b in backbones for i in inits]


def _all_probes(study: R.Study) -> pd.DataFrame:
    """`runs.pretraining_probes` of every backbone of the study, with a backbone column."""
    return pd.concat([R.pretraining_probes(study, backbone=b).assign(backbone=b) for b in study.choices("backbone")],
                     ignore_index=True)


def levels_note(levels: dict | None) -> str:
    """'. Without learning: ...' for a caption: the accuracy of always answering the majority class and of
    chance (`runs.class_levels`); empty when not recorded."""
    if not levels:
        return ""
    return (f". Without learning: always answering the majority class ({levels['majority_class']}) scores "
            f"{100 * levels['majority']:.1f}% accuracy on the test set, chance (1/{len(levels['class_names'])}) "
            f"{100 * levels['chance']:.1f}%, the balanced accuracy of any constant answer")


def probes_note(study: R.Study) -> str:
    """'. k-NN probe after pretraining: simclr 71.0% (random init 52.0%), ...' for a caption, an init whose probe
    ended below random init's marked as kept apart from the answer; empty when no SSL init recorded one."""
    probes, _ = _with_backbones(study, _all_probes(study))
    probes = probes[probes.probe_acc.notna() & probes.random_probe_acc.notna()]
    if probes.empty:
        return ""
    said = [f"{r.init} {100 * r.probe_acc:.1f}% (random init {100 * r.random_probe_acc:.1f}%"
            + ("; below it: kept apart from the answer)" if S.fell_short(r.helped) else ")")
            for r in probes.itertuples()]
    return ". k-NN probe after pretraining: " + ", ".join(said)


def class_priors(study: R.Study) -> Styler:
    """Each class's share of the training labels (clean, before noise) and of the test labels, side by side (%): a
    prior shift between them moves test accuracy by itself (LAST < BEST even without noise), which is not
    memorisation."""
    levels = R.class_levels(study)
    if levels is None:
        raise NbstudyError(f"no run in {study.dir} recorded its test confusion matrix (runs of before 2026-12): "
                           "run the study again with this version of nbstudy to get the class priors")
    table = pd.DataFrame({"train (%)": 100 * levels["train_prior"], "test (%)": 100 * levels["test_prior"]},
                         index=pd.Index(levels["class_names"], name="class"))
    table["test - train (points)"] = table["test (%)"] - table["train (%)"]
    return (table.style.format("{:.1f}").set_caption(titled("Class priors: training labels (clean) against test "
                                                            "labels", study.synthetic)))


def class_recall(study: R.Study, noise_kind=None) -> Styler:
    """Per-class test recall at the last epoch (%), mean over seeds: rows method x init (x backbone, in a study of
    several), columns noise rate x class, for one noise kind (default: the study's first). Runs that recorded no
    recall are left out."""
    kind = R.grid_defaults(study, noise_kind=noise_kind)["noise_kind"]
    runs, _ = _with_backbones(study, R.select(study, noise_kind=kind))   # a row per backbone and init
    runs = runs[runs.get("recall", pd.Series(None, index=runs.index)).map(lambda r: isinstance(r, list))]
    levels = R.class_levels(study)
    if runs.empty or levels is None:
        raise NbstudyError(f"no run in {study.dir} recorded per-class recall (runs of before 2026-12): run the "
                           "study again with this version of nbstudy")
    names = levels["class_names"]
    recall = pd.DataFrame([[np.nan if v is None else 100 * v for v in r] for r in runs.recall],
                          columns=pd.Index(names, name="class"), index=runs.index)
    long = pd.concat([runs[["method", "init", "noise_rate"]], recall], axis=1)
    table = long.groupby(["method", "init", "noise_rate"], sort=False)[names].mean().unstack("noise_rate")
    table = table.reorder_levels([1, 0], axis=1).reindex(
        columns=pd.MultiIndex.from_product([sorted(runs.noise_rate.unique()), names], names=["noise rate", "class"]))
    return (table.style.format("{:.1f}", na_rep="").format_index(lambda r: f"{r:g}", axis="columns", level=0)
            .set_caption(titled(f"Per-class test recall at the last epoch (%), {kind} noise, mean over seeds; a "
                                "class near 0 is one the network gave up on", study.synthetic)))


def actual_wrong(runs: pd.DataFrame) -> dict:
    """{noise rate: mean fraction of wrong labels (NaN when unknown)} over `runs`, rows of `Study.runs`."""
    return runs.astype({"actual_noise_rate": float}).groupby("noise_rate").actual_noise_rate.mean().to_dict()


def wrong_header(columns: pd.MultiIndex, wrong: dict) -> pd.MultiIndex:
    """Columns (noise rate, metric) as (noise rate, "37% wrong", metric): the nominal rate over the fraction of
    labels actually wrong."""
    return pd.MultiIndex.from_tuples([(rate, S.wrong_label(wrong.get(rate)), metric) for rate, metric in columns],
                                     names=["noise rate", "labels", "metric"])


@dataclass(frozen=True)
class DifferenceTable:
    """SSL init minus random init in percentage points (index: method, init; columns: noise rate, metric):
    `diff`, `low`, `high` (the interval), a title and `wrong` as in `ResultsTable`."""

    diff: pd.DataFrame
    low: pd.DataFrame
    high: pd.DataFrame
    title: str
    wrong: dict = field(default_factory=dict)

    def cells(self) -> pd.DataFrame:
        """The table as text, "+5.1 [1.2, 9.0]"."""
        def cell(d, lo, hi):
            if np.isnan(d):
                return ""
            return f"{d:+.1f}" + ("" if np.isnan(lo) else f" [{lo:.1f}, {hi:.1f}]")
        return pd.DataFrame([[cell(*v) for v in zip(*rows)] for rows in zip(self.diff.values, self.low.values,
                                                                             self.high.values)],
                            index=self.diff.index, columns=self.diff.columns)

    def style(self) -> Styler:
        """Green where the interval is above 0 (SSL init better), red where below, plain where it covers 0."""
        colour = pd.DataFrame(np.where(self.low > 0, "background-color: #d9f2d9",
                                       np.where(self.high < 0, "background-color: #f7d4d4", "")),
                              index=self.diff.index, columns=self.diff.columns)
        cells = self.cells()
        cells.columns = colour.columns = wrong_header(cells.columns, self.wrong)
        return (cells.style.apply(lambda _: colour, axis=None).set_caption(self.title)
                .format_index(lambda rate: f"{rate:g}", axis="columns", level=0))

    def _repr_html_(self) -> str:
        return self.style().to_html()


def differences(study: R.Study, noise_kind=None, level: float = S.LEVEL) -> DifferenceTable:
    """SSL init minus random init, BEST and LAST, with `level` intervals (`stats.paired_differences`), for one
    noise kind (default: the study's first). Rows of inits whose pretraining ended below random init's k-NN
    probe are marked "(probe below random)"."""
    kind = R.grid_defaults(study, noise_kind=noise_kind)["noise_kind"]
    diffs = S.paired_differences(study, level=level)
    diffs = diffs[diffs.noise_kind == kind].copy()
    several = diffs.backbone.nunique() > 1   # then each init is named with its backbone: one row each
    diffs["init"] = [f"{f'{b} ' if several else ''}{i}{' (probe below random)' if S.fell_short(h) else ''}"
                     for b, i, h in zip(diffs.backbone, diffs.init, diffs.pretraining_helped)]
    cols = pd.MultiIndex.from_product([sorted(diffs.noise_rate.unique()), list(S.PAPER_METRICS)],
                                      names=["noise rate", "metric"])
    rows = pd.MultiIndex.from_frame(diffs[["method", "init"]].drop_duplicates())
    wide = diffs.set_index(["method", "init", "noise_rate", "metric"])[["diff", "low", "high"]].unstack(
        ["noise_rate", "metric"])

    def part(value):   # no pair yet (random init only, or a study still running): an empty table
        return (wide[value] if len(diffs) else pd.DataFrame()).reindex(index=rows, columns=cols).astype(float)

    basis = S.basis_note(diffs, level) if len(diffs) else "no SSL-init run has a random-init run of the same seed."
    title = titled(f"SSL init minus random init, test accuracy (percentage points), {kind} noise; {basis} Green: "
                   "SSL init better, red: worse, plain: no clear difference (the interval covers 0)", study.synthetic)
    return DifferenceTable(part("diff"), part("low"), part("high"), title,
                           actual_wrong(R.select(study, noise_kind=kind)))


def pretraining(study: R.Study) -> Styler:
    """Each SSL init's k-NN probe accuracy at the end of pretraining against the same network at random init
    (percent), and whether the pretraining helped the features; a row per backbone and init."""
    probes, _ = _with_backbones(study, _all_probes(study))
    table = pd.DataFrame({"init": probes.init, "k-NN probe (%)": 100 * probes.probe_acc,
                          "random init's probe (%)": 100 * probes.random_probe_acc,
                          "pretraining": [probe_verdict(p, r) for p, r in zip(probes.probe_acc,
                                                                               probes.random_probe_acc)]}
                         ).set_index("init")
    return (table.style.format("{:.1f}", subset=["k-NN probe (%)", "random init's probe (%)"], na_rep="")
            .set_caption(titled("Pretraining: k-NN probe of the learned features against random init's",
                                study.synthetic)))


def probe_verdict(probe: float, random: float) -> str:
    """What a pretraining run's k-NN probe says against random init's (fractions; NaN: not recorded)."""
    if np.isnan(probe) or np.isnan(random):
        return "not recorded"
    return "helped" if probe > random else "no better than random init" if probe == random else "ended below random init"


def actual_noise(study: R.Study) -> Styler:
    """Per noise kind and nominal rate: the fraction of labels actually wrong (mean, min, max over the runs)."""
    table = study.runs.groupby(["noise_kind", "noise_rate"]).actual_noise_rate.agg(["mean", "min", "max"])
    table = table.rename(columns=lambda c: f"actual, {c}")
    return (table.style.format("{:.3f}").format_index(lambda rate: f"{rate:g}", axis="index", level=1)
            .set_caption(titled("Nominal and actual noise rates", study.synthetic)))
