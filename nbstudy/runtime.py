"""Where and how to compute: device choice, seeding, mixed precision.

On CUDA the defaults are bf16 autocast, channels_last and cudnn.benchmark (torch.compile
is a run parameter); on the CPU everything runs in fp32, so tests and laptops get the same
code path. The `precision` run parameter overrides the autocast: fp32 on a GPU too, or bf16
on a CPU, where a ResNet18 step was 1.25-1.5x as fast on an AMD EPYC (Zen 4, AVX512-BF16) and
1.5x slower on an Intel Xeon (docs/benchmarks.md, "Where a CPU training step goes").
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


PRECISIONS = ("auto", "fp32", "bf16")


def resolve_precision(precision: str, device: torch.device) -> str:
    """The precision a run computes in on `device`: 'bf16' or 'fp32' ('auto': bf16 on CUDA, fp32 elsewhere)."""
    if precision not in PRECISIONS:
        raise NbstudyError(f"unknown precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return precision


def autocast(device: torch.device, precision: str = "auto"):
    """bf16 autocast on `device` where `precision` resolves to bf16 (`resolve_precision`), else a no-op:
    the forward passes inside run their matmuls and convolutions in bf16, the weights and the optimiser
    stay fp32."""
    if resolve_precision(precision, device) == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
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
