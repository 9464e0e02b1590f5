"""Stage 2's parameter contract: every noisy-label training parameter, its default, its check, its meaning.

`PARAMS` is the only place these are written (see `nbstudy.params`); `DEFAULTS`,
the study file's training keys, notebook 02's parameters cell and the table in
docs/records.md follow from it. Each method's own options live with the method
(`METHODS[name].options`) and are given as `method_options`.
"""

from __future__ import annotations

from pathlib import Path

from nbstudy import noise
from nbstudy import params as P
from nbstudy.errors import NbstudyError
from nbstudy.lnl.registry import METHODS
from nbstudy.params import Param
from nbstudy.plain import plain

VAL_SPLITS = ("auto", "dataset", "train")

PARAMS = {
    **P.data_params(),
    "method": Param("ce", P.one_of(*METHODS), "noisy-label method: " + ", ".join(METHODS)),
    "method_options": Param({}, P.mapping(), "the method's own options (below), e.g. {'num_gradual': 5}"),
    "noise_kind": Param("symmetric", P.one_of(*noise.KINDS), "label noise: " + ", ".join(noise.KINDS)),
    "noise_rate": Param(0.0, P.real(0, 1), "probability that a label is corrupted"),
    "noise_options": Param({}, P.mapping(), "{'mapping': [...]} for asymmetric, {'matrix': [[...]]} for matrix"),
    "init": Param("random", P.text("random"), "random, or the path of a pretraining run's backbone.pt"),
    "epochs": Param(100, P.whole(1), "training epochs"),
    "batch_size": Param(None, P.optional(P.whole(2), "the method's reference batch size"), "images per step (None: the method's own)"),
    "lr": Param(None, P.optional(P.real(0, low_open=True), "the method's reference lr"), "learning rate (None: the method's own)"),
    "seed": Param(0, P.seed(), "noisy labels, validation split, init, batch order, augmentation"),
    "class_weights": Param("none", P.one_of("none", "balanced"), "weight each class's loss (balanced: n / (K n_c) "
                           "over the noisy training labels) for imbalanced sets: CE, Co-teaching's update, "
                           "DivideMix's warm-up (docs/records.md)"),
    "val_split": Param("auto", P.one_of(*VAL_SPLITS), "where the noisy validation set (to pick an epoch without "
                       "test labels) comes from: dataset (the data set's own validation split, its labels corrupted "
                       "like the training labels), train (val_fraction of the training images), auto (dataset when "
                       "the data set has one)"),
    "val_fraction": Param(0.1, P.real(0, 0.5), "training images held out with their noisy labels, to pick an "
                          "epoch without test labels (val_split train, or auto without a validation split)"),
    "record_every": Param(1, P.whole(1), "record per-sample losses and selection every N epochs (and the last)"),
    "checkpoint_every": Param(1, P.whole(0), "save a resumable checkpoint every N epochs (0: never)",
                              run_only=True),
    "keep_checkpoint": Param(False, P.flag(), "keep checkpoint.pt after the run", run_only=True),
    "resume": P.resume_param(),
    "deterministic": Param(False, P.flag(), "deterministic cuDNN (CUDA only; the CPU always is)"),
    "precision": P.precision_param(),
    "device": Param("auto", P.device(), "auto (CUDA when present), cpu, cuda, cuda:N", run_only=True),
    "torch_compile": Param(False, P.flag(), "torch.compile the networks: faster long GPU runs", run_only=True),
    "output_dir": Param("outputs/train", P.text("outputs/train"), "where the records and checkpoint go",
                        run_only=True),
    "progress": Param(True, P.flag(), "show progress bars", run_only=True),
}
DEFAULTS = P.defaults(PARAMS)
RUN_ONLY = P.run_only(PARAMS)
NEEDS = {"asymmetric": "mapping", "matrix": "matrix"}   # noise kinds and the noise_options key they need


def resolve(params: dict | None = None, check_files: bool = True, **kwargs) -> dict:
    """Every parameter checked, defaults filled in, method_options resolved by the method: a one-line
    NbstudyError names the first bad value. check_files=False skips the init file's existence (a study
    checks its runs before their pretraining has written it)."""
    p = P.resolve(PARAMS, P.merged(params, kwargs))
    p["noise_options"] = check_noise_options(p["noise_kind"], p["noise_options"],
                                             p["dataset_options"].get("num_classes"))
    if check_files and p["init"] != "random" and not Path(p["init"]).is_file():
        raise NbstudyError(f"init={p['init']!r} is invalid: give 'random' or an existing pretraining backbone file")
    p["method_options"] = P.method_options(METHODS[p["method"]], p["method_options"], p)
    return p


def noise_rate_warning(kind: str, rates, num_classes: int) -> str | None:
    """One line when `symmetric` noise at the nominal `rates` makes far fewer labels wrong than said: about
    r (K - 1) / K with K classes (a corrupted label is redrawn from all K, the true one included). Far: at most
    two thirds of a rate, and at least 0.1 below it (2 or 3 classes). None otherwise."""
    k = int(num_classes)
    far = [r for r in rates if kind == "symmetric" and r - r * (k - 1) / k >= 0.1 - 1e-12 and (k - 1) / k <= 2 / 3]
    if not far:
        return None
    made = ", ".join(f"{r:g} -> about {r * (k - 1) / k:.0%}" for r in far)
    unlearnable = f" (with {k} classes it is unlearnable from {(k - 1) / k:.2g} on)" if max(far) >= (k - 1) / k else ""
    return (f"symmetric noise with {k} classes makes fewer labels wrong than its nominal rate ({made}): a corrupted "
            f"label is redrawn from all {k} classes, the true one included; noise_kind symmetric_exclusive makes the "
            f"rate the fraction wrong{unlearnable}")


def check_noise_options(kind: str, options: dict, num_classes=None) -> dict:
    """The noise options of `noise.corrupt_labels`, checked and as plain lists: a kind that needs a mapping or
    a matrix must have a valid one (of `num_classes` classes, when known before the data is loaded)."""
    P.check_names(options, ["mapping", "matrix"], "noise option")
    need = NEEDS.get(kind)
    if need and options.get(need) is None:
        raise NbstudyError(f"noise_kind={kind!r} needs noise_options={{'{need}': ...}}: give the class {need} "
                           f"(docs/records.md), or use symmetric or pairflip noise")
    out = dict(options)
    if options.get("mapping") is not None:
        out["mapping"] = _mapping(options["mapping"], num_classes)
    if options.get("matrix") is not None:
        out["matrix"] = noise.check_matrix(options["matrix"], num_classes).tolist()
    return out


def _mapping(mapping, num_classes):
    """Asymmetric noise's class map: a list (class i -> mapping[i]) or a dict {class: class}, of whole numbers."""
    klass = P.whole(0, None if num_classes is None else num_classes - 1)
    if isinstance(mapping, dict):
        return {klass("noise_options.mapping key", k): klass(f"noise_options.mapping[{k!r}]", v)
                for k, v in mapping.items()}
    if not isinstance(mapping, (list, tuple)) and not hasattr(mapping, "tolist"):
        raise NbstudyError(f"noise_options.mapping={P.shown(mapping)} is invalid: give a list (class i -> "
                           "mapping[i]) or a mapping {class: class}")
    values = [klass(f"noise_options.mapping[{i}]", v) for i, v in enumerate(plain(mapping))]
    if num_classes is not None and len(values) != num_classes:
        raise NbstudyError(f"noise_options.mapping has {len(values)} entries for {num_classes} classes: give one "
                           "target class per class")
    return values
