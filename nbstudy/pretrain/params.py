"""Stage 1's parameter contract: every pretraining parameter, its default, its check, its meaning.

`PARAMS` is the only place these are written (see `nbstudy.params`); `DEFAULTS`,
the study file's pretraining keys, notebook 01's parameters cell and the table in
docs/pretraining.md follow from it. Each method's own options live with the
method (`METHODS[name].options`) and are given as `method_options`.
"""

from __future__ import annotations

from nbstudy import params as P
from nbstudy.errors import NbstudyError
from nbstudy.params import Param
from nbstudy.pretrain.registry import METHODS

OPTIMIZERS = ("adam", "adamw", "sgd")

PARAMS = {
    **P.data_params(),
    "method": Param("simclr", P.one_of(*METHODS), "pretraining method: " + ", ".join(METHODS)),
    "method_options": Param({}, P.mapping(), "the method's own options (below), e.g. {'temperature': 0.07}"),
    "epochs": Param(20, P.whole(1), "pretraining epochs"),
    "batch_size": Param(256, P.whole(2), "images per step (SimCLR sees 2x, rotation 4x as many inputs)"),
    "lr": Param(1e-3, P.real(0, low_open=True), "base learning rate (the study's: 1e-3)"),
    "weight_decay": Param(1e-4, P.real(0), "weight decay (the study's: 1e-4)"),
    "optimizer": Param("adam", P.one_of(*OPTIMIZERS), "adam (the study's, L2 weight decay), adamw, sgd"),
    "momentum": Param(0.9, P.real(0, 0.999), "SGD momentum (optimizer sgd only)"),
    "warmup_epochs": Param(None, P.optional(P.real(0), "10, or a tenth of the run if shorter"),
                           "linear warm-up epochs, then cosine decay to 0 (None: 10, or a tenth of the run)"),
    "knn_k": Param(20, P.whole(1), "neighbours of the k-NN probe"),
    "probe_every": Param(0, P.whole(0), "also probe every N epochs (0: only before and after training)",
                         run_only=True),
    "checkpoint_every": Param(1, P.whole(0), "save a resumable pretrain_state.pt every N epochs (0: never)",
                              run_only=True),
    "seed": Param(0, P.seed(), "initial weights, batch order, augmentation, puzzle draws"),
    "precision": P.precision_param(),
    "device": Param("auto", P.device(), "auto (CUDA when present), cpu, cuda, cuda:N", run_only=True),
    "torch_compile": Param(False, P.flag(), "torch.compile the network: faster long GPU runs", run_only=True),
    "output_dir": Param("outputs/pretrain", P.text("outputs/pretrain"), "where backbone.pt and the records go",
                        run_only=True),
    "resume": P.resume_param(),
    "progress": Param(True, P.flag(), "show progress bars", run_only=True),
}
DEFAULTS = P.defaults(PARAMS)
RUN_ONLY = P.run_only(PARAMS)


def resolve(params: dict | None = None, **kwargs) -> dict:
    """Every parameter checked, defaults filled in, method_options resolved by the method: a one-line
    NbstudyError names the first bad value."""
    p = P.resolve(PARAMS, P.merged(params, kwargs))
    if p["warmup_epochs"] is not None and p["warmup_epochs"] >= p["epochs"]:
        raise NbstudyError(f"warmup_epochs={p['warmup_epochs']!r} is invalid: give fewer than epochs={p['epochs']}")
    p["method_options"] = P.method_options(METHODS[p["method"]], p["method_options"], p)
    return p
