"""Resuming a killed run, the same way for both stages: an atomic checkpoint keyed by the run's parameters.

A stage saves ``save_state(path, key, ...)`` after an epoch: the networks,
optimisers, history and every random stream (`rng_state`), with the run's `key`
(its parameters less the run-only ones, `run_key`). Started again,
``load_state(path, key)`` gives that state back, or None when there is none; a
checkpoint of a run with other parameters, or a damaged one, is a one-line
error that names what differs and how to go on.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import torch

from nbstudy.checkpoint import save_atomic
from nbstudy.errors import NbstudyError
from nbstudy.plain import plain

FORMAT = "nbstudy-run-state/1"


def run_key(params: dict, run_only, **extra) -> dict:
    """The parameters that decide the results (JSON form, so a saved key compares equal), plus `extra` facts."""
    kept = {k: v for k, v in params.items() if k not in run_only}
    return json.loads(json.dumps(plain({"params": kept, **extra}), default=str))


def rng_state(*generators) -> dict:
    """Every global random stream, and those of the given torch generators."""
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "generators": [g.get_state() for g in generators]}


def set_rng_state(state: dict, *generators) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    for g, s in zip(generators, state["generators"]):
        g.set_state(s)


def save_state(path, key: dict, **state) -> Path:
    """Write the run's state atomically (a kill mid-write leaves the previous checkpoint whole)."""
    return save_atomic({"format": FORMAT, "key": key, **state}, path)


def load_state(path, key: dict) -> dict | None:
    """The state saved at `path` for the run `key`; None when there is no checkpoint."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # atomic writes cannot tear a file, but a copy or a full disk can
        raise NbstudyError(f"checkpoint {path} cannot be read ({type(exc).__name__}): delete it to start the run "
                           "afresh") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise NbstudyError(f"{path} is not an nbstudy run checkpoint: delete it or use another output_dir")
    if state["key"] != key:
        raise NbstudyError(f"{path} belongs to a run with other {describe_difference(state['key'], key)}: use another "
                           "output_dir, or delete the checkpoint to start afresh")
    return state


def describe_difference(old: dict, new: dict) -> str:
    """'parameters (lr: 0.1 there, 0.01 now)' for two run keys."""
    old_p, new_p = old.get("params", {}), new.get("params", {})
    diff = [k for k in dict.fromkeys([*new_p, *old_p]) if old_p.get(k) != new_p.get(k)]
    if diff:
        return "parameters (" + ", ".join(f"{k}: {old_p.get(k)!r} there, {new_p.get(k)!r} now" for k in diff[:3]) + ")"
    return ", ".join(k for k in dict.fromkeys([*new, *old]) if old.get(k) != new.get(k)) or "contents"


def remove_stale_temps(out: Path, names) -> None:
    """A run killed while writing leaves atomic_write's temporary files behind: remove those of `names`."""
    for name in names:
        for tmp in Path(out).glob(f".{name}.*.tmp"):
            tmp.unlink(missing_ok=True)
