"""The Jupyter kernels that execute a study's notebooks, and their reuse from run to run on this machine.

Starting a kernel and importing torch, torchvision and nbstudy costs 5-10 s of CPU, a sixth to a quarter of a
demo run (docs/benchmarks.md, "Where the time goes on a CPU"). So the local executor keeps a pool of kernels
(`KernelPool`), at most one per job, and before each run resets the kernel it hands out to a fresh kernel's
state (`reset_between_runs`, run inside the kernel): its namespace, history and execution count, the warning
filters and once-only registries, open figures, torch.compile's caches and nbstudy's own caches. Imported
modules stay: that is the saving. The kernel then imports the nbstudy modules the next notebook imports
(`nbstudy_imports`, `import_for_run`), so that the warning filters numpy, scipy and torch add when first imported
are part of every later run's fresh state. A run's records are the same as in a kernel of its own
(tests/test_ray.py compares a study's results both ways; tests/test_kernels.py a kept kernel's runs). A run that
fails gives its kernel up (it may be dead or broken); the next run gets a new one.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import gc
import importlib
import os
import queue
import signal
import sys
import threading
import time
import warnings
from pathlib import Path

from jupyter_client.kernelspec import KernelSpec
from jupyter_client.manager import AsyncKernelManager
from jupyter_core.utils import run_sync

KERNEL = "python3"
# Not its per-run warning about unencrypted local TCP; history in memory, as nbclient does for the kernels it
# starts (one SQLite file shared by parallel kernels is a lock to wait on).
KERNEL_ARGUMENTS = ["--IPKernelApp.log_level=ERROR", "--HistoryManager.hist_file=:memory:"]
RUNNING = set()  # kernel managers of the kernels alive, for stop_kernels


class TrackedKernelManager(AsyncKernelManager):
    """A kernel manager that stop_kernels can reach (kernels run in their own session, so Ctrl-C misses them),
    and whose kernel runs in this interpreter: the kernel spec named `python3` may point at another Python (a
    conda base, another venv) that cannot import nbstudy, and every run would fail with ModuleNotFoundError."""

    @property
    def kernel_spec(self) -> KernelSpec:
        if self._kernel_spec is None:
            self._kernel_spec = KernelSpec(argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                                           display_name="Python 3 (nbstudy)", language="python")
        return self._kernel_spec

    async def start_kernel(self, **kw):
        await super().start_kernel(**kw)
        RUNNING.add(self)

    async def shutdown_kernel(self, now=False, restart=False):
        RUNNING.discard(self)
        await super().shutdown_kernel(now=now, restart=restart)

    def client(self, **kw):
        """nbclient asks for a new client per notebook and, on a kernel it does not own, never closes it: keep
        them, so that the pool closes each one after its run (else a long grid leaks sockets)."""
        kc = super().client(**kw)
        self.clients = [*getattr(self, "clients", []), kc]
        return kc


def stop_kernels() -> None:
    """Kill every kernel alive (Ctrl-C): the runs in them end as interrupted, to be redone next time."""
    for manager in list(RUNNING):
        with contextlib.suppress(ProcessLookupError, TypeError):  # TypeError: it ended meanwhile (pgid None)
            os.killpg(manager.provisioner.pgid, signal.SIGKILL)


class Kernel:
    """One started kernel: its manager, for papermill; a short-lived client of its own for each reset."""

    def __init__(self, cwd: str | None = None):
        self.manager = TrackedKernelManager(kernel_name=KERNEL)
        try:
            run_sync(self.manager.start_kernel)(extra_arguments=KERNEL_ARGUMENTS, cwd=cwd)
        except BaseException:
            self.close()
            raise

    def reset(self, imports: tuple = (), timeout: float = 120) -> None:
        """Run `reset_between_runs` in the kernel, then `import_for_run(imports)`; raise if either fails, if the
        kernel dies (noticed within a second), or if the reset does not answer within `timeout` seconds (a hung
        kernel: it is then not used; the imports, a cold torch on a loaded machine, have no time limit). The client
        opens only the shell channel and only for this: one left open would be sent every run's output."""
        client = self.manager.blocking_client()
        client.start_channels(shell=True, iopub=False, stdin=False, hb=False, control=False)
        try:
            self._call(client, "reset_between_runs()", timeout)
            if imports:
                self._call(client, f"import_for_run({tuple(imports)!r})", None)
        finally:
            client.stop_channels()

    def _call(self, client, call: str, timeout: float | None) -> None:
        msg_id = client.execute(f"__import__('nbstudy.kernels').kernels.{call}", silent=True, store_history=False)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                reply = client.get_shell_msg(timeout=1)
            except queue.Empty:
                if not self.alive():
                    raise RuntimeError("the kernel died") from None
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"the kernel did not reset within {timeout:g} s") from None
                continue
            if reply["parent_header"].get("msg_id") == msg_id:
                break
        if reply["content"]["status"] != "ok":
            raise RuntimeError(f"the kernel could not be reset: {reply['content'].get('evalue', '')}")

    def after_run(self) -> None:
        """Close the clients the run's notebook client opened."""
        for kc in getattr(self.manager, "clients", []):
            kc.stop_channels()
        self.manager.clients = []

    def alive(self) -> bool:
        return run_sync(self.manager.is_alive)()

    def close(self) -> None:
        self.after_run()
        with contextlib.suppress(Exception):   # it may be dead already; what is left is cleaned up all the same
            run_sync(self.manager.shutdown_kernel)(now=True)
        with contextlib.suppress(Exception):
            run_sync(self.manager.cleanup_resources)()


class KernelPool:
    """Kernels kept from run to run: `with pool.kernel(notebook) as kernel:` hands out an idle one (or a new one),
    reset and holding the nbstudy modules the notebook imports; it goes back to the pool if the block ends without
    an error, else it is closed. Kernels start in `cwd` (default: this process's working directory)."""

    def __init__(self, cwd: str | None = None):
        self._idle, self._lock, self._cwd = [], threading.Lock(), cwd
        self.stopping = False   # set on Ctrl-C: no kernel is handed out (or started) any more

    @contextlib.contextmanager
    def kernel(self, notebook: str | Path | None = None):
        if self.stopping:
            raise RuntimeError("the study is stopping")
        imports = nbstudy_imports(Path(notebook)) if notebook is not None else ()
        kernel = self._kept(imports) or self._new(imports)
        try:
            yield kernel
            kernel.after_run()
        except BaseException:
            kernel.close()
            raise
        with self._lock:
            self._idle.append(kernel)

    def _kept(self, imports: tuple) -> Kernel | None:
        """An idle kernel, reset; one that died or cannot be reset (hung, broken) is closed, and None returned."""
        with self._lock:
            kernel = self._idle.pop() if self._idle else None
        if kernel is None:
            return None
        try:
            if kernel.alive():
                kernel.reset(imports)
                return kernel
        except Exception:
            pass            # a new kernel replaces it
        kernel.close()
        return None

    def _new(self, imports: tuple) -> Kernel:
        """A new kernel, reset (nothing to clear yet, but it notes the kernel's fresh state). Its first reply is
        the reset's, so a kernel that dies before it (seen on a loaded machine when several start at once) is
        noticed here and started once more."""
        for attempt in (1, 2):
            kernel = Kernel(self._cwd)
            try:
                kernel.reset(imports)
                return kernel
            except BaseException as e:
                kernel.close()
                if attempt == 2 or str(e) != "the kernel died":
                    raise

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for kernel in idle:
            kernel.close()


def nbstudy_imports(notebook: Path) -> tuple:
    """The nbstudy modules a notebook's code imports (`import nbstudy.a`, `from nbstudy import b`: nbstudy, and
    nbstudy.b in case it is a module), in order; read once per version of the file. Only nbstudy's, which import
    numpy, scipy and torch: a notebook's other imports run in its own cells, after whatever its cells set up first
    (environment variables such as KERAS_BACKEND, sys.path), as in a new kernel. Cells that are not Python even
    after IPython's transforms (magics) are skipped: the run itself will say what is wrong with them."""
    return _imports(notebook, notebook.stat().st_mtime_ns)


@functools.lru_cache(maxsize=None)
def _imports(notebook: Path, mtime_ns: int) -> tuple:
    import nbformat   # here: this module is imported in every kernel, which need not pay for nbformat
    from IPython.core.inputtransformer2 import TransformerManager

    names = {}
    for cell in nbformat.read(str(notebook), as_version=4).cells:
        if cell.cell_type != "code":
            continue
        try:
            tree = ast.parse(TransformerManager().transform_cell(cell.source))
        except (SyntaxError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names.update(dict.fromkeys(alias.name for alias in node.names))
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.update(dict.fromkeys([node.module, *(f"{node.module}.{alias.name}" for alias in node.names
                                                           if alias.name != "*")]))
    return tuple(name for name in names if name.split(".")[0] == "nbstudy")


_FRESH = None   # (warning filters, __main__'s module attributes) of the kernel before its next run


def reset_between_runs() -> None:
    """Inside a kernel, before each run: what one run could leave behind that the next would see.

    Not reset: imported modules (the point of reuse), torch's global random state (every run seeds it), and
    what a library warns only once per process (e.g. torch's C++ warnings): that shows in a kernel's first run.
    """
    global _FRESH
    from IPython import get_ipython

    shell = get_ipython()
    if _FRESH is None:                             # a new kernel: its state is the fresh one
        _FRESH = (list(warnings.filters), {k: v for k, v in shell.user_ns.items() if k.startswith("__")})
    filters, dunders = _FRESH
    shell.reset(new_session=True)                  # the namespace, Out, and In [1] again
    shell.user_ns.update(dunders)                  # reset() drops __spec__ & co, which multiprocessing's spawn needs
    warnings.resetwarnings()                       # empties the filters and voids every module's once-registry
    warnings.filters[:] = filters
    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close("all")
    if "torch._dynamo" in sys.modules:
        sys.modules["torch._dynamo"].reset()       # compiled code of the last run's models
    for name, module in list(sys.modules.items()):
        if name.startswith("nbstudy"):
            for value in list(vars(module).values()):
                if callable(getattr(value, "cache_clear", None)) and getattr(value, "__module__", None) == name:
                    value.cache_clear()
    if "nbstudy.execute" in sys.modules:
        sys.modules["nbstudy.execute"].WARNED.clear()
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


def import_for_run(imports: tuple) -> None:
    """Inside a kernel, after `reset_between_runs`: import `imports` (`nbstudy_imports` of the next notebook) and
    note the warning filters they add as part of the fresh state, which later resets restore. One that fails to
    import is left for the notebook's cell to report."""
    global _FRESH
    for name in imports:
        with contextlib.suppress(Exception, SystemExit):
            importlib.import_module(name)
    _FRESH = (list(warnings.filters), _FRESH[1])
