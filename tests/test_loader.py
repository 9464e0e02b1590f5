import numpy as np
import torch

from nbstudy import augment
from nbstudy.loader import BatchLoader, epoch_order


def _images(n=10, side=4):
    x = np.zeros((n, side, side, 3), np.uint8)
    x[:, 0, 0, 0] = np.arange(n)  # each image carries its own index
    return x


def test_batches_cover_each_sample_once_with_matching_arrays():
    imgs, labels = _images(10), np.arange(10) * 10
    loader = BatchLoader(imgs, labels, batch_size=4, shuffle=True, seed=3)
    seen = []
    for idx, x, y in loader:
        assert x.dtype == torch.uint8 and x.shape[1:] == (3, 4, 4)
        assert torch.equal(x[:, 0, 0, 0].long(), idx) and torch.equal(y, idx * 10)
        seen += idx.tolist()
    assert sorted(seen) == list(range(10)) and len(loader) == 3


def test_order_depends_on_seed_and_epoch_only():
    assert np.array_equal(epoch_order(50, 1, 2), epoch_order(50, 1, 2))
    assert not np.array_equal(epoch_order(50, 1, 2), epoch_order(50, 1, 3))
    assert np.array_equal(epoch_order(5, 1, 2, shuffle=False), np.arange(5))


def test_subset_and_drop_last():
    loader = BatchLoader(_images(10), batch_size=3, drop_last=True, indices=[1, 3, 5, 7, 9])
    batches = [idx.tolist() for idx, _ in loader]
    assert batches == [[1, 3, 5]]


def test_memmap_source(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, _images(6))
    mm = np.load(path, mmap_mode="r")
    got = torch.cat([x[:, 0, 0, 0] for _, x in BatchLoader(mm, batch_size=4)])
    assert got.tolist() == list(range(6))


def test_weak_augmentation_keeps_shape_and_content_range():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(16, 3, 8, 8)
    y = augment.weak(x, generator=g, padding=2)
    assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1
    # a crop of reflect-padded image at offset (pad, pad) without flip is the identity: some samples should differ
    assert not torch.equal(x, y)
    flipped = augment.random_hflip(x, p=1.0, generator=g)
    assert torch.equal(flipped, x.flip(-1))
    assert torch.equal(augment.random_crop(x, 0, g), x)


def test_same_batches_whatever_the_number_of_gather_threads():
    imgs = np.random.default_rng(0).integers(0, 256, (23, 5, 5, 3), dtype=np.uint8)
    runs = [[(i.tolist(), x.clone()) for i, x in BatchLoader(imgs, batch_size=4, shuffle=True, seed=1, workers=w)]
            for w in (1, 3)]
    assert [i for i, _ in runs[0]] == [i for i, _ in runs[1]]
    assert all(torch.equal(a, b) for (_, a), (_, b) in zip(*runs))
    _, x = runs[0][0]
    assert torch.equal(x, torch.from_numpy(imgs[runs[0][0][0]]).permute(0, 3, 1, 2))   # NCHW view of NHWC bytes
