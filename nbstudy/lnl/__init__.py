"""Stage 2: train a classifier on noisily labelled data with CE, Co-teaching or DivideMix.

    from nbstudy.lnl import train_noisy
    final = train_noisy(method="dividemix", noise_rate=0.6, epochs=100, output_dir="outputs/train/dm")

`train_noisy` takes the parameters of `PARAMS` (`params.py`; a dict, keywords,
or both), writes the run's records to output_dir (see `records` and
docs/records.md) and returns its `final` metrics. `prepare` + `train` do the same
in two steps, so a notebook can show the data and the noise before training.
"""

from __future__ import annotations

from nbstudy.lnl.base import Setup
from nbstudy.lnl.loop import prepare, train
from nbstudy.lnl.params import DEFAULTS, PARAMS, resolve
from nbstudy.lnl.records import load_records, selection_metrics
from nbstudy.lnl.registry import METHODS


def train_noisy(params: dict | None = None, **kwargs) -> dict:
    """Train with noisy labels from a parameter dict and/or keywords; return the final metrics."""
    return train(prepare(params, **kwargs))


__all__ = ["METHODS", "PARAMS", "DEFAULTS", "resolve", "Setup", "prepare", "train", "train_noisy", "load_records",
           "selection_metrics"]
