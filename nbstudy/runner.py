"""Run a study: its pretraining and training runs, then its results table, then its analysis notebooks.

Runs are handed to an *executor*: anything with concurrent.futures' `submit`
(a thread pool runs them locally, one papermill kernel per run). A run starts
once the run it needs has finished; runs already finished are skipped; a
failed run is reported and the others go on.
"""

from __future__ import annotations

import sys
from concurrent.futures import FIRST_COMPLETED, Executor, wait
from pathlib import Path

from tqdm.auto import tqdm

from nbstudy import study as studies
from nbstudy.errors import NbstudyError
from nbstudy.execute import check_parameters, execute, is_finished


def plan(study: dict, out, notebooks) -> tuple[Path, list, dict]:
    """(study folder, pretraining and training runs, analysis notebooks), every notebook parameter checked."""
    study_dir = (Path(out) / study["name"]).resolve()
    if not Path(notebooks).is_dir():
        raise NbstudyError(f"notebooks folder {notebooks} does not exist: pass --notebooks DIR, the folder holding"
                           f" {', '.join(studies.STAGE_NOTEBOOKS.values())}")
    runs = studies.expand(study, study_dir, notebooks)
    analysis = studies.analysis_notebooks(study, notebooks)
    for run in runs + studies.analysis_runs(analysis, study_dir):
        check_parameters(run)
    return study_dir, runs, analysis


def run_study(study_dir: Path, runs: list, analysis: dict, executor: Executor) -> tuple[list, dict]:
    """Do what is missing of a planned study; return (all its runs, {run name: finished | failed | skipped})."""
    name = study_dir.name
    outcome = run_all(runs, executor, f"{name}: runs")
    studies.write_results(study_dir, runs, outcome)
    analysis_runs = studies.analysis_runs(analysis, study_dir)
    if analysis_runs:
        outcome.update(run_all(analysis_runs, executor, f"{name}: analysis"))
    return runs + analysis_runs, outcome


def run_all(runs: list, executor: Executor, desc: str) -> dict:
    """Execute the runs not finished yet, each once the run it needs has finished.

    Returns {run name: "finished" | "failed" | "skipped"}; skipped means the run
    it needs failed.
    """
    outcome, running, pending = {}, {}, list(runs)
    with tqdm(total=len(runs), desc=desc, unit="run") as bar:
        while pending or running:
            for run in [r for r in pending if r.needs is None or r.needs in outcome]:
                pending.remove(run)
                if run.needs and outcome[run.needs] != "finished":
                    outcome[run.name] = "skipped"
                    bar.write(f"skipped {run.name}: the run it needs failed ({run.needs})", file=sys.stderr)
                    bar.update()
                elif is_finished(run):
                    outcome[run.name] = "finished"
                    bar.update()
                else:
                    running[executor.submit(_execute, run, bar)] = run
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                run, result = running.pop(future), future.result()
                outcome[run.name] = result["status"]
                if result["status"] == "failed":
                    bar.write(f"FAILED {run.name}: {result['error']}\n  see {result['notebook']}", file=sys.stderr)
                bar.update()
    return outcome


def _execute(run, bar):
    bar.set_postfix_str(run.name, refresh=True)
    return execute(run)
