"""Batches straight from a uint8 image array (in RAM or memory-mapped) to the device.

No per-image Python decode and no DataLoader workers: a batch is one fancy-index
gather on the host (indices sorted, which keeps memmap reads sequential), one
copy to the device as uint8 (gathered straight into pinned memory and copied
on a side stream on CUDA), and augmentation happens on the device, batched (see
`nbstudy.augment`). Background threads gather the next batches while the
current one computes.

The shuffle order is a pure function of (seed, epoch), so a resumed run sees the
same batches as an uninterrupted one.
"""

from __future__ import annotations

import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch


def epoch_order(n_or_indices, seed: int, epoch: int, shuffle: bool = True) -> np.ndarray:
    """The sample order of one epoch: same (seed, epoch), same order, on any machine."""
    idx = np.arange(n_or_indices) if np.isscalar(n_or_indices) else np.asarray(n_or_indices, dtype=np.int64)
    if not shuffle:
        return idx
    return idx[np.random.default_rng([int(seed), int(epoch)]).permutation(len(idx))]


class BatchLoader:
    """Iterate (indices, images, *arrays) batches on `device`.

    images: uint8 (N, H, W, 3). arrays: per-sample arrays (labels, weights...)
    gathered with the same indices. indices: the subset to iterate (default all).
    Images arrive as uint8 (B, 3, H, W) in channels_last memory order (a view of
    the NHWC bytes: no transpose on the host); use `augment.to_float` next.
    workers: threads gathering batches ahead (numpy releases the GIL while copying).
    """

    def __init__(self, images, *arrays, batch_size: int, shuffle: bool = False, seed: int = 0,
                 drop_last: bool = False, device="cpu", indices=None, workers: int | None = None):
        self.images = images
        self.arrays = arrays
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.device = torch.device(device)
        self.indices = np.arange(len(images)) if indices is None else np.asarray(indices, dtype=np.int64)
        self.workers = max(1, min(4, os.cpu_count() or 1) if workers is None else int(workers))
        self.epoch = 0
        self._stream = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        n = len(self.indices)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _chunks(self):
        order = epoch_order(self.indices, self.seed, self.epoch, self.shuffle)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            yield np.sort(order[start:start + self.batch_size])

    def _gather(self, idx: np.ndarray):
        """One batch on the host: straight into pinned memory on CUDA (torch's caching host allocator
        does not hand a buffer out again before the copy from it has finished)."""
        pin = self.device.type == "cuda"
        x = torch.empty((len(idx), *self.images.shape[1:]), dtype=torch.uint8, pin_memory=pin)
        np.take(self.images, idx, axis=0, out=x.numpy())
        host = [torch.from_numpy(idx)] + [torch.as_tensor(np.asarray(a)[idx]) for a in self.arrays]
        if pin:
            host = [t.pin_memory() for t in host]
        return x, host

    def _to_device(self, gathered):
        """On CUDA the copies run on a side stream, alongside the kernels still queued for the last batch."""
        x, host = gathered
        if self.device.type != "cuda":
            return (host[0], x.permute(0, 3, 1, 2), *host[1:])
        if self._stream is None:
            self._stream = torch.cuda.Stream(self.device)
        main = torch.cuda.current_stream(self.device)
        with torch.cuda.stream(self._stream):
            moved = [t.to(self.device, non_blocking=True) for t in (x, *host)]
        main.wait_stream(self._stream)
        for t in moved:
            t.record_stream(main)   # the allocator must not reuse this memory before main is done with it
        x, idx, *rest = moved
        return (idx, x.permute(0, 3, 1, 2), *rest)

    def __iter__(self):
        """Keep `workers` batches gathering while the current one is used."""
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            pending = deque()
            for chunk in self._chunks():
                pending.append(pool.submit(self._gather, chunk))
                if len(pending) > self.workers:
                    yield self._to_device(pending.popleft().result())
            while pending:
                yield self._to_device(pending.popleft().result())
