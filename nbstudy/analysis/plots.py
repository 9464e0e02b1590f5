"""The study's figures, drawn from data. Each function returns a new `matplotlib.figure.Figure`.

Nothing here reads a run: the figure functions take the dicts that
`nbstudy.analysis.runs` gathers (`filters_data`, `loss_distributions`, ...; see
each function) or a loaded dataset, so a notebook can save a figure together
with the very numbers it shows (`nbstudy.figures.show`). Titles say
"SYNTHETIC data" whenever the data says ``synthetic``.
"""

from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.ticker import MaxNLocator

from nbstudy.figures import Figure

SYNTHETIC = "SYNTHETIC data"
CLEAN_COLOR, NOISY_COLOR = "tab:blue", "tab:red"


def titled(text: str, synthetic: bool) -> str:
    """Append the synthetic-data warning to a title when it applies."""
    return f"{text} — {SYNTHETIC}" if synthetic else text


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


def filters_figure(data: dict) -> Figure:
    """Rows: inits. Columns: the first-layer filters the runs started from, then after noisy training with each
    method. `data`: `runs.filters_data`; a combination not run is left blank."""
    inits, methods = data["inits"], data["methods"]
    fig = Figure(figsize=(2.2 * (1 + len(methods)), 2.3 * len(inits) + 0.6), layout="constrained")
    axes = fig.subplots(len(inits), 1 + len(methods), squeeze=False)
    for i, init in enumerate(inits):
        if init in data["initial"]:
            axes[i, 0].imshow(filter_mosaic(data["initial"][init]), interpolation="nearest")
        for j, method in enumerate(methods):
            final = data["final"].get(init, {}).get(method)
            if final is not None:
                axes[i, 1 + j].imshow(filter_mosaic(final), interpolation="nearest")
        axes[i, 0].set_ylabel(init, fontsize=11)
    for j, name in enumerate(["initial"] + [f"after {m}" for m in methods]):
        axes[0, j].set_title(name, fontsize=10)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(titled(f"First-layer filters ({_describe(data)})", data["synthetic"]))
    return fig


# ---- per-sample loss distributions ---------------------------------------------------

def loss_histograms(data: dict) -> Figure:
    """Rows: inits. Columns: each method at each epoch. Per-sample training loss of right vs wrong labels.

    `data`: `runs.loss_distributions`. Each panel's title gives the loss
    ROC-AUC: 1 = every wrong label has a larger loss than every right one,
    0.5 = no separation.
    """
    inits, cols = data["inits"], len(data["methods"]) * len(data["epochs"])
    fig = Figure(figsize=(2.6 * cols + 0.4, 1.9 * len(inits) + 0.8), layout="constrained")
    axes = fig.subplots(len(inits), cols, squeeze=False)
    for ax, panel in zip(axes.flat, (p for row in data["panels"] for p in row)):
        if panel is None:
            ax.set_axis_off()
            continue
        edges = panel["edges"]
        for group, color, label in (("right", CLEAN_COLOR, "right label"), ("wrong", NOISY_COLOR, "wrong label")):
            ax.hist(edges[:-1], edges, weights=panel[group], alpha=0.6, color=color,
                    label=f"{label} ({panel[f'n_{group}']})")
        for group in ("right", "wrong"):
            if not panel[f"n_{group}"]:   # drawn empty, and said so: at noise 0 there are no wrong labels
                ax.text(0.5, 0.9, f"no {group} labels", transform=ax.transAxes, ha="center", va="top", fontsize=8)
        ax.set_yticks([])
        ax.set_title(f"{panel['init']} · {panel['method']} · ep {panel['epoch']}\nloss AUC {_fmt(panel['loss_auc'])}",
                     fontsize=9)
    axes[0, 0].legend(fontsize=8)
    for ax in axes[-1]:
        ax.set_xlabel("training loss")
    fig.suptitle(titled(f"Per-sample loss, right vs wrong labels ({_describe(data)})", data["synthetic"]))
    return fig


def _fmt(x) -> str:
    return "n/a" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.2f}"


# ---- clean / noisy separation ---------------------------------------------------------

def selection_figure(data: dict) -> Figure:
    """Rows: selection ROC-AUC, precision, recall over epochs. Columns: the selecting methods. One line per init
    (mean over seeds, band = standard deviation). `data`: `runs.curves_at` of `runs.selection_curves`."""
    curves = data["curves"]
    methods = sorted(curves.method.unique())
    metrics = ["auc", "precision", "recall"]
    fig = Figure(figsize=(4.2 * max(len(methods), 1), 7.5), layout="constrained")
    axes = fig.subplots(len(metrics), max(len(methods), 1), squeeze=False, sharex=True)
    for j, method in enumerate(methods):
        for i, metric in enumerate(metrics):
            ax = axes[i, j]
            part = curves[(curves.method == method) & (curves.metric == metric)]
            sns.lineplot(part, x="epoch", y="value", hue="init", hue_order=data["inits"], errorbar="sd",
                         marker="o", ax=ax, legend=(i == 0 and j == 0))
            ax.set_ylabel(f"selection {metric}")
            ax.set_title(method if i == 0 else "")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if not methods:
        axes[0, 0].text(0.5, 0.5, "no run of a selecting method (Co-teaching, DivideMix) here",
                        ha="center", va="center")
    fig.suptitle(titled(f"Clean-sample selection by init ({data['noise_kind']} noise {data['noise_rate']:g})",
                        data["synthetic"]))
    return fig


def loss_auc_figure(data: dict) -> Figure:
    """Columns: methods. How well the per-sample loss separates right from wrong labels over epochs, by init.
    `data`: `runs.curves_at` of `runs.loss_auc_curves`."""
    curves, methods = data["curves"], data["methods"]
    fig = Figure(figsize=(4.2 * len(methods), 3.2), layout="constrained")
    axes = fig.subplots(1, len(methods), squeeze=False, sharey=True)[0]
    for ax, method in zip(axes, methods):
        sns.lineplot(curves[curves.method == method], x="epoch", y="loss_auc", hue="init",
                     hue_order=data["inits"], errorbar="sd", marker="o", ax=ax, legend=ax is axes[0])
        ax.axhline(0.5, color="grey", lw=0.8, ls=":")
        ax.set_title(method)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("loss ROC-AUC (right vs wrong)")
    fig.suptitle(titled(f"Separation by loss ({data['noise_kind']} noise {data['noise_rate']:g})", data["synthetic"]))
    return fig


def threshold_figure(data: dict) -> Figure:
    """Rows: inits. Left: the clean score of right vs wrong labels and the threshold. Right: precision and
    recall of keeping the samples above each threshold, the chosen one marked. `data`: `runs.threshold_data`."""
    method, threshold = data["method"], data["threshold"]
    fig = Figure(figsize=(9, 2.6 * len(data["rows"]) + 0.6), layout="constrained")
    axes = fig.subplots(len(data["rows"]), 2, squeeze=False)
    for (left, right), row in zip(axes, data["rows"]):
        if row is None:
            left.set_axis_off()
            right.set_axis_off()
            continue
        edges = row["edges"]
        left.hist(edges[:-1], edges, weights=row["right"], alpha=0.6, color=CLEAN_COLOR, label="right label")
        left.hist(edges[:-1], edges, weights=row["wrong"], alpha=0.6, color=NOISY_COLOR, label="wrong label")
        left.axvline(threshold, color="black", ls="--")
        left.set_xlabel(row["score_name"])
        at = row["at"]
        left.set_title(f"{row['init']} · {method} · ep {row['epoch']}: keep score > {threshold:.2f}\n"
                       f"precision {_fmt(at['precision'])}, recall {_fmt(at['recall'])}, AUC {_fmt(at['auc'])}",
                       fontsize=9)
        right.plot(row["thresholds"], row["precision"], "-", label="precision")
        right.plot(row["thresholds"], row["recall"], "--", label="recall")
        right.axvline(threshold, color="black", lw=0.8)
        right.set_xlabel("threshold")
        right.set_ylim(-0.02, 1.02)
    axes[0, 0].legend(fontsize=8)
    axes[0, 1].legend(fontsize=8)
    fig.suptitle(titled(f"Selecting by a threshold on the clean score ({_describe(data)})", data["synthetic"]))
    return fig


# ---- results -----------------------------------------------------------------------

METRIC_LABELS = {"best_acc": "BEST", "last_acc": "LAST", "val_pick_acc": "noisy-val pick",
                 "best_balanced_acc": "BEST balanced", "last_balanced_acc": "LAST balanced",
                 "best_macro_f1": "BEST macro-F1", "last_macro_f1": "LAST macro-F1"}


def accuracy_vs_noise(data: dict) -> Figure:
    """Columns: methods. Test metric (%) against the noise rate, one colour per init, one line style per metric;
    mean over seeds, bars = standard deviation. Grey lines: the levels reached without learning (`data["levels"]`,
    `runs.class_levels`, when recorded): always answering the majority class (dash-dot) and chance, 1 / K (dotted;
    also the balanced accuracy of any constant answer). `data`: `runs.accuracy_data`."""
    long = data["runs"].assign(metric=lambda d: d.metric.map(lambda m: METRIC_LABELS.get(m, m)))
    methods = data["methods"]
    fig = Figure(figsize=(4.2 * len(methods), 3.6), layout="constrained")
    axes = fig.subplots(1, len(methods), squeeze=False, sharey=True)[0]
    for ax, method in zip(axes, methods):
        sns.lineplot(long[long.method == method], x="noise_rate", y="percent", hue="init",
                     hue_order=data["inits"], style="metric", markers=True, errorbar="sd",
                     err_style="bars", ax=ax, legend=ax is axes[-1])
        for level in chance_lines(data.get("levels")):
            ax.axhline(level["percent"], color="grey", ls=level["ls"], lw=1)
            ax.annotate(level["label"], (0.02, level["percent"]), xycoords=("axes fraction", "data"), fontsize=7,
                        color="grey", va="bottom")
        ax.set_title(method)
        ax.set_xlabel("noise rate")
        ax.set_ylabel("test metric (%)")
    sns.move_legend(axes[-1], "upper left", bbox_to_anchor=(1, 1), fontsize=8)
    fig.suptitle(titled(f"Test metrics against the noise rate ({data['noise_kind']} noise)", data["synthetic"]))
    return fig


def chance_lines(levels: dict | None) -> list[dict]:
    """The accuracy levels reached without learning, to draw: [{"percent", "label", "ls"}] for the majority class
    and chance (`runs.class_levels`); none when not recorded."""
    if not levels:
        return []
    return [{"percent": 100 * levels["majority"], "ls": "-.",
             "label": f"majority class ({levels['majority_class']}) {100 * levels['majority']:.1f}%"},
            {"percent": 100 * levels["chance"], "ls": ":", "label": f"chance 1/{len(levels['class_names'])}"}]


def confusion_figure(data: dict) -> Figure:
    """Left: the test confusion matrix of one run (counts; row = true class, column = predicted), right: its
    per-class recall (%). `data`: `runs.confusion_data`."""
    names = [_short(n) for n in data["class_names"]]
    k = len(names)
    fig = Figure(figsize=(4 + 0.5 * k + 3.5, 1.2 + 0.45 * k), layout="constrained")
    left, right = fig.subplots(1, 2, width_ratios=[1.3, 1])
    sns.heatmap(data["confusion"], annot=k <= 12, fmt="d", cmap="Blues", cbar=False, square=True,
                xticklabels=names, yticklabels=names, ax=left, annot_kws={"fontsize": 8})
    left.set_xlabel("predicted class")
    left.set_ylabel("true class")
    right.barh(names, 100 * data["recall"], color="tab:blue")
    right.invert_yaxis()
    right.set_xlim(0, 100)
    right.set_xlabel("recall (%)")
    fig.suptitle(titled(f"Test predictions at the last epoch: {data['init']} init, {data['method']}, "
                        f"{data['noise_kind']} {data['noise_rate']:g}, seed {data['seed']}", data["synthetic"]))
    return fig


def filter_measures_figure(measures: dict) -> Figure:
    """Left: low-frequency share of the first-layer filters at the start of noisy training (per init) and after
    it (per init x method), with i.i.d. random weights' level dotted. Right: how far noisy training moved them.
    `measures`: `analysis.filter_measures.filter_measures`."""
    t = measures["runs"]
    start = t.groupby("init", sort=False, as_index=False)["start_low_share"].mean().assign(stage="start")
    long = pd.concat([start.rename(columns={"start_low_share": "share"}),
                      t.rename(columns={"end_low_share": "share"}).assign(stage=lambda d: "after " + d.method)])
    fig = Figure(figsize=(10, 3.4), layout="constrained")
    left, right = fig.subplots(1, 2)
    sns.barplot(long, x="init", y="share", hue="stage", ax=left, errorbar=None)
    left.axhline(measures["random_share"], color="grey", ls=":", lw=1, label="i.i.d. random weights")
    left.set_ylabel("low-frequency energy share")
    left.set_ylim(0, 1)
    left.legend(fontsize=7)
    sns.barplot(t, x="init", y="change", hue="method", ax=right, errorbar=None)
    right.set_ylabel("||after - start|| / ||start||")
    right.legend(fontsize=7)
    fig.suptitle(titled(f"First-layer filters in numbers ({_describe(measures)})", measures["synthetic"]))
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


def measured_noise_figure(data: dict) -> Figure:
    """For each noise kind and rate of the study, the transition matrix measured on its first run's labels.
    `data`: `runs.measured_noise`."""
    panels = data["panels"]
    fig = Figure(figsize=(3.6 * len(panels), 3.8), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, p in zip(axes, panels):
        transition_heatmap(ax, p["matrix"], p["class_names"],
                           f"{p['noise_kind']} {p['noise_rate']:g}: {p['actual_rate']:.1%} wrong")
    fig.suptitle(titled("Label noise measured in the study's runs", data["synthetic"]))
    return fig


def noise_figure(dataset, example: dict, per_class: int = 6) -> Figure:
    """The noise model's transition matrix, the one measured on the corrupted labels, and example images
    captioned with their noisy labels (red = wrong). `example`: `runs.noise_example` of `dataset`."""
    kind, rate, warning = example["kind"], example["rate"], example["warning"]
    fig = Figure(figsize=(6 + 1.1 * per_class, max(7, 1.2 * dataset.num_classes + 1)), layout="constrained")
    left, right = fig.subfigures(1, 2, width_ratios=[6, 1.1 * per_class])
    top, bottom = left.subplots(2, 1)
    names = list(dataset.class_names)
    transition_heatmap(top, example["model"], names, f"noise model: {kind}, rate {rate:g}")
    transition_heatmap(bottom, example["measured"], names, f"measured: {example['actual_rate']:.1%} of labels wrong")
    samples_figure(dataset, per_class, shown_labels=example["noisy_labels"], subfig=right)
    right.suptitle("given labels (red = wrong)", fontsize=10)
    note = "\n" + textwrap.fill(warning, 100) if warning else ""
    fig.suptitle(titled(f"{kind} noise at rate {rate:g} (seed {example['seed']})", dataset.synthetic) + note,
                 color=NOISY_COLOR if warning else "black")
    return fig


# ---- suspect labels ------------------------------------------------------------------

def precision_at_k_figure(data: dict, synthetic: bool = False) -> Figure:
    """Columns: inits. precision@k of each method's suspects ranking and of cleanlab's (dashed) against k, with
    the wrong-label fraction (a random ranking) and the k of results.csv marked. `data`:
    `analysis.suspects.precision_at_k`."""
    curves = data["curves"]
    inits = list(dict.fromkeys(curves["init"]))
    fig = Figure(figsize=(4.2 * len(inits), 3.4), layout="constrained")
    axes = fig.subplots(1, len(inits), squeeze=False, sharey=True)[0]
    for ax, init in zip(axes, inits):
        for ranker, curve in curves[curves.init == init].groupby("ranker", sort=False):
            ax.plot(curve["k"], 100 * curve["precision"], label=ranker, ls="--" if ranker == "cleanlab" else "-")
        ax.axhline(100 * data["wrong_fraction"], color="grey", lw=0.8, ls=":", label="random ranking")
        if data["k_mark"]:
            ax.axvline(data["k_mark"], color="grey", lw=0.8)
        ax.set_xscale("log")
        ax.set_title(f"init: {init}")
        ax.set_xlabel("k (most suspect training samples)")
        ax.set_ylabel("precision@k (% wrong labels)")
        ax.set_ylim(0, 102)
    axes[-1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1, 1))
    fig.suptitle(titled(f"How many of the k most suspect labels are wrong ({_describe(data)})", synthetic))
    return fig


def suspects_grid(data: dict, synthetic: bool = False, columns: int = 8) -> Figure:
    """One page of a run's most suspect images, each captioned rank, given -> predicted label, red when the
    given label is known to be wrong. `data`: `analysis.suspects.top_suspects`."""
    rows = data["rows"]
    lines = max(1, -(-len(rows) // columns))
    fig = Figure(figsize=(1.25 * columns, 1.45 * lines + 0.7), layout="constrained")
    axes = fig.subplots(lines, columns, squeeze=False).ravel()
    for ax in axes:
        ax.set_axis_off()
    for ax, (_, row), image in zip(axes, rows.iterrows(), data["images"]):
        ax.imshow(image)
        color = NOISY_COLOR if str(row["wrong_label"]).lower() == "true" else "black"
        ax.set_title(f"#{row['rank']} {_short(row['given_class'])}\n-> {_short(row['predicted_class'])}",
                     fontsize=7, color=color)
    fig.suptitle(titled(f"{data['method']} from {data['init']} init, {_describe(data)}: most suspect labels, page "
                        f"{data['page'] + 1} of {data['pages']} (given -> predicted; red: planted wrong)", synthetic),
                 fontsize=9)
    return fig


def _short(name: str, width: int = 14) -> str:
    return name if len(name) <= width else name[:width - 1] + "…"
