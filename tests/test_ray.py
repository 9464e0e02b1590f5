"""`nbstudy study --executor ray` on one local Ray instance shared by the module (it takes seconds to start)."""

import csv
import json
import os
import sys
from pathlib import Path

import pytest
import ray  # a test dependency: make test installs the [ray] extra, so a missing Ray fails, not skips
import yaml

from nbstudy.cli import main
from stub_notebooks import TRAIN_BODY, write_stubs


ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def local_ray():
    """Two CPUs, as on the test machine; the CLI finds it running and leaves it up."""
    saved = os.environ.pop("OMP_NUM_THREADS", None)  # so Ray sets each task's own
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    yield
    ray.shutdown()
    if saved is not None:
        os.environ["OMP_NUM_THREADS"] = saved


def study_file(tmp_path, **extra):
    study = {"name": "s", "dataset": {"name": "synthetic", "resolution": 32},
             "pretrain": {"methods": ["simclr"], "epochs": 1},
             "train": {"methods": ["ce"], "noise_rates": [0.2, 0.6], "epochs": 1},
             "analysis": ["summary"], **extra}
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(study))
    return path


def study(tmp_path, notebooks, out, *args):
    return main(["study", str(study_file(tmp_path)), "--out", str(tmp_path / out), "--notebooks", str(notebooks),
                 *map(str, args)])


def table(tmp_path, out):
    return (tmp_path / out / "s" / "results.csv").read_text()


# The train stub also logs what Ray gave its kernel: its CPU threads and visible GPUs.
ENV_BODY = TRAIN_BODY + """
import os
log(f"env {init == 'random'} {os.environ.get('OMP_NUM_THREADS')} {os.environ.get('CUDA_VISIBLE_DEVICES')!r}")
"""


def test_ray_gives_the_same_runs_and_results_table_as_the_local_executor(tmp_path, local_ray, capsys, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)  # --jobs 2 sets it in this process
    log = tmp_path / "executions.log"
    notebooks = write_stubs(tmp_path / "nb", log, train_body=ENV_BODY)
    assert study(tmp_path, notebooks, "local", "--jobs", "2") == 0
    local = sorted(line for line in log.read_text().splitlines() if not line.startswith("env"))
    log.unlink()
    capsys.readouterr()

    path = study_file(tmp_path, resources={"train": {"num_cpus": 2}})  # Ray's alone: the runs keep their names
    assert main(["study", str(path), "--out", str(tmp_path / "ray"), "--notebooks", str(notebooks),
                 "--executor", "ray"]) == 0
    lines = log.read_text().splitlines()
    assert sorted(line for line in lines if not line.startswith("env")) == local
    assert table(tmp_path, "ray") == table(tmp_path, "local")
    # each training kernel got the two CPUs its stage asked for, and no GPU it did not ask for
    assert sorted(line for line in lines if line.startswith("env")) == ["env False 2 ''"] * 2 + ["env True 2 ''"] * 2
    err = capsys.readouterr().err
    assert err.count("finished train/") == 4 and err.count("finished pretrain/simclr-") == 1  # as they end


KILL_ONCE = """
import os, signal
marker = pathlib.Path({marker!r})
if init == "random" and noise_rate == 0.6 and not marker.exists():
    marker.touch()
    os.kill(os.getppid(), signal.SIGKILL)  # the Ray worker running this run's papermill: as if its node died
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_run_lost_with_its_worker_is_retried_or_else_redone_next_time(tmp_path, local_ray, capsys):
    log, marker = tmp_path / "executions.log", tmp_path / "killed-once"
    notebooks = write_stubs(tmp_path / "nb", log, train_body=KILL_ONCE.format(marker=str(marker)) + TRAIN_BODY)

    # no retries: the run fails with a one-line error, the others finish
    assert study(tmp_path, notebooks, "out", "--executor", "ray", "--retries", "0") == 1
    assert marker.exists() and "train random ce 0.6 0" not in log.read_text()
    err = capsys.readouterr().err
    lost = next(line for line in err.splitlines() if line.startswith("FAILED train/random-ce-symmetric-0.6-"))
    assert "WorkerCrashedError" in lost
    rows = {(r["init"], r["noise_rate"]): r["status"] for r in csv.DictReader(open(tmp_path / "out/s/results.csv"))}
    assert rows == {("random", "0.2"): "finished", ("random", "0.6"): "failed", ("simclr", "0.2"): "finished",
                    ("simclr", "0.6"): "finished"}
    finished = [p for p in (tmp_path / "out" / "s").glob("*/*/*") if p.parent.parent.name != "analysis"
                and json.loads((p.parent / "status.json").read_text())["status"] == "finished"]
    stamps = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in finished}
    assert len({p.parent for p in stamps}) == 4  # pretraining and three training runs

    # with a retry, a worker killed mid-run costs only the retry; only the missing run (and analysis) runs
    marker.unlink()
    before = log.read_text().splitlines()
    assert study(tmp_path, notebooks, "out", "--executor", "ray", "--retries", "1") == 0
    assert marker.exists()
    assert sorted(log.read_text().splitlines()[len(before):]) == ["analysis 4 rows", "train random ce 0.6 0"]
    assert all(r["status"] == "finished" for r in csv.DictReader(open(tmp_path / "out/s/results.csv")))
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in stamps} == stamps  # finished runs untouched


def test_resources_no_node_has_stop_the_study_before_anything_runs(tmp_path, local_ray, capsys):
    notebooks = write_stubs(tmp_path / "nb", tmp_path / "executions.log")
    study_file(tmp_path, resources={"train": {"num_gpus": 1, "num_cpus": 2}})
    assert main(["study", str(tmp_path / "s.yaml"), "--out", str(tmp_path / "out"), "--notebooks", str(notebooks),
                 "--executor", "ray"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and ("resources: train asks for 2 CPUs, 1 GPUs, 0.0 GB memory per run, but no node of"
                                     " the Ray cluster has as much (at most 2 CPUs, 0 GPUs") in err
    assert not (tmp_path / "executions.log").exists()


def test_without_ray_installed_the_ray_executor_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    notebooks = write_stubs(tmp_path / "nb", tmp_path / "executions.log")
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now fails as if it were not installed
    assert study(tmp_path, notebooks, "out", "--executor", "ray") == 2
    err = capsys.readouterr().err
    assert err == "nbstudy: error: --executor ray needs Ray, which is not installed: pip install 'nbstudy[ray]'\n"


@pytest.mark.slow
def test_smoke_study_through_ray_gives_the_local_executors_results(tmp_path, local_ray, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # as Ray gives a one-CPU run: the same sums in the same order
    # the executors are compared, not the backbones or methods (test_cli runs them all): one backbone, a pretraining
    # run and the training runs that need it, a one- and a two-network method, no analysis notebook
    study = yaml.safe_load((ROOT / "parameters" / "smoke.yaml").read_text())
    del study["backbones"], study["analysis"]
    study["train"]["methods"] = ["ce", "coteaching"]
    smoke = tmp_path / "smoke.yaml"
    smoke.write_text(yaml.safe_dump(study))
    smoke = str(smoke)
    assert main(["study", smoke, "--out", str(tmp_path / "local")]) == 0
    assert main(["study", smoke, "--out", str(tmp_path / "ray"), "--executor", "ray"]) == 0

    def rows(out):  # everything but how long the runs took
        return [{k: v for k, v in r.items() if k != "train_time_s"}
                for r in csv.DictReader(open(tmp_path / out / "smoke" / "results.csv"))]

    assert rows("ray") == rows("local")
