"""The `nbstudy` command. `nbstudy study PARAMS.yaml` runs a whole study (docs/studies.md).

A user error prints one line, `nbstudy: error: ...`, and exits with 2; a study
with failed runs exits with 1.
"""

from __future__ import annotations

import argparse
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from nbstudy.errors import NbstudyError

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.command(args)
    except NbstudyError as e:
        print(f"nbstudy: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nbstudy: interrupted: finished runs are kept; run the same command to do the rest", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nbstudy", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")
    study = commands.add_parser("study", help="run a study: pretraining, noisy-label training, analysis notebooks",
                                description="Run the study a YAML file describes; finished runs are skipped.")
    study.add_argument("params", metavar="PARAMS.yaml", help="the study file, e.g. parameters/demo.yaml")
    study.add_argument("--out", default="outputs", help="where the study's folder goes (default: outputs)")
    study.add_argument("--jobs", type=_positive, default=1, help="runs executed at once (default: 1)")
    study.add_argument("--dry-run", action="store_true", help="list the runs and whether they are done; run nothing")
    study.add_argument("--notebooks", type=Path, default=NOTEBOOKS,
                       help=f"folder of the stage and analysis notebooks (default: {NOTEBOOKS})")
    study.set_defaults(command=_study)
    return parser


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return int(text)


def _study(args) -> int:
    from nbstudy.execute import is_finished, stop_kernels
    from nbstudy.runner import plan, run_study
    from nbstudy.study import load_study

    study = load_study(args.params)
    study_dir, runs, analysis = plan(study, args.out, args.notebooks)
    todo = {run.name for run in runs if not is_finished(run)}
    print(f"study {study['name']}: {len(runs)} runs, {len(todo)} to do, then {len(analysis)} analysis notebooks"
          f" -> {study_dir}")
    if args.dry_run:
        for run in runs:
            print(f"  {'todo' if run.name in todo else 'done'}  {run.name}")
        for entry, notebook in analysis.items():
            print(f"  last  analysis/{entry}  ({notebook.name})")
        return 0
    executor = local_executor(args.jobs)
    try:
        all_runs, outcome = run_study(study_dir, runs, analysis, executor)
    except KeyboardInterrupt:  # start nothing more, stop what runs
        executor.shutdown(wait=False, cancel_futures=True)
        stop_kernels()
        raise
    finally:
        executor.shutdown()
    print(f"results table: {study_dir / 'results.csv'}")
    for run in all_runs:
        if run.stage == "analysis" and outcome[run.name] == "finished":
            print(f"analysis notebook: {run.folder / run.notebook.name}")
    bad = [name for name, status in outcome.items() if status != "finished"]
    if bad:
        print(f"nbstudy: {len(bad)} of {len(outcome)} runs failed or were skipped (see above): rerun the same command"
              " after fixing them; finished runs are kept", file=sys.stderr)
        return 1
    return 0


def local_executor(jobs: int) -> ThreadPoolExecutor:
    """Threads on this machine: each run is its own kernel process, so threads only wait on them.

    With several jobs, each kernel gets an equal share of the CPU cores
    (OMP_NUM_THREADS, unless set), so parallel runs do not fight over them.
    """
    if jobs > 1:
        os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // jobs)))
    return ThreadPoolExecutor(max_workers=jobs)
