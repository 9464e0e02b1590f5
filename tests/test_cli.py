"""`nbstudy study` end to end on stub notebooks (a kernel each, about 2 s), and once on the real ones (slow)."""

import csv
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from nbstudy import figures
from nbstudy.cli import main
from nbstudy.execute import one_line
from nbstudy.executors import local_executor
from stub_notebooks import TRAIN_BODY, write_stubs

ROOT = Path(__file__).resolve().parent.parent


def study_file(tmp_path, **train):
    study = {"name": "s", "dataset": {"name": "synthetic", "resolution": 32},
             "pretrain": {"methods": ["simclr"], "epochs": 1},
             "train": {"methods": ["ce"], "noise_rates": [0.2, 0.6], "epochs": 1, **train},
             "analysis": ["summary"]}
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(study))
    return path


@pytest.fixture(autouse=True)
def keep_omp_num_threads():
    """--jobs > 1 sets OMP_NUM_THREADS for the kernels; other tests get it back as it was."""
    saved = os.environ.pop("OMP_NUM_THREADS", None)
    yield
    os.environ.pop("OMP_NUM_THREADS", None)
    if saved is not None:
        os.environ["OMP_NUM_THREADS"] = saved


@pytest.fixture
def stubs(tmp_path):
    """(run the CLI on the stubs, read the execution log)."""
    log = tmp_path / "executions.log"
    notebooks = write_stubs(tmp_path / "nb", log)

    def cli(*args):
        return main(["study", *map(str, args), "--out", str(tmp_path / "out"), "--notebooks", str(notebooks)])

    return cli, lambda: log.read_text().splitlines() if log.exists() else []


def rows(tmp_path):
    return list(csv.DictReader((tmp_path / "out" / "s" / "results.csv").open()))


def test_study_runs_pretraining_then_training_then_analysis_and_skips_what_is_finished(tmp_path, stubs, capsys):
    cli, executions = stubs
    assert cli(study_file(tmp_path), "--jobs", "2") == 0
    ran = executions()
    assert sorted(ran) == ["analysis 4 rows", "pretrain simclr", "train random ce 0.2 0", "train random ce 0.6 0",
                           "train simclr ce 0.2 0", "train simclr ce 0.6 0"]
    assert ran[-1] == "analysis 4 rows"
    assert ran.index("pretrain simclr") < min(ran.index(f"train simclr ce {r} 0") for r in (0.2, 0.6))
    table = rows(tmp_path)
    assert {(r["init"], r["noise_rate"]) for r in table} == {("random", "0.2"), ("random", "0.6"),
                                                             ("simclr", "0.2"), ("simclr", "0.6")}
    assert all(r["status"] == "finished" and float(r["last_acc"]) == 1 - float(r["noise_rate"]) for r in table)
    study_dir = tmp_path / "out" / "s"
    run = study_dir / table[0]["run"]
    assert sorted(p.name for p in run.iterdir()) == [".lock", "02_train_noisy.ipynb", "metrics.json", "params.yaml",
                                                     "records.npz", "status.json", "suspects.csv"]   # .lock: run_lock
    assert yaml.safe_load((run / "params.yaml").read_text())["output_dir"] == str(run)
    assert json.loads((run / "status.json").read_text())["status"] == "finished"
    out = capsys.readouterr().out
    assert f"results table: {study_dir / 'results.csv'}" in out
    assert f"analysis notebook: {study_dir / 'analysis' / 'summary' / '10_summary.ipynb'}" in out

    # again: nothing runs, the table is the same
    before = (study_dir / "results.csv").read_text()
    start = time.time()
    assert cli(study_file(tmp_path)) == 0
    assert executions() == ran and (study_dir / "results.csv").read_text() == before
    assert time.time() - start < 5
    # and so in a process of its own, as `nbstudy study` runs: it skips without importing the analysis modules
    # (about 1 s) or jsonschema's IRI grammar (1.3 s; nbstudy.cli.main)
    code = ("import sys; from nbstudy.cli import main; status = main(sys.argv[1:]); print(*sorted(m for m in "
            "('nbstudy.analysis.runs', 'nbstudy.analysis.stats', 'rfc3987_syntax') if sys.modules.get(m))); "
            "sys.exit(status)")
    again = subprocess.run([sys.executable, "-c", code, "study", str(study_file(tmp_path)), "--out", str(tmp_path / "out"),
                            "--notebooks", str(tmp_path / "nb")], capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and again.stdout.splitlines()[-1] == "", (again.stdout, again.stderr)
    assert executions() == ran and (study_dir / "results.csv").read_text() == before

    # a grid that grows runs only the new runs, and the analysis again (the table changed)
    assert cli(study_file(tmp_path, noise_rates=[0.2, 0.6, 0.8])) == 0
    assert sorted(executions()[len(ran):]) == ["analysis 6 rows", "train random ce 0.8 0", "train simclr ce 0.8 0"]


def test_a_failed_run_is_reported_and_the_others_go_on(tmp_path, stubs, capsys):
    cli, executions = stubs
    write_stubs(tmp_path / "nb", tmp_path / "executions.log", fail=["simclr"])
    assert cli(study_file(tmp_path)) == 1
    assert sorted(executions()) == ["analysis 4 rows", "pretrain simclr", "train random ce 0.2 0",
                                    "train random ce 0.6 0"]
    err = capsys.readouterr().err
    failed = next((tmp_path / "out" / "s" / "pretrain").iterdir())
    status = json.loads((failed / "status.json").read_text())
    assert status["status"] == "failed" and status["error"] == "RuntimeError: stub failure for simclr"
    assert f"FAILED pretrain/{failed.name}: RuntimeError: stub failure for simclr" in err
    assert f"see {failed / '01_pretrain.ipynb'}" in err
    assert "stub failure for simclr" in (failed / "01_pretrain.ipynb").read_text()  # the notebook shows the error
    lines = err.splitlines()
    assert sum(line.startswith("skipped train/simclr-ce-") for line in lines) == 2  # as they happen
    # and again in the summary at the end, each with its one-line reason
    summary = lines[lines.index(f"  failed pretrain/{failed.name}: RuntimeError: stub failure for simclr"):]
    assert sum(f"the run it needs failed (pretrain/{failed.name})" in line for line in summary) == 2
    assert summary[-1].startswith("nbstudy: 3 of 6 runs failed or were skipped")
    assert sorted(r["status"] for r in rows(tmp_path)) == ["finished", "finished", "skipped", "skipped"]



def test_analysis_is_skipped_when_no_training_run_finished(tmp_path, stubs, capsys):
    """It would only fail with "run the study first", which misleads: the reason is the failed runs."""
    cli, executions = stubs
    write_stubs(tmp_path / "nb", tmp_path / "executions.log", fail=["simclr"])
    assert cli(study_file(tmp_path, inits=["simclr"])) == 1
    assert executions() == ["pretrain simclr"]
    err = capsys.readouterr().err
    assert "  skipped analysis/summary: no training run finished: fix the failed runs above" in err
    assert "nbstudy: 4 of 4 runs failed or were skipped" in err


@pytest.mark.parametrize("train, error", [
    ({"batch_size": 16}, r"train: methods: ce \(symmetric 0.2\): only 19 training images for batch_size=16: use "
                         "batch_size <= 9 or a larger dataset"),
    ({"val_split": "dataset"}, r"train: methods: ce \(symmetric 0.2\): val_split='dataset' but the synthetic data set"),
    ({"noise_kinds": ["asymmetric"], "noise_options": {"mapping": [1, 0]}}, "train: methods: ce .*mapping"),
])
def test_a_run_that_its_data_would_fail_fails_the_dry_run(tmp_path, stubs, capsys, train, error):
    """What a run checks against its data (images left for a batch, the validation split, noise against the
    classes) is checked for every run before the study starts, --dry-run included."""
    cli, executions = stubs
    path = study_file(tmp_path, **train)
    study = yaml.safe_load(path.read_text())
    study["dataset"]["options"] = {"num_classes": 3, "per_class": 7, "test_per_class": 2}
    path.write_text(yaml.safe_dump(study))
    for dry in (["--dry-run"], []):
        assert cli(path, *dry) == 2
        assert re.search(error, capsys.readouterr().err.splitlines()[-1])
    assert executions() == [] and not (tmp_path / "out" / "s").exists()

HANG_ONCE = """
import os, time
if init == "random" and noise_rate == 0.6 and not pathlib.Path({marker!r}).exists():
    pathlib.Path({marker!r}).write_text(str(os.getpid()))
    time.sleep(600)
"""


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_killed_study_started_again_finishes_only_what_is_missing(tmp_path, stubs):
    cli, executions = stubs
    marker = tmp_path / "hung-kernel-pid"
    write_stubs(tmp_path / "nb", tmp_path / "executions.log", train_body=HANG_ONCE.format(marker=str(marker)) + TRAIN_BODY)
    assert cli(study_file(tmp_path, noise_rates=[0.2])) == 0
    study_dir = tmp_path / "out" / "s"
    kept = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in study_dir.glob("*/*/*") if "analysis" not in p.parts}
    table = (study_dir / "results.csv").read_bytes()

    # the grid grows; SIGKILL the study while a new run is in its notebook
    command = [sys.executable, "-c", "import sys; from nbstudy.cli import main; sys.exit(main())", "study",
               str(study_file(tmp_path)), "--out", str(tmp_path / "out"), "--notebooks", str(tmp_path / "nb")]
    study = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not marker.exists() and time.time() < deadline:
        time.sleep(0.2)
    study.send_signal(signal.SIGKILL)
    study.wait()
    kernel = int(marker.read_text())
    deadline = time.time() + 15
    while alive(kernel) and time.time() < deadline:  # its kernel sees its parent gone and ends too
        time.sleep(0.2)
    assert not alive(kernel)
    assert (study_dir / "results.csv").read_bytes() == table  # the old table, whole
    hung = next(study_dir.glob("train/random-ce-symmetric-0.6-*"))
    assert json.loads((hung / "status.json").read_text())["status"] == "running"

    done = len(executions())
    assert cli(study_file(tmp_path)) == 0
    assert sorted(executions()[done:]) == ["analysis 4 rows", "train random ce 0.6 0", "train simclr ce 0.6 0"]
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in kept} == kept
    assert all(r["status"] == "finished" for r in rows(tmp_path)) and len(rows(tmp_path)) == 4


CTRL_C_ON_A_WORKER_THREAD = """
import os, signal, sys, threading, time
from nbstudy.cli import main

def press(marker):   # once a run hangs in its kernel
    while not os.path.exists(marker):
        time.sleep(0.1)
    time.sleep(0.5)
    signal.pthread_kill(threading.get_ident(), signal.SIGINT)

print("SIGINT:", signal.getsignal(signal.SIGINT), "blocked:", signal.pthread_sigmask(signal.SIG_BLOCK, []), file=sys.stderr)
threading.Thread(target=press, args=(sys.argv[1],), daemon=True).start()
sys.exit(main(sys.argv[2:]))
"""


def as_a_terminal_starts_it():
    """SIGINT handled and not blocked in the child: a pytest-xdist worker that ran other modules first has left it
    ignored or blocked, which a child inherits (seen twice in CI runs of the whole suite, never alone)."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGINT])
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_stops_the_study_in_one_line_and_marks_the_run_interrupted(tmp_path, stubs):
    """Ctrl-C: the study kills its kernels and says so once; the run it cut off is recorded as interrupted, not as
    failed with "Kernel died", and the next run redoes it. The signal lands on a thread other than the main one,
    as a terminal's Ctrl-C may (the process has a thread per job and jupyter_client's): the main thread, which had
    waited for a run to end without a timeout, never noticed it and the study hung (seen twice in the suite)."""
    cli, executions = stubs
    marker = tmp_path / "hung-kernel-pid"
    write_stubs(tmp_path / "nb", tmp_path / "executions.log", train_body=HANG_ONCE.format(marker=str(marker)) + TRAIN_BODY)
    command = [sys.executable, "-X", "faulthandler", "-c", CTRL_C_ON_A_WORKER_THREAD, str(marker), "study",
               str(study_file(tmp_path)), "--out", str(tmp_path / "out"), "--notebooks", str(tmp_path / "nb")]
    log = tmp_path / "stderr.txt"   # a file, not a pipe: a pipe's reader would also wait on every kernel holding it
    with open(log, "w") as stderr:
        study = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True,
                                 preexec_fn=as_a_terminal_starts_it)
    try:
        study.wait(timeout=180)
    except subprocess.TimeoutExpired:   # say where it hangs: faulthandler prints every thread's stack on SIGABRT
        os.killpg(study.pid, signal.SIGABRT)
        study.wait(timeout=30)
        pytest.fail(f"the study did not end after Ctrl-C: {log.read_text()[-6000:]}")
    err = log.read_text()
    assert study.returncode == 130
    assert "Kernel died" not in err and "FAILED" not in err, err
    assert err.rstrip().endswith("nbstudy: interrupted: finished runs are kept; run the same command to do the rest")
    hung = next((tmp_path / "out" / "s").glob("train/random-ce-symmetric-0.6-*"))
    recorded = json.loads((hung / "status.json").read_text())
    assert recorded["status"] == "interrupted" and recorded["error"].startswith("interrupted (Ctrl-C)")
    assert cli(study_file(tmp_path)) == 0 and "train random ce 0.6 0" in executions()


def test_dry_run_lists_the_runs_and_runs_nothing(tmp_path, stubs, capsys):
    cli, executions = stubs
    assert cli(study_file(tmp_path), "--dry-run") == 0
    out = capsys.readouterr().out
    assert "study s: 5 runs, 5 to do, then 1 analysis notebooks" in out
    assert out.count("  todo  train/") == 4 and out.count("  todo  pretrain/simclr-") == 1
    assert "  last  analysis/summary  (10_summary.ipynb)" in out
    assert executions() == [] and not (tmp_path / "out").exists()


@pytest.mark.parametrize("args, message", [
    (["missing.yaml"], "study file missing.yaml does not exist"),
    (["s.yaml", "--notebooks", "nowhere"], "notebooks folder nowhere does not exist: pass --notebooks DIR"),
])
def test_user_errors_are_one_line_with_exit_code_2(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    study_file(tmp_path)
    assert main(["study", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nbstudy: error: ") and message in err and err.count("\n") == 1


def test_a_parameter_the_notebook_lacks_stops_the_study_before_anything_runs(tmp_path, capsys):
    log = tmp_path / "executions.log"
    notebooks = write_stubs(tmp_path / "nb", log, analysis=())
    path = study_file(tmp_path)
    study = yaml.safe_load(path.read_text())
    study["analysis"] = []
    path.write_text(yaml.safe_dump(study))
    text = (notebooks / "02_train_noisy.ipynb").read_text().replace("checkpoint_every = 1\\n", "")
    (notebooks / "02_train_noisy.ipynb").write_text(text)
    assert main(["study", str(path), "--out", str(tmp_path / "out"), "--notebooks", str(notebooks)]) == 2
    assert "02_train_noisy.ipynb (run train/random-ce-symmetric-0.2-s0-" in capsys.readouterr().err
    assert not log.exists() and not (tmp_path / "out").exists()


def test_a_runs_error_is_one_line_a_user_errors_own_message():
    assert one_line("NbstudyError", "checkpoint x.pt was pretrained at 64 px: use the same resolution") == \
        "checkpoint x.pt was pretrained at 64 px: use the same resolution"
    assert one_line("RuntimeError", "\n  CUDA out of memory.\nTried to allocate 2 GiB") == "RuntimeError: CUDA out of memory."
    assert one_line("DeadKernelError", "") == "DeadKernelError"


def test_argparse_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as e:
        main(["study", "x.yaml", "--jobs", "0"])
    assert e.value.code == 2 and "'0' is not a positive whole number" in capsys.readouterr().err


def test_parallel_jobs_share_the_cores_unless_the_user_chose():
    with local_executor(2) as executor:
        assert executor._max_workers == 2
    assert os.environ["OMP_NUM_THREADS"] == str(max(1, os.cpu_count() // 2))
    os.environ["OMP_NUM_THREADS"] = "7"
    local_executor(3).shutdown()
    assert os.environ["OMP_NUM_THREADS"] == "7"


@pytest.mark.slow
def test_smoke_study_through_the_real_notebooks(tmp_path):
    out = tmp_path / "out"
    assert main(["study", str(ROOT / "parameters" / "smoke.yaml"), "--out", str(out)]) == 0
    table = list(csv.DictReader((out / "smoke" / "results.csv").open()))
    assert {(r["init"], r["method"]) for r in table} == {(i, m) for i in ("random", "rotation")
                                                         for m in ("ce", "coteaching", "dividemix")}
    for column in ("best_acc", "last_acc", "val_pick_acc", "best_balanced_acc", "best_macro_f1",
                   "actual_noise_rate", "selection_precision", "selection_recall", "suspects_precision_at_k"):
        assert all(r["status"] == "finished" for r in table) and column in table[0]
    # the suspects notebook compared each run's ranking with cleanlab's, embedding with random and rotation weights
    summary = figures.load(out / "smoke" / "analysis" / "suspects", "precision_at_k")["summary"]
    assert sorted(zip(summary["ranker"], summary["init"])) == sorted(
        [(m, i) for m in ("ce", "coteaching", "dividemix", "cleanlab") for i in ("random", "rotation")])
    assert all(0 <= p <= 1 for p in summary["precision_at_k"])
    statuses = sorted(out.glob("smoke/*/*/status.json"))
    stamps = [p.stat().st_mtime_ns for p in statuses]
    start = time.time()
    assert main(["study", str(ROOT / "parameters" / "smoke.yaml"), "--out", str(out)]) == 0
    assert [p.stat().st_mtime_ns for p in statuses] == stamps and time.time() - start < 10


@pytest.mark.slow
def test_a_study_sets_method_options_and_stage_parameters_and_each_run_records_them(tmp_path):
    """The contract's acceptance: pretext options, a view option and warmup_epochs from a study file reach the
    runs, and each run's params.yaml (and its outputs) show the values it ran with."""
    study = {"name": "opts", "device": "cpu",
             "dataset": {"name": "synthetic", "resolution": 16, "stem": "imagenet",
                         "options": {"num_classes": 3, "per_class": 8, "test_per_class": 4}},
             "pretrain": {"methods": {"jigsaw": {"options": {"permutations": 10}},
                                      "simclr": {"options": {"view_options": {"blur_p": 0.0}, "temperature": 0.2}}},
                          "epochs": 2, "batch_size": 8, "warmup_epochs": 0.5},
             "train": {"inits": ["jigsaw"], "methods": {"coteaching": {"options": {"num_gradual": 2}}},
                       "noise_rates": [0.4], "epochs": 2, "batch_size": 8}}
    path = tmp_path / "opts.yaml"
    path.write_text(yaml.safe_dump(study))
    out = tmp_path / "out"
    assert main(["study", str(path), "--out", str(out)]) == 0
    params = {p.parent.parent.name + "/" + p.parent.name.split("-")[0]: yaml.safe_load(p.read_text())
              for p in out.glob("opts/*/*/params.yaml")}
    assert set(params) == {"pretrain/jigsaw", "pretrain/simclr", "train/jigsaw"}
    assert params["pretrain/jigsaw"]["method_options"] == {"permutations": 10, "crop": 0.85, "tile": None}
    assert params["pretrain/simclr"]["method_options"] == {"temperature": 0.2, "views": "auto",
                                                           "view_options": {"blur_p": 0.0}}
    assert params["pretrain/jigsaw"]["warmup_epochs"] == params["pretrain/simclr"]["warmup_epochs"] == 0.5
    trained = params["train/jigsaw"]
    assert trained["method_options"]["num_gradual"] == 2 and trained["method_options"]["forget_rate"] is not None
    jigsaw_dir = next(out.glob("opts/pretrain/jigsaw-*"))
    assert len(torch_load(jigsaw_dir / "backbone.pt")["jigsaw"]["permutations"]) == 10
    history = json.loads((jigsaw_dir / "figures" / "history.json").read_text())
    metrics = json.loads((jigsaw_dir / "pretrain_metrics.json").read_text())
    assert history["history"] == metrics["history"] and history["probe_acc"] == metrics["probe_acc"]
    # 24 images in batches of 8: 3 steps an epoch; warm-up 0.5 epochs = 2 steps, so after step 3 the cosine is at 1/4
    # of the remaining 4 steps (the default warm-up, a tenth of the run = 1 step, would give 0.65e-3).
    assert metrics["history"][0]["lr"] == pytest.approx(0.5e-3 * (1 + math.cos(math.pi / 4)))
    train_dir = next(out.glob("opts/train/jigsaw-*"))
    curves = json.loads((train_dir / "figures" / "learning_curves.json").read_text())
    records = json.loads((train_dir / "metrics.json").read_text())
    assert curves["final"] == records["final"]
    assert curves["history"]["test_acc"] == [h["test_acc"] for h in records["history"]]


def torch_load(path):
    import torch

    return torch.load(path, map_location="cpu", weights_only=False)


def test_version_is_the_installed_one(capsys):
    import importlib.metadata

    with pytest.raises(SystemExit) as ended:
        main(["--version"])
    assert ended.value.code == 0 and capsys.readouterr().out == f"nbstudy {importlib.metadata.version('nbstudy')}\n"
