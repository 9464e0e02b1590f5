"""DivideMix (Li, Socher, Hoi, ICLR 2020): split the data into clean and noisy by a loss mixture, then
train semi-supervised on the split, two networks dividing the data for each other.

Per epoch after a CE warm-up, each network's per-sample loss on un-augmented
training images is min-max normalised and a 2-component Gaussian mixture is
fitted; w = posterior of the low-mean component is the clean probability.
Co-divide: w > p_threshold is the labelled set, the rest unlabelled, and each
network trains on the other's split. Per batch (two augmented views of each
image): co-refinement of the labelled targets, co-guessing of the unlabelled
ones, MixMatch over the whole batch, loss = CE on the mixed labelled part +
lambda_u(t) * MSE on the mixed unlabelled part + a uniform-prior penalty. The
test prediction is the sum of both networks' logits.

Departures from the reference code, all deliberate: the division threshold is
clipped so that neither set ever has fewer than one batch (the original crashes
or trains on nothing at extreme noise); a network's predictions on its two
labelled and two unlabelled views come from one forward pass (one batch instead
of four, which also keeps every BatchNorm batch above one sample).
"""

from __future__ import annotations

import itertools
import warnings
from contextlib import closing

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture

from nbstudy.lnl.base import Method, eval_mode
from nbstudy.lnl.ce import SGD_OPTIONS, sgd, step_schedule
from nbstudy.params import Param, flag, optional, real, whole

OPTIONS = {
    "warmup_epochs": Param(10, whole(0), "epochs of plain CE before the first division"),
    "p_threshold": Param(0.5, real(0, 1), "clean probability above which a sample is labelled"),
    "lambda_u": Param(25.0, real(0), "weight of the unlabelled loss (0 at low or asymmetric noise)"),
    "rampup_epochs": Param(16, whole(1), "epochs over which lambda_u ramps up after warm-up"),
    "alpha": Param(4.0, real(1e-6), "MixMatch's Beta(alpha, alpha)"),
    "T": Param(0.5, real(1e-3, 1), "sharpening temperature"),
    "loss_window": Param(None, optional(whole(1), "5 at noise >= 0.9, else 1"), "epochs of losses averaged "
                         "before the mixture fit"),
    "confidence_penalty": Param(None, optional(flag(), "on for non-symmetric noise"), "negative-entropy penalty "
                                "in warm-up"),
    **SGD_OPTIONS,
}


def normalize_losses(losses: np.ndarray) -> np.ndarray:
    """Min-max to [0, 1]; all equal -> all 0."""
    losses = np.asarray(losses, dtype=np.float64)
    span = losses.max() - losses.min()
    return (losses - losses.min()) / span if span > 0 else np.zeros_like(losses)


def clean_probability(losses: np.ndarray, seed: int = 0) -> np.ndarray:
    """Posterior of the low-mean component of a 2-Gaussian mixture on (normalised) losses.

    The reference fit: max_iter 10, tol 1e-2, reg_covar 5e-4 (a short fit on
    purpose, so sklearn's convergence warning is expected and silenced).
    """
    x = np.asarray(losses, dtype=np.float64).reshape(-1, 1)
    if np.ptp(x) == 0:  # nothing to separate
        return np.ones(len(x))
    gmm = GaussianMixture(n_components=2, max_iter=10, tol=1e-2, reg_covar=5e-4, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gmm.fit(x)
    return gmm.predict_proba(x)[:, int(np.argmin(gmm.means_))]


def divide(prob: np.ndarray, p_threshold: float, min_count: int) -> np.ndarray:
    """Labelled mask = prob > p_threshold, with the threshold clipped so each side holds >= min_count samples."""
    prob = np.asarray(prob)
    labelled = prob > p_threshold
    n = len(prob)
    min_count = max(1, min(int(min_count), n // 2))
    order = np.argsort(-prob, kind="stable")  # most likely clean first
    if labelled.sum() < min_count:
        labelled[order[:min_count]] = True
    elif (~labelled).sum() < min_count:
        labelled[order[n - min_count:]] = False
    return labelled


def sharpen(p: torch.Tensor, T: float) -> torch.Tensor:
    """p^(1/T), renormalised: T < 1 makes a distribution more confident."""
    pt = p ** (1.0 / T)
    return pt / pt.sum(dim=1, keepdim=True)


def co_refine(p1: torch.Tensor, p2: torch.Tensor, onehot: torch.Tensor, w: torch.Tensor, T: float) -> torch.Tensor:
    """Labelled target: clean probability w weighs the given label against the network's own two-view guess."""
    w = w.view(-1, 1)
    return sharpen(w * onehot + (1 - w) * (p1 + p2) / 2, T)


def co_guess(probs: list, T: float) -> torch.Tensor:
    """Unlabelled target: mean of both networks' predictions on both views, sharpened."""
    return sharpen(sum(probs) / len(probs), T)


def mixmatch_lambda(rng: np.random.Generator, alpha: float) -> float:
    """lambda ~ Beta(alpha, alpha), folded to >= 0.5 so each mixed sample stays closer to its own input."""
    lam = float(rng.beta(alpha, alpha))
    return max(lam, 1.0 - lam)


def lambda_u_ramp(current: float, warmup: int, lambda_u: float, rampup: int = 16) -> float:
    """lambda_u * clip((current - warmup) / rampup, 0, 1): the unlabelled loss fades in after warm-up."""
    return lambda_u * float(np.clip((current - warmup) / rampup, 0.0, 1.0))


def semi_loss(logits_x, targets_x, logits_u, targets_u):
    """(CE with soft targets on the labelled part, mean squared error of probabilities on the unlabelled part)."""
    lx = -(F.log_softmax(logits_x, dim=1) * targets_x).sum(dim=1).mean()
    lu = ((torch.softmax(logits_u, dim=1) - targets_u) ** 2).mean()
    return lx, lu


def prior_penalty(logits: torch.Tensor) -> torch.Tensor:
    """sum pi log(pi / mean p) with a uniform prior pi: keeps the batch from collapsing onto one class."""
    k = logits.shape[1]
    prior = torch.full((k,), 1.0 / k, device=logits.device)
    mean_p = torch.softmax(logits, dim=1).mean(0)
    return (prior * torch.log(prior / mean_p)).sum()


def neg_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Mean negative entropy: the warm-up's confidence penalty against asymmetric noise."""
    p = torch.softmax(logits, dim=1)
    return (p * torch.log_softmax(logits, dim=1)).sum(dim=1).mean()


def check_options(opts: dict, params: dict) -> dict:
    opts = dict(opts)
    if opts["loss_window"] is None:  # the original averages the last 5 epochs' losses at noise 0.9
        opts["loss_window"] = 5 if params["noise_rate"] >= 0.9 else 1
    if opts["confidence_penalty"] is None:  # the original penalises confidence for asymmetric noise only
        opts["confidence_penalty"] = params["noise_kind"] not in ("symmetric", "symmetric_exclusive")
    return opts


def state(ctx) -> dict:
    return {"loss_history": [[] for _ in ctx.nets]}


def train_epoch(ctx, epoch: int, st: dict) -> dict:
    o = ctx.options
    if epoch < o["warmup_epochs"]:
        losses = [_warmup(ctx, k, epoch) for k in range(2)]
        return {"loss": sum(losses) / 2}
    probs = []
    for k in range(2):
        hist = st["loss_history"][k]
        hist.append(normalize_losses(ctx.train_losses(k)).astype(np.float32))
        del hist[:-o["loss_window"]]
        seed = int(np.random.SeedSequence([ctx.seed, epoch, k]).generate_state(1)[0] >> 1)
        probs.append(clean_probability(np.mean(hist, axis=0), seed))
    labelled = [divide(p, o["p_threshold"], ctx.batch_size) for p in probs]
    losses = [_train(ctx, k, labelled[1 - k], probs[1 - k], epoch) for k in range(2)]  # co-divide
    return {"loss": sum(losses) / 2, "selected": labelled[0].astype(np.float64), "score": probs[0],
            "selection": probs[0].astype(np.float32)}


def suspicion(ctx) -> np.ndarray:
    """1 - the clean probability of network A's final normalised losses (its co-divide step, once more)."""
    return 1.0 - clean_probability(normalize_losses(ctx.train_losses(0)), ctx.seed)


def _warmup(ctx, k: int, epoch: int) -> float:
    """Plain CE on every sample (batch twice the training batch, as in the reference), class-weighted with
    class_weights "balanced"; the division and the MixMatch terms are not (docs/records.md)."""
    net, opt = ctx.nets[k], ctx.optimizers[k]
    loader = ctx.loader(ctx.train_idx, ctx.labels, key=(epoch, k, 0), batch_size=2 * ctx.batch_size)
    total = torch.zeros((), device=ctx.device)
    for _, x, y in loader:
        with ctx.autocast():
            logits = net(ctx.view(x)).float()
        loss = F.cross_entropy(logits, y, weight=ctx.loss_weights())
        if ctx.options["confidence_penalty"]:
            loss = loss + neg_entropy(logits)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total += loss.detach()
    return float(total) / len(loader)


def _cycle(ctx, indices, key: tuple):
    """Endless batches over `indices`, reshuffled on every pass (the unlabelled set is the smaller one)."""
    for p in itertools.count():
        yield from ctx.loader(indices, key=(*key, p), drop_last=False)


def _train(ctx, k: int, labelled: np.ndarray, prob: np.ndarray, epoch: int) -> float:
    """One epoch of network k on the division made by the other network (over its labelled set)."""
    o, net, opt = ctx.options, ctx.nets[k], ctx.optimizers[k]
    w_all = np.zeros(len(ctx.labels), dtype=np.float32)
    w_all[ctx.train_idx] = prob
    lab = ctx.loader(ctx.train_idx[labelled], ctx.labels, w_all, key=(epoch, k, 1), drop_last=False)
    total = torch.zeros((), device=ctx.device)
    with eval_mode(ctx.nets[1 - k]) as other, closing(_cycle(ctx, ctx.train_idx[~labelled], (epoch, k, 2))) as unl:
        for i, (_, xl, yl, wl) in enumerate(lab):
            _, xu = next(unl)
            bl, bu = xl.shape[0], xu.shape[0]
            with torch.no_grad():
                views = torch.cat([ctx.view(xl), ctx.view(xl), ctx.view(xu), ctx.view(xu)])
                with ctx.autocast():
                    own = torch.softmax(net(views).float(), dim=1)          # train mode, as the reference
                    guess = torch.softmax(other(views[2 * bl:]).float(), dim=1)
                px1, px2, pu1, pu2 = own.split([bl, bl, bu, bu])
                tx = co_refine(px1, px2, F.one_hot(yl, ctx.num_classes).float(), wl, o["T"])
                tu = co_guess([pu1, pu2, *guess.chunk(2)], o["T"])
                targets = torch.cat([tx, tx, tu, tu])
            lam = mixmatch_lambda(ctx.rng, o["alpha"])
            perm = torch.randperm(views.shape[0], generator=ctx.gen, device=ctx.device)
            mixed = lam * views + (1 - lam) * views[perm]
            mixed_targets = lam * targets + (1 - lam) * targets[perm]
            with ctx.autocast():
                logits = net(mixed).float()
            lx, lu = semi_loss(logits[:2 * bl], mixed_targets[:2 * bl], logits[2 * bl:], mixed_targets[2 * bl:])
            ramp = lambda_u_ramp(epoch + i / len(lab), o["warmup_epochs"], o["lambda_u"], o["rampup_epochs"])
            loss = lx + ramp * lu + prior_penalty(logits)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach()
    return float(total) / len(lab)


METHOD = Method(name="dividemix", networks=2, reported="ensemble", lr=0.02, batch_size=64, options=OPTIONS,
                optimizers=sgd, schedule=step_schedule, train_epoch=train_epoch, check_options=check_options,
                state=state, suspicion=suspicion)
