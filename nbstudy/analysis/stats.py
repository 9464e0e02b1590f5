"""Does SSL init beat random init? Paired differences with confidence intervals, and pretraining that did not help.

A training run from an SSL init is paired with the random-init run of the same
LNL method, noise kind, noise rate and seed (same noisy labels, same test
images). The difference "SSL minus random" of a test metric is in percentage
points. Its interval depends on what the records allow:

- with >= 2 paired seeds, a paired t interval over the seeds' differences: it
  covers run-to-run variation (noisy-label draw, init of the head, batch order)
  on this study's test set, not the sampling of that test set;
- with one seed, LAST compares the two runs' answers on the same n test images
  (records.npz `test_predictions` and `test_labels`): the Agresti-Min interval
  for matched proportions (half an answer added to each right/wrong cell), which
  only the images where exactly one run is right move; it covers test-set
  sampling only. A closed form, so the same records always give the same interval
  (a bootstrap over images gives nearly the same, tested, but needs a seed);
- with one seed and no recorded answers (BEST, whose epoch's predictions are not
  kept, and runs made before 2026-12), a normal interval for the difference of two
  accuracies on the same n images (Agresti-Caffo: one right and one wrong answer
  added to each), treating the two as independent: also test-set sampling only,
  and wider than the paired one (two networks are right on mostly the same images).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as sps

from nbstudy.analysis import runs as R
from nbstudy.lnl.records import RECORDS_FILE
from nbstudy.pretrain.records import probe_warning

PAPER_METRICS = {"BEST": "best_acc", "LAST": "last_acc"}
LEVEL = 0.95
COLUMNS = ["backbone", "noise_kind", "noise_rate", "method", "init", "metric", "diff", "low", "high", "n_seeds", "n_test",
           "basis", "ssl", "random", "actual_noise", "pretraining_helped"]


def seed_interval(diffs, level: float = LEVEL) -> tuple[float, float, float]:
    """(mean, low, high) of paired differences over seeds (any unit), by the t distribution; needs >= 2."""
    d = np.asarray(diffs, dtype=float)
    if d.size < 2:
        raise ValueError(f"a paired t interval needs at least 2 seeds, got {d.size}")
    mean = float(d.mean())
    half = float(sps.t.ppf((1 + level) / 2, d.size - 1) * d.std(ddof=1) / math.sqrt(d.size))
    return mean, mean - half, mean + half


def test_set_interval(acc_a: float, acc_b: float, n_test: int, level: float = LEVEL) -> tuple[float, float, float]:
    """(acc_a - acc_b, low, high) in percentage points for two accuracies (fractions in [0, 1]) on the same
    `n_test` images: Agresti-Caffo, the two treated as independent (conservative for two networks that are
    mostly right on the same images). Covers test-set sampling only."""
    n = int(n_test)
    if n < 1:
        raise ValueError(f"n_test must be >= 1, got {n_test}")
    a, b = (round(acc * n) for acc in (acc_a, acc_b))   # right answers; the records keep the fraction
    pa, pb = (a + 1) / (n + 2), (b + 1) / (n + 2)
    half = float(sps.norm.ppf((1 + level) / 2)) * math.sqrt((pa * (1 - pa) + pb * (1 - pb)) / (n + 2))
    centre = pa - pb
    return 100 * (acc_a - acc_b), 100 * (centre - half), 100 * (centre + half)


def matched_interval(right_a, right_b, level: float = LEVEL) -> tuple[float, float, float]:
    """(accuracy of a - accuracy of b, low, high) in percentage points for two runs' answers on the same n test
    images, `right_a` and `right_b` (n,) booleans (True: the run's prediction is the image's label).

    Agresti & Min (2005, Statistics in Medicine 24:729), the difference of matched proportions: with n_ab the
    images only a got right and n_ba those only b got right, p_ab = (n_ab + 1/2) / (n + 2), p_ba likewise, and
    the Wald interval p_ab - p_ba +- z sqrt((p_ab + p_ba - (p_ab - p_ba)^2) / (n + 2)). Covers test-set sampling
    only. ValueError when the two differ in length or are empty."""
    a, b = np.asarray(right_a, dtype=bool), np.asarray(right_b, dtype=bool)
    if a.shape != b.shape or a.size == 0:
        raise ValueError(f"two runs' answers on the same test images are needed, got {a.shape} and {b.shape}")
    n = a.size
    p_ab, p_ba = (np.sum(a & ~b) + 0.5) / (n + 2), (np.sum(~a & b) + 0.5) / (n + 2)
    centre = p_ab - p_ba
    half = float(sps.norm.ppf((1 + level) / 2)) * math.sqrt((p_ab + p_ba - centre ** 2) / (n + 2))
    return 100 * float(a.mean() - b.mean()), 100 * (centre - half), 100 * (centre + half)


def last_answers(run_dir) -> np.ndarray | None:
    """Which test images a run got right at its last epoch ((n_test,) booleans), from records.npz; None for a run
    that did not record its predictions and the test labels."""
    with np.load(Path(run_dir) / RECORDS_FILE) as arrays:
        if "test_predictions" not in arrays or "test_labels" not in arrays:
            return None
        return arrays["test_predictions"] == arrays["test_labels"]


def paired_differences(study: R.Study, metrics: dict | None = None, level: float = LEVEL) -> pd.DataFrame:
    """One row per backbone x noise kind x noise rate x LNL method x SSL init x metric ({label: column, values in
    [0, 1]}); an SSL init is paired with random init of its own backbone.

    Columns: the grid values, "metric" (the label), "diff", "low", "high" (SSL minus random init, percentage
    points; low/high NaN when no interval can be given), "n_seeds" (paired seeds), "n_test" (test images),
    "basis" ("seeds": paired t; "test images, paired": one seed, the runs' recorded answers on the same images;
    "test images": one seed, the two accuracies as independent; both cover test-set sampling only), "ssl" and "random" (mean
    metric of each side over the paired seeds, percent), "actual_noise" (mean fraction of wrong labels) and
    "pretraining_helped" (the SSL init's k-NN probe above random init's: True / False, None when unrecorded).
    Combinations without a random-init run of the same seed are left out.
    """
    metrics = metrics or PAPER_METRICS
    numbers = [*metrics.values(), "actual_noise_rate", "n_test"]
    runs = study.runs.astype({c: float for c in numbers})   # None (not recorded) -> NaN
    helped = {(b, r.init): r.helped for b in study.choices("backbone")   # True / False / None
              for r in R.pretraining_probes(study, backbone=b).itertuples()}
    keys = ["backbone", "noise_kind", "noise_rate", "method"]
    dirs = runs.groupby([*keys, "seed", "init"]).run_dir.first().to_dict()
    rows = []
    for init in [i for i in study.choices("init") if i != "random"]:
        ssl, rnd = runs[runs.init == init], runs[runs.init == "random"]
        cols = [*keys, "seed", *numbers]
        pairs = pd.merge(ssl[cols].groupby([*keys, "seed"]).mean(), rnd[cols].groupby([*keys, "seed"]).mean(),
                         left_index=True, right_index=True, suffixes=("", "_random"))
        for grid, group in pairs.groupby(level=keys):
            for label, column in metrics.items():
                a, b = group[column].astype(float), group[f"{column}_random"].astype(float)
                n_test = group["n_test"].min()
                answers = (_answers(dirs, grid, group.index[0][-1], init) if len(group) == 1 and column == "last_acc"
                           else None)
                if len(group) >= 2:
                    diff, low, high = seed_interval(100 * (a - b), level)
                    basis = "seeds"
                elif answers is not None:
                    diff, low, high = matched_interval(*answers, level)
                    basis = "test images, paired"
                elif np.isfinite(n_test):
                    diff, low, high = test_set_interval(a.iloc[0], b.iloc[0], int(n_test), level)
                    basis = "test images"
                else:   # one seed and no test-set size recorded: no interval
                    diff, low, high, basis = 100 * (a.iloc[0] - b.iloc[0]), np.nan, np.nan, "none"
                rows.append({**dict(zip(keys, grid)), "init": init, "metric": label, "diff": diff, "low": low,
                             "high": high, "n_seeds": len(group), "n_test": n_test, "basis": basis,
                             "ssl": 100 * a.mean(), "random": 100 * b.mean(),
                             "actual_noise": group["actual_noise_rate"].mean(),
                             "pretraining_helped": helped.get((grid[0], init))})
    return pd.DataFrame(rows, columns=COLUMNS)


def _answers(dirs: dict, grid: tuple, seed, init: str) -> tuple | None:
    """The SSL-init run's and the random-init run's last answers on the test images, or None when either lacks them."""
    pair = [last_answers(dirs[(*grid, seed, i)]) for i in (init, "random")]
    return None if any(a is None for a in pair) or pair[0].shape != pair[1].shape else tuple(pair)


def verdict(row) -> str:
    """'better', 'worse' or 'unclear' (the interval covers 0 or there is none) for one row of `paired_differences`."""
    if row["low"] > 0:
        return "better"
    if row["high"] < 0:
        return "worse"
    return "unclear"


def probe_warnings(study: R.Study) -> list[str]:
    """`probe_warning` for each of the study's SSL inits (of each backbone) whose pretraining did not beat random
    init."""
    backbones = study.choices("backbone")
    return [w for b in backbones for r in R.pretraining_probes(study, backbone=b).itertuples()
            if (w := probe_warning(_named(r.init, b, backbones), r.probe_acc, r.random_probe_acc))]


def _named(init: str, backbone: str, backbones: list) -> str:
    """An init's name, with its backbone when the study has several."""
    return f"{backbone} {init}" if len(backbones) > 1 else init


def basis_note(diffs: pd.DataFrame, level: float = LEVEL) -> str:
    """What the intervals of `paired_differences` cover, in one sentence."""
    seeds, images = diffs[diffs.basis == "seeds"], diffs[diffs.basis.str.startswith("test images")]
    parts = []
    if len(seeds):
        n = sorted(set(seeds.n_seeds))
        parts.append(f"paired t intervals over {'-'.join(map(str, (n[0], n[-1]))) if len(n) > 1 else n[0]} seeds "
                     "(run-to-run variation on this test set, not the sampling of the test set)")
    if len(images):
        paired = (" (LAST pairs the two runs' answers on the same images; BEST, whose answers are not recorded, "
                  "treats them as independent: wider)" if (images.basis == "test images, paired").any() else "")
        parts.append(f"one seed: the intervals cover test-set sampling only ({int(images.n_test.min())} test "
                     f"images), not run-to-run variation{paired}")
    if (diffs.basis == "none").any():
        parts.append("one seed and no recorded test-set size: no interval")
    return f"{level:.0%} intervals: " + "; ".join(parts) + "."


def answer(study: R.Study, level: float = LEVEL) -> list[str]:
    """The study's question answered from the intervals, one line each: the basis, one sentence per noise
    kind x rate x method x SSL init (LAST, then BEST), an overall count on LAST, and the SSL inits whose
    pretraining ended below random init, kept apart from that count."""
    diffs = paired_differences(study, level=level)
    if diffs.empty:
        return ["No SSL-init run has a random-init run of the same method, noise kind, rate and seed to compare "
                "with: add random (and an SSL method) to the study's train: inits."]
    lines = [basis_note(diffs, level)]
    kinds, backbones = diffs.noise_kind.nunique() > 1, study.choices("backbone")
    for grid, group in diffs.groupby(["backbone", "noise_kind", "noise_rate", "method", "init"], sort=False):
        backbone, kind, rate, method, init = grid
        init = _named(init, backbone, backbones)
        last, best = (group[group.metric == m].iloc[0] for m in ("LAST", "BEST"))
        where = f"at {rate:g}{f' {kind}' if kinds else ''} ({wrong_label(last.actual_noise)})"
        v, ci = verdict(last), _interval(last, level)
        if v == "better":
            said = f"{init} init beats random init for {method} by {last['diff']:.1f} points on LAST, {ci}"
        elif v == "worse":
            said = f"{init} init loses to random init for {method} by {-last['diff']:.1f} points on LAST, {ci}"
        else:
            said = (f"no clear difference between {init} and random init for {method} on LAST "
                    f"({last['diff']:+.1f} points, {ci})")
        apart = " [pretraining ended below random init]" if fell_short(last.pretraining_helped) else ""
        lines.append(f"{where}, {said}; BEST {best['diff']:+.1f} points, {_interval(best, level)}{apart}")
    last = diffs[diffs.metric == "LAST"]
    kept = last[~last.pretraining_helped.map(fell_short)]
    if kept.empty:
        lines.append("No comparison is left for an answer: every SSL init's pretraining ended below random init.")
        return lines + [f"Kept apart: {w}." for w in probe_warnings(study)]
    counts = kept.apply(verdict, axis=1).value_counts()
    left_out = " (inits whose pretraining ended below random init left out)" if len(kept) < len(last) else ""
    lines.append(f"On LAST, SSL init is clearly better in {counts.get('better', 0)} of {len(kept)} comparisons, "
                 f"clearly worse in {counts.get('worse', 0)}, with no clear difference in {counts.get('unclear', 0)}"
                 f"{left_out}.")
    lines += [f"Kept apart: {w}." for w in probe_warnings(study)]
    return lines


def fell_short(helped) -> bool:
    """True when `pretraining_helped` says the pretraining ended below random init (None / NaN: unrecorded)."""
    return helped is not None and not pd.isna(helped) and not bool(helped)


def wrong_label(fraction) -> str:
    """'37% wrong' for a fraction of wrong labels; 'wrong: unknown' when not known (labels given, no planted noise)."""
    return "wrong: unknown" if fraction is None or not np.isfinite(fraction) else f"{fraction:.0%} wrong"


def _interval(row, level: float) -> str:
    return "no interval" if np.isnan(row["low"]) else f"{level:.0%} CI [{row['low']:.1f}, {row['high']:.1f}]"
