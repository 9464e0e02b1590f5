"""What real use does to a study folder: two processes on it, damaged files in it, odd study files, a full disk.

Stub notebooks (seconds per run) stand in for the stages; the execution log counts what ran."""

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml

from nbstudy import study as studies
from nbstudy.cli import main
from stub_notebooks import write_stubs


SLOW_TRAIN = """
import time
time.sleep(1.5)   # long enough for two processes to meet on one run
"""


def study_file(folder, **train):
    path = Path(folder) / "s.yaml"
    path.write_text(yaml.safe_dump({
        "name": "s", "dataset": {"name": "synthetic", "resolution": 32}, "pretrain": {"methods": ["simclr"]},
        "train": {"methods": ["ce"], "noise_rates": [0.2, 0.6], **train}, "analysis": ["summary"]}))
    return path


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """A finished stub study, made once: (its folder, the stub notebooks, the execution log)."""
    root = tmp_path_factory.mktemp("template")
    log = root / "executions.log"
    notebooks = write_stubs(root / "nb", log)
    assert main(["study", str(study_file(root)), "--out", str(root / "out"), "--notebooks", str(notebooks)]) == 0
    return root, notebooks, log


@pytest.fixture
def finished(template, tmp_path, capsys):
    """A copy of the finished study: (run the CLI on it, read the execution log, the study folder)."""
    root, notebooks, log = template
    shutil.copytree(root / "out", tmp_path / "out")

    def cli(*args):
        return main(["study", str(study_file(root)), "--out", str(tmp_path / "out"), "--notebooks", str(notebooks),
                     *args])

    capsys.readouterr()
    return cli, lambda: log.read_text().splitlines(), tmp_path / "out" / "s"


def snapshot(folder, skip=()):
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file() and p.parent.name not in skip
            and "analysis" not in p.parts and p.name != "results.csv"}


@pytest.mark.parametrize("file, damage", [
    ("pretrain/simclr-*/backbone.pt", lambda p: p.write_bytes(p.read_bytes()[:2])),     # truncated
    ("train/random-ce-*-0.2-*/metrics.json", lambda p: p.write_text('{"final": {"best')),  # truncated JSON
    ("train/random-ce-*-0.2-*/records.npz", lambda p: p.write_bytes(b"garbled")),        # replaced
    ("train/random-ce-*-0.6-*/metrics.json", lambda p: p.unlink()),                      # gone
])
def test_a_damaged_output_gets_its_run_redone_with_a_warning_naming_it(finished, capsys, file, damage):
    cli, executions, study_dir = finished
    target = next(study_dir.glob(file))
    damage(target)
    others = {p: b for p, b in snapshot(study_dir).items() if p.parent != target.parent}
    before = len(executions())
    assert cli() == 0
    err = capsys.readouterr().err
    assert f"nbstudy: warning: {target} is missing or not as its run left it: redoing" in err
    redone = [line for line in executions()[before:] if not line.startswith("analysis")]
    assert len(redone) == 1 and redone[0].split()[0] == target.parent.parent.name   # that run, and only that one
    assert target.is_file() and next(iter(json.loads((target.parent / "status.json").read_text())["outputs"]))
    assert {p: b for p, b in snapshot(study_dir).items() if p in others} == others   # the rest untouched
    assert "Traceback" not in err


@pytest.mark.parametrize("content", [b"\xff\xfe\x00garbage", b'{"status": "finished"}', b'"finished"', b"",
                                     b'{"status": 5, "key": "abc"}'])
def test_a_damaged_status_file_is_one_warning_even_in_a_dry_run(finished, capsys, content):
    cli, executions, study_dir = finished
    status = next(study_dir.glob("train/random-ce-*-0.2-*/status.json"))
    status.write_bytes(content)
    assert cli("--dry-run") == 0
    out, err = capsys.readouterr()
    assert "1 to do" in out and "Traceback" not in err
    if content:
        assert f"nbstudy: warning: {status} is damaged: redoing" in err or "not as its run left it" in err
    assert cli() == 0
    assert json.loads(status.read_text())["status"] == "finished"


def test_a_temporary_file_left_by_a_kill_is_cleared(finished):
    cli, _, study_dir = finished
    stale = [study_dir / ".results.csv.abc123.tmp", next(study_dir.glob("train/*")) / ".status.json.x1.tmp"]
    for path in stale:
        path.write_text("half")
    run = stale[1].parent
    (run / "metrics.json").unlink()   # so that this run is redone
    assert cli() == 0
    assert not any(p.exists() for p in stale)


def test_a_full_disk_while_writing_results_is_one_line_and_the_old_table_stays(finished, capsys, monkeypatch):
    cli, _, study_dir = finished
    table = (study_dir / "results.csv").read_bytes()

    def no_space(path, write):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(studies, "atomic_write", no_space)
    assert cli() == 2
    last = capsys.readouterr().err.splitlines()[-1]   # after the progress bar
    assert last.startswith(f"nbstudy: error: cannot write {study_dir / 'results.csv'} (No space left on device): "
                           "free space")
    assert (study_dir / "results.csv").read_bytes() == table


@pytest.mark.parametrize("write, message", [
    (lambda p: p.write_text("name: a\ntrain: {}\ntrain: {}\n"), "'train' is given twice (line 3)"),
    (lambda p: p.write_bytes("name: a\n# café\n".encode("latin-1")), "is not UTF-8 or UTF-16 text (byte 13 is 0xe9)"),
])
def test_odd_study_files_are_one_line(tmp_path, capsys, write, message):
    path = tmp_path / "odd.yaml"
    write(path)
    assert main(["study", str(path), "--dry-run", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_a_utf16_study_file_is_read(tmp_path):
    path = study_file(tmp_path)
    path.write_bytes(path.read_text().encode("utf-16"))
    assert studies.load_study(path)["name"] == "s"


def test_a_dry_run_into_a_closed_pipe_ends_quietly(tmp_path):
    path = study_file(tmp_path, seeds=list(range(400)))
    notebooks = write_stubs(tmp_path / "nb", tmp_path / "log")
    shell = (f"{sys.executable} -c 'import sys; from nbstudy.cli import main; sys.exit(main())' study {path} "
             f"--dry-run --out {tmp_path / 'out'} --notebooks {notebooks} | head -1")
    done = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, timeout=120)
    assert done.stdout.startswith("study s: 1601 runs") and done.stderr == ""   # 1 + 2 inits x 2 rates x 400 seeds


@pytest.mark.slow
def test_two_processes_on_one_study_run_each_run_once(tmp_path):
    log = tmp_path / "executions.log"
    notebooks = write_stubs(tmp_path / "nb", log, train_body=SLOW_TRAIN + textwrap.dedent(
        __import__("stub_notebooks").TRAIN_BODY))
    path = study_file(tmp_path, seeds=[0, 1])
    command = [sys.executable, "-c", "import sys; from nbstudy.cli import main; sys.exit(main())", "study",
               str(path), "--out", str(tmp_path / "out"), "--notebooks", str(notebooks), "--jobs", "2"]
    first = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    second = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    errs = [p.communicate(timeout=600)[1] for p in (first, second)]
    assert first.returncode == second.returncode == 0, errs
    executed = log.read_text().splitlines()
    runs = [line for line in executed if not line.startswith("analysis")]
    assert sorted(runs) == sorted(set(runs)) and len(runs) == 1 + 2 * 2 * 2   # every run once: 1 + inits x rates x seeds
    assert len(executed) == len(runs) + 1                                    # and the analysis notebook once
    finished = [{line.split()[1] for line in err.splitlines() if line.startswith("finished ")} for err in errs]
    left = [{line.split()[4] for line in err.splitlines() if line.startswith("left to another process: ")}
            for err in errs]
    assert not finished[0] & finished[1] and len(finished[0] | finished[1]) == len(executed)
    assert left[0] <= finished[1] and left[1] <= finished[0] and left[0] | left[1]   # they met, and said so
    table = (tmp_path / "out" / "s" / "results.csv").read_text().splitlines()
    assert len(table) == 1 + 8 and all(",finished," in row for row in table[1:])


def test_runs_use_this_interpreter_whatever_the_python3_kernel_spec_points_at(tmp_path):
    """A `python3` kernel spec of another Python (a conda base, another venv) cannot import nbstudy."""
    spec = tmp_path / "jupyter" / "kernels" / "python3"
    spec.mkdir(parents=True)
    other = tmp_path / "other-python"
    other.write_text("#!/bin/sh\necho 'ModuleNotFoundError: No module named matplotlib' >&2\nexit 1\n")
    other.chmod(0o755)
    (spec / "kernel.json").write_text(json.dumps({"argv": [str(other), "-m", "ipykernel_launcher", "-f",
                                                           "{connection_file}"], "display_name": "Python 3",
                                                  "language": "python"}))
    notebooks = write_stubs(tmp_path / "nb", tmp_path / "log")
    path = tmp_path / "one.yaml"   # one run is enough to start a kernel
    path.write_text(yaml.safe_dump({"name": "one", "dataset": {"name": "synthetic"},
                                    "train": {"methods": ["ce"], "noise_rates": [0.2]}}))
    env = {**__import__("os").environ, "JUPYTER_PATH": str(tmp_path / "jupyter")}
    found = subprocess.run([sys.executable, "-m", "jupyter", "kernelspec", "list"], capture_output=True, text=True,
                           env=env).stdout
    assert str(spec) in found   # the other Python's spec is the one Jupyter would start
    done = subprocess.run([sys.executable, "-c", "import sys; from nbstudy.cli import main; sys.exit(main())", "study",
                           str(path), "--out", str(tmp_path / "out"), "--notebooks", str(notebooks)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "log").read_text().splitlines() == ["train random ce 0.2 0"]


def test_a_data_set_option_of_the_wrong_kind_is_one_line_at_dry_run(tmp_path, capsys):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"name": "s", "dataset": {"name": "synthetic", "options": {"per_class": "x"}},
                                    "train": {"methods": ["ce"], "noise_rates": [0.2]}}))
    assert main(["study", str(path), "--dry-run", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nbstudy: error: dataset: synthetic cannot load with options {'per_class': 'x'} (TypeError")
    assert err.count("\n") == 1


@pytest.mark.parametrize("arrays, message", [
    (lambda d: {k: v for k, v in d.items() if k.startswith("test")}, "has no train_images/train_labels arrays (found: test_images, test_labels): add the dataset option "
     "test_fraction: 0.2"),
    (lambda d: {**d, "train_labels": np.zeros_like(d["train_labels"])}, "1 of 2 classes never appear in the training"),
])
def test_an_unusable_data_set_is_one_error_before_any_run_even_in_a_dry_run(tmp_path, capsys, arrays, message):
    mini = dict(np.load(Path(__file__).resolve().parent / "data" / "breastmnist_mini.npz"))
    data = tmp_path / "broken.npz"
    np.savez(data, **arrays(mini))
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"name": "s", "dataset": {"name": "medmnist", "data_path": str(data),
                                                             "resolution": 28},
                                    "train": {"methods": ["ce"], "noise_rates": [0.2, 0.6]}}))
    assert main(["study", str(path), "--dry-run", "--out", str(tmp_path / "out")]) == 2
    last = capsys.readouterr().err.splitlines()[-1]   # after the cache's progress bar, if any
    assert last.startswith(f"nbstudy: error: dataset: {data}") and message in last
