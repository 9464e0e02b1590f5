"""The `nbstudy` command. `nbstudy study PARAMS.yaml` runs a whole study (docs/studies.md, docs/ray.md).

A user error prints one line, `nbstudy: error: ...`, and exits with 2; a study
with failed runs exits with 1.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from nbstudy import __version__
from nbstudy.errors import NbstudyError

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def main(argv=None) -> int:
    # papermill imports jsonschema (through nbformat), which builds ~40 lark parsers for its IRI format checker
    # when rfc3987_syntax is installed (jupyter_server's dependencies install it): 1.3 s of every command, of a
    # rerun's 9-10 s. nbformat never checks formats, and this process runs only nbstudy's code
    # (python-jsonschema/jsonschema#1428). Only the `nbstudy` command does this, never an imported nbstudy.
    sys.modules.setdefault("rfc3987_syntax", None)
    args = _parser().parse_args(argv)
    try:
        return args.command(args)
    except NbstudyError as e:
        print(f"nbstudy: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nbstudy: interrupted: finished runs are kept; run the same command to do the rest", file=sys.stderr)
        return 130
    except BrokenPipeError:   # `nbstudy study FILE --dry-run | head`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())   # no second error at exit
        return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nbstudy", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")
    study = commands.add_parser("study", help="run a study: pretraining, noisy-label training, analysis notebooks",
                                description="Run the study a YAML file describes; finished runs are skipped.")
    study.add_argument("params", metavar="PARAMS.yaml", help="the study file, e.g. parameters/demo.yaml")
    study.add_argument("--out", default="outputs", help="where the study's folder goes (default: outputs)")
    study.add_argument("--jobs", type=_positive, default=1,
                       help="local executor: runs executed at once on this machine (default: 1)")
    study.add_argument("--executor", choices=("local", "ray"), default="local",
                       help="local: this machine (default); ray: a Ray cluster, each run a task (docs/ray.md)")
    study.add_argument("--address", help="ray executor: the cluster's head, e.g. 10.0.0.1:6379 (default: $RAY_ADDRESS,"
                                         " else start a Ray on this machine)")
    study.add_argument("--retries", type=_count,
                       help="ray executor: times a run lost with its worker or node is started again (default: 2)")
    study.add_argument("--dry-run", action="store_true", help="list the runs and whether they are done; run nothing")
    study.add_argument("--notebooks", type=Path, default=NOTEBOOKS,
                       help=f"folder of the stage and analysis notebooks (default: {NOTEBOOKS})")
    study.set_defaults(command=_study)
    return parser


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return int(text)


def _count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 0")
    return int(text)


def _study(args) -> int:
    from nbstudy.execute import is_finished
    from nbstudy.kernels import stop_kernels
    from nbstudy.runner import check_writable, plan, pretraining_warnings, run_study
    from nbstudy.study import load_study

    _check_executor_options(args)
    study = load_study(args.params)
    study_dir, runs, analysis = plan(study, args.out, args.notebooks)
    check_writable(study_dir, create=not args.dry_run)
    todo = {run.name for run in runs if not is_finished(run)}
    print(f"study {study['name']}: {len(runs)} runs, {len(todo)} to do, then {len(analysis)} analysis notebooks"
          f" -> {study_dir}")
    if args.dry_run:
        for run in runs:
            print(f"  {'todo' if run.name in todo else 'done'}  {run.name}")
        for entry, notebook in analysis.items():
            print(f"  last  analysis/{entry}  ({notebook.name})")
        return 0
    executor = _executor(args, study["resources"], {run.stage for run in runs} | ({"analysis"} if analysis else set()))
    try:
        all_runs, outcome, errors = run_study(study_dir, runs, analysis, executor)
    except KeyboardInterrupt:  # start nothing more, stop what runs
        executor.shutdown(wait=False, cancel_futures=True)
        stop_kernels()
        raise
    finally:
        executor.shutdown()
    print(f"results table: {study_dir / 'results.csv'}")
    for line in pretraining_warnings(all_runs, outcome):
        print(f"nbstudy: warning: {line}", file=sys.stderr)
    for run in all_runs:
        if run.stage == "analysis" and outcome[run.name] == "finished":
            print(f"analysis notebook: {run.folder / run.notebook.name}")
    if errors:
        for name, error in errors.items():
            print(f"  {outcome[name]} {name}: {error}", file=sys.stderr)
        print(f"nbstudy: {len(errors)} of {len(outcome)} runs failed or were skipped (above): rerun the same command"
              " after fixing them; finished runs are kept", file=sys.stderr)
        return 1
    return 0


def _check_executor_options(args) -> None:
    """One executor's option given to the other is a mistake worth a word, not an option silently ignored."""
    for option, value in (("--address", args.address), ("--retries", args.retries)):
        if args.executor == "local" and value is not None:
            raise NbstudyError(f"{option} is for the Ray executor: add --executor ray, or drop {option}")
    if args.executor == "ray" and args.jobs != 1:
        raise NbstudyError("--jobs is for the local executor; Ray runs as many at once as the cluster's resources"
                           " allow: drop --jobs, and set resources in the study file (docs/ray.md)")


def _executor(args, resources: dict, stages: set):
    """The executor the options ask for; Ray's asks for the resources of the stages this study runs."""
    from nbstudy.executors import RayExecutor, local_executor

    if args.executor == "local":
        return local_executor(args.jobs)
    return RayExecutor({stage: resources[stage] for stage in stages}, address=args.address, retries=args.retries)
