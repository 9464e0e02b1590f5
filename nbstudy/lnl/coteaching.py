"""Co-teaching (Han et al., NeurIPS 2018): two networks teach each other which labels to trust.

Per batch each network ranks the samples by its own loss and keeps the
(1 - forget_rate(t)) smallest (small loss ~ probably clean); network A is
updated on the samples B kept and B on those A kept, so their different
mistakes do not reinforce themselves. forget_rate(t) ramps linearly from 0 to
tau over the first num_gradual epochs. tau defaults to the fraction of labels the
noise is expected to make wrong (`noise.expected_noise_rate`): the rate itself for
Co-teaching's own convention (symmetric_exclusive), r (K - 1) / K for DivideMix's
symmetric noise, which can redraw the true class. Forgetting the nominal rate
there throws away right labels: on the synthetic set at symmetric 0.6 (0.45 wrong)
tau = 0.6 gave 0.50 test accuracy after 20 epochs, tau = 0.45 gave 0.75.

Optimiser as in the official code: Adam lr 1e-3; from `decay_start` (a
fraction of training; 80 of 200 epochs officially) the lr decays linearly
towards 0 and Adam's beta1 drops from 0.9 to 0.1. Unlike the official code
the loss is a plain mean over the kept samples (the official one divides the
mean by the kept count again); with class_weights "balanced" it is the mean
weighted by the kept samples' class weights, the selection still on plain losses. The reported accuracy is network A's; B's and
the ensemble's are in the history too.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from nbstudy.lnl.base import Method, set_lr
from nbstudy.params import Param, optional, real, whole

OPTIONS = {
    "forget_rate": Param(None, optional(real(0, 0.99), "the expected fraction of wrong labels"),
                         "tau, the fraction of large-loss samples dropped once the ramp is over"),
    "num_gradual": Param(10, whole(1), "epochs over which the forget rate ramps up from 0 (Tk)"),
    "decay_start": Param(0.4, real(0, 1), "fraction of epochs after which lr decays to 0 and beta1 = 0.1 "
                         "(80/200 officially)"),
}


def forget_rate_schedule(epoch: int, forget_rate: float, num_gradual: int) -> float:
    """0 at epoch 0, linear to `forget_rate` at epoch num_gradual - 1 (the official np.linspace), flat after."""
    if num_gradual <= 1:
        return float(forget_rate)
    return float(forget_rate) * min(epoch / (num_gradual - 1), 1.0)


def small_loss_indices(losses: torch.Tensor, forget_rate: float) -> torch.Tensor:
    """Indices of the int((1 - forget_rate) * n) smallest losses (at least one), smallest first."""
    keep = max(1, int((1.0 - forget_rate) * losses.numel()))
    return torch.argsort(losses, stable=True)[:keep]


def coteaching_losses(loss_a: torch.Tensor, loss_b: torch.Tensor, forget_rate: float, weight=None):
    """Cross update from per-sample losses: A learns from what B kept, B from what A kept.

    `weight`: (n,) per-sample weights of the update (the class weights of the labels), None: a plain mean; the
    selection always ranks the unweighted losses, so a weighted class is not dropped for its larger loss.
    Returns (loss for A, loss for B, indices A kept, indices B kept)."""
    keep_a = small_loss_indices(loss_a.detach(), forget_rate)
    keep_b = small_loss_indices(loss_b.detach(), forget_rate)
    return _mean(loss_a, keep_b, weight), _mean(loss_b, keep_a, weight), keep_a, keep_b


def _mean(loss: torch.Tensor, keep: torch.Tensor, weight) -> torch.Tensor:
    """Mean of loss[keep], weighted by weight[keep] when given."""
    if weight is None:
        return loss[keep].mean()
    return (loss[keep] * weight[keep]).sum() / weight[keep].sum()


def adam_schedule(epoch: int, epochs: int, lr: float, decay_start: float) -> tuple[float, float]:
    """(lr, beta1) of an epoch: constant, then linear decay with beta1 = 0.1 from int(decay_start * epochs) on."""
    start = int(decay_start * epochs)
    if epoch < start:
        return lr, 0.9
    return lr * (epochs - epoch) / (epochs - start), 0.1


def optimizers(ctx) -> list:
    return [torch.optim.Adam(net.parameters(), lr=ctx.lr, fused=ctx.fused) for net in ctx.nets]


def schedule(ctx, epoch: int) -> float:
    lr, beta1 = adam_schedule(epoch, ctx.epochs, ctx.lr, ctx.options["decay_start"])
    set_lr(ctx.optimizers, lr, betas=(beta1, 0.999))
    return lr


def check_options(opts: dict, params: dict) -> dict:
    """forget_rate None: tau = the fraction of wrong labels the noise is expected to make (Co-teaching's
    "noise rate"), filled in once the labels are known (`prepare` passes expected_noise_rate)."""
    if opts["forget_rate"] is None and "expected_noise_rate" in params:
        opts = {**opts, "forget_rate": round(min(float(params["expected_noise_rate"]), 0.99), 6)}
    return opts


def train_epoch(ctx, epoch: int, state: dict) -> dict:
    net_a, net_b = ctx.nets
    rate = forget_rate_schedule(epoch, ctx.options["forget_rate"], ctx.options["num_gradual"])
    n = len(ctx.train_idx)
    kept = torch.full((n,), float("nan"), device=ctx.device)   # A's small-loss selection
    score = torch.full((n,), float("nan"), device=ctx.device)  # -A's loss: the ranking A selects by
    loader = ctx.loader(ctx.train_idx, ctx.labels, key=(epoch, 0))
    total = torch.zeros((), device=ctx.device)
    for idx, x, y in loader:
        v = ctx.view(x)
        with ctx.autocast():
            logits_a, logits_b = net_a(v), net_b(v)
        ce_a = F.cross_entropy(logits_a.float(), y, reduction="none")
        ce_b = F.cross_entropy(logits_b.float(), y, reduction="none")
        w = ctx.loss_weights()
        loss_a, loss_b, keep_a, _ = coteaching_losses(ce_a, ce_b, rate, None if w is None else w[y])
        for opt in ctx.optimizers:
            opt.zero_grad(set_to_none=True)
        (loss_a + loss_b).backward()  # independent graphs: each network gets its own gradient
        for opt in ctx.optimizers:
            opt.step()
        pos = ctx.positions(idx)
        kept[pos] = 0.0
        kept[pos[keep_a]] = 1.0
        score[pos] = -ce_a.detach()
        total += (loss_a.detach() + loss_b.detach()) / 2
    kept_np = kept.cpu().numpy()
    return {"loss": float(total) / len(loader), "selected": kept_np, "score": score.cpu().numpy(),
            "selection": kept_np.astype(np.float32)}


METHOD = Method(name="coteaching", networks=2, reported="A", lr=1e-3, batch_size=128, options=OPTIONS,
                optimizers=optimizers, schedule=schedule, train_epoch=train_epoch, check_options=check_options)
