"""The noisy validation set a run picks its epoch on (the "validation pick" beside BEST and LAST), without test labels.

A user with noisy training labels has validation labels just as noisy, so the validation set keeps noisy labels:
- `val_split` "dataset" (or "auto" when the data set ships one, as MedMNIST, COVID-QU-Ex and an image folder with
  val/ do): the data set's own validation split, its labels corrupted with the training labels' noise kind and
  rate from a random stream of their own (the training labels are those of a run without it);
- "train" (or "auto" without one): `val_fraction` of the training images, held out with their noisy labels.
"""

from __future__ import annotations

import numpy as np

from nbstudy import noise
from nbstudy.errors import NbstudyError


def split(p: dict, ds) -> tuple:
    """(train_idx, val_idx, val_images, val_labels) for the resolved parameters `p` and dataset `ds`: positions
    into the training set trained on and held out (int64, sorted), and the own split's images and noisy labels
    (None when images are held out instead). A one-line NbstudyError when val_split is "dataset" and there is none."""
    n = len(ds.train_labels)
    has_own = ds.val_images is not None and len(ds.val_labels) > 0
    if p["val_split"] == "dataset" and not has_own:
        raise NbstudyError(f"val_split='dataset' but the {ds.name} data set has no validation split: use "
                           "val_split 'train' (val_fraction of the training images) or 'auto'")
    use_own = has_own and p["val_split"] != "train"
    n_val = 0 if use_own else int(round(p["val_fraction"] * n))
    order = np.random.default_rng([p["seed"], 1]).permutation(n)
    val_idx, train_idx = np.sort(order[:n_val]), np.sort(order[n_val:])
    if not use_own:
        return train_idx, val_idx, None, None
    seed = int(np.random.default_rng([p["seed"], 3]).integers(2 ** 31))
    labels = noise.corrupt_labels(np.asarray(ds.val_labels, dtype=np.int64), ds.num_classes, p["noise_rate"],
                                  p["noise_kind"], seed=seed, images=ds.val_images, **p["noise_options"])
    return train_idx, val_idx, ds.val_images, labels
