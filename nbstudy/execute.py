"""Execute one run's notebook with papermill, and record whether it finished.

A run counts as finished only when `<folder>/status.json` says so, carries
the run's key, and the files its stage promises are whole: their sizes and
SHA-256 are recorded in status.json when the run finishes and checked whenever
the study looks at the run again. status.json is written atomically when the
run starts ("running") and again when the notebook completed. So a run killed
at any moment, even one redone after it had finished, is never taken for
finished, and a damaged file (truncated, emptied, garbled) gets its run redone
with a one-line warning. A run holds a lock (`run_lock`) while it runs, so two
processes on one study folder never run it twice. A failed run records its error as one line and the path of
its executed notebook, which shows the failing cell.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import logging
import socket
import sys
import threading
import time
from pathlib import Path

import papermill
import yaml

from nbstudy.errors import NbstudyError
from nbstudy.kernels import KERNEL, KernelPool
from nbstudy.study import Run, check_name, write_text

WARNED = set()   # warnings already given
STAGE_OUTPUTS = {"pretrain": ("backbone.pt", "pretrain_metrics.json"),
                 "train": ("metrics.json", "records.npz", "suspects.csv"), "analysis": ()}


def notebook_parameters(notebook: Path) -> tuple:
    """Names in the notebook's cell tagged `parameters`."""
    if not notebook.is_file():
        raise NbstudyError(f"notebook {notebook} does not exist: pass --notebooks DIR pointing at nbstudy's notebooks")
    names = _inspect(notebook, notebook.stat().st_mtime_ns)
    if not names:
        raise NbstudyError(f"{notebook} has no cell tagged 'parameters': tag the cell that sets its parameters")
    return names


@functools.lru_cache(maxsize=None)
def _inspect(notebook: Path, mtime_ns: int) -> tuple:
    """Read once per version of the file, not once per run of a large grid."""
    return tuple(papermill.inspect_notebook(str(notebook)))


def check_parameters(run: Run) -> None:
    """Every parameter given must be one the notebook declares (papermill would only warn)."""
    declared = notebook_parameters(run.notebook)
    for name in run.params:
        check_name(name, declared, f"{run.notebook.name} (run {run.name})", "parameter")


def status(run: Run) -> dict | None:
    """The run's recorded status, or None when it has none; a damaged one (a power cut, a copy that broke off,
    an edit) is None too, with a one-line warning that names it."""
    path = run.folder / "status.json"
    if not path.is_file():
        return None
    try:
        recorded = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, ValueError):   # unreadable, not UTF-8, not JSON
        recorded = None
    if not isinstance(recorded, dict) or not isinstance(recorded.get("status"), str) or "key" not in recorded:
        warn(f"{path} is damaged: redoing {run.name}")
        return None
    return recorded


def fingerprint(path: Path) -> dict:
    """Size and SHA-256 of a file: what "whole" meant when its run finished."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return {"size": path.stat().st_size, "sha256": digest.hexdigest()}


def damaged_outputs(run: Run, recorded: dict) -> list:
    """The stage's output files that are missing or differ from what status.json recorded at the finish."""
    outputs = recorded.get("outputs")
    if not isinstance(outputs, dict):
        return list(STAGE_OUTPUTS[run.stage])
    damaged = []
    for name in STAGE_OUTPUTS[run.stage]:
        path = run.folder / name
        try:
            whole = path.is_file() and outputs.get(name) == fingerprint(path)
        except OSError:
            whole = False
        if not whole:
            damaged.append(name)
    return damaged


def is_finished(run: Run) -> bool:
    """Finished with this key and its stage's files whole (as recorded when it finished); a damaged file means
    the run is redone, with a one-line warning naming the file."""
    recorded = status(run)
    if not recorded or recorded["status"] != "finished" or recorded["key"] != run.key:
        return False
    damaged = damaged_outputs(run, recorded)
    if damaged:
        warn(f"{run.folder / damaged[0]} is missing or not as its run left it"
             f"{f' (and {len(damaged) - 1} more)' if len(damaged) > 1 else ''}: redoing {run.name}")
    return not damaged


def warn(message: str) -> None:
    """A one-line warning on stderr, once per message (a run is looked at more than once)."""
    if message not in WARNED:
        WARNED.add(message)
        print(f"nbstudy: warning: {message}", file=sys.stderr)


@contextlib.contextmanager
def run_lock(run: Run):
    """Hold the run's lock while it runs; yields True when another process held it first (and we waited).

    An fcntl lock on <folder>/.lock: the OS drops it when its holder dies, so a killed process's
    lock is taken over at once. Two studies on one folder (two terminals, a Slurm array, a local run
    next to a Ray run) therefore never run a run twice at the same time.
    """
    run.folder.mkdir(parents=True, exist_ok=True)
    with open(run.folder / ".lock", "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            waited = False
        except BlockingIOError:
            print(f"nbstudy: {run.name} is running in another process: waiting for it", file=sys.stderr)
            fcntl.flock(handle, fcntl.LOCK_EX)
            waited = True
        try:
            yield waited
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def execute(run: Run, kernels: KernelPool | None = None) -> dict:
    """Run the notebook into the run's folder; return the status written to status.json.

    With `kernels` (the local executor's pool), the run gets a kept kernel, reset; without (a Ray task), a kernel
    of its own.

    A run another process is running is waited for; if that process finished it, it is not run again
    (the result says `"by": "another process"`). Outputs left by an unfinished or damaged attempt are
    removed first, so a stage never reuses a broken file (its resumable checkpoint is kept).
    """
    with run_lock(run) as waited:
        if waited and is_finished(run):
            return {**status(run), "by": "another process"}
        for name in STAGE_OUTPUTS[run.stage]:
            (run.folder / name).unlink(missing_ok=True)
        for tmp in run.folder.glob(".*.tmp"):   # left by a process killed while it wrote
            tmp.unlink(missing_ok=True)
        return _execute(run, kernels)


def _execute(run: Run, kernels: KernelPool | None) -> dict:
    executed = run.folder / run.notebook.name
    start = time.time()
    write_text(run.folder / "status.json", json.dumps({"status": "running", "key": run.key, "error": None,
                                                       "notebook": str(executed), "host": socket.gethostname(),
                                                       "started": start}, indent=1))
    write_text(run.folder / "params.yaml", yaml.safe_dump(run.params, sort_keys=False))
    error, ended = None, "failed"
    try:
        _papermill(run, executed, kernels)
    except papermill.PapermillExecutionError as e:
        error = one_line(e.ename, e.evalue)
    except Exception as e:  # the kernel died, would not start, ...: the run failed, the study goes on
        error = one_line(type(e).__name__, str(e))
        if kernels is not None and kernels.stopping:   # Ctrl-C killed its kernel (nbstudy.kernels.stop_kernels)
            error, ended = "interrupted (Ctrl-C): the next run of the study redoes it", "interrupted"
    missing = [f for f in STAGE_OUTPUTS[run.stage] if not (run.folder / f).is_file()]
    if error is None and missing:
        error = f"the notebook finished without writing {', '.join(missing)}"
    result = {"status": ended if error else "finished", "key": run.key, "error": error,
              "notebook": str(executed), "seconds": round(time.time() - start, 1)}
    if not error:
        result["outputs"] = {name: fingerprint(run.folder / name) for name in STAGE_OUTPUTS[run.stage]}
    write_text(run.folder / "status.json", json.dumps(result, indent=1))
    return result


class _QuietWhenStopping(logging.Filter):
    """Drops nbclient's "Kernel died while waiting for execute reply." for a kernel a stopping study killed on
    purpose (Ctrl-C): the user is told once what happened, by `nbstudy.cli`. papermill hands nbclient its logger."""

    def filter(self, record: logging.LogRecord) -> bool:
        pool = getattr(_RUNNING_IN, "pool", None)
        return not (pool is not None and pool.stopping and record.getMessage().startswith("Kernel died"))


_RUNNING_IN = threading.local()   # the kernel pool of the run this thread executes
logging.getLogger("papermill").addFilter(_QuietWhenStopping())


def _papermill(run: Run, executed: Path, kernels: KernelPool | None) -> None:
    """Execute the notebook in a kernel from the pool, or (kernels None: a Ray task) in a one-off pool's kernel,
    closed after the run: one way to start, retry and reset a kernel for both executors."""
    pool = kernels if kernels is not None else KernelPool()
    _RUNNING_IN.pool = pool
    try:
        with pool.kernel(run.notebook) as kernel:
            papermill.execute_notebook(str(run.notebook), str(executed), km=kernel.manager, parameters=run.params,
                                       kernel_name=KERNEL, progress_bar=False)
    finally:
        if kernels is None:
            pool.close()


def one_line(name: str, message: str) -> str:
    """An error for the study's summary: a user error's own message, else its type and first line."""
    first = next((line.strip() for line in str(message).splitlines() if line.strip()), "")
    return first if name == NbstudyError.__name__ else f"{name}: {first}".rstrip(": ")
