"""The training loop every noisy-label method shares: data, noise, networks, evaluation, records, resumption.

A method (see `ce.py`, `coteaching.py`, `dividemix.py`) only says how to build
its optimisers, how to set the schedule for an epoch and how to train one epoch;
everything else lives here, once:

1. `prepare(params)`: check the parameters, load the dataset, corrupt the labels
   (same seed, same noisy labels) and hold out a validation split that keeps its
   noisy labels (for the checkpoint a user would pick without test labels).
2. `train(setup)`: build the networks (random or pretrained init), then per
   epoch: schedule, train, evaluate every network and the ensemble on the test
   set, score selection against the wrong-label mask, record per-sample losses,
   save an atomic checkpoint; at the end write the records (`records.py`).

A run started again with the same parameters and output folder resumes from its
last checkpoint and ends as an uninterrupted run would (bit for bit on the CPU):
the checkpoint holds the networks, optimisers (the schedule is a pure function of
the epoch), every random stream and the history so far.
"""

from __future__ import annotations

import hashlib
import math
import random
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from nbstudy import augment, noise
from nbstudy.checkpoint import load_backbone, load_checkpoint, save_atomic
from nbstudy.errors import NbstudyError
from nbstudy.evaluate import classification_metrics, predict
from nbstudy.loader import BatchLoader
from nbstudy.lnl import records
from nbstudy.models import STEMS, Classifier, first_layer_filters, use_small_stem
from nbstudy.runtime import autocast, compile_model, configure, prepare_model, resolve_device, seed_everything

# The parameter contract shared with the notebook and the study runner.
DEFAULTS = {
    "dataset": "synthetic",
    "data_path": None,
    "dataset_options": {},
    "data_seed": 0,            # the dataset's draw, split and subsample: shared by every seed of a study
    "resolution": 32,
    "stem": "auto",
    "method": "ce",
    "method_options": {},
    "noise_kind": "symmetric",
    "noise_rate": 0.0,
    "noise_options": {},       # mapping= for 'asymmetric', matrix= for 'matrix'
    "init": "random",
    "epochs": 100,
    "batch_size": None,        # None: the method's reference batch size
    "lr": None,                # None: the method's reference learning rate
    "seed": 0,
    "val_fraction": 0.1,
    "record_every": 1,
    "checkpoint_every": 1,     # 0: no checkpoints
    "keep_checkpoint": False,  # the checkpoint is deleted once the records are written
    "deterministic": False,
    "device": "auto",
    "torch_compile": False,    # torch.compile the networks (GPU runs: faster after a slow first epoch)
    "output_dir": "outputs/train",
    "progress": True,
}
# Parameters that may change between a run and its resumption.
RESUMABLE_CHANGES = ("device", "torch_compile", "output_dir", "checkpoint_every", "keep_checkpoint", "progress")
CHECKPOINT_FILE = "checkpoint.pt"
CHECKPOINT_FORMAT = "nbstudy-train-state/1"


@dataclass(frozen=True)
class Method:
    """A noisy-label method, as the loop sees it (the modules `ce`, `coteaching`, `dividemix` define one each).

    optimizers(ctx) -> list, one per network; schedule(ctx, epoch) sets the
    epoch's learning rate (a pure function of the epoch, so resuming needs no
    scheduler object) and returns it; train_epoch(ctx, epoch, state) trains one
    epoch and returns {"loss": mean training objective, and for selecting
    methods "selected" (1/0/NaN per training sample), "score" (higher = more
    likely clean) and "selection" (what the records keep)}; state(ctx) is the
    method's own resumable state (saved in the checkpoint); check_options
    validates method_options.
    """

    name: str
    networks: int
    reported: str               # the network whose test accuracy is reported: "A" or "ensemble"
    lr: float                   # reference learning rate
    batch_size: int             # reference batch size
    options: dict               # method_options and their reference values
    optimizers: Callable
    schedule: Callable
    train_epoch: Callable
    check_options: Callable = lambda opts, params: opts
    state: Callable = lambda ctx: {}


@dataclass
class Setup:
    """A run's parameters (checked, defaults filled in), its data and its noisy labels."""

    params: dict
    method: Method
    options: dict
    dataset: object
    clean_labels: np.ndarray
    noisy_labels: np.ndarray
    train_idx: np.ndarray
    val_idx: np.ndarray

    @property
    def noise_mask(self) -> np.ndarray:
        return noise.noise_mask(self.clean_labels, self.noisy_labels)

    @property
    def actual_noise_rate(self) -> float:
        return noise.actual_noise_rate(self.clean_labels, self.noisy_labels)

    def transition_matrix(self) -> np.ndarray:
        return noise.empirical_transition(self.clean_labels, self.noisy_labels, self.dataset.num_classes)


@dataclass
class Context:
    """What a method's epoch needs: networks, optimisers, data on the host, random streams, options."""

    nets: list
    optimizers: list
    images: np.ndarray
    labels: np.ndarray          # noisy labels of every training image (dataset order)
    train_idx: np.ndarray
    num_classes: int
    mean: torch.Tensor          # per-channel statistics, on the device
    std: torch.Tensor
    device: torch.device
    batch_size: int
    epochs: int
    lr: float
    seed: int
    options: dict
    noise_kind: str
    noise_rate: float
    gen: torch.Generator        # augmentation and permutations, on the device
    rng: np.random.Generator    # host-side draws (MixMatch's lambda)
    _loss_cache: dict = field(default_factory=dict)
    _train_idx_t: torch.Tensor | None = None

    def view(self, x: torch.Tensor) -> torch.Tensor:
        """A random training view (crop + flip) of a uint8 batch, normalised."""
        return augment.normalize(augment.weak(augment.to_float(x), self.gen), self.mean, self.std)

    def loader(self, indices, *arrays, key: tuple, batch_size=None, drop_last=True) -> BatchLoader:
        """A shuffled loader over `indices` (dataset indices); each `key` (epoch, role, ...) gets its own
        reproducible order, so a resumed run sees the same batches."""
        seed = int(np.random.SeedSequence([self.seed, *key]).generate_state(1)[0])
        return BatchLoader(self.images, *arrays, batch_size=batch_size or self.batch_size, shuffle=True,
                           seed=seed, drop_last=drop_last, device=self.device, indices=indices)

    def positions(self, idx: torch.Tensor) -> torch.Tensor:
        """Dataset indices -> positions in train_idx (sorted), on the device: where per-sample results go."""
        if self._train_idx_t is None:
            self._train_idx_t = torch.from_numpy(self.train_idx).to(self.device)
        return torch.searchsorted(self._train_idx_t, idx)

    def logits(self, net, images=None, indices=None) -> torch.Tensor:
        """Un-augmented logits of `net` in eval mode, on the CPU: training images at `indices`, or `images`."""
        with eval_mode(net):
            return predict(net, self.images if images is None else images, self.mean, self.std, self.device,
                           batch_size=max(256, self.batch_size), indices=indices)

    def train_losses(self, k: int) -> np.ndarray:
        """Per-sample CE of network k on the un-augmented training images (aligned with train_idx).

        Cached until the networks next change (the loop calls `weights_changed`),
        so the loss recorded after an epoch is reused by DivideMix's next division.
        """
        if k not in self._loss_cache:
            logits = self.logits(self.nets[k], indices=self.train_idx)
            y = torch.from_numpy(self.labels[self.train_idx])
            self._loss_cache[k] = F.cross_entropy(logits, y, reduction="none").numpy()
        return self._loss_cache[k]

    @property
    def fused(self) -> bool | None:
        """Fused optimiser kernels where torch has them: on the CPU the unfused Adam step costs more than the
        forward-backward of a small batch."""
        return True if self.device.type in ("cpu", "cuda") else None

    def weights_changed(self) -> None:
        self._loss_cache.clear()

    def autocast(self):
        return autocast(self.device)


@contextmanager
def eval_mode(net):
    """Evaluate in eval mode (BatchNorm running statistics), then restore the mode the network was in."""
    was = net.training
    net.eval()
    try:
        yield net
    finally:
        net.train(was)


def set_lr(optimizers, lr: float, **group_values) -> None:
    """Set the learning rate (and e.g. Adam's betas) of every optimiser."""
    for opt in optimizers:
        for group in opt.param_groups:
            group["lr"] = lr
            group.update(group_values)


def check_option(opts: dict, name: str, low=None, high=None, integer=False, none_ok=False, choices=None) -> None:
    """One-line error for a method option of the wrong type or out of range."""
    v = opts[name]
    if v is None and none_ok:
        return
    if choices is not None:
        ok = v in choices and type(v) is type(choices[0])
        want = f"one of {choices}"
    else:
        kinds = (int, np.integer) if integer else (int, float, np.integer, np.floating)
        ok = not isinstance(v, bool) and isinstance(v, kinds) and math.isfinite(v) \
            and (low is None or v >= low) and (high is None or v <= high)
        want = f"{'an integer' if integer else 'a number'} in [{low}, {high}]"
    if not ok:
        raise NbstudyError(f"method_options {name}={v!r} is invalid: give {want}{' or None' if none_ok else ''}")


def resolve_params(params: dict | None, kwargs: dict) -> dict:
    """Merge, reject unknown names, check types and ranges: a one-line error before any work."""
    given = {**(params or {}), **kwargs}
    unknown = sorted(set(given) - set(DEFAULTS))
    if unknown:
        raise NbstudyError(f"unknown parameter(s) {', '.join(unknown)}: valid ones are {', '.join(DEFAULTS)}")
    p = {**DEFAULTS, **given}
    from nbstudy.lnl import METHODS

    if p["method"] not in METHODS:
        raise NbstudyError(f"unknown method {p['method']!r}: use one of {', '.join(METHODS)}")
    if p["noise_kind"] not in noise.KINDS:
        raise NbstudyError(f"unknown noise_kind {p['noise_kind']!r}: use one of {', '.join(noise.KINDS)}")
    if p["stem"] not in STEMS:
        raise NbstudyError(f"unknown stem {p['stem']!r}: use one of {', '.join(STEMS)}")
    _number(p, "noise_rate", 0.0, 1.0)
    _number(p, "val_fraction", 0.0, 0.5)
    _integer(p, "epochs", 1)
    if p["resolution"] is not None:  # None: the dataset's own size
        _integer(p, "resolution", 8)
    _integer(p, "seed", 0)
    _integer(p, "data_seed", 0)
    _integer(p, "record_every", 1)
    _integer(p, "checkpoint_every", 0)
    if p["batch_size"] is not None:
        _integer(p, "batch_size", 2)
    if p["lr"] is not None:
        _number(p, "lr", 0.0, math.inf, low_open=True)
    for name in ("dataset_options", "method_options", "noise_options"):
        if not isinstance(p[name], dict):
            raise NbstudyError(f"{name} must be a dict (got {type(p[name]).__name__}): e.g. {name}={{}}")
    for name in ("keep_checkpoint", "deterministic", "progress", "torch_compile"):
        if not isinstance(p[name], bool):
            raise NbstudyError(f"{name} must be True or False, got {p[name]!r}")
    if not isinstance(p["init"], str) or not p["init"]:
        raise NbstudyError(f"init must be 'random' or the path of a pretraining checkpoint, got {p['init']!r}")
    if p["init"] != "random" and not Path(p["init"]).is_file():
        raise NbstudyError(f"init checkpoint {p['init']} does not exist: give a pretraining run's backbone file or 'random'")
    return p


def _number(p, name, low, high, low_open=False):
    v = p[name]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v > high \
            or v < low or (low_open and v == low):
        rng = f"({low}, {high}]" if low_open else f"[{low}, {high}]"
        raise NbstudyError(f"{name}={v!r} is outside {rng}: give a number in that range")


def _integer(p, name, low):
    v = p[name]
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
        raise NbstudyError(f"{name}={v!r} must be an integer >= {low}")
    p[name] = int(v)


def method_options(method, given: dict, p: dict) -> dict:
    """The method's hyperparameters: reference defaults, overridden by `given`; unknown names are an error."""
    unknown = sorted(set(given) - set(method.options))
    if unknown:
        raise NbstudyError(f"unknown method_options {', '.join(unknown)} for method {p['method']!r}: "
                           f"valid ones are {', '.join(method.options) or '(none)'}")
    opts = {**method.options, **given}
    return method.check_options(opts, p)


def prepare(params: dict | None = None, **kwargs) -> Setup:
    """Check parameters, load the dataset, corrupt the labels and split off the noisy validation set."""
    from nbstudy.data import load_dataset
    from nbstudy.lnl import METHODS

    p = resolve_params(params, kwargs)
    method = METHODS[p["method"]]
    method_options(method, p["method_options"], p)   # a bad option fails before the data is read
    ds = load_dataset(p["dataset"], data_path=p["data_path"], resolution=p["resolution"], seed=p["data_seed"],
                      **p["dataset_options"])
    if p["init"] != "random":
        _check_init_data(p)
    clean = np.asarray(ds.train_labels, dtype=np.int64)
    noisy = noise.corrupt_labels(clean, ds.num_classes, p["noise_rate"], p["noise_kind"], seed=p["seed"],
                                 **p["noise_options"])
    expected = noise.expected_noise_rate(clean, ds.num_classes, p["noise_rate"], p["noise_kind"], **p["noise_options"])
    opts = method_options(method, p["method_options"], {**p, "expected_noise_rate": expected})
    n = len(clean)
    order = np.random.default_rng([p["seed"], 1]).permutation(n)
    n_val = int(round(p["val_fraction"] * n))
    val_idx, train_idx = np.sort(order[:n_val]), np.sort(order[n_val:])
    batch = p["batch_size"] or method.batch_size
    if len(train_idx) < 2 * batch:
        raise NbstudyError(f"only {len(train_idx)} training images for batch_size={batch}: "
                           f"use batch_size <= {len(train_idx) // 2} or a larger dataset")
    return Setup(p, method, opts, ds, clean, noisy, train_idx, val_idx)


def _run_key(setup: Setup) -> dict:
    """What a checkpoint must agree on to be resumed: parameters and the labels they produced."""
    p = {k: v for k, v in setup.params.items() if k not in RESUMABLE_CHANGES}
    digest = hashlib.sha256(setup.noisy_labels.tobytes() + setup.train_idx.tobytes()).hexdigest()
    return {"params": records._jsonable(p), "labels_sha256": digest}


def _build(setup: Setup, device) -> Context:
    p, ds, method = setup.params, setup.dataset, setup.method
    seed_everything(p["seed"])
    small = use_small_stem(p["stem"], ds.resolution)
    nets = []
    for _ in range(method.networks):
        net = Classifier(ds.num_classes, small_stem=small)
        if p["init"] != "random":
            load_backbone(net.backbone, p["init"], ds.resolution)
        nets.append(compile_model(prepare_model(net, device), p["torch_compile"]))
    lr = p["lr"] if p["lr"] is not None else method.lr
    mean, std = augment.channel_stats(ds.mean, ds.std, device)
    ctx = Context(nets=nets, optimizers=[], images=ds.train_images, labels=setup.noisy_labels,
                  train_idx=setup.train_idx, num_classes=ds.num_classes, mean=mean, std=std, device=device,
                  batch_size=p["batch_size"] or method.batch_size, epochs=p["epochs"], lr=lr, seed=p["seed"],
                  options=setup.options, noise_kind=p["noise_kind"], noise_rate=p["noise_rate"],
                  gen=torch.Generator(device=device).manual_seed(p["seed"]),
                  rng=np.random.default_rng([p["seed"], 2]))
    ctx.optimizers = method.optimizers(ctx)
    return ctx


def _rng_state(ctx: Context) -> dict:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "gen": ctx.gen.get_state(), "rng": ctx.rng.bit_generator.state}


def _set_rng_state(ctx: Context, state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    ctx.gen.set_state(state["gen"])
    ctx.rng.bit_generator.state = state["rng"]


def _remove_stale_temps(out: Path) -> None:
    """A run killed while writing leaves atomic_write's temp file behind: remove ours."""
    for name in (CHECKPOINT_FILE, records.METRICS_FILE, records.RECORDS_FILE):
        for tmp in out.glob(f".{name}.*.tmp"):
            tmp.unlink(missing_ok=True)


def _load_state(path: Path, key: dict):
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # a corrupt file cannot come from atomic writes, but a user may copy one
        raise NbstudyError(f"checkpoint {path} cannot be read ({type(exc).__name__}): delete it to start the run afresh") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise NbstudyError(f"{path} is not a training checkpoint: delete it or use another output_dir")
    if state["key"] != key:
        old, new = state["key"]["params"], key["params"]
        diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k)) or ["the noisy labels"]
        raise NbstudyError(f"{path} belongs to a run with different {', '.join(diff)}: "
                           "use another output_dir, or delete the checkpoint to start afresh")
    return state


def _evaluate(ctx: Context, setup: Setup, reported: str) -> dict:
    """Test accuracy per network and of the ensemble (sum of logits, as DivideMix tests); the reported
    network's balanced accuracy, macro-F1 and accuracy on the noisy validation labels."""
    test_y = np.asarray(setup.dataset.test_labels)
    test = [ctx.logits(net, images=setup.dataset.test_images) for net in ctx.nets]
    val = [ctx.logits(net, indices=setup.val_idx) for net in ctx.nets] if len(setup.val_idx) else []
    two = len(ctx.nets) == 2
    acc = lambda logits, y: float((logits.argmax(1).numpy() == y).mean())  # noqa: E731
    row = {"test_acc_A": acc(test[0], test_y),
           "test_acc_B": acc(test[1], test_y) if two else None,
           "test_acc_ensemble": acc(sum(test), test_y) if two else None}
    pick = (lambda outs: outs[0]) if reported == "A" else sum
    m = classification_metrics(test_y, pick(test).argmax(1).numpy())
    row.update(test_acc=m["acc"], test_balanced_acc=m["balanced_acc"], test_macro_f1=m["macro_f1"])
    row["val_acc"] = acc(pick(val), setup.noisy_labels[setup.val_idx]) if val else None
    return row


def train(setup: Setup) -> dict:
    """Train `setup`'s method, write the records to output_dir, return the `final` metrics."""
    p, method = setup.params, setup.method
    out = Path(p["output_dir"])
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise NbstudyError(f"output_dir {out} cannot be created ({exc.strerror}): choose a writable folder") from None
    _remove_stale_temps(out)
    device = resolve_device(p["device"])
    configure(device, p["deterministic"])
    ctx = _build(setup, device)
    ckpt_path, key = out / CHECKPOINT_FILE, _run_key(setup)
    n = len(setup.clean_labels)
    mask = setup.noise_mask[setup.train_idx]
    state = {"epoch": 0, "history": [], "record_epochs": [], "losses": [], "selection": [], "train_time_s": 0.0,
             "filters_initial": first_layer_filters(ctx.nets[0].backbone).numpy(), "method": {},
             "init": _init_info(p["init"])}
    if ckpt_path.is_file():
        saved = _load_state(ckpt_path, key)
        for net, sd in zip(ctx.nets, saved["nets"]):
            net.load_state_dict(sd)
        for opt, sd in zip(ctx.optimizers, saved["optimizers"]):
            opt.load_state_dict(sd)
        _set_rng_state(ctx, saved["rng"])
        state = saved["run"]
    method_state = method.state(ctx)
    method_state.update(state["method"])

    epochs = range(state["epoch"] + 1, p["epochs"] + 1)
    bar = tqdm(epochs, desc=f"{p['method']} {p['noise_kind']} {p['noise_rate']}", disable=not p["progress"])
    for epoch in bar:
        t0 = time.perf_counter()
        lr = method.schedule(ctx, epoch - 1)  # methods count epochs from 0, as the reference code does
        res = method.train_epoch(ctx, epoch - 1, method_state)
        ctx.weights_changed()
        if not math.isfinite(res["loss"]):
            raise NbstudyError(f"training loss became {res['loss']} at epoch {epoch} ({p['method']}, lr {lr:g}): "
                               "lower lr, or check the images and labels for bad values")
        row = {"epoch": epoch, "train_loss": res["loss"], "lr": lr}
        row.update(_evaluate(ctx, setup, method.reported))
        sel = {"precision": None, "recall": None, "auc": None}
        if res.get("selected") is not None:
            sel = records.selection_metrics(res["selected"], res["score"], mask)
        row.update(selection_precision=sel["precision"], selection_recall=sel["recall"], selection_auc=sel["auc"])
        if epoch % p["record_every"] == 0 or epoch == p["epochs"]:
            state["record_epochs"].append(epoch)
            state["losses"].append(_full(n, setup.train_idx, ctx.train_losses(0)))
            state["selection"].append(_full(n, setup.train_idx, res.get("selection")))
        state["train_time_s"] += time.perf_counter() - t0
        row["time_s"] = time.perf_counter() - t0
        state["history"].append(row)
        state["epoch"] = epoch
        state["method"] = method_state
        bar.set_postfix(loss=f"{res['loss']:.3f}", acc=f"{row['test_acc']:.3f}")
        every = p["checkpoint_every"]
        if every and (epoch % every == 0 or (epoch == p["epochs"] and p["keep_checkpoint"])):
            save_atomic({"format": CHECKPOINT_FORMAT, "key": key, "nets": [net.state_dict() for net in ctx.nets],
                         "optimizers": [o.state_dict() for o in ctx.optimizers], "rng": _rng_state(ctx),
                         "run": state}, ckpt_path)

    final = records.summarize(state["history"], method.reported, setup.actual_noise_rate, state["train_time_s"])
    _write(setup, ctx, state, final, out)
    if not p["keep_checkpoint"]:
        ckpt_path.unlink(missing_ok=True)
    return final


def _full(n: int, idx: np.ndarray, values) -> np.ndarray:
    """A per-sample array over the whole training set (NaN for held-out samples)."""
    arr = np.full(n, np.nan, dtype=np.float32)
    if values is not None:
        arr[idx] = values
    return arr


def _check_init_data(p: dict) -> None:
    """Warn when the backbone was pretrained on the same source drawn with another data seed: the
    split or subsample differs, so this run's test images may be among those it was pretrained on."""
    pre = load_checkpoint(p["init"]).get("hparams") or {}
    same_source = all(pre.get(k) == p[k] for k in ("dataset", "data_path", "dataset_options"))
    pre_seed = pre.get("data_seed", pre.get("seed", 0))   # before data_seed, the run's seed drew the data
    if same_source and pre_seed != p["data_seed"]:
        warnings.warn(f"the init backbone was pretrained with data_seed={pre_seed} but this run uses "
                      f"data_seed={p['data_seed']}: its test images may have been pretrained on; use the same "
                      "data_seed for both", stacklevel=3)


def _init_info(init: str) -> dict:
    if init == "random":
        return {"init": "random"}
    meta = load_checkpoint(init)
    return {"init": init, **{k: v for k, v in meta.items() if isinstance(v, (str, int, float, bool)) and k != "format"}}


def _write(setup: Setup, ctx: Context, state: dict, final: dict, out: Path) -> None:
    ds = setup.dataset
    metrics = {
        "format": "nbstudy-train-records/1",
        "params": setup.params,
        "method_options": setup.options,
        "lr": ctx.lr,
        "batch_size": ctx.batch_size,
        "init": state["init"],
        "dataset": {"name": ds.name, "synthetic": bool(ds.synthetic), "class_names": list(ds.class_names),
                    "num_classes": ds.num_classes, "resolution": ds.resolution,
                    "n_train": len(setup.train_idx), "n_val": len(setup.val_idx), "n_test": len(ds.test_labels)},
        "noise": {"kind": setup.params["noise_kind"], "rate": setup.params["noise_rate"],
                  "actual_rate": setup.actual_noise_rate,
                  "transition_matrix": setup.transition_matrix().tolist()},
        "history": state["history"],
        "final": final,
    }
    arrays = {
        "clean_labels": setup.clean_labels,
        "noisy_labels": setup.noisy_labels,
        "noise_mask": setup.noise_mask,
        "train_indices": setup.train_idx,
        "val_indices": setup.val_idx,
        "record_epochs": np.asarray(state["record_epochs"], dtype=np.int64),
        "losses": np.stack(state["losses"]),      # the last epoch is always recorded
        "selection": np.stack(state["selection"]),
        "filters_initial": state["filters_initial"],
        "filters_final": first_layer_filters(ctx.nets[0].backbone).numpy(),
    }
    records.write_records(out, metrics, arrays)
