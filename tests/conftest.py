"""Shared test settings.

OMP_WAIT_POLICY=PASSIVE: PyTorch's OpenMP threads otherwise spin while waiting,
which on a small shared CPU (CI has 2 cores) slows training steps many times over.
Set before torch is imported; notebook kernels started by the tests inherit it.
"""

import os

import pytest

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@pytest.fixture
def one_torch_thread():
    """One torch thread: results repeat bit for bit only at a fixed thread count, and one is fastest on a busy CPU."""
    yield from _one_thread()


@pytest.fixture(scope="module")
def one_torch_thread_module():
    """one_torch_thread for a module-scoped fixture (a whole training run shared by several tests)."""
    yield from _one_thread()


def _one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
