"""What each analysis notebook's figures show, said in numbers taken from the study's runs.

The closing cell of the loss, separation and data-and-noise notebooks prints one
of these, so a reader (or a teacher reading it out) gets the finding of *this*
study, not fixed wording that may not hold for it. Each function returns a few
plain sentences; each works at the study's highest noise rate by default (where
the methods differ most, `runs.grid_defaults`) and says so.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from nbstudy.analysis import runs as R

CLOSED = 0.05   # a loss AUC this far below its peak by the last epoch counts as a gap that closed (memorisation)


def _where(g: dict) -> str:
    return f"{g['noise_kind']} noise {g['noise_rate']:g}"


def _at(study: R.Study, g: dict) -> R.Study:
    """The study's runs at grid point `g`, every seed."""
    return R.Study(study.dir, R.select(study, **{k: v for k, v in g.items() if k != "seed"}), study.synthetic)


def _known_at(study: R.Study, noise_rate, noise_kind) -> tuple:
    """(the runs that know their wrong labels at the grid point, the grid point), or (None, why there are none)."""
    study = R.with_known_wrong_labels(study)
    if study.runs.empty:
        return None, f"These runs {R.UNKNOWN_WRONG}."
    g = R.grid_defaults(study, noise_rate, noise_kind)
    return _at(study, g), g


def _mean_over_seeds(curves: pd.DataFrame, value: str) -> pd.DataFrame:
    return curves.groupby(["method", "init", "epoch"], sort=False)[value].mean().reset_index()


def _init_order(study: R.Study, present) -> list:
    return [i for i in study.choices("init") if i in set(present)]


def per_backbone(finding, study: R.Study, **kwargs) -> str:
    """`finding(study, **kwargs)` of each of the study's backbones apart, each paragraph led by its backbone when
    the study has several (a finding of one backbone's runs says nothing of another's)."""
    parts = R.by_backbone(study)
    if len(parts) == 1:
        return finding(study, **kwargs)
    return "\n\n".join(f"{backbone}: {finding(part, **kwargs)}" for backbone, part in parts)


def loss_finding(study: R.Study, noise_rate=None, noise_kind=None) -> str:
    """How well the per-sample loss told wrong labels from right ones (loss ROC-AUC, mean over seeds): at the
    first recorded epoch per init, and per method whether the gap held or closed by the last epoch.

    Only runs that know their wrong labels count (`runs.with_known_wrong_labels`). Returns a short paragraph;
    when no label is known wrong it says there is nothing to separate."""
    at, g = _known_at(study, noise_rate, noise_kind)
    if at is None:
        return g
    curves = R.loss_auc_curves(at).dropna(subset=["loss_auc"])
    if curves.empty:
        return f"At {_where(g)} no label is wrong, so there is no right / wrong split to measure."
    auc = _mean_over_seeds(curves, "loss_auc")
    first = auc[auc.epoch == auc.epoch.min()].groupby("init", sort=False).loss_auc.mean()
    inits = _init_order(at, first.index)
    lines = [f"At {_where(g)}, epoch {auc.epoch.min()}: the loss told wrong from right labels with an AUC of "
             + ", ".join(f"{first[i]:.2f} from {i} init" for i in inits) + " (mean over methods and seeds; 0.5 is "
             "chance)."]
    for method in at.choices("method"):
        rows = auc[auc.method == method]
        parts, closed = [], False
        for init in _init_order(at, rows.init):
            r = rows[rows.init == init].sort_values("epoch")
            peak = r.loc[r.loss_auc.idxmax()]
            last = r.iloc[-1]
            if peak.loss_auc - last.loss_auc >= CLOSED:
                closed = True
                parts.append(f"from {init} init it peaked at {peak.loss_auc:.2f} (epoch {int(peak.epoch)}) and fell "
                             f"to {last.loss_auc:.2f} by epoch {int(last.epoch)}")
            else:
                parts.append(f"from {init} init it held at {last.loss_auc:.2f} to epoch {int(last.epoch)}")
        verdict = (" — the gap closed: the network fitted the wrong labels (memorisation)" if closed else "")
        lines.append(f"{method}: {'; '.join(parts)}{verdict}.")
    return " ".join(lines)


def separation_finding(study: R.Study, noise_rate=None, noise_kind=None) -> str:
    """How well each selecting method (Co-teaching, DivideMix) kept right labels at its last epoch, per init
    (selection precision and recall, mean over seeds), and which init gave the highest precision.

    Only runs that know their wrong labels count. Returns a short paragraph; with no selecting method, or no
    wrong labels at that rate, it says so."""
    at, g = _known_at(study, noise_rate, noise_kind)
    if at is None:
        return g
    curves = R.selection_curves(at).dropna(subset=["value"])
    if curves.empty:
        return f"At {_where(g)} no run selects samples (Co-teaching and DivideMix do; CE keeps every sample)."
    wrong = at.runs.actual_noise_rate.mean()
    if wrong == 0:
        return f"At {_where(g)} no label is wrong, so there is nothing for a selection to leave out."
    last = curves[curves.epoch == curves.groupby("run").epoch.transform("max")]
    table = last.pivot_table(index=["method", "init"], columns="metric", values="value", aggfunc="mean")
    lines = [f"At {_where(g)} ({wrong:.0%} of the training labels wrong; keeping samples at random, {1 - wrong:.0%} "
             "of those kept would have right labels), at the last epoch:"]
    for method in [m for m in at.choices("method") if m in table.index.get_level_values(0)]:
        t = table.loc[method].dropna(subset=["precision"])
        inits = _init_order(at, t.index)
        parts = [f"{t.loc[i, 'precision']:.0%} from {i} init (keeping {t.loc[i, 'recall']:.0%} of the right labels)"
                 for i in inits]
        ranked = t["precision"].sort_values(ascending=False)
        lead = (f"; {ranked.index[0]} init let the fewest wrong labels through"
                if len(ranked) > 1 and ranked.iloc[0] - ranked.iloc[1] >= 0.005 else "")
        lines.append(f"{method}: of the samples it kept, " + ", ".join(parts) + f" had right labels{lead}.")
    return " ".join(lines)


def noise_finding(measured: dict) -> str:
    """Per noise kind and rate: the fraction of labels made wrong against the nominal rate, the most common
    wrong label, and whether any class now carries a wrong label more often than its own (not learnable).

    `measured`: `runs.measured_noise`."""
    lines = []
    for p in sorted(measured["panels"], key=lambda p: -p["noise_rate"]):
        where = f"{p['noise_kind']} noise {p['noise_rate']:g}"
        m, names = np.asarray(p["matrix"]), p["class_names"]
        if p["actual_rate"] == 0:
            lines.append(f"At {where} no label was changed: the training labels are as the data set gives them.")
            continue
        off = m.copy()
        np.fill_diagonal(off, -1)
        i, j = np.unravel_index(np.argmax(off), off.shape)
        gap = (f" (below the nominal rate: with {len(names)} classes, {p['noise_kind']} noise also redraws the "
               "true class for some labels)" if p["noise_rate"] - p["actual_rate"] > 0.05 else "")
        text = (f"At {where}, {p['actual_rate']:.0%} of the training labels are wrong{gap}; the most common wrong "
                f"label is {names[j]!r} on {names[i]!r} images ({m[i, j]:.0%} of them).")
        swamped = [names[k] for k in range(len(names)) if off[k].max() > m[k, k]]
        if swamped:
            text += (f" {', '.join(map(repr, swamped))} images carry a wrong label more often than their own: from "
                     "these labels alone the class cannot be learned.")
        lines.append(text)
    return " ".join(lines)
