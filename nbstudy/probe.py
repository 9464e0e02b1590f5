"""How good is a frozen backbone? k-NN accuracy of its features on the clean labels.

The training images' features are the memory bank, the test images the queries; cosine
similarity, the k nearest neighbours vote with weight exp(similarity / temperature)
(Wu et al. 2018, the usual SSL monitor), or by plain majority with temperature=None.
It needs no training, so it can run every few epochs; a random-init backbone gives the
baseline figure. Ties go to the lowest class index.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nbstudy.evaluate import predict


def knn_predict(bank: torch.Tensor, bank_labels: torch.Tensor, queries: torch.Tensor, num_classes: int,
                k: int = 20, temperature: float | None = 0.07, chunk: int = 1024) -> torch.Tensor:
    """Predicted class of each query (long tensor), from its k most cosine-similar bank rows."""
    bank = F.normalize(bank.float(), dim=1)
    queries = F.normalize(queries.float(), dim=1)
    bank_labels = torch.as_tensor(bank_labels, device=bank.device).long()
    k = min(int(k), len(bank))
    preds = []
    for q in queries.split(chunk):
        sim, idx = (q @ bank.T).topk(k, dim=1)
        weight = torch.ones_like(sim) if temperature is None else (sim / temperature).exp()
        votes = torch.zeros(len(q), num_classes, device=q.device).scatter_add_(1, bank_labels[idx], weight)
        preds.append(votes.argmax(1))
    return torch.cat(preds)


def knn_accuracy(backbone: torch.nn.Module, data, k: int = 20, temperature: float | None = 0.07,
                 device="cpu", batch_size: int = 256, precision: str = "auto") -> float:
    """k-NN test accuracy of `backbone`'s features on `data` (an nbstudy Dataset); the backbone's mode is restored.
    `precision`: the feature passes' autocast (`nbstudy.runtime.autocast`)."""
    was_training = backbone.training
    backbone.eval()
    try:
        bank = predict(backbone, data.train_images, data.mean, data.std, device, batch_size, precision=precision)
        queries = predict(backbone, data.test_images, data.mean, data.std, device, batch_size, precision=precision)
    finally:
        backbone.train(was_training)
    pred = knn_predict(bank, data.train_labels, queries, data.num_classes, k, temperature)
    return float((pred.numpy() == data.test_labels).mean())
