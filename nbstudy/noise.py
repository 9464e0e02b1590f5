"""Label noise: corrupt clean labels the way the study does, and measure the result.

Every kind is expressed as a K x K transition matrix T (T[i, j] = probability that
true class i is labelled j); sampling row T[y] per sample then gives each kind
exactly its definition in the spec:

- ``symmetric`` (DivideMix): with prob. r, a class drawn from *all* K classes,
  so T = (1 - r) I + r / K. The real fraction of wrong labels is about r (K-1)/K.
- ``symmetric_exclusive`` (Co-teaching): with prob. r, one of the *other* K-1 classes.
- ``pairflip``: with prob. r, class i -> i + 1 (mod K).
- ``asymmetric``: with prob. r, class i -> mapping[i] (mapping given by the user).
- ``matrix``: a user-given T.
- ``instance``: instance-dependent noise, the generator of Xia et al. (NeurIPS 2020,
  "Part-dependent label noise", their `get_instance_noisy_label`): each sample i has
  its own flip rate q_i ~ N(r, 0.1) truncated to [0, 1], and its wrong label is drawn
  from softmax(x_i W_y) over the other classes, x_i the image (pooled to at most
  32 x 32 px, flattened, unit norm), W ~ N(0, 1) a (K, D, K) projection. Which wrong
  label an image gets depends on the image; its row of T is its own
  (`instance_transitions`). The fraction of wrong labels is about r.

Sampling uses numpy's PCG64 generator, so the same arguments give the same
labels on any machine.
"""

from __future__ import annotations

import warnings

import numpy as np

from nbstudy.errors import NbstudyError

KINDS = ("symmetric", "symmetric_exclusive", "pairflip", "asymmetric", "matrix", "instance")
INSTANCE_SIDE = 32   # instance noise looks at the image pooled to at most this side (Xia et al. use CIFAR's 32 px)


def transition_matrix(num_classes: int, rate: float, kind: str = "symmetric", mapping=None, matrix=None) -> np.ndarray:
    """The K x K matrix that `corrupt_labels` samples from, checked for sense."""
    k = int(num_classes)
    if k < 2:
        raise NbstudyError(f"num_classes={num_classes}: label noise needs at least 2 classes")
    if kind not in KINDS:
        raise NbstudyError(f"unknown noise kind {kind!r}: use one of {', '.join(KINDS)}")
    if kind == "matrix":
        return check_matrix(matrix, k)
    if kind == "instance":
        raise NbstudyError("instance noise has no single transition matrix (each image has its own row): use "
                           "instance_transitions, or measure it with empirical_transition")
    if not (0.0 <= float(rate) <= 1.0):
        raise NbstudyError(f"noise rate {rate} is outside [0, 1]: give a fraction such as 0.6")
    r = float(rate)
    eye = np.eye(k)
    if kind == "symmetric":
        t = (1 - r) * eye + r / k
    elif kind == "symmetric_exclusive":
        limit = (k - 1) / k
        if r >= limit:
            warnings.warn(
                f"symmetric_exclusive noise at rate {r} with {k} classes: from rate {limit:.3f} = (K-1)/K "
                "on, the true class is no longer the most likely label and the task is unlearnable",
                stacklevel=2,
            )
        t = (1 - r) * eye + r / (k - 1) * (1 - eye)
    else:
        if kind == "pairflip":
            target = (np.arange(k) + 1) % k
        else:
            if mapping is None:
                raise NbstudyError("asymmetric noise needs mapping= (class i -> mapping[i]); or use kind='pairflip'")
            if isinstance(mapping, dict):  # classes not named keep their label
                target = np.array([mapping.get(i, i) for i in range(k)], dtype=int)
            else:
                target = np.asarray(mapping, dtype=int)
            if target.shape != (k,) or target.min() < 0 or target.max() >= k:
                raise NbstudyError(f"asymmetric mapping {mapping!r} must send each of the {k} classes to a class in 0..{k - 1}")
        if r >= 0.5:
            warnings.warn(
                f"{kind} noise at rate {r}: from 0.5 on, the flipped class is at least as likely as the true one",
                stacklevel=2,
            )
        t = (1 - r) * eye
        t[np.arange(k), target] += r
    return t


def check_matrix(matrix, k: int | None = None) -> np.ndarray:
    """A K x K row-stochastic matrix as floats (K = its own size when k is None), or a one-line error."""
    if matrix is None:
        raise NbstudyError("kind='matrix' needs matrix= (a K x K row-stochastic transition matrix)")
    try:
        t = np.asarray(matrix, dtype=float)
    except (TypeError, ValueError):
        raise NbstudyError(f"transition matrix {matrix!r} is not a K x K table of numbers: give one row per "
                           "true class") from None
    if t.ndim != 2:
        raise NbstudyError(f"transition matrix {' '.join(repr(matrix).split())[:60]} is not a K x K table of "
                           "numbers: give one row per true class")
    k = len(t) if k is None else k
    if t.shape != (k, k):
        raise NbstudyError(f"transition matrix has shape {t.shape}, expected ({k}, {k}) for {k} classes")
    if (t < 0).any():
        raise NbstudyError("transition matrix has negative entries: every entry must be a probability in [0, 1]")
    sums = t.sum(axis=1)
    if not np.allclose(sums, 1.0, atol=1e-6):
        bad = int(np.argmax(np.abs(sums - 1)))
        raise NbstudyError(f"transition matrix row {bad} sums to {sums[bad]:.4f}, not 1: each row must be a distribution")
    return t


def corrupt_labels(labels, num_classes: int, rate: float, kind: str = "symmetric", seed: int = 0,
                   mapping=None, matrix=None, images=None) -> np.ndarray:
    """Return a new int64 array of noisy labels; `labels` is left untouched. `images` (N, H, W, C) uint8:
    the training images, needed by kind 'instance' only."""
    y = np.asarray(labels)
    if y.ndim != 1:
        y = y.reshape(-1)
    y = y.astype(np.int64)
    k = int(num_classes)
    if y.size and (y.min() < 0 or y.max() >= k):
        raise NbstudyError(f"labels must lie in 0..{k - 1}, found {y.min()}..{y.max()}: check num_classes")
    if kind == "instance":
        if images is None:
            raise NbstudyError("noise_kind 'instance' needs the images: pass images= (the training images)")
        rows = instance_transitions(images, y, k, rate, seed)
        u = np.random.default_rng([seed, 1]).random(y.size)
    else:
        rows = transition_matrix(k, rate, kind, mapping=mapping, matrix=matrix)[y]
        u = np.random.default_rng(seed).random(y.size)
    cum = np.cumsum(rows, axis=1)
    cum[:, -1] = 1.0  # guard against rounding leaving u > last cumulative value
    noisy = (u[:, None] >= cum).sum(axis=1)
    return noisy.astype(np.int64)


def instance_transitions(images, labels, num_classes: int, rate: float, seed: int = 0) -> np.ndarray:
    """(N, K) per-sample transition rows of instance-dependent noise (the module docstring, Xia et al. 2020).

    images: (N, H, W, C) uint8; labels: (N,) in 0..K-1. Same arguments, same rows."""
    from scipy.stats import truncnorm

    if not 0 <= rate <= 1:
        raise NbstudyError(f"noise rate must be in [0, 1], got {rate}")
    y = np.asarray(labels, dtype=np.int64).reshape(-1)
    x = _instance_features(np.asarray(images))
    k, rng = int(num_classes), np.random.default_rng(seed)
    q = (truncnorm.rvs(-rate / 0.1, (1 - rate) / 0.1, loc=rate, scale=0.1, size=len(y), random_state=rng)
         if 0 < rate < 1 else np.full(len(y), float(rate)))
    w = rng.standard_normal((k, x.shape[1], k)).astype(np.float32)
    rows = np.empty((len(y), k))
    for c in range(k):   # one matrix product per true class
        members = np.flatnonzero(y == c)
        logits = (x[members] @ w[c]).astype(np.float64)
        logits[:, c] = -np.inf
        share = np.exp(logits - logits.max(axis=1, keepdims=True))
        rows[members] = q[members, None] * share / share.sum(axis=1, keepdims=True)
        rows[members, c] = 1 - q[members]
    return rows


def _instance_features(images: np.ndarray) -> np.ndarray:
    """Images (N, H, W, C) -> (N, D) float32: average-pooled to at most INSTANCE_SIDE px a side, flattened,
    scaled to unit norm (so the logits x W have unit variance whatever the size)."""
    n, h, w = images.shape[:3]
    f = max(1, -(-max(h, w) // INSTANCE_SIDE))
    out = []
    for start in range(0, n, 1024):   # in blocks: a memory-mapped set need not fit in memory as floats
        block = images[start:start + 1024].astype(np.float32) / 255
        block = block[:, :h - h % f, :w - w % f].reshape(len(block), h // f, f, w // f, f, -1).mean(axis=(2, 4))
        block = block.reshape(len(block), -1)
        out.append(block / np.maximum(np.linalg.norm(block, axis=1, keepdims=True), 1e-12))
    return np.concatenate(out) if out else np.zeros((0, 1), np.float32)


def expected_noise_rate(clean, num_classes: int, rate: float, kind: str = "symmetric", **options) -> float:
    """The fraction of labels the noise is expected to make wrong, given the clean labels' class mix.

    Not the nominal rate: 'symmetric' noise at rate r can redraw the true class, so it makes
    about r (K - 1) / K of the labels wrong. This is what a method told "the noise rate" (such as
    Co-teaching's forget rate) should be told; it needs no knowledge of which labels were hit.
    """
    if kind == "instance":   # each sample flips with its own q_i, of mean about `rate`
        return float(rate)
    t = transition_matrix(num_classes, rate, kind, **options)
    prior = np.bincount(np.asarray(clean).reshape(-1), minlength=int(num_classes)) / max(1, np.asarray(clean).size)
    return float(1.0 - prior @ np.diag(t))


def noise_mask(clean, noisy) -> np.ndarray:
    """Boolean mask of samples whose label is wrong."""
    return np.asarray(clean).reshape(-1) != np.asarray(noisy).reshape(-1)


def actual_noise_rate(clean, noisy) -> float:
    """Fraction of labels that are wrong (not the nominal rate)."""
    mask = noise_mask(clean, noisy)
    return float(mask.mean()) if mask.size else 0.0


def empirical_transition(clean, noisy, num_classes: int) -> np.ndarray:
    """Row-normalised counts: entry [i, j] = fraction of class-i samples labelled j."""
    k = int(num_classes)
    counts = np.zeros((k, k))
    np.add.at(counts, (np.asarray(clean).reshape(-1), np.asarray(noisy).reshape(-1)), 1)
    rows = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
