"""MoCo v2 (Chen, Fan, Girshick, He 2020): contrast a query with its momentum-encoded key and a queue of negatives.

Query encoder = backbone + MLP head; key encoder = its EMA copy (no gradient), moved after every
optimizer step: key <- m key + (1 - m) query. The queue is a FIFO of the last K normalised keys
(persistent buffers ``queue`` and ``queue_ptr``: checkpointed, so a resumed run goes on with the
same negatives). InfoNCE: for each query q with its key k+, -log softmax of q.k+ / T among
q.k+ / T and q.n / T for the K queued keys n. The queue starts as random unit vectors, as MoCo's.
With ``queue_size=0`` there is no queue: the negatives of a query are the keys of the batch's other
images (MoCo v3's loss, Chen, Xie, He, ICCV 2021, which dropped the queue; the positive is the key of
the same image's other view, as there).

Here the loss is symmetrised: each view is the query once and the other view's key the positive
(the mean of both directions), and both views' keys are queued; MoCo v2 used one direction, but
symmetrising uses both views' gradients, as SimCLR, BYOL and SimSiam here do (solo-learn's
"MoCo v2+" and MoCo v3 do the same). BatchNorm is not shuffled across the batch: on one device it
sees the whole batch, so MoCo's shuffle-BN (against leaks between per-GPU sub-batches) would change
nothing.

Defaults: temperature 0.2 (MoCo v2); head Linear 512 -> 512 -> ReLU -> Linear 128 (MoCo v2's
2-layer MLP head to 128, its hidden width equal to the backbone's features as with ResNet50's 2048;
lightly's ``MoCoProjectionHead``); momentum m = 0.99, not MoCo's 0.999: MoCo's ablation found 0.99
and 0.999 about equal on ImageNet, and at 0.999 the key encoder of a run of a few hundred steps
barely leaves its random init (solo-learn's CIFAR recipe starts at 0.99 too); queue 4096 keys
instead of 65,536: about the same share (5 %) of a 100k-image set as 65,536 is of ImageNet. Keep
the queue well below twice the number of training images, or an image's own old keys come back as
negatives. On the 600-image synthetic set at CPU scale (8-12 epochs) every queue tried (64 to 256
keys) makes the loss rise to its chance level ln(K + 1), and a key encoder with momentum 0.9 or 0.99
keeps it near chance even without a queue; ``queue_size=0, momentum=0`` learns there (the CPU
acceptance setting; docs/pretraining.md, "Third search"). Momentum 0 makes the key encoder the query
encoder without gradient (a point of MoCo v3's momentum ablation): the keys are then the queries,
detached, and the key encoder's forward pass is skipped.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from lightly.models.modules.heads import MoCoProjectionHead
from lightly.models.utils import update_momentum

from nbstudy.params import Param, real, whole
from nbstudy.pretrain.twoview import VIEW_OPTIONS, TwoViewMethod, momentum_copy


def moco_logits(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, temperature: float) -> torch.Tensor:
    """(N, 1 + K) logits of queries q (N, D) against their keys k (N, D), column 0, and the K queued keys
    (queue (K, D), unit rows), over the temperature; q and k are normalised here, k gets no gradient."""
    q, k = F.normalize(q, dim=1), F.normalize(k.detach(), dim=1)
    return torch.cat([(q * k).sum(1, keepdim=True), q @ queue.detach().T], dim=1) / temperature


def in_batch_logits(q: torch.Tensor, k: torch.Tensor, temperature: float) -> torch.Tensor:
    """(N, N) logits of queries q (N, D) against the keys k (N, D) of the same batch, over the temperature (MoCo
    v3): row i's positive is k_i (the diagonal), the other images' keys are its negatives; q and k are normalised
    here, k gets no gradient."""
    return F.normalize(q, dim=1) @ F.normalize(k.detach(), dim=1).T / temperature


def info_nce(logits: torch.Tensor, positive: torch.Tensor | None = None) -> torch.Tensor:
    """InfoNCE: mean over the rows of -log softmax of each row's positive column (`positive`, (N,) long; None:
    column 0, as `moco_logits` puts it)."""
    if positive is None:
        positive = torch.zeros(len(logits), dtype=torch.long, device=logits.device)
    return F.cross_entropy(logits, positive)


@torch.no_grad()
def enqueue(queue: torch.Tensor, ptr: torch.Tensor, keys: torch.Tensor) -> None:
    """Write keys (n, D) into the FIFO queue (K, D) in place from row `ptr` (a 0-d long tensor) on, wrapping
    around, and advance ptr; if n > K only the last K keys are kept. Stays on the device (no sync)."""
    keys = keys[-len(queue):]
    rows = (ptr + torch.arange(len(keys), device=queue.device)) % len(queue)
    queue[rows] = keys.to(queue.dtype)
    ptr.copy_((ptr + len(keys)) % len(queue))


class MoCo(TwoViewMethod):
    name = "moco"
    options = {
        "temperature": Param(0.2, real(0, low_open=True), "InfoNCE temperature (MoCo v2: 0.2)"),
        "queue_size": Param(4096, whole(0), "queued negative keys K (paper: 65536 for ImageNet); keep it "
                            "well below 2x the training images; 0: no queue, the batch's other keys are the "
                            "negatives (MoCo v3)"),
        "momentum": Param(0.99, real(0, 1), "EMA momentum m of the key encoder (paper: 0.999; 0.99 suits "
                          "short runs; 0: the keys are the queries without gradient)"),
        "out_dim": Param(128, whole(1), "output width of the MLP head (MoCo v2: 128)"),
        **VIEW_OPTIONS,
    }

    def __init__(self, backbone, mean, std, resolution: int, temperature: float = 0.2, queue_size: int = 4096,
                 momentum: float = 0.99, out_dim: int = 128, views: str = "auto", view_options: dict | None = None):
        super().__init__(backbone, mean, std, resolution, views, view_options)
        self.temperature, self.momentum = float(temperature), float(momentum)
        self.head = MoCoProjectionHead(backbone.feature_dim, backbone.feature_dim, out_dim)
        self.key_backbone = momentum_copy(self.backbone)
        self.key_head = momentum_copy(self.head)
        self.register_buffer("queue", F.normalize(torch.randn(queue_size, out_dim), dim=1))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))

    def forward(self, inputs):
        """(2B, 3, H, W) views -> (queries, keys), each (2B, out_dim), not normalised."""
        x = self.normalize(inputs)
        q = self.head(self.backbone(x))
        if self.momentum == 0:      # the key encoder is the query encoder: the same forward pass, without gradient
            return q, q.detach()
        with torch.no_grad():
            k = self.key_head(self.key_backbone(x))
        return q, k

    def loss(self, outputs, targets=None):
        """Symmetrised InfoNCE against the queue (or, queue_size 0, the batch's other keys), and the fraction of
        queries whose positive key scores highest; in training, both views' keys are then queued (after the
        logits, as MoCo does)."""
        q, k = (o.float() for o in outputs)
        (q0, q1), (k0, k1) = q.chunk(2), k.chunk(2)
        if len(self.queue) == 0:
            logits = torch.cat([in_batch_logits(q0, k1, self.temperature), in_batch_logits(q1, k0, self.temperature)])
            positive = torch.arange(len(q0), device=q.device).repeat(2)
            return info_nce(logits, positive), (logits.argmax(1) == positive).float().mean()
        queue = self.queue.clone()                 # enqueue() below writes the buffer the backward pass needs
        logits = torch.cat([moco_logits(q0, k1, queue, self.temperature), moco_logits(q1, k0, queue, self.temperature)])
        loss = info_nce(logits)    # the mean of both directions: they have the same number of rows
        if self.training:
            enqueue(self.queue, self.queue_ptr, F.normalize(k, dim=1))
        return loss, (logits.argmax(1) == 0).float().mean()

    def after_step(self, step, total_steps):
        """Move the key encoder towards the query encoder (constant momentum, as MoCo)."""
        update_momentum(self.backbone, self.key_backbone, self.momentum)
        update_momentum(self.head, self.key_head, self.momentum)
