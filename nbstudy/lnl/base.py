"""The noisy-label method API: what a method defines (`Method`) and what its epoch gets (`Context`).

A method (see `ce.py`, `coteaching.py`, `dividemix.py`) only says how to build
its optimisers, how to set the schedule for an epoch and how to train one epoch;
the loop (`loop.py`) does everything else, the same for every method.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from nbstudy import augment, noise
from nbstudy.evaluate import predict
from nbstudy.loader import BatchLoader
from nbstudy.runtime import autocast


@dataclass(frozen=True)
class Method:
    """A noisy-label method, as the loop sees it (the modules `ce`, `coteaching`, `dividemix` define one each).

    optimizers(ctx) -> list, one per network; schedule(ctx, epoch) sets the
    epoch's learning rate (a pure function of the epoch, so resuming needs no
    scheduler object) and returns it; train_epoch(ctx, epoch, state) trains one
    epoch and returns {"loss": mean training objective, and for selecting
    methods "selected" (1/0/NaN per training sample), "score" (higher = more
    likely clean) and "selection" (what the records keep)}; state(ctx) is the
    method's own resumable state (saved in the checkpoint). `options` is the
    table of its method_options (`nbstudy.params.Param`), each checked on its
    own; check_options(options, params) checks them together and fills
    derived values (e.g. Co-teaching's forget rate from the noise).
    suspicion(ctx) -> (len(train_idx),) float, after the last epoch: how
    likely each training sample's given label is wrong, higher = more
    (`nbstudy.lnl.suspects`); by default network A's per-sample loss.
    """

    name: str
    networks: int
    reported: str               # the network whose test accuracy is reported: "A" or "ensemble"
    lr: float                   # reference learning rate
    batch_size: int             # reference batch size
    options: dict               # method_options: {name: Param}, reference values as defaults
    optimizers: Callable
    schedule: Callable
    train_epoch: Callable
    check_options: Callable = lambda options, params: options
    state: Callable = lambda ctx: {}
    suspicion: Callable = lambda ctx: ctx.train_losses(0)


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
    val_idx: np.ndarray                      # training images held out (val_split train), else empty
    val_images: np.ndarray | None = None     # the data set's own validation split (val_split dataset), else None
    val_labels: np.ndarray | None = None     # its labels, corrupted like the training labels

    @property
    def val_split(self) -> str:
        """Where the noisy validation set came from: "dataset" (its own split) or "train" (held-out images)."""
        return "train" if self.val_images is None else "dataset"

    @property
    def n_val(self) -> int:
        return len(self.val_idx) if self.val_images is None else len(self.val_labels)

    @property
    def noise_mask(self) -> np.ndarray:
        return noise.noise_mask(self.clean_labels, self.noisy_labels)

    @property
    def mask_known(self) -> bool:
        """Whether `noise_mask` says which labels are wrong: not for a user's given labels (the `labels`
        data set option) with no noise planted on them, whose wrong labels nobody knows."""
        return not (self.dataset.labels_file and self.params["noise_rate"] == 0)

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
    class_weights: str = "none"  # "none" or "balanced": see `loss_weights`
    precision: str = "auto"     # the forward passes' autocast: `nbstudy.runtime.autocast`
    test_images: np.ndarray | None = None
    _logits_cache: dict = field(default_factory=dict)
    _loss_weights: torch.Tensor | None = None
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
                           batch_size=max(256, self.batch_size), indices=indices, precision=self.precision)

    def train_logits(self, k: int) -> torch.Tensor:
        """Un-augmented logits (len(train_idx), K) of network k on the training images, on the CPU.

        Cached until the networks next change (the loop calls `weights_changed`),
        so the pass that records the losses after an epoch also serves DivideMix's
        next division and the suspects' predictions."""
        if k not in self._logits_cache:
            self._logits_cache[k] = self.logits(self.nets[k], indices=self.train_idx)
        return self._logits_cache[k]

    def test_logits(self, k: int) -> torch.Tensor:
        """Un-augmented logits (len(test_images), K) of network k on the test images, on the CPU; cached as
        `train_logits` is, so the records' final predictions reuse the last epoch's evaluation."""
        if ("test", k) not in self._logits_cache:
            self._logits_cache["test", k] = self.logits(self.nets[k], images=self.test_images)
        return self._logits_cache["test", k]

    def train_losses(self, k: int) -> np.ndarray:
        """Per-sample CE of network k on the un-augmented training images and their (noisy) labels, aligned
        with train_idx (from the cached `train_logits`)."""
        y = torch.from_numpy(self.labels[self.train_idx])
        return F.cross_entropy(self.train_logits(k), y, reduction="none").numpy()

    @property
    def fused(self) -> bool | None:
        """Fused optimiser kernels where torch has them: on the CPU the unfused Adam step costs more than the
        forward-backward of a small batch."""
        return True if self.device.type in ("cpu", "cuda") else None

    def loss_weights(self) -> torch.Tensor | None:
        """(K,) float32 weights of each class in the training loss, on the device; None for class_weights "none".

        "balanced": n / (K n_c) with n_c the count of noisy training labels of class c (scikit-learn's
        class_weight="balanced"; a class with no label gets 0), so each class weighs as much in total."""
        if self.class_weights == "none":
            return None
        if self._loss_weights is None:
            counts = np.bincount(self.labels[self.train_idx], minlength=self.num_classes).astype(np.float64)
            w = np.divide(len(self.train_idx), self.num_classes * counts, out=np.zeros_like(counts), where=counts > 0)
            self._loss_weights = torch.as_tensor(w, dtype=torch.float32, device=self.device)
        return self._loss_weights

    def weights_changed(self) -> None:
        self._logits_cache.clear()

    def autocast(self):
        return autocast(self.device, self.precision)


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


