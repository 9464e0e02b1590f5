"""The study's results in the paper's form: rows LNL method x init, columns noise rate x (BEST, LAST).

Cells are mean ± standard deviation over seeds, in percent; with one seed only
the mean is shown. Within each LNL method the best init of each column is
marked (bold), since the question is which initialisation helps a given method.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from pandas.io.formats.style import Styler

from nbstudy.analysis import runs as R
from nbstudy.analysis.plots import titled
from nbstudy.errors import NbstudyError

PAPER_METRICS = {"BEST": "best_acc", "LAST": "last_acc"}
OTHER_METRICS = {"val pick": "val_pick_acc", "LAST balanced": "last_balanced_acc", "LAST macro-F1": "last_macro_f1"}


@dataclass(frozen=True)
class ResultsTable:
    """Means and standard deviations (index: method, init; columns: noise rate, metric label) and a title."""

    mean: pd.DataFrame
    std: pd.DataFrame
    title: str

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
        return (self.cells().style.apply(lambda _: bold, axis=None).set_caption(self.title)
                .format_index(lambda rate: f"{rate:g}", axis="columns", level=0))   # 0.6, not 0.600000

    def _repr_html_(self) -> str:
        return self.style().to_html()


def results_table(study: R.Study, metrics: dict | None = None, noise_kind=None,
                  what: str = "Test accuracy (%)") -> ResultsTable:
    """Mean ± std over seeds of each metric ({label: column of the runs, values in [0, 1]}) in percent, for one
    noise kind (default: the study's first)."""
    metrics = metrics or PAPER_METRICS
    missing = [c for c in metrics.values() if c not in study.runs]
    if missing:
        raise NbstudyError(f"the runs have no {', '.join(missing)} column: choose metrics among "
                           f"{', '.join(c for c in study.runs.columns if c.endswith(('acc', 'f1')))}")
    kind = R.grid_defaults(study, noise_kind=noise_kind)["noise_kind"]
    runs = R.select(study, noise_kind=kind)
    long = runs.melt(id_vars=["method", "init", "noise_rate"], value_vars=list(metrics.values()),
                     var_name="column", value_name="value")
    long["metric"] = long["column"].map({c: label for label, c in metrics.items()})
    long["value"] = long["value"].astype(float) * 100
    stats = long.groupby(["method", "init", "noise_rate", "metric"])["value"].agg(["mean", "std"])
    rows = pd.MultiIndex.from_tuples([(m, i) for m in study.choices("method") for i in study.choices("init")
                                      if ((runs.method == m) & (runs.init == i)).any()], names=["method", "init"])
    cols = pd.MultiIndex.from_product([sorted(runs.noise_rate.unique()), list(metrics)],
                                      names=["noise rate", "metric"])

    def table(stat):
        wide = stats[stat].unstack(["noise_rate", "metric"])
        return wide.reindex(index=rows, columns=cols)

    seeds = runs.groupby(["method", "init", "noise_rate"]).seed.nunique()
    n = f"{seeds.min()}" if seeds.min() == seeds.max() else f"{seeds.min()}-{seeds.max()}"
    title = titled(f"{what}, {kind} noise: mean ± std over {n} seed(s); "
                   "bold = best init per method and column", study.synthetic)
    return ResultsTable(table("mean"), table("std"), title)


def actual_noise(study: R.Study) -> Styler:
    """Per noise kind and nominal rate: the fraction of labels actually wrong (mean, min, max over the runs)."""
    table = study.runs.groupby(["noise_kind", "noise_rate"]).actual_noise_rate.agg(["mean", "min", "max"])
    table = table.rename(columns=lambda c: f"actual, {c}")
    return (table.style.format("{:.3f}").format_index(lambda rate: f"{rate:g}", axis="index", level=1)
            .set_caption(titled("Nominal and actual noise rates", study.synthetic)))
