"""Where a study's runs execute: threads on this machine (the default), or tasks on a Ray cluster.

The runner hands each run over as `submit(execute, run)` and waits on the
concurrent.futures Futures it gets back, so both executors do the same runs
into the same folders and give the same results table. Ray is imported only
when asked for: it is an optional extra (`pip install 'nbstudy[ray]'`).
"""

from __future__ import annotations

import os
from concurrent.futures import Executor, Future, ThreadPoolExecutor

from nbstudy.errors import NbstudyError
from nbstudy.kernels import KernelPool


def local_executor(jobs: int) -> LocalExecutor:
    """Threads on this machine: each run is executed by a kernel process, so threads only wait on them.

    With several jobs, each kernel gets an equal share of the CPU cores
    (OMP_NUM_THREADS, unless set), so parallel runs do not fight over them.
    """
    if jobs > 1:
        os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // jobs)))
    return LocalExecutor(max_workers=jobs)


class LocalExecutor(ThreadPoolExecutor):
    """A thread pool whose runs share a pool of kernels (nbstudy.kernels), one per job, kept from run to run:
    a run then does not pay a kernel's start and imports. The kernels end with the executor."""

    def __init__(self, max_workers: int):
        super().__init__(max_workers=max_workers)
        self.kernels = KernelPool()

    def submit(self, fn, run) -> Future:
        """Run fn(run, kernels) in a thread (fn is nbstudy.execute.execute)."""
        return super().submit(fn, run, self.kernels)

    def shutdown(self, wait=True, *, cancel_futures=False):
        """With cancel_futures (Ctrl-C), no run gets a kernel any more; with wait, the kernels end."""
        if cancel_futures:
            self.kernels.stopping = True
        super().shutdown(wait=wait, cancel_futures=cancel_futures)
        if wait:
            self.kernels.close()


class RayExecutor(Executor):
    """Each run a Ray task asking for its stage's resources, retried when its worker (or node) is lost.

    The task calls the same execute() as the local executor, on whichever node
    Ray picks, so the study folder must be on a filesystem every node sees.
    Ray gives each task its share of CPUs (OMP_NUM_THREADS) and GPUs
    (CUDA_VISIBLE_DEVICES); the run's kernel inherits them.
    """

    def __init__(self, resources: dict, address: str | None = None, retries: int | None = None):
        """`resources`: {stage: Ray resource options} for the stages this study runs (study file key `resources`).

        `address`: the cluster's head (default: $RAY_ADDRESS, as Ray sets it in
        jobs it starts; without one, a Ray on this machine). `retries`: times a
        run lost with its worker is started again (default 2).
        """
        address = address or os.environ.get("RAY_ADDRESS")
        self._ray = ray = _import_ray()
        self._owns = not ray.is_initialized()  # a Ray started here is stopped here; one already up is left alone
        if self._owns:
            quiet = {"logging_level": "WARNING", "log_to_driver": False}  # the notebooks keep the runs' output
            try:
                if address:
                    ray.init(address=address, **quiet)
                else:
                    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, **quiet)
            except ConnectionError as e:
                raise NbstudyError(f"cannot reach the Ray cluster at {address} ({' '.join(str(e).split())[:200]}):"
                                   " start it with `ray start --head`, or pass its head's --address") from None
        self._resources, self._refs = resources, []
        self._retries = 2 if retries is None else retries
        self._task = ray.remote(_call)
        try:
            _check_fits(ray, resources)
        except NbstudyError:
            self.shutdown()
            raise

    def submit(self, fn, run) -> Future:
        """Run fn(run) as a Ray task with the resources of the run's stage."""
        asked = dict(self._resources.get(run.stage, {}))
        if "memory" in asked:
            asked["memory"] = int(asked["memory"])
        ref = self._task.options(name=run.name, max_retries=self._retries, **asked).remote(fn, run)
        self._refs.append(ref)
        return ref.future()

    def shutdown(self, wait=True, *, cancel_futures=False):
        """With cancel_futures (Ctrl-C), end the runs still going: killing their workers kills their kernels."""
        if cancel_futures:
            for ref in self._refs:
                self._ray.cancel(ref, force=True)
        if self._owns and self._ray.is_initialized():
            self._ray.shutdown()


def _call(fn, run):
    """The Ray task. Ray leaves every GPU visible to a task that asked for none; a run must not use one."""
    import ray

    if not ray.get_gpu_ids():
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    return fn(run)


def _import_ray():
    try:
        import ray
    except ImportError:
        raise NbstudyError("--executor ray needs Ray, which is not installed: pip install 'nbstudy[ray]'") from None
    return ray


def _check_fits(ray, resources: dict) -> None:
    """A run no node can hold would wait forever: say so before anything runs."""
    nodes = [node["Resources"] for node in ray.nodes() if node["Alive"]]
    for stage, asked in resources.items():
        need = {"CPU": asked.get("num_cpus", 1), "GPU": asked.get("num_gpus", 0), "memory": asked.get("memory", 0)}
        if not any(all(node.get(k, 0) >= v for k, v in need.items()) for node in nodes):
            most = {k: max((node.get(k, 0) for node in nodes), default=0) for k in need}
            raise NbstudyError(f"resources: {stage} asks for {_describe(need)} per run, but no node of the Ray"
                               f" cluster has as much (at most {_describe(most)}): lower resources: {stage} in the"
                               " study file, or add bigger nodes")


def _describe(amounts: dict) -> str:
    return f"{amounts['CPU']:g} CPUs, {amounts['GPU']:g} GPUs, {amounts['memory'] / 1e9:.1f} GB memory"
