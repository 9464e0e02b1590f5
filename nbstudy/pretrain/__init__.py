"""Stage 1: self-supervised pretraining of the ResNet18 backbone (SimCLR, rotation, jigsaw, Jigmag).

``METHODS`` maps a method name to its class; ``PARAMS``/``DEFAULTS`` are the stage's parameter
contract (`params`); ``run_pretraining(params, **overrides)`` trains one method and returns the
backbone checkpoint's path; ``load_metrics(output_dir)`` reads a finished run back. See
docs/pretraining.md.
"""

from nbstudy.pretrain.params import DEFAULTS, PARAMS, resolve
from nbstudy.pretrain.plots import examples, plot_history, show_examples
from nbstudy.pretrain.records import load_metrics
from nbstudy.pretrain.registry import METHODS
from nbstudy.pretrain.run import build_method, load_data, run_pretraining

__all__ = ["METHODS", "PARAMS", "DEFAULTS", "resolve", "run_pretraining", "build_method", "load_data",
           "load_metrics", "examples", "show_examples", "plot_history"]
