"""Execute one run's notebook with papermill, and record whether it finished.

A run counts as finished only when `<folder>/status.json` says so and carries
the run's key; the file is written atomically when the run starts ("running")
and again when the notebook completed and left the files its stage promises.
So a run killed at any moment, even one redone after it had finished, is never
taken for finished. A failed run records its error as one line and the path of
its executed notebook, which shows the failing cell.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import socket
import time
from pathlib import Path

import papermill
import yaml
from jupyter_client.manager import AsyncKernelManager

from nbstudy.errors import NbstudyError
from nbstudy.study import Run, check_name, write_text

KERNEL = "python3"
QUIET_KERNEL = ["--IPKernelApp.log_level=ERROR"]  # not its per-run warning about unencrypted local TCP
RUNNING = set()  # kernel managers of the runs in progress
STAGE_OUTPUTS = {"pretrain": ("backbone.pt", "pretrain_metrics.json"), "train": ("metrics.json", "records.npz"),
                 "analysis": ()}


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
    """The run's recorded status, or None when it has none it can show (a power cut can leave an empty file)."""
    try:
        return json.loads((run.folder / "status.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None


def is_finished(run: Run) -> bool:
    """Finished with this key, and its stage's files still there."""
    recorded = status(run)
    return (bool(recorded) and recorded["status"] == "finished" and recorded["key"] == run.key
            and all((run.folder / f).is_file() for f in STAGE_OUTPUTS[run.stage]))


def execute(run: Run) -> dict:
    """Run the notebook into the run's folder; return the status written to status.json."""
    run.folder.mkdir(parents=True, exist_ok=True)
    executed = run.folder / run.notebook.name
    start = time.time()
    write_text(run.folder / "status.json", json.dumps({"status": "running", "key": run.key, "error": None,
                                                       "notebook": str(executed), "host": socket.gethostname(),
                                                       "started": start}, indent=1))
    write_text(run.folder / "params.yaml", yaml.safe_dump(run.params, sort_keys=False))
    error = None
    try:
        papermill.execute_notebook(str(run.notebook), str(executed), parameters=run.params, kernel_name=KERNEL,
                                   progress_bar=False, extra_arguments=QUIET_KERNEL,
                                   kernel_manager_class=_TrackedKernelManager)
    except papermill.PapermillExecutionError as e:
        error = one_line(e.ename, e.evalue)
    except Exception as e:  # the kernel died, would not start, ...: the run failed, the study goes on
        error = one_line(type(e).__name__, str(e))
    missing = [f for f in STAGE_OUTPUTS[run.stage] if not (run.folder / f).is_file()]
    if error is None and missing:
        error = f"the notebook finished without writing {', '.join(missing)}"
    result = {"status": "failed" if error else "finished", "key": run.key, "error": error,
              "notebook": str(executed), "seconds": round(time.time() - start, 1)}
    write_text(run.folder / "status.json", json.dumps(result, indent=1))
    return result


def one_line(name: str, message: str) -> str:
    """An error for the study's summary: a user error's own message, else its type and first line."""
    first = next((line.strip() for line in str(message).splitlines() if line.strip()), "")
    return first if name == NbstudyError.__name__ else f"{name}: {first}".rstrip(": ")


def stop_kernels() -> None:
    """Kill the kernels of the runs in progress (Ctrl-C): their runs end as failed, to be redone next time."""
    for manager in list(RUNNING):
        with contextlib.suppress(ProcessLookupError, TypeError):  # TypeError: it ended meanwhile (pgid None)
            os.killpg(manager.provisioner.pgid, signal.SIGKILL)


class _TrackedKernelManager(AsyncKernelManager):
    """A kernel manager that stop_kernels can reach: kernels run in their own session, so Ctrl-C misses them."""

    async def start_kernel(self, **kw):
        await super().start_kernel(**kw)
        RUNNING.add(self)

    async def shutdown_kernel(self, now=False, restart=False):
        RUNNING.discard(self)
        await super().shutdown_kernel(now=now, restart=restart)
