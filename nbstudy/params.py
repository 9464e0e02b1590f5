"""The parameter contract: each parameter written once, with its default, its check and its meaning.

A stage declares its run parameters in one table of `Param`s
(`nbstudy.pretrain.params.PARAMS`, `nbstudy.lnl.params.PARAMS`) and each method
declares its own options the same way (`options = {...}` on the method). From
those tables follow, and nothing else writes them again:

- the defaults (`defaults(table)`, the stage's `DEFAULTS`);
- the checks (`resolve(table, given)`), used by the Python API, the
  notebooks, the study file and the CLI alike;
- the parameters that may change when a run resumes (``run_only``);
- the study file's keys (`nbstudy.study` reads the tables);
- the notebooks' parameters cells and the docs' parameter tables
  (`parameters_cell`, `markdown_table`; `python -m nbstudy.contract` rewrites
  them, and a test fails when they drift).

Checks accept Python and NumPy numbers alike, never take a bool for a number,
refuse NaN and infinity, and fail with one line that names the key, the value
and what to give instead.
"""

from __future__ import annotations

import difflib
import math
import numbers
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from nbstudy.checkpoint import atomic_write
from nbstudy.data import DATASETS
from nbstudy.errors import NbstudyError
from nbstudy.models import BACKBONES, RESNETS, STEMS
from nbstudy.plain import plain
from nbstudy.runtime import PRECISIONS


def did_you_mean(value, known) -> str:
    """' (did you mean 'x'?)' for the known name closest to `value`, case aside ('BF16' -> 'bf16'), or ''."""
    lower = {str(k).lower(): str(k) for k in known}
    close = difflib.get_close_matches(str(value).lower(), list(lower), n=1)
    return f" (did you mean {lower[close[0]]!r}?)" if close else ""


@dataclass(frozen=True)
class Check:
    """A test of one value (`ok`), what to give instead (`what`), and the value's canonical form (`clean`)."""

    ok: Callable[[object], bool]
    what: str
    clean: Callable[[object], object] = lambda v: v
    choices: tuple = ()   # the valid names, for a "did you mean" hint

    def __call__(self, name: str, value):
        if not self.ok(value):
            raise NbstudyError(f"{name}={shown(value)} is invalid{did_you_mean(value, self.choices)}: give {self.what}")
        return self.clean(value)


def shown(value, limit: int = 80) -> str:
    """A value's repr on one line, cut to `limit` characters (an error message stays one short line)."""
    text = " ".join(repr(value).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


@dataclass(frozen=True)
class Param:
    """One parameter: its default, its check, a one-line meaning (docs and notebooks show it).

    run_only: it does not change what the run computes (device, output folder,
    progress bars...), so it may differ when a run resumes and is not part of a
    run's identity in a study.
    """

    default: object
    check: Check
    doc: str
    run_only: bool = False


def is_whole(v) -> bool:
    return isinstance(v, (numbers.Integral, np.integer)) and not isinstance(v, (bool, np.bool_))


def is_real(v) -> bool:
    if not isinstance(v, (numbers.Real, np.integer, np.floating)) or isinstance(v, (bool, np.bool_)):
        return False
    try:
        return math.isfinite(v)
    except OverflowError:   # an int too large for a float
        return False


def _range(low, high, low_open=False) -> str:
    num = lambda x: f"{x:g}" if isinstance(x, float) else str(x)  # noqa: E731 (whole numbers in full)
    if high is None:
        return f"{'>' if low_open else '>='} {num(low)}"
    return f"in {'(' if low_open else '['}{num(low)}, {num(high)}]"


def whole(low=0, high=None) -> Check:
    """A whole number (Python or NumPy) in [low, high]; returned as int."""
    return Check(lambda v: is_whole(v) and v >= low and (high is None or v <= high),
                 f"a whole number {_range(low, high)}", int)


def real(low=-math.inf, high=None, low_open=False) -> Check:
    """A finite real number (Python or NumPy, ints too) in [low, high] ((low, high] if low_open); returned as float."""
    return Check(lambda v: is_real(v) and (v > low if low_open else v >= low) and (high is None or v <= high),
                 f"a number {_range(low, high, low_open)}", float)


def seed() -> Check:
    """A random seed: a whole number that every generator takes (NumPy's legacy seed needs < 2**32)."""
    return whole(0, 2**32 - 1)


def reals(n: int, low=-math.inf, high=None, low_open=False) -> Check:
    """A list or tuple of n finite real numbers, each in [low, high] ((low, high] if low_open); a tuple of floats."""
    one = real(low, high, low_open)
    return Check(lambda v: isinstance(v, (list, tuple)) and len(v) == n and all(one.ok(x) for x in v),
                 f"{n} numbers {one.what.removeprefix('a number ')}", lambda v: tuple(float(x) for x in v))


def flag() -> Check:
    return Check(lambda v: isinstance(v, (bool, np.bool_)), "True or False", bool)


def one_of(*choices) -> Check:
    return Check(lambda v: isinstance(v, str) and v in choices, f"one of {', '.join(choices)}", choices=choices)


def text(example: str) -> Check:
    return Check(lambda v: isinstance(v, str) and v != "", f"a non-empty string such as {example!r}")


def mapping() -> Check:
    """A dict; NumPy values inside become Python ones, so it saves and compares as given."""
    return Check(lambda v: isinstance(v, dict), "a mapping such as {}", plain)



def optional(check: Check, meaning: str = "") -> Check:
    """None, or what `check` accepts."""
    what = f"None{f' ({meaning})' if meaning else ''} or {check.what}"
    return Check(lambda v: v is None or check.ok(v), what, lambda v: None if v is None else check.clean(v),
                 check.choices)


def device() -> Check:
    return Check(lambda v: isinstance(v, str) and re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", v) is not None,
                 "auto, cpu, cuda or cuda:N")


def precision_param() -> Param:
    """The `precision` run parameter both stages share (written here once): `nbstudy.runtime.autocast`."""
    return Param("auto", one_of(*PRECISIONS), "auto (bf16 autocast on CUDA, fp32 on the CPU), fp32, or bf16 "
                 "(on a CPU faster on some, slower on others: docs/benchmarks.md)")


def resume_param() -> Param:
    """The `resume` run parameter both stages share (written here once)."""
    return Param(True, flag(), "resume a killed run, reuse a finished one (False: start over)", run_only=True)


def data_params() -> dict:
    """The dataset parameters both stages share (written here once): what `nbstudy.data.load_dataset` loads."""
    return {
        "dataset": Param("synthetic", one_of(*DATASETS), "dataset: " + ", ".join(DATASETS) + " (docs/datasets.md)"),
        "data_path": Param(None, optional(text("data/nct_crc_he")), "the dataset's folder or file (not needed "
                           "for synthetic)"),
        "dataset_options": Param({}, mapping(), "options of the dataset's loader, e.g. {'subsample': 5000}; "
                                 "synthetic: {'per_class': 150}"),
        "data_seed": Param(0, seed(), "the dataset's draw, split and subsample, the same for every run of a "
                           "study (not the run's seed)"),
        "resolution": Param(32, optional(whole(8), "the data's own"), "image side in pixels, 224 in the paper (None: the data's own)"),
        "stem": Param("auto", one_of(*STEMS), "ResNet stem: auto (3x3, no max-pool, up to 64 px), imagenet, "
                      "small; a ViT ignores it"),
        "backbone": Param("resnet18", one_of(*BACKBONES), "network: resnet18 (the study's), resnet50, vit_tiny "
                          "(docs/backbones.md)"),
    }


# Parameters added after runs were named, with the value every earlier run had: at that value they are left
# out of a run's name and resume key (`named`), so earlier runs keep their names and still resume.
# val_split "auto" is what earlier runs did on data sets without a validation split (synthetic, NCT-CRC-HE); on those
# with one (MedMNIST, COVID-QU-Ex, an image folder with val/) earlier runs carved val_fraction off the training set.
LATER = {"backbone": "resnet18", "class_weights": "none", "val_split": "auto", "precision": "auto"}


def named(params: dict) -> dict:
    """`params` less the `LATER` parameters that have their earlier value, and less a ViT's `stem`: what names a
    run and keys its resume. A ViT ignores the stem, so studies that differ only in stem share their ViT runs."""
    kept = {k: v for k, v in params.items() if k not in LATER or v != LATER[k]}
    if params.get("backbone", LATER["backbone"]) not in RESNETS:
        kept.pop("stem", None)
    return kept


def defaults(table: dict) -> dict:
    """{name: default} of a parameter table, in its order."""
    return {name: p.default for name, p in table.items()}


def run_only(table: dict) -> tuple:
    """The names that may change between a run and its resumption."""
    return tuple(name for name, p in table.items() if p.run_only)


def check_names(given, known, what: str) -> None:
    """Unknown names are an error that suggests the closest known one."""
    unknown = [name for name in given if name not in known]
    if unknown:
        raise NbstudyError(f"unknown {what} {shown(unknown[0])}{did_you_mean(unknown[0], known)}: valid ones are "
                           f"{', '.join(known) or '(none)'}")


def merged(params, kwargs: dict) -> dict:
    """A stage's `params` dict (or None) with keyword overrides; anything but a dict is a one-line error."""
    if params is not None and not isinstance(params, dict):
        raise NbstudyError(f"parameters must be a dict of names to values, not {shown(params)}: e.g. "
                           "{'method': ...} or keywords")
    return {**(params or {}), **kwargs}


def resolve(table: dict, given: dict, what: str = "parameter", prefix: str = "") -> dict:
    """`given` checked against `table`, defaults filled in, values in canonical form (ints, floats)."""
    if not isinstance(given, dict):
        raise NbstudyError(f"{prefix.rstrip('.') or what + 's'} must be a mapping of names to values, not "
                           f"{shown(given)}")
    check_names(given, list(table), what)
    return {name: p.check(prefix + name, given.get(name, p.default)) for name, p in table.items()}


def method_options(method, given, params: dict) -> dict:
    """A method's options: its defaults, overridden by `given`, each checked, then the method's own
    cross-checks (`method.check_options(options, params)`, which may also fill derived values)."""
    opts = resolve(method.options, given, f"option of method {method.name!r}", "method_options.")
    return method.check_options(opts, params)


# ---- what follows from the tables: notebook parameters cells and docs tables ------------------------------


def parameters_cell(table: dict, methods: dict) -> str:
    """The source of a stage notebook's parameters cell: every parameter, its default, its meaning.

    No '=' in a comment: papermill's parser then drops the line's parameter."""
    width = max(len(f"{name} = {p.default!r}") for name, p in table.items())
    lines = ["# Parameters (papermill overrides these; literals only). Made from the stage's PARAMS by",
             "# python -m nbstudy.contract: change them there, not here."]
    for name, p in table.items():
        lines.append(f"{f'{name} = {p.default!r}':<{width}}  # {p.doc}")
    lines.append("# method_options, by method (name=default):")
    for name, m in methods.items():
        lines.append(f"#   {name}: {', '.join(f'{k}={v.default!r}' for k, v in m.options.items()) or '(none)'}")
    return "\n".join(lines)


def markdown_table(table: dict) -> str:
    """A docs table of a parameter table: name, default, what to give, meaning, and whether it is run-only
    (it may change when a run resumes and does not name a study's run)."""
    rows = ["| name | default | valid values | meaning | run-only |", "| --- | --- | --- | --- | --- |"]
    for name, p in table.items():
        rows.append(f"| `{name}` | `{p.default!r}` | {p.check.what} | {p.doc} | {'yes' if p.run_only else ''} |")
    return "\n".join(rows)


def methods_table(methods: dict) -> str:
    """A docs table of each method's options."""
    rows = ["| method | option | default | valid values | meaning |", "| --- | --- | --- | --- | --- |"]
    for name, m in methods.items():
        for option, p in m.options.items():
            rows.append(f"| `{name}` | `{option}` | `{p.default!r}` | {p.check.what} | {p.doc} |")
        if not m.options:
            rows.append(f"| `{name}` | (none) | | | |")
    return "\n".join(rows)


def save_params(folder, params: dict, name: str = "params.yaml") -> Path:
    """Write the parameters a run ran with (every default and method option filled in) as YAML."""
    import yaml   # here, not at the top: training imports no file-format library it does not use

    text = yaml.safe_dump(plain(params), sort_keys=False)
    return atomic_write(Path(folder) / name, lambda tmp: Path(tmp).write_text(text))
