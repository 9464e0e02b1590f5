"""Saving and loading: atomic writes, and backbone checkpoints that load strictly.

A backbone checkpoint is a dict saved with torch.save:
``{"format": "nbstudy-backbone/1", "arch": "resnet18" | "resnet50" | "vit_tiny", "small_stem": bool,
"resolution": int, "backbone": state_dict, ...metadata}`` (method, hparams,
dataset, epochs done, loss history, probe accuracy: whatever the writer adds).
Loading checks the architecture (checkpoints of before the other backbones say
resnet18, and are), stem and resolution before the weights, and
loads the weights with strict key checking: a mismatch is an error, never a
silently half-loaded network.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch
from torch import nn

from nbstudy.errors import NbstudyError

FORMAT = "nbstudy-backbone/1"


def atomic_write(path, write) -> Path:
    """Call write(tmp_path) then rename over `path`, so readers see the old or the new file, never half of one.

    The result is readable by all (0644), as a file written in place would be: the
    temporary file it replaces is its owner's only, and outputs are often shared.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def save_atomic(obj, path) -> Path:
    """torch.save, atomically."""
    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


def save_backbone(path, backbone: nn.Module, resolution: int, **metadata) -> Path:
    """Write a backbone checkpoint (weights on the CPU plus the metadata given)."""
    state = {k: v.detach().cpu() for k, v in backbone.state_dict().items()}
    ckpt = {"format": FORMAT, "arch": getattr(backbone, "arch", "resnet18"),
            "small_stem": bool(getattr(backbone, "small_stem", False)), "resolution": int(resolution), "backbone": state, **metadata}
    return save_atomic(ckpt, path)


def load_checkpoint(path) -> dict:
    """Read a backbone checkpoint, with one-line errors for missing or foreign files."""
    path = Path(path)
    if not path.is_file():
        raise NbstudyError(f"checkpoint {path} does not exist: give the path of a pretraining run's backbone file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises many types for a corrupt file
        raise NbstudyError(f"checkpoint {path} cannot be read ({type(exc).__name__}): it is corrupt or not a torch file") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise NbstudyError(f"{path} is not an nbstudy backbone checkpoint: use the file a pretraining run wrote")
    return ckpt


def load_backbone(backbone: nn.Module, path, resolution: int | None = None) -> dict:
    """Load a checkpoint's weights into `backbone` strictly; return the checkpoint's metadata."""
    ckpt = load_checkpoint(path)
    stem = bool(getattr(backbone, "small_stem", False))
    arch = getattr(backbone, "arch", "resnet18")
    if ckpt.get("arch") != arch:
        raise NbstudyError(f"checkpoint {path} holds a {ckpt.get('arch')} backbone but this run builds a {arch}: set "
                           f"backbone: {ckpt.get('arch')} to use it, or pretrain a {arch}")
    if ckpt["small_stem"] != stem:
        want = "small (3x3, no max-pool)" if stem else "imagenet (7x7 + max-pool)"
        raise NbstudyError(f"checkpoint {path} was pretrained with the other stem; this run uses the {want} stem: "
                           "set stem to match the pretraining run")
    if resolution is not None and int(ckpt["resolution"]) != int(resolution):
        raise NbstudyError(f"checkpoint {path} was pretrained at {ckpt['resolution']} px but this run uses {resolution} px: "
                           "use the same resolution")
    missing, unexpected = _key_diff(backbone.state_dict(), ckpt["backbone"])
    if missing or unexpected:
        raise NbstudyError(f"checkpoint {path} does not fit a {arch} backbone: {len(missing)} missing keys "
                           f"(e.g. {missing[:2]}), {len(unexpected)} unexpected (e.g. {unexpected[:2]})")
    try:
        backbone.load_state_dict(ckpt["backbone"], strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[1:2] or [str(exc)]
        raise NbstudyError(f"checkpoint {path} has weights of the wrong shape: {first[0].strip()}") from None
    return {k: v for k, v in ckpt.items() if k != "backbone"}


def _key_diff(model_state: dict, ckpt_state: dict):
    want, have = set(model_state), set(ckpt_state)
    return sorted(want - have), sorted(have - want)
