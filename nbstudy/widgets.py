"""Interactive analysis for JupyterLab, each explorer with a static counterpart for batch runs.

Every explorer gathers a figure's data (`nbstudy.analysis.runs`) and draws it
(`nbstudy.analysis.plots`), and takes `interactive`. True gives a
`FigureView`: controls (ipywidgets) above a figure that is redrawn whenever a
control changes. False gives `Figures`, the same figure drawn for a fixed set
of choices, so that a notebook executed in batch (papermill, where no widget
can run) is still a complete report; shown with a `folder`, each of them is
saved there with its data (`nbstudy.figures.show`). The notebooks pass their
`interactive` parameter through.
"""

from __future__ import annotations

import io

import ipywidgets as W
from matplotlib.figure import Figure

from nbstudy import figures
from nbstudy.analysis import plots
from nbstudy.analysis import runs as R
from nbstudy.analysis import suspects as S
from nbstudy.errors import NbstudyError

EXPLORER_KINDS = ("symmetric", "symmetric_exclusive", "pairflip")  # the kinds that need no mapping or matrix


class Figures(list):
    """Static figures, each with a name and the data it was drawn from (`names`, `data`, in the same order).

    A notebook cell ending with one shows each figure in turn and, when
    `folder` is set, saves it as <folder>/figures/<name>.png with its data as
    <name>.json (`nbstudy.figures.show`).
    """

    def __init__(self, drawn, folder=None):
        """`drawn`: (name, data, figure) triples."""
        drawn = list(drawn)
        super().__init__(fig for _, _, fig in drawn)
        self.names = [name for name, _, _ in drawn]
        self.data = [data for _, data, _ in drawn]
        self.folder = folder

    def _ipython_display_(self):
        for fig, name, data in zip(self, self.names, self.data):
            figures.show(fig, name, data, self.folder)


class PerBackbone:
    """An explorer for each backbone of a study of several (`per_backbone`). Interactive: a backbone control
    above the chosen backbone's explorer (each built when first chosen). Static: each backbone's figures in
    turn under its name; those of every backbone but the first are saved with the backbone in their names."""

    def __init__(self, explorer, study: R.Study, interactive: bool, folder=None, **kwargs):
        self.parts = dict(R.by_backbone(study))
        self.make = lambda backbone: explorer(self.parts[backbone], interactive, folder=folder, **kwargs)
        first = next(iter(self.parts))
        self.views = {first: self.make(first)}
        self.interactive = interactive
        if interactive:
            self.control = W.Dropdown(options=list(self.parts), value=first, description="backbone")
            self.widget = W.VBox([self.control, self._widget(self.views[first])])
            self.control.observe(lambda change: self.show(change["new"]), names="value")
        else:
            for backbone in list(self.parts)[1:]:
                view = self.views[backbone] = self.make(backbone)
                if isinstance(view, Figures):
                    view.names = [f"{name}_{backbone}" for name in view.names]

    def show(self, backbone: str) -> None:
        """Show `backbone`'s explorer (interactive)."""
        if backbone not in self.views:
            self.views[backbone] = self.make(backbone)
        self.widget.children = (self.control, self._widget(self.views[backbone]))

    @staticmethod
    def _widget(view):
        return view.widget if isinstance(view, FigureView) else W.HTML(f"<b>Note.</b> {view}")

    def _ipython_display_(self):
        from IPython.display import Markdown, display
        if self.interactive:
            display(self.widget)
            return
        for backbone, view in self.views.items():
            display(Markdown(f"**{backbone}**"))
            display(view)


def per_backbone(explorer, study: R.Study, interactive: bool = False, folder=None, **kwargs):
    """`explorer(study, interactive, folder=folder, **kwargs)` (one of this module's explorers), or for a study of
    several backbones a `PerBackbone`: every figure holds one backbone's runs, and each backbone is shown."""
    if len(study.choices("backbone")) == 1:
        return explorer(study, interactive, folder=folder, **kwargs)
    return PerBackbone(explorer, study, interactive, folder, **kwargs)


def _drawn(name: str, data, draw) -> tuple:
    return name, data, draw(data)


class FigureView:
    """Controls above a figure: on every change, `draw(**values of the controls)` makes the figure shown.

    A choice with no data (say a noise rate one init was not trained at)
    shows the error's one-line message and keeps the previous figure.
    """

    def __init__(self, draw, controls: dict):
        self.draw, self.controls = draw, controls
        self.image = W.Image(format="png", layout=W.Layout(max_width="100%", align_self="flex-start"))  # natural size
        self.message = W.HTML()
        boxes = W.HBox(list(controls.values()), layout=W.Layout(flex_flow="row wrap"))
        self.widget = W.VBox([boxes, self.message, self.image])
        self.figure: Figure | None = None
        for control in controls.values():
            control.observe(lambda _: self.redraw(), names="value")
        self.redraw()

    def values(self) -> dict:
        return {name: control.value for name, control in self.controls.items()}

    def redraw(self) -> None:
        try:
            fig = self.draw(**self.values())
        except NbstudyError as e:
            self.message.value = f"<span style='color: #c00'>{e}</span>"
            return
        buf = io.BytesIO()
        fig.savefig(buf, format="png", bbox_inches="tight")  # as the notebook's inline figures are saved
        self.figure, self.image.value, self.message.value = fig, buf.getvalue(), ""

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)


def _dropdown(study: R.Study, column: str, value=None) -> W.Dropdown:
    options = study.choices(column)
    return W.Dropdown(options=options, value=options[0] if value is None else value,
                      description=column.replace("_", " "), style={"description_width": "initial"})


def _epoch_slider(study: R.Study, value=None) -> W.SelectionSlider:
    epochs = R.recorded_epochs(study)
    return W.SelectionSlider(options=epochs, value=epochs[0] if value is None else value, description="epoch",
                             continuous_update=False)


def _grid(study: R.Study) -> list[tuple]:
    """Every (noise kind, noise rate) of the study, highest rate first."""
    return [(kind, rate) for kind in study.choices("noise_kind") for rate in reversed(study.choices("noise_rate"))]


def filters_explorer(study: R.Study, interactive: bool = False, folder=None):
    """First-layer filters before and after noisy training; choose the noise rate, kind and seed.
    Static: one figure per noise kind and rate, saved to `folder` when shown."""
    if interactive:
        g = R.grid_defaults(study)
        return FigureView(lambda **v: plots.filters_figure(R.filters_data(study, **v)),
                          {"noise_rate": _dropdown(study, "noise_rate", g["noise_rate"]),
                           "noise_kind": _dropdown(study, "noise_kind"), "seed": _dropdown(study, "seed")})
    return Figures((_drawn(f"filters_{kind}_{rate:g}", R.filters_data(study, noise_rate=rate, noise_kind=kind),
                           plots.filters_figure) for kind, rate in _grid(study)), folder)


class Note(str):
    """A one-line message shown in place of figures that cannot be drawn (a notebook cell ending with it shows
    it as text)."""

    def _repr_markdown_(self):
        return f"**Note.** {self}"


def _known_wrong_labels(study: R.Study):
    """The study restricted to runs that know which labels are wrong, or a Note when none do (given labels,
    the `labels` data set option, with no planted noise: there is no right / wrong split to draw)."""
    known = R.with_known_wrong_labels(study)
    return Note(f"these runs {R.UNKNOWN_WRONG}") if known.runs.empty else known


def loss_explorer(study: R.Study, interactive: bool = False, folder=None):
    """Loss histograms of right vs wrong labels. Interactive: every method at the epoch of the slider.
    Static: each method at a few epochs from first to last, for every noise rate, saved to `folder` when shown.
    Runs whose wrong labels are unknown are left out (a Note when that is all of them)."""
    study = _known_wrong_labels(study)
    if isinstance(study, Note):
        return study
    if interactive:
        g = R.grid_defaults(study)
        return FigureView(lambda epoch, **v: plots.loss_histograms(R.loss_distributions(study, [epoch], **v)),
                          {"noise_rate": _dropdown(study, "noise_rate", g["noise_rate"]),
                           "noise_kind": _dropdown(study, "noise_kind"), "seed": _dropdown(study, "seed"),
                           "epoch": _epoch_slider(study)})
    epochs = R.key_epochs(study)
    return Figures((_drawn(f"loss_{kind}_{rate:g}_{method}",
                           R.loss_distributions(study, epochs, noise_rate=rate, noise_kind=kind, methods=[method]),
                           plots.loss_histograms)
                    for kind, rate in _grid(study) for method in study.choices("method")), folder)


def selection_explorer(study: R.Study, interactive: bool = False, folder=None):
    """Selection ROC-AUC / precision / recall over epochs by init, and separation by loss, per noise rate.
    Static: both views for every noise kind and rate, saved to `folder` when shown. Runs whose wrong labels
    are unknown are left out (a Note when that is all of them)."""
    study = _known_wrong_labels(study)
    if isinstance(study, Note):
        return study
    curves = {"selection": R.selection_curves(study), "loss_auc": R.loss_auc_curves(study)}
    draw = {"selection": plots.selection_figure, "loss_auc": plots.loss_auc_figure}
    if interactive:
        g = R.grid_defaults(study)
        return FigureView(lambda noise_rate, noise_kind, view: draw[view](R.curves_at(study, curves[view], noise_rate,
                                                                                      noise_kind)),
                          {"noise_rate": _dropdown(study, "noise_rate", g["noise_rate"]),
                           "noise_kind": _dropdown(study, "noise_kind"),
                           "view": W.ToggleButtons(options=[("method's selection", "selection"),
                                                            ("loss separation", "loss_auc")])})
    return Figures((_drawn(f"{view}_{kind}_{rate:g}", R.curves_at(study, curves[view], rate, kind), draw[view])
                    for kind, rate in _grid(study) for view in ("selection", "loss_auc")), folder)


def threshold_explorer(study: R.Study, interactive: bool = False, folder=None):
    """Precision and recall of keeping the samples whose clean score passes a threshold. Interactive: one run
    (init, method, noise, seed), an epoch and a threshold slider. Static: each method at the highest noise rate,
    last epoch, threshold 0.5, every init, saved to `folder` when shown. Runs whose wrong labels are unknown are
    left out (a Note when that is all of them)."""
    study = _known_wrong_labels(study)
    if isinstance(study, Note):
        return study
    last = R.recorded_epochs(study)[-1]
    if interactive:
        g = R.grid_defaults(study)

        def draw(init, **v):
            return plots.threshold_figure(R.threshold_data(study, inits=[init], **v))

        return FigureView(draw, {"init": _dropdown(study, "init"), "method": _dropdown(study, "method"),
                                 "noise_rate": _dropdown(study, "noise_rate", g["noise_rate"]),
                                 "noise_kind": _dropdown(study, "noise_kind"), "seed": _dropdown(study, "seed"),
                                 "epoch": _epoch_slider(study, last),
                                 "threshold": W.FloatSlider(value=0.5, min=0, max=1, step=0.01,
                                                            description="threshold", continuous_update=False)})
    return Figures((_drawn(f"threshold_{method}", R.threshold_data(study, method, last), plots.threshold_figure)
                    for method in study.choices("method")), folder)


def accuracy_explorer(study: R.Study, interactive: bool = False, folder=None):
    """Test metrics against the noise rate. Interactive: choose the metric and noise kind. Static: BEST and LAST
    for each noise kind, saved to `folder` when shown."""
    if interactive:
        present = [(label, (col,)) for col, label in plots.METRIC_LABELS.items() if col in study.runs]
        return FigureView(lambda metrics, noise_kind: plots.accuracy_vs_noise(R.accuracy_data(study, metrics,
                                                                                              noise_kind)),
                          {"metrics": W.Dropdown(options=[("BEST and LAST", ("best_acc", "last_acc")), *present],
                                                 description="metric"),
                           "noise_kind": _dropdown(study, "noise_kind")})
    return Figures((_drawn(f"accuracy_{kind}", R.accuracy_data(study, noise_kind=kind), plots.accuracy_vs_noise)
                    for kind in study.choices("noise_kind")), folder)


def noise_explorer(dataset, interactive: bool = False, rates=(0.5,), kinds=("symmetric",), seed: int = 0,
                   folder=None):
    """The noise model's transition matrix, the measured one and example images with their noisy labels.
    Interactive: rate and kind sliders. Static: each of `kinds` x `rates` (pass the study's own; highest rate
    first, where there is most to see), saved to `folder` when shown; kinds that need a mapping or matrix are
    left to the runs' measured matrices (`plots.measured_noise_figure`)."""
    kinds = [k for k in kinds if k in EXPLORER_KINDS] or ["symmetric"]

    def draw(example):
        return plots.noise_figure(dataset, example)

    if interactive:
        return FigureView(lambda rate, kind: draw(R.noise_example(dataset, rate, kind, seed)),
                          {"rate": W.FloatSlider(value=max(rates), min=0, max=1, step=0.05, description="rate",
                                                 continuous_update=False),
                           "kind": W.SelectionSlider(options=EXPLORER_KINDS, value=kinds[0], description="kind",
                                                     continuous_update=False)})
    return Figures((_drawn(f"noise_{kind}_{rate:g}", R.noise_example(dataset, rate, kind, seed), draw)
                    for kind in kinds for rate in sorted(rates, reverse=True)), folder)   # the most telling first


def suspects_explorer(study: R.Study, interactive: bool = False, folder=None, baseline: bool = True,
                      scored: dict | None = None):
    """The labels each run suspects most, and how many of them are planted wrong (precision@k) beside cleanlab's
    ranking on the same labels, for one backbone (the first; `per_backbone` shows each). Interactive: one run
    (method, init, noise, seed) paged 16 images at a time. Static: precision@k at the highest noise rate
    (`scored`: each backbone's, if already computed by `analysis.suspects.scores_per_backbone`), then the first
    page of each method x init there, saved to `folder` when shown."""
    data = R.study_dataset(study)   # loaded once: every page and the baseline need its images
    if interactive:
        g = R.grid_defaults(study)

        def draw(page, **v):
            return plots.suspects_grid(S.top_suspects(study, page=page - 1, dataset=data, **v), study.synthetic)

        return FigureView(draw, {"method": _dropdown(study, "method"), "init": _dropdown(study, "init"),
                                 "noise_rate": _dropdown(study, "noise_rate", g["noise_rate"]),
                                 "noise_kind": _dropdown(study, "noise_kind"), "seed": _dropdown(study, "seed"),
                                 "page": W.BoundedIntText(value=1, min=1, max=10_000, description="page")})
    precision = S.scores_if_known(study, baseline, data) if scored is None else S.own(study, scored)
    drawn = [] if precision is None else [   # None: nobody knows which labels are wrong, nothing to score
        _drawn("precision_at_k", precision, lambda d: plots.precision_at_k_figure(d, study.synthetic))]
    for method in study.choices("method"):
        for init in study.choices("init"):
            page = S.top_suspects(study, method, init, dataset=data)
            without_pixels = {k: v for k, v in page.items() if k != "images"}   # the saved numbers: ranks, labels
            drawn.append((f"suspects_{method}_{init}", without_pixels, plots.suspects_grid(page, study.synthetic)))
    return Figures(drawn, folder)
