from types import SimpleNamespace

import numpy as np
import pytest
from analysis_fixtures import make_study
from matplotlib.figure import Figure

from nbstudy import figures, widgets
from nbstudy.analysis import runs
from nbstudy.errors import NbstudyError
from nbstudy.synthetic import make_synthetic



@pytest.fixture(scope="module")
def study(tmp_path_factory):
    return runs.load_study(make_study(tmp_path_factory.mktemp("widgets"), methods=("ce", "dividemix"), seeds=(0,),
                                      epochs=4))


def _changes(view, control, value):
    """Set a control; return (figure before, figure after, PNG before, PNG after)."""
    fig, png = view.figure, view.image.value
    view.controls[control].value = value
    return fig, view.figure, png, view.image.value


def _titles(fig: Figure) -> list:
    return [ax.get_title() for ax in fig.axes]


def test_figure_view_redraws_on_change_and_keeps_the_figure_on_errors():
    import ipywidgets as W

    def draw(n):
        if n < 0:
            raise NbstudyError("no run with n=-1: choose one of 1, 2")
        fig = Figure()
        fig.subplots().plot(range(n))
        return fig

    view = widgets.FigureView(draw, {"n": W.IntSlider(value=2, min=-1, max=5)})
    before, after, png0, png1 = _changes(view, "n", 5)
    assert len(after.axes[0].lines[0].get_xdata()) == 5 and png1 != png0 and bytes(png1).startswith(b"\x89PNG")
    _, kept, _, png2 = _changes(view, "n", -1)
    assert kept is after and png2 == png1 and "no run with n=-1" in view.message.value
    view.controls["n"].value = 3
    assert view.message.value == ""
    assert "application/vnd.jupyter.widget-view+json" in view._repr_mimebundle_()


def test_loss_explorer_epoch_slider_redraws_the_histograms(study):
    view = widgets.loss_explorer(study, interactive=True)
    assert view.controls["epoch"].options == (1, 2, 3, 4) and view.values()["noise_rate"] == 0.8
    before, after, png0, png1 = _changes(view, "epoch", 4)
    assert all("ep 1" in t for t in _titles(before) if t) and all("ep 4" in t for t in _titles(after) if t)
    assert png0 != png1
    before, after, _, _ = _changes(view, "noise_rate", 0.4)
    assert "noise 0.4" in after._suptitle.get_text()


def test_loss_explorer_static_draws_each_rate_and_method(study):
    figs = widgets.loss_explorer(study, interactive=False)
    assert isinstance(figs, widgets.Figures) and len(figs) == 2 * 2
    assert all(isinstance(f, Figure) for f in figs)
    assert "ep 1" in figs[0].axes[0].get_title() and "ep 4" in figs[0].axes[-1].get_title()


def test_threshold_slider_changes_precision_and_recall(study):
    view = widgets.threshold_explorer(study, interactive=True)
    view.controls["method"].value = "dividemix"
    view.controls["init"].value = "random"
    s = runs.samples(runs.read_run(runs.find_run(study, init="random", method="dividemix", noise_rate=0.8)
                                   ["run_dir"]), 4)
    for threshold in (0.2, 0.9):
        view.controls["threshold"].value = threshold
        at = runs.threshold_metrics(s, threshold)
        assert f"keep score > {threshold:.2f}\nprecision {at['precision']:.2f}, recall {at['recall']:.2f}" \
            in view.figure.axes[0].get_title()
    assert runs.threshold_metrics(s, 0.9)["precision"] > runs.threshold_metrics(s, 0.2)["precision"]


def test_threshold_static_draws_each_method_at_the_last_epoch(study):
    figs = widgets.threshold_explorer(study)
    assert len(figs) == 2 and all("ep 4" in f.axes[0].get_title() for f in figs)


def test_filters_and_selection_and_accuracy_explorers_follow_their_controls(study):
    view = widgets.filters_explorer(study, interactive=True)
    _, after, png0, png1 = _changes(view, "noise_rate", 0.4)
    assert "noise 0.4" in after._suptitle.get_text() and png0 != png1

    view = widgets.selection_explorer(study, interactive=True)
    _, after, _, _ = _changes(view, "view", "loss_auc")
    assert after.axes[0].get_ylabel().startswith("loss ROC-AUC")

    view = widgets.accuracy_explorer(study, interactive=True)
    _, after, _, _ = _changes(view, "metrics", ("val_pick_acc",))
    assert [t.get_text() for t in after.axes[-1].get_legend().get_texts()][-1] == "noisy-val pick"


def test_static_counterparts(study):
    assert widgets.filters_explorer(study).names == ["filters_symmetric_0.8", "filters_symmetric_0.4"]
    assert widgets.selection_explorer(study).names == ["selection_symmetric_0.8", "loss_auc_symmetric_0.8",
                                                       "selection_symmetric_0.4", "loss_auc_symmetric_0.4"]
    assert widgets.accuracy_explorer(study).names == ["accuracy_symmetric"]


def test_static_figures_shown_with_a_folder_are_saved_with_their_data(study, tmp_path):
    figs = widgets.accuracy_explorer(study, folder=tmp_path)
    assert not (tmp_path / "figures").exists()  # saved when shown, as the notebook shows them
    figs._ipython_display_()
    saved = figures.load(tmp_path, "accuracy_symmetric")
    table = figs.data[0]["runs"]
    assert saved["noise_kind"] == "symmetric" and saved["runs"]["percent"] == table["percent"].tolist()
    assert saved["runs"]["run"] == table["run"].tolist()
    assert (tmp_path / "figures" / "accuracy_symmetric.png").read_bytes().startswith(b"\x89PNG")
    widgets.filters_explorer(study)._ipython_display_()  # no folder: shown only
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == ["accuracy_symmetric.json",
                                                                         "accuracy_symmetric.png"]


def _dataset():
    images, labels, _, _, names = make_synthetic(num_classes=3, per_class=12, test_per_class=1, image_size=16)
    return SimpleNamespace(train_images=images, train_labels=labels, class_names=names, num_classes=3,
                           synthetic=True)


def _heatmap(fig: Figure, title_start: str) -> np.ndarray:
    ax = next(a for a in fig.axes if a.get_title().startswith(title_start))
    return ax.collections[0].get_array().reshape(3, 3)


def test_noise_explorer_sliders_redraw_matrix_and_labels():
    view = widgets.noise_explorer(_dataset(), interactive=True, rates=(0.2, 0.6))
    assert view.values() == {"rate": 0.6, "kind": "symmetric"}
    assert np.allclose(_heatmap(view.figure, "noise model"), 0.4 * np.eye(3) + 0.2)
    captions = [ax.get_title() for ax in view.figure.axes if ax.images]
    _, after, png0, png1 = _changes(view, "rate", 0.0)
    assert np.allclose(_heatmap(after, "noise model"), np.eye(3)) and png0 != png1
    assert [ax.get_title() for ax in after.axes if ax.images] != captions
    _, after, _, _ = _changes(view, "kind", "pairflip")
    view.controls["rate"].value = 0.3
    assert np.allclose(_heatmap(view.figure, "noise model"), 0.7 * np.eye(3) + 0.3 * np.roll(np.eye(3), 1, axis=1))


def test_noise_explorer_static_draws_the_study_grid_of_known_kinds():
    figs = widgets.noise_explorer(_dataset(), rates=(0.4, 0.8), kinds=("symmetric", "asymmetric"))
    assert [f._suptitle.get_text().split(" (")[0] for f in figs] == ["symmetric noise at rate 0.8",
                                                                      "symmetric noise at rate 0.4"]


def test_what_the_docs_show_displays_as_a_picture_in_a_plain_ipython_shell(study):
    """docs/analysis.md, "Using the pieces yourself": no %matplotlib, no pyplot; each returned object, displayed
    through IPython's display formatter as a kernel does, reaches the front end as image/png, not as
    "<Figure size ...>" text."""
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.display import display
    from IPython.utils.capture import capture_output

    from nbstudy.analysis import plots

    InteractiveShell.instance()   # a shell with its display formatter, as in any front end
    data = runs.loss_distributions(study, epochs=[1, 4], methods=["ce"], noise_rate=0.8)
    for value in (plots.loss_histograms(data), widgets.accuracy_explorer(study, interactive=False),
                  widgets.loss_explorer(study, interactive=False)):
        with capture_output() as shown:
            display(value)
        mimes = [set(out.data) for out in shown.outputs]
        assert mimes and all("image/png" in m for m in mimes), mimes
        assert "<Figure size" not in shown.stdout


def test_suspects_explorer_pages_through_a_runs_suspects(study):
    view = widgets.suspects_explorer(study, interactive=True)
    first = view.figure._suptitle.get_text()
    assert "page 1 of 13" in first and "ce from random init, symmetric noise 0.8" in first
    view.controls["page"].value = 2
    assert "page 2 of 13" in view.figure._suptitle.get_text()
    view.controls["page"].value = 14    # past the last page: the message, the last figure kept
    assert "page 13 does not exist" in view.message.value and "page 2 of 13" in view.figure._suptitle.get_text()
    static = widgets.suspects_explorer(study, baseline=False)
    assert static.names == ["precision_at_k", "suspects_ce_random", "suspects_ce_simclr", "suspects_dividemix_random",
                            "suspects_dividemix_simclr"]


def test_without_known_wrong_labels_the_suspects_notebook_shows_the_lists_and_says_why_nothing_is_scored(
        tmp_path, capsys):
    from analysis_fixtures import forget_wrong_labels, make_study

    from nbstudy.analysis import suspects as S
    from nbstudy.lnl import suspects

    given = runs.load_study(make_study(tmp_path, inits=("random",), methods=("ce",), rates=(0.4,), seeds=(0,),
                                       epochs=2))
    run = given.runs.iloc[0]["run_dir"]
    table = suspects.read(run)   # as a run on the user's own labels writes it: no wrong_label column values
    suspects.write(run, table["index"].to_numpy(), table["suspicion"].to_numpy(), table["given_label"].to_numpy(),
                   table["predicted_label"].to_numpy(), ["stripes", "checks", "rings", "spots"])
    S._table.cache_clear()
    assert S.scores_if_known(given, baseline=False) is None
    assert "which labels are wrong is unknown, so precision@k cannot be measured" in capsys.readouterr().out
    assert widgets.suspects_explorer(given, baseline=False).names == ["suspects_ce_random"]
    assert S.finding(given, {"resnet18": None}).startswith("Which labels are wrong is unknown here")
    # and the records keep no wrong-label mask: the loss and separation views say why they draw nothing
    forget_wrong_labels(run)
    runs.read_run.cache_clear()
    given = runs.load_study(given.dir)
    for explorer in (widgets.loss_explorer, widgets.selection_explorer, widgets.threshold_explorer):
        note = explorer(given)
        assert isinstance(note, widgets.Note) and "which labels are wrong is unknown" in note._repr_markdown_()
