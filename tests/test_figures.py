"""Figures the package returns show as pictures in any IPython front end, with no %matplotlib setup, and
figures.show keeps each shown figure's numbers."""

import numpy as np
import pandas as pd
from IPython.core.formatters import DisplayFormatter

from nbstudy import figures
from nbstudy.lnl import plots as lnl_plots
from nbstudy.pretrain import plots as pretrain_plots


def _mime_types(obj) -> set:
    return set(DisplayFormatter().format(obj)[0])   # what JupyterLab, VS Code and papermill are offered


def test_every_stage_figure_offers_a_png_without_an_inline_backend():
    hist = pd.DataFrame({"epoch": [1, 2], "train_loss": [1.0, 0.5], "test_acc": [0.5, 0.6], "test_acc_A": [0.5, 0.6],
                         "test_acc_B": [None, None], "val_acc": [0.4, 0.5], "selection_precision": [0.7, 0.8],
                         "selection_recall": [0.9, 0.9], "selection_auc": [0.6, 0.7]}).set_index("epoch")
    final = {"reported_network": "A", "best_epoch": 2, "best_acc": 0.6, "last_acc": 0.6}
    metrics = {"method": "rotation", "history": [{"epoch": 1, "loss": 1.0, "acc": 0.3}], "epochs_done": 1,
               "probe_acc": 0.5, "random_init_probe_acc": 0.4}
    made = [lnl_plots.noise_figure(np.eye(2), ["a", "b"], "symmetric", 0.2, 0.1),
            lnl_plots.learning_curves(hist, final), lnl_plots.selection_curves(hist, 0.3),
            pretrain_plots.plot_history(metrics),
            pretrain_plots.show_examples([[(np.zeros((4, 4, 3)), "image")]], "rotation")]
    for fig in made:
        assert isinstance(fig, figures.Figure) and "image/png" in _mime_types(fig)
        assert fig._repr_png_().startswith(b"\x89PNG")


def test_show_saves_the_figure_and_its_numbers(tmp_path):
    fig = lnl_plots.noise_figure(np.eye(2), ["a", "b"], "symmetric", 0.2, 0.1)
    figures.show(fig, "noise", {"matrix": np.eye(2), "rate": np.float32(0.5), "gone": float("nan")}, tmp_path)
    assert figures.load(tmp_path, "noise") == {"matrix": [[1.0, 0.0], [0.0, 1.0]], "rate": 0.5, "gone": None}
    assert (tmp_path / "figures" / "noise.png").read_bytes().startswith(b"\x89PNG")
