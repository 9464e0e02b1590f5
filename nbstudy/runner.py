"""Run a study: its pretraining and training runs, then its results table, then its analysis notebooks.

Runs are handed to an *executor* as `submit(execute, run)`, which returns a
concurrent.futures Future: a thread pool runs them on this machine, in
papermill kernels kept from run to run (nbstudy.kernels); nbstudy.executors.RayExecutor runs them as Ray tasks.
A run starts once the run it needs has finished; runs already finished are
skipped; a failed run is reported and the others go on.
"""

from __future__ import annotations

import json
import sys
import tempfile
from concurrent.futures import FIRST_COMPLETED, Executor, wait
from pathlib import Path

from tqdm.auto import tqdm

from nbstudy import study as studies
from nbstudy.errors import NbstudyError
from nbstudy.execute import check_parameters, execute, is_finished, one_line, warn
from nbstudy.pretrain.records import METRICS_FILE, probe_warning


def plan(study: dict, out, notebooks) -> tuple[Path, list, dict]:
    """(study folder, pretraining and training runs, analysis notebooks), every notebook parameter checked."""
    study_dir = (Path(out) / study["name"]).resolve()
    if not Path(notebooks).is_dir():
        raise NbstudyError(f"notebooks folder {notebooks} does not exist: pass --notebooks DIR, the folder holding"
                           f" {', '.join(studies.STAGE_NOTEBOOKS.values())}")
    studies.check_data_path(study)
    data = check_dataset(study)
    runs = studies.expand(study, study_dir, notebooks)
    check_runs_on_data(runs, data)
    analysis = studies.analysis_notebooks(study, notebooks)
    for run in runs + studies.analysis_runs(analysis, study_dir):
        check_parameters(run)
    return study_dir, runs, analysis


def check_dataset(study: dict):
    """Load the study's data set once, before any run (and in --dry-run), and return it: one that cannot be used
    at all (no train split, one class, damaged) is one error here, not the same error in every run. The cache it
    builds is the one the runs read. Warns when the study's symmetric noise rates make far fewer labels wrong
    than they say (few classes), and when small real images meet the ImageNet stem (`study.stem_warning`)."""
    from nbstudy.data import load_dataset

    ds = study["dataset"]
    data_path = None if ds["data_path"] is None else str(Path(ds["data_path"]).expanduser().resolve())
    try:
        loaded = load_dataset(ds["name"], data_path=data_path, resolution=ds["resolution"], seed=ds["seed"],
                              **ds["options"])
    except NbstudyError as e:
        raise NbstudyError(f"dataset: {e}") from None
    except (TypeError, ValueError) as e:   # an option value of the wrong kind, which only the loader can tell
        raise NbstudyError(f"dataset: {ds['name']} cannot load with options {ds['options']} "
                           f"({type(e).__name__}: {' '.join(str(e).split())}): fix the options' values "
                           "(docs/datasets.md)") from None
    for message in (studies.noise_warning(study, loaded.num_classes),
                    studies.stem_warning(study, loaded.resolution, loaded.synthetic)):
        if message:
            warn(message)
    return loaded


def check_runs_on_data(runs: list, data) -> None:
    """Every check a training run makes against its data (`nbstudy.lnl.loop.setup_on`: batch size against the
    images left after the validation split, the noise and method options against the classes...), made now
    for every run, so a study (and --dry-run) fails in one line before it starts, not in every run after it.
    Runs that differ only in init or backbone share the check."""
    from nbstudy.lnl.loop import setup_on

    checked = set()
    for run in runs:
        if run.stage != "train":
            continue
        same = json.dumps({k: v for k, v in run.params.items() if k not in ("init", "backbone", "output_dir")},
                          sort_keys=True, default=str)
        if same in checked:
            continue
        checked.add(same)
        try:
            setup_on(run.params, data)
        except NbstudyError as e:
            g = run.grid
            raise NbstudyError(f"train: methods: {g['method']} ({g['noise_kind']} {g['noise_rate']:g}): {e}") from None


def check_writable(study_dir: Path, create: bool = True) -> None:
    """Find out now, not when the first run ends, that the study folder cannot be written. create=False (a dry
    run) leaves nothing behind: it tries a folder of its own in the nearest folder that exists, then removes it."""
    try:
        if create:
            study_dir.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=study_dir):
                pass
        else:
            existing = next(p for p in (study_dir, *study_dir.parents) if p.exists())
            with tempfile.TemporaryDirectory(dir=existing):
                pass
    except OSError as e:
        raise NbstudyError(f"output folder {study_dir} is not writable ({e.strerror}): pass --out DIR, a folder you"
                           " can write to") from None


def run_study(study_dir: Path, runs: list, analysis: dict, executor: Executor) -> tuple[list, dict, dict]:
    """Do what is missing of a planned study.

    Returns (all its runs, {run name: finished | failed | skipped}, {run name:
    its one-line error} for the runs that did not finish).
    """
    name = study_dir.name
    for tmp in study_dir.glob(".results.csv.*.tmp"):   # left by a process killed while it wrote the table
        tmp.unlink(missing_ok=True)
    outcome, errors = run_all(runs, executor, f"{name}: runs")
    studies.write_results(study_dir, runs, outcome)
    analysis_runs = studies.analysis_runs(analysis, study_dir)
    trained = [run for run in runs if run.stage == "train"]
    if analysis_runs and trained and not any(outcome[run.name] == "finished" for run in trained):
        for run in analysis_runs:   # each would fail with "run the study first", which misleads
            outcome[run.name], errors[run.name] = "skipped", "no training run finished: fix the failed runs above"
    elif analysis_runs:
        more, more_errors = run_all(analysis_runs, executor, f"{name}: analysis")
        outcome.update(more)
        errors.update(more_errors)
    return runs + analysis_runs, outcome, errors


def pretraining_warnings(runs: list, outcome: dict) -> list[str]:
    """For the summary: one line per finished pretraining run whose k-NN probe ended below random init's
    (`nbstudy.pretrain.records.probe_warning`), read from its pretrain_metrics.json."""
    lines = []
    for run in runs:
        path = run.folder / METRICS_FILE
        if run.stage != "pretrain" or outcome.get(run.name) != "finished" or not path.is_file():
            continue
        m = json.loads(path.read_text())
        line = probe_warning(f"{m.get('method', '')} ({run.name})".lstrip(), m.get("probe_acc", float("nan")),
                             m.get("random_init_probe_acc", float("nan")))
        if line:
            lines.append(line)
    return lines


def run_all(runs: list, executor: Executor, desc: str) -> tuple[dict, dict]:
    """Execute the runs not finished yet, each once the run it needs has finished.

    Returns ({run name: "finished" | "failed" | "skipped"}, {run name: error});
    skipped means the run it needs failed.
    """
    outcome, errors, running, pending = {}, {}, {}, list(runs)
    with tqdm(total=len(runs), desc=desc, unit="run") as bar:
        while pending or running:
            for run in [r for r in pending if r.needs is None or r.needs in outcome]:
                pending.remove(run)
                if run.needs and outcome[run.needs] != "finished":
                    outcome[run.name], errors[run.name] = "skipped", f"the run it needs failed ({run.needs})"
                    bar.write(f"skipped {run.name}: {errors[run.name]}", file=sys.stderr)
                    bar.update()
                elif is_finished(run):
                    outcome[run.name] = "finished"
                    bar.update()
                else:
                    running[executor.submit(execute, run)] = run
            # a timeout, so that this thread wakes to take Ctrl-C: the signal may land on a worker thread, and a
            # wait without one would never return to notice it
            done, _ = wait(running, timeout=0.5, return_when=FIRST_COMPLETED)
            for future in done:
                run = running.pop(future)
                outcome[run.name], error = _report(run, future, bar)
                if error:
                    errors[run.name] = error
                bar.update()
    return outcome, errors


def _report(run, future, bar) -> tuple[str, str | None]:
    """Print how the run ended, as it ends; return (its status, its error)."""
    try:
        result = future.result()
    except Exception as e:  # not the notebook's failure but the executor's: a Ray worker lost too often, ...
        error = one_line(type(e).__name__, str(e))
        bar.write(f"FAILED {run.name}: {error}\n  (no result came back; the run is redone next time)", file=sys.stderr)
        return "failed", error
    if result["status"] != "finished":   # failed, or interrupted (Ctrl-C)
        bar.write(f"FAILED {run.name}: {result['error']}\n  see {result['notebook']}", file=sys.stderr)
    elif result.get("by"):
        bar.write(f"left to {result['by']}: {run.name} (finished there)", file=sys.stderr)
    else:
        bar.write(f"finished {run.name} ({result['seconds']:g} s)", file=sys.stderr)
    return result["status"], result["error"]
