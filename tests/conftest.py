"""Shared test settings.

OMP_WAIT_POLICY=PASSIVE: PyTorch's OpenMP threads otherwise spin while waiting,
which on a small shared CPU (CI has 2 cores) slows training steps many times over.
Set before torch is imported; notebook kernels started by the tests inherit it.
"""

import fcntl
import os
import shutil

import pytest

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@pytest.fixture(scope="session")
def built_once(tmp_path_factory):
    """`built_once(name, build)`: a folder `build(folder)` fills once per pytest run, shared by every
    pytest-xdist worker. An expensive fixture (minutes of training) is made once even when its module's tests
    end up on both workers, or a worker tears a module fixture down between them. Returns the folder."""
    return lambda name, build: _built_once(tmp_path_factory, name, build)


def _built_once(tmp_path_factory, name: str, build):
    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base   # workers share the parent
    folder = root / f"once-{name}"
    with open(root / f"once-{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)   # the other worker waits here, then finds it built
        if not (folder / ".built").exists():
            shutil.rmtree(folder, ignore_errors=True)   # left by a build that failed
            folder.mkdir()
            build(folder)
            (folder / ".built").touch()
    return folder


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


# Longest first: `make test` hands whole modules to two pytest-xdist workers (--dist loadfile, in this order with
# --no-loadscope-reorder) and ends when the last one does, so the longest start at once (minutes of a loaded run,
# 2026-12-02: lnl_train 7.7, pretrain_learns 5.5, study_folder 4.9, cli 4, zoo_learns 3.5, ray 3.2).
SLOW_FIRST = ("test_lnl_train.py", "test_pretrain_learns.py", "test_pretrain_zoo_learns.py", "test_cli.py",
              "test_study_folder.py", "test_ray.py", "test_notebooks_analysis.py", "test_bad_input.py", "test_kernels.py",
              "test_classroom.py")


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(SLOW_FIRST)))   # stable: order within a file kept


def interrupt_pretraining(monkeypatch, epoch: int):
    """Make pretraining's train_epoch raise KeyboardInterrupt when epoch `epoch` (1-based) starts, as a killed run;
    returns the real train_epoch, to put back before resuming."""
    from nbstudy.pretrain import run as run_module

    real_epoch, calls = run_module.train_epoch, []

    def dies(*args, **kwargs):
        calls.append(1)
        if len(calls) == epoch:
            raise KeyboardInterrupt
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(run_module, "train_epoch", dies)
    return real_epoch
