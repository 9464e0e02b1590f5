"""Plain cross-entropy on the noisy labels: the baseline that memorises them.

Optimiser and schedule are DivideMix's reference ones (SGD, momentum 0.9,
weight decay 5e-4, lr 0.02, divided by 10 at half of training), so CE is
DivideMix without its noise handling. `optimizer="adam"` swaps in Adam (same
schedule; pass its lr too), which trains small sets from scratch more steadily.
With class_weights "balanced" each class's loss is weighted (`Context.loss_weights`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nbstudy.lnl.base import Method, set_lr
from nbstudy.params import Param, one_of, real

# The reference optimiser's options, shared with DivideMix.
SGD_OPTIONS = {
    "optimizer": Param("sgd", one_of("sgd", "adam"), "sgd (the reference) or adam (same schedule; pass its lr)"),
    "momentum": Param(0.9, real(0, 0.999), "SGD momentum"),
    "weight_decay": Param(5e-4, real(0, 1), "weight decay"),
}


def sgd(ctx) -> list:
    """One optimiser per network: SGD with the method's momentum and weight decay (or Adam, if asked)."""
    o = ctx.options
    if o["optimizer"] == "adam":
        return [torch.optim.Adam(net.parameters(), lr=ctx.lr, weight_decay=o["weight_decay"], fused=ctx.fused)
                for net in ctx.nets]
    return [torch.optim.SGD(net.parameters(), lr=ctx.lr, momentum=o["momentum"], weight_decay=o["weight_decay"],
                            fused=ctx.fused) for net in ctx.nets]


def step_lr(epoch: int, epochs: int, lr: float) -> float:
    """The reference step schedule: lr until half of training, lr / 10 after."""
    return lr / 10 if epoch >= epochs // 2 else lr


def step_schedule(ctx, epoch: int) -> float:
    lr = step_lr(epoch, ctx.epochs, ctx.lr)
    set_lr(ctx.optimizers, lr)
    return lr


def train_epoch(ctx, epoch: int, state: dict) -> dict:
    net, opt = ctx.nets[0], ctx.optimizers[0]
    loader = ctx.loader(ctx.train_idx, ctx.labels, key=(epoch, 0))
    total = torch.zeros((), device=ctx.device)
    for _, x, y in loader:
        with ctx.autocast():
            logits = net(ctx.view(x))
        loss = F.cross_entropy(logits.float(), y, weight=ctx.loss_weights())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total += loss.detach()
    return {"loss": float(total) / len(loader)}


METHOD = Method(name="ce", networks=1, reported="A", lr=0.02, batch_size=128, options=SGD_OPTIONS,
                optimizers=sgd, schedule=step_schedule, train_epoch=train_epoch)
