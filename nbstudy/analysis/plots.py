"""The study's figures. Each function returns a new `matplotlib.figure.Figure`.

Grid values left as None take the study's defaults: its highest noise rate
(where the methods differ most), its first noise kind, its smallest seed.
Titles say "SYNTHETIC data" whenever the runs used the synthetic dataset.
"""

from __future__ import annotations

import textwrap
import warnings

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from nbstudy import noise
from nbstudy.analysis import runs as R

SYNTHETIC = "SYNTHETIC data"
CLEAN_COLOR, NOISY_COLOR = "tab:blue", "tab:red"


def titled(text: str, synthetic: bool) -> str:
    """Append the synthetic-data warning to a title when it applies."""
    return f"{text} — {SYNTHETIC}" if synthetic else text


def grid_defaults(study: R.Study, noise_rate=None, noise_kind=None, seed=None) -> dict:
    """Fill unset grid values: highest noise rate, first noise kind, smallest seed."""
    return {"noise_rate": max(study.choices("noise_rate")) if noise_rate is None else noise_rate,
            "noise_kind": study.choices("noise_kind")[0] if noise_kind is None else noise_kind,
            "seed": study.choices("seed")[0] if seed is None else seed}


def _records(study: R.Study, **where) -> dict | None:
    """The records of the first run matching `where`, or None when that combination was not run."""
    found = R.select(study, **where)
    return None if found.empty else R.read_run(found.iloc[0]["run_dir"])


def _describe(g: dict) -> str:
    return f"{g['noise_kind']} noise {g['noise_rate']:g}, seed {g['seed']}"


# ---- first-layer filters -------------------------------------------------------------

def filter_mosaic(filters) -> np.ndarray:
    """(64, 3, k, k) conv weights -> one RGB image of all filters, 1 px apart.

    Each filter is scaled symmetrically around 0 on its own, so grey means a
    zero weight and colour shows what the filter responds to.
    """
    f = np.asarray(filters, dtype=float)
    n, _, k, _ = f.shape
    scale = np.abs(f).reshape(n, -1).max(axis=1)[:, None, None, None]
    f = 0.5 + f / (2 * np.where(scale > 0, scale, 1))
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    out = np.ones((rows * (k + 1) + 1, cols * (k + 1) + 1, 3))
    for i in range(n):
        r, c = divmod(i, cols)
        out[1 + r * (k + 1):1 + r * (k + 1) + k, 1 + c * (k + 1):1 + c * (k + 1) + k] = f[i].transpose(1, 2, 0)
    return out


def filters_figure(study: R.Study, noise_rate=None, noise_kind=None, seed=None) -> Figure:
    """Rows: inits. Columns: the first-layer filters the run started from, then after noisy training with each method."""
    g = grid_defaults(study, noise_rate, noise_kind, seed)
    inits, methods = study.choices("init"), study.choices("method")
    fig = Figure(figsize=(2.2 * (1 + len(methods)), 2.3 * len(inits) + 0.6), layout="constrained")
    axes = fig.subplots(len(inits), 1 + len(methods), squeeze=False)
    for i, init in enumerate(inits):
        for j, method in enumerate(methods):
            records = _records(study, init=init, method=method, **g)
            if records is None:
                continue
            if not axes[i, 0].images:  # every run of this row started from the same weights
                axes[i, 0].imshow(filter_mosaic(records["filters_initial"]), interpolation="nearest")
            axes[i, 1 + j].imshow(filter_mosaic(records["filters_final"]), interpolation="nearest")
        axes[i, 0].set_ylabel(init, fontsize=11)
    for j, name in enumerate(["initial"] + [f"after {m}" for m in methods]):
        axes[0, j].set_title(name, fontsize=10)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(titled(f"First-layer filters ({_describe(g)})", study.synthetic))
    return fig


# ---- per-sample loss distributions ---------------------------------------------------

def loss_histograms(study: R.Study, epochs, noise_rate=None, methods=None, inits=None, noise_kind=None,
                    seed=None) -> Figure:
    """Rows: inits. Columns: each method at each epoch. Per-sample training loss of right vs wrong labels.

    Each panel's title gives the loss ROC-AUC: 1 = every wrong label has a
    larger loss than every right one, 0.5 = no separation.
    """
    g = grid_defaults(study, noise_rate, noise_kind, seed)
    inits = inits or study.choices("init")
    methods = methods or study.choices("method")
    cols = [(m, e) for m in methods for e in epochs]
    fig = Figure(figsize=(2.6 * len(cols) + 0.4, 1.9 * len(inits) + 0.8), layout="constrained")
    axes = fig.subplots(len(inits), len(cols), squeeze=False)
    for i, init in enumerate(inits):
        for j, (method, epoch) in enumerate(cols):
            ax = axes[i, j]
            records = _records(study, init=init, method=method, **g)
            if records is None:
                ax.set_axis_off()
                continue
            s = R.samples(records, epoch)
            _loss_panel(ax, s)
            auc = R.loss_auc(s)
            ax.set_title(f"{init} · {method} · ep {s['epoch']}\nloss AUC {_fmt(auc)}", fontsize=9)
    axes[0, 0].legend(fontsize=8)
    for ax in axes[-1]:
        ax.set_xlabel("training loss")
    fig.suptitle(titled(f"Per-sample loss, right vs wrong labels ({_describe(g)})", study.synthetic))
    return fig


def _loss_panel(ax, s: dict) -> None:
    loss, noisy = s["loss"], s["noisy"]
    bins = np.linspace(0, max(np.quantile(loss, 0.99), 1e-6), 40)
    ax.hist(np.clip(loss[~noisy], 0, bins[-1]), bins, density=True, alpha=0.6, color=CLEAN_COLOR,
            label=f"right label ({(~noisy).sum()})")
    ax.hist(np.clip(loss[noisy], 0, bins[-1]), bins, density=True, alpha=0.6, color=NOISY_COLOR,
            label=f"wrong label ({noisy.sum()})")
    ax.set_yticks([])


def _fmt(x) -> str:
    return "n/a" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.2f}"


# ---- clean / noisy separation ---------------------------------------------------------

def selection_figure(study: R.Study, curves: pd.DataFrame, noise_rate=None, noise_kind=None) -> Figure:
    """Rows: selection ROC-AUC, precision, recall over epochs. Columns: the selecting methods. One line per init
    (mean over seeds, band = standard deviation)."""
    g = grid_defaults(study, noise_rate, noise_kind)
    data = curves[(curves.noise_rate == g["noise_rate"]) & (curves.noise_kind == g["noise_kind"])]
    methods = sorted(data.method.unique())
    metrics = ["auc", "precision", "recall"]
    fig = Figure(figsize=(4.2 * max(len(methods), 1), 7.5), layout="constrained")
    axes = fig.subplots(len(metrics), max(len(methods), 1), squeeze=False, sharex=True)
    for j, method in enumerate(methods):
        for i, metric in enumerate(metrics):
            ax = axes[i, j]
            part = data[(data.method == method) & (data.metric == metric)]
            sns.lineplot(part, x="epoch", y="value", hue="init", hue_order=study.choices("init"), errorbar="sd",
                         marker="o", ax=ax, legend=(i == 0 and j == 0))
            ax.set_ylabel(f"selection {metric}")
            ax.set_title(method if i == 0 else "")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if not methods:
        axes[0, 0].text(0.5, 0.5, "no run of a selecting method (Co-teaching, DivideMix) here",
                        ha="center", va="center")
    fig.suptitle(titled(f"Clean-sample selection by init ({g['noise_kind']} noise {g['noise_rate']:g})",
                        study.synthetic))
    return fig


def loss_auc_figure(study: R.Study, curves: pd.DataFrame, noise_rate=None, noise_kind=None) -> Figure:
    """Columns: methods. How well the per-sample loss separates right from wrong labels over epochs, by init."""
    g = grid_defaults(study, noise_rate, noise_kind)
    data = curves[(curves.noise_rate == g["noise_rate"]) & (curves.noise_kind == g["noise_kind"])]
    methods = study.choices("method")
    fig = Figure(figsize=(4.2 * len(methods), 3.2), layout="constrained")
    axes = fig.subplots(1, len(methods), squeeze=False, sharey=True)[0]
    for ax, method in zip(axes, methods):
        sns.lineplot(data[data.method == method], x="epoch", y="loss_auc", hue="init",
                     hue_order=study.choices("init"), errorbar="sd", marker="o", ax=ax, legend=ax is axes[0])
        ax.axhline(0.5, color="grey", lw=0.8, ls=":")
        ax.set_title(method)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("loss ROC-AUC (right vs wrong)")
    fig.suptitle(titled(f"Separation by loss ({g['noise_kind']} noise {g['noise_rate']:g})", study.synthetic))
    return fig


def threshold_figure(study: R.Study, method: str, epoch: int, threshold: float = 0.5, noise_rate=None,
                     inits=None, noise_kind=None, seed=None) -> Figure:
    """Rows: inits. Left: the clean score of right vs wrong labels and the threshold. Right: precision and
    recall of keeping the samples above each threshold, the chosen one marked."""
    g = grid_defaults(study, noise_rate, noise_kind, seed)
    inits = inits or study.choices("init")
    fig = Figure(figsize=(9, 2.6 * len(inits) + 0.6), layout="constrained")
    axes = fig.subplots(len(inits), 2, squeeze=False)
    grid = np.linspace(0, 1, 101)
    for i, init in enumerate(inits):
        left, right = axes[i]
        records = _records(study, init=init, method=method, **g)
        if records is None:
            left.set_axis_off()
            right.set_axis_off()
            continue
        s = R.samples(records, epoch)
        score, name = R.clean_score(s)
        bins = np.linspace(0, 1, 41)
        left.hist(score[~s["noisy"]], bins, alpha=0.6, color=CLEAN_COLOR, label="right label")
        left.hist(score[s["noisy"]], bins, alpha=0.6, color=NOISY_COLOR, label="wrong label")
        left.axvline(threshold, color="black", ls="--")
        left.set_xlabel(name)
        at = R.threshold_metrics(s, threshold)
        left.set_title(f"{init} · {method} · ep {s['epoch']}: keep score > {threshold:.2f}\n"
                       f"precision {_fmt(at['precision'])}, recall {_fmt(at['recall'])}, AUC {_fmt(at['auc'])}",
                       fontsize=9)
        precision, recall = R.threshold_curve(s, grid)
        right.plot(grid, precision, "-", label="precision")
        right.plot(grid, recall, "--", label="recall")
        right.axvline(threshold, color="black", lw=0.8)
        right.set_xlabel("threshold")
        right.set_ylim(-0.02, 1.02)
    axes[0, 0].legend(fontsize=8)
    axes[0, 1].legend(fontsize=8)
    fig.suptitle(titled(f"Selecting by a threshold on the clean score ({_describe(g)})", study.synthetic))
    return fig


# ---- results -----------------------------------------------------------------------

METRIC_LABELS = {"best_acc": "BEST", "last_acc": "LAST", "val_pick_acc": "noisy-val pick",
                 "best_balanced_acc": "BEST balanced", "last_balanced_acc": "LAST balanced",
                 "best_macro_f1": "BEST macro-F1", "last_macro_f1": "LAST macro-F1"}


def accuracy_vs_noise(study: R.Study, metrics=("best_acc", "last_acc"), noise_kind=None) -> Figure:
    """Columns: methods. Test metric (%) against the noise rate, one colour per init, one line style per metric;
    mean over seeds, bars = standard deviation."""
    kind = grid_defaults(study, noise_kind=noise_kind)["noise_kind"]
    runs = R.select(study, noise_kind=kind)
    long = runs.melt(id_vars=["init", "method", "noise_rate", "seed"], value_vars=list(metrics),
                     var_name="metric", value_name="percent")
    long["percent"] = long["percent"].astype(float) * 100
    long["metric"] = long["metric"].map(lambda m: METRIC_LABELS.get(m, m))
    methods = study.choices("method")
    fig = Figure(figsize=(4.2 * len(methods), 3.6), layout="constrained")
    axes = fig.subplots(1, len(methods), squeeze=False, sharey=True)[0]
    for ax, method in zip(axes, methods):
        sns.lineplot(long[long.method == method], x="noise_rate", y="percent", hue="init",
                     hue_order=study.choices("init"), style="metric", markers=True, errorbar="sd",
                     err_style="bars", ax=ax, legend=ax is axes[-1])
        ax.set_title(method)
        ax.set_xlabel("noise rate")
        ax.set_ylabel("test metric (%)")
    sns.move_legend(axes[-1], "upper left", bbox_to_anchor=(1, 1), fontsize=8)
    fig.suptitle(titled(f"Test metrics against the noise rate ({kind} noise)", study.synthetic))
    return fig


# ---- data and noise ------------------------------------------------------------------

def class_examples(labels, num_classes: int, per_class: int) -> list:
    """Per class, the indices of its first `per_class` images (the same images whatever the noise)."""
    labels = np.asarray(labels)
    return [np.flatnonzero(labels == c)[:per_class] for c in range(num_classes)]


def samples_figure(dataset, per_class: int = 8, shown_labels=None, subfig=None):
    """Rows: true classes. With `shown_labels` (e.g. noisy labels) each image is captioned with its label, red when wrong."""
    target = subfig if subfig is not None else Figure(figsize=(1.1 * per_class, 1.2 * dataset.num_classes + 0.6),
                                                       layout="constrained")
    axes = target.subplots(dataset.num_classes, per_class, squeeze=False)
    names = list(dataset.class_names)
    for c, indices in enumerate(class_examples(dataset.train_labels, dataset.num_classes, per_class)):
        for ax in axes[c]:
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_frame_on(False)
        axes[c, 0].set_ylabel(names[c], fontsize=9)
        for ax, i in zip(axes[c], indices):
            ax.imshow(dataset.train_images[i])
            if shown_labels is not None:
                shown = int(shown_labels[i])
                ax.set_title(names[shown], fontsize=8, color=NOISY_COLOR if shown != c else "black")
    if subfig is None:
        target.suptitle(titled(f"Training images per class ({dataset.num_classes} classes)", dataset.synthetic))
    return target


def transition_heatmap(ax, matrix, class_names, title: str) -> None:
    """T[i, j] = fraction of true class i labelled j, as an annotated heatmap."""
    k = len(class_names)
    sns.heatmap(np.asarray(matrix), vmin=0, vmax=1, cmap="viridis", annot=k <= 10, fmt=".2f",
                annot_kws={"fontsize": 7}, xticklabels=class_names, yticklabels=class_names, cbar=False,
                square=True, ax=ax)
    ax.set_xlabel("given label")
    ax.set_ylabel("true class")
    ax.set_title(title, fontsize=10)


def measured_noise_figure(study: R.Study) -> Figure:
    """For each noise kind and rate of the study, the transition matrix measured on its first run's labels."""
    pairs = [(k, r) for k in study.choices("noise_kind") for r in study.choices("noise_rate")]
    fig = Figure(figsize=(3.6 * len(pairs), 3.8), layout="constrained")
    axes = fig.subplots(1, len(pairs), squeeze=False)[0]
    for ax, (kind, rate) in zip(axes, pairs):
        records = R.read_run(R.find_run(study, noise_kind=kind, noise_rate=rate)["run_dir"])
        clean, noisy = records["clean_labels"], records["noisy_labels"]
        k = records["dataset"]["num_classes"]
        transition_heatmap(ax, noise.empirical_transition(clean, noisy, k), records["dataset"]["class_names"],
                           f"{kind} {rate:g}: {noise.actual_noise_rate(clean, noisy):.1%} wrong")
    fig.suptitle(titled("Label noise measured in the study's runs", study.synthetic))
    return fig


def noise_figure(dataset, rate: float, kind: str = "symmetric", seed: int = 0, per_class: int = 6) -> Figure:
    """The noise model's transition matrix, the one measured on the corrupted labels, and example images
    captioned with their noisy labels (red = wrong)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        matrix = noise.transition_matrix(dataset.num_classes, rate, kind)
        noisy = noise.corrupt_labels(dataset.train_labels, dataset.num_classes, rate, kind, seed=seed)
    measured = noise.empirical_transition(dataset.train_labels, noisy, dataset.num_classes)
    actual = noise.actual_noise_rate(dataset.train_labels, noisy)
    fig = Figure(figsize=(6 + 1.1 * per_class, max(7, 1.2 * dataset.num_classes + 1)), layout="constrained")
    left, right = fig.subfigures(1, 2, width_ratios=[6, 1.1 * per_class])
    top, bottom = left.subplots(2, 1)
    names = list(dataset.class_names)
    transition_heatmap(top, matrix, names, f"noise model: {kind}, rate {rate:g}")
    transition_heatmap(bottom, measured, names, f"measured: {actual:.1%} of labels wrong")
    samples_figure(dataset, per_class, shown_labels=noisy, subfig=right)
    right.suptitle("given labels (red = wrong)", fontsize=10)
    note = "\n" + textwrap.fill(str(caught[0].message), 100) if caught else ""
    fig.suptitle(titled(f"{kind} noise at rate {rate:g} (seed {seed})", dataset.synthetic) + note,
                 color="black" if not caught else NOISY_COLOR)
    return fig
