"""Where and how to compute: device choice, seeding, mixed precision.

On CUDA the defaults are bf16 autocast, channels_last and cudnn.benchmark (torch.compile
is a run parameter); on the CPU everything runs in fp32, so tests and laptops get the same
code path.
"""

from __future__ import annotations

import contextlib
import random

import numpy as np
import torch

from nbstudy.errors import NbstudyError


def resolve_device(device: str = "auto") -> torch.device:
    """'auto' takes CUDA when present, else the CPU; asking for CUDA without one is an error."""
    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise NbstudyError(f"unknown device {device!r}: use 'auto', 'cpu' or 'cuda'") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise NbstudyError(f"device {device!r} asked for but no CUDA GPU is visible: use device='cpu' or 'auto'")
    return dev


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch so that the same seed gives the same run."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def configure(device: torch.device, deterministic: bool = False) -> None:
    """Fast defaults on CUDA; `deterministic` trades speed for bit-identical reruns."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = not deterministic
        torch.backends.cudnn.deterministic = deterministic
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def autocast(device: torch.device, enabled: bool = True):
    """bf16 autocast on CUDA, a no-op elsewhere."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def compile_model(model: torch.nn.Module, enabled: bool) -> torch.nn.Module:
    """torch.compile the module's forward in place (its state_dict keys stay the same), if enabled.

    Worth it for long GPU runs: the first steps pay some tens of seconds of compilation.
    """
    if enabled:
        model.compile()
    return model


def prepare_model(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """Move to the device; channels_last on CUDA where convolutions prefer it."""
    model = model.to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    return model
