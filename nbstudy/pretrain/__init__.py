"""Stage 1: self-supervised pretraining of the ResNet18 backbone (SimCLR, rotation, jigsaw, Jigmag).

``METHODS`` maps a method name to its class; ``run_pretraining(params, **overrides)`` trains
one and returns the backbone checkpoint's path. See docs/pretraining.md.
"""

from nbstudy.pretrain.plots import plot_history, show_examples
from nbstudy.pretrain.run import DEFAULTS, METHODS, build_method, check_params, run_pretraining

__all__ = ["METHODS", "DEFAULTS", "run_pretraining", "build_method", "check_params", "show_examples", "plot_history"]
