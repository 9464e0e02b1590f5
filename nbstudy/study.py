"""Study files: read and check a study YAML, expand its grid into runs, tabulate results.

A study file names a dataset, the pretraining runs and the grid of noisy-label
training runs (docs/studies.md lists every key). Everything a user can get
wrong in it is caught here, before any notebook runs: unknown keys, misspelt
method names, values of the wrong type, empty grids, noise rates outside
[0, 1], a dataset path that does not exist.

A run's folder name is a readable prefix plus a short hash of the run's
parameters as the study file states them (not the device, how often it saves
its state, or where outputs go), so running a study again finds the runs it
already did.
"""

from __future__ import annotations

import csv
import difflib
import hashlib
import importlib
import inspect
import io
import itertools
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from nbstudy.checkpoint import atomic_write
from nbstudy.errors import NbstudyError
from nbstudy.noise import KINDS as NOISE_KINDS

REQUIRED = object()

TOP = {"name": REQUIRED, "device": "auto", "torch_compile": False, "dataset": REQUIRED, "pretrain": None, "train": REQUIRED, "analysis": [],
       "resources": {}}
DATASET = {"name": REQUIRED, "data_path": None, "options": {}, "resolution": REQUIRED, "stem": "auto", "seed": 0}
PRETRAIN_HPARAMS = {"epochs": REQUIRED, "batch_size": 256, "lr": 1e-3, "weight_decay": 1e-4, "optimizer": "adam",
                    "temperature": 0.07, "probe_every": 0, "seed": 0}
TRAIN_GRID = {"inits": None, "methods": REQUIRED, "noise_kinds": ["symmetric"], "noise_rates": REQUIRED, "seeds": [0]}
TRAIN_HPARAMS = {"epochs": REQUIRED, "batch_size": 128, "lr": None, "val_fraction": 0.1, "record_every": 1,
                 "checkpoint_every": 1}
RUN_ONLY = ("checkpoint_every",)  # how often a run saves its state, not what it computes: not part of its name
RESOURCES = ("num_cpus", "num_gpus", "memory")  # what a stage's runs ask Ray for (--executor ray)
STAGES = ("pretrain", "train", "analysis")
NEEDS_DATA_PATH = ("nct_crc_he", "covid_qu_ex", "image_folder")  # medmnist can download into a new folder


def _whole(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


# What each setting must be, wherever it appears: (test, what to give instead).
VALUES = {
    "epochs": (lambda v: _whole(v) and v >= 1, "a whole number >= 1"),
    "batch_size": (lambda v: _whole(v) and v >= 2, "a whole number >= 2"),
    "lr": (lambda v: v is None or _number(v) and v > 0, "a number > 0, or null"),
    "weight_decay": (lambda v: _number(v) and v >= 0, "a number >= 0"),
    "optimizer": (lambda v: isinstance(v, str), "a name such as adam"),
    "temperature": (lambda v: _number(v) and v > 0, "a number > 0"),
    "probe_every": (lambda v: _whole(v) and v >= 0, "a whole number >= 0"),
    "seed": (lambda v: _whole(v) and v >= 0, "a whole number >= 0"),
    "val_fraction": (lambda v: _number(v) and 0 <= v < 1, "a number in [0, 1)"),
    "record_every": (lambda v: _whole(v) and v >= 1, "a whole number >= 1"),
    "checkpoint_every": (lambda v: _whole(v) and v >= 0, "a whole number >= 0 (0: no checkpoints)"),
    "options": (lambda v: isinstance(v, dict), "a mapping such as {key: value}"),
    "data_path": (lambda v: v is None or isinstance(v, str), "a path, or null"),
    "resolution": (lambda v: _whole(v) and v >= 1, "a whole number of pixels"),
    "stem": (lambda v: v in ("auto", "imagenet", "small"), "auto, imagenet or small"),
    "device": (lambda v: isinstance(v, str) and re.fullmatch(r"auto|cpu|cuda(:\d+)?", v), "auto, cpu, cuda or cuda:N"),
    "torch_compile": (lambda v: isinstance(v, bool), "true or false"),
    "num_cpus": (lambda v: _number(v) and v >= 0, "a number >= 0"),
    "num_gpus": (lambda v: _number(v) and v >= 0 and (v <= 1 or v == int(v)),
                 "a number >= 0, a whole one above 1 (Ray shares a GPU only as fractions of one)"),
    "memory": (lambda v: _number(v) and v > 0, "a number of bytes > 0, such as 8.0e+9"),
}

STAGE_NOTEBOOKS = {"pretrain": "01_pretrain.ipynb", "train": "02_train_noisy.ipynb"}

@dataclass(frozen=True)
class Run:
    """One notebook execution: `grid` defines the run (and names it), `params` is what the notebook gets."""

    stage: str  # "pretrain", "train" or "analysis"
    name: str  # its folder, relative to the study folder: "pretrain/simclr-1a2b3c4d"
    folder: Path
    notebook: Path
    params: dict
    grid: dict
    key: str  # status.json must hold this key for the run to count as finished
    needs: str | None = None  # the run whose output this one reads


class _Loader(yaml.SafeLoader):
    """PyYAML reads 1e-3 as text (YAML 1.1); a study file means the number."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789"))


def load_study(path) -> dict:
    """Read a study file; return it checked, every default filled in."""
    path = Path(path)
    if not path.is_file():
        raise NbstudyError(f"study file {path} does not exist: give the path of a YAML file such as parameters/demo.yaml")
    try:
        raw = yaml.load(path.read_text(), Loader=_Loader)
    except yaml.YAMLError as e:
        raise NbstudyError(f"{path} is not valid YAML ({' '.join(str(e).split())}): fix the file") from None
    return check_study(raw, where=path.name)


def check_study(raw, where: str = "study") -> dict:
    """Check a study given as a dict (the parsed YAML)."""
    study = _fill(raw, TOP, where)
    study["name"] = str(study["name"])
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", study["name"]):
        raise NbstudyError(f"{where}: name {study['name']!r} cannot be a folder name: use letters, digits, '-', '_', '.'")
    study["dataset"] = _check_dataset(study["dataset"], f"{where}: dataset")
    pretrain = {}
    if study["pretrain"] is not None:
        stage = _fill(study["pretrain"], {"methods": REQUIRED, **PRETRAIN_HPARAMS}, f"{where}: pretrain")
        pretrain = _methods(stage, "nbstudy.pretrain", PRETRAIN_HPARAMS, f"{where}: pretrain")
    study["pretrain"] = {"methods": pretrain}
    study["train"] = _check_train(study["train"], list(pretrain), f"{where}: train")
    study["analysis"] = _as_list(study["analysis"], f"{where}: analysis", allow_empty=True)
    study["resources"] = _resources(study["resources"], f"{where}: resources")
    return study


def _check_dataset(section, where) -> dict:
    """The dataset section; its name and options are the data layer's (nbstudy.data.DATASETS)."""
    from nbstudy.data import DATASETS

    ds = _fill(section, DATASET, where)
    check_name(ds["name"], list(DATASETS), where, "dataset")
    loader = inspect.signature(DATASETS[ds["name"]]).parameters.values()
    accepted = [p.name for p in loader if p.kind == p.KEYWORD_ONLY]
    for option in ds["options"]:
        check_name(option, accepted, f"{where}: options", f"{ds['name']} option")
    return ds


def check_data_path(study: dict) -> None:
    """The dataset's files must be there before any run starts; relative paths are from the current folder."""
    ds = study["dataset"]
    if ds["data_path"] is None:
        if ds["name"] in NEEDS_DATA_PATH:
            raise NbstudyError(f"dataset: {ds['name']} needs data_path, the folder holding its images: add data_path"
                               " to the study file's dataset section")
        return
    path = Path(ds["data_path"]).expanduser().resolve()
    if not path.exists() and (ds["name"] != "medmnist" or path.suffix == ".npz"):
        raise NbstudyError(f"dataset: data_path {path} does not exist: fix data_path in the study file (a relative"
                           " path is taken from the folder nbstudy runs in)")


def _resources(section, where) -> dict:
    """{stage: what each of its runs asks Ray for}; nothing given is Ray's default, one CPU."""
    given = _keys(section, STAGES, where)
    return {stage: _check_values(_keys(given.get(stage), RESOURCES, f"{where}: {stage}"), f"{where}: {stage}")
            for stage in STAGES}


def _check_train(section, pretrained, where):
    stage = _fill(section, {**TRAIN_GRID, **TRAIN_HPARAMS}, where)
    t = {k: stage[k] for k in TRAIN_GRID}
    t["methods"] = _methods(stage, "nbstudy.lnl", {**TRAIN_HPARAMS, "options": {}}, where)
    t["inits"] = _as_list(["random", *pretrained] if t["inits"] is None else t["inits"], f"{where}: inits")
    for init in t["inits"]:
        if init != "random" and init in _registry("nbstudy.pretrain") and init not in pretrained:
            raise NbstudyError(f"{where}: init {init!r} is not pretrained by this study: add it to pretrain: methods")
        check_name(init, ["random", *pretrained], f"{where}: inits", "init")
    t["noise_kinds"] = _as_list(t["noise_kinds"], f"{where}: noise_kinds")
    for kind in t["noise_kinds"]:
        check_name(kind, NOISE_KINDS, f"{where}: noise_kinds", "noise kind")
    t["noise_rates"] = _as_list(t["noise_rates"], f"{where}: noise_rates")
    for rate in t["noise_rates"]:
        if not _number(rate):
            raise NbstudyError(f"{where}: noise rate {rate!r} is not a number: give fractions such as [0.2, 0.6]")
        if not 0.0 <= rate <= 1.0:
            raise NbstudyError(f"{where}: noise rate {rate!r} is outside [0, 1]: give fractions such as 0.6")
    t["noise_rates"] = [float(r) for r in t["noise_rates"]]
    t["seeds"] = _as_list(t["seeds"], f"{where}: seeds")
    valid, what = VALUES["seed"]
    for seed in t["seeds"]:
        if not valid(seed):
            raise NbstudyError(f"{where}: seed {seed!r} is not {what}: give seeds such as [0, 1, 2]")
    return t


def _methods(stage, registry, hparams, where) -> dict:
    """{method: the hyperparameters of its runs}.

    `methods` is a list of names, or a mapping name -> overrides of the stage's
    hyperparameters (`hparams`, whose defaults are the stage's values).
    """
    methods = stage["methods"]
    if not isinstance(methods, dict):
        methods = dict.fromkeys(_as_list(methods, f"{where}: methods"))
    if not methods:
        raise NbstudyError(f"{where}: methods is empty, so the grid expands to no runs: name at least one method")
    defaults = {k: stage.get(k, v) for k, v in hparams.items()}
    known = _registry(registry)
    out = {}
    for name, overrides in methods.items():
        check_name(name, known, f"{where}: methods", "method")
        out[name] = _fill(overrides, defaults, f"{where}: methods: {name}")
        options = getattr(known[name], "options", None)  # a training method's own hyperparameters
        if isinstance(options, dict):
            for option in out[name].get("options", {}):
                check_name(option, list(options), f"{where}: methods: {name}: options", "option")
    return out


def _registry(module: str) -> dict:
    """{method name: method}: the stage's registry, `METHODS` of nbstudy.pretrain or nbstudy.lnl."""
    return dict(importlib.import_module(module).METHODS)


def _keys(section, allowed, where) -> dict:
    """The section as a dict, every key known."""
    if section is None:
        return {}
    if not isinstance(section, dict):
        raise NbstudyError(f"{where} must be a mapping of keys to values, not {section!r}: see docs/studies.md")
    for key in section:
        check_name(key, list(allowed), where, "key")
    return dict(section)


def _fill(section, schema, where) -> dict:
    """The section with the schema's defaults filled in; a required key left out is an error."""
    filled = {**schema, **_keys(section, schema, where)}
    for key, value in filled.items():
        if value is REQUIRED:
            raise NbstudyError(f"{where}: {key} is missing: add it to the study file (see docs/studies.md)")
    return _check_values(filled, where)


def _check_values(section: dict, where) -> dict:
    """Every value of a known kind (VALUES) is of that kind."""
    for key, value in section.items():
        test, what = VALUES.get(key, (None, None))
        if test and not test(value):
            raise NbstudyError(f"{where}: {key} must be {what}, not {value!r}: fix it in the study file")
    return section


def check_name(name, known, where, what) -> None:
    """An unknown name is an error that suggests the closest known one."""
    if name in known:
        return
    close = difflib.get_close_matches(str(name), [str(k) for k in known], n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    choices = f"use one of {', '.join(map(str, known))}" if known else "there are none"
    raise NbstudyError(f"{where}: unknown {what} {name!r}{hint}: {choices}")


def _as_list(value, where, allow_empty=False) -> list:
    """A grid axis: a list (a single value counts as a list of one), no repeats, empty only where allowed."""
    values = list(value) if isinstance(value, (list, tuple)) else [] if value is None else [value]
    if not values and not allow_empty:
        raise NbstudyError(f"{where} is empty, so the grid expands to no runs: give at least one value")
    repeated = [v for i, v in enumerate(values) if v in values[:i]]
    if repeated:
        raise NbstudyError(f"{where} lists {repeated[0]!r} twice: list each value once")
    return values


def expand(study: dict, study_dir, notebooks) -> list[Run]:
    """The study's pretraining and training runs, pretraining first, each with absolute paths."""
    study_dir, notebooks = Path(study_dir).resolve(), Path(notebooks).resolve()
    ds = study["dataset"]
    data = {"dataset": ds["name"], "data_path": ds["data_path"], "dataset_options": ds["options"],
            "data_seed": ds["seed"], "resolution": ds["resolution"], "stem": ds["stem"]}
    data_path = None if ds["data_path"] is None else str(Path(ds["data_path"]).expanduser().resolve())
    common = {"data_path": data_path, "device": study["device"], "torch_compile": study["torch_compile"]}

    pretrain = {}
    for method, hparams in study["pretrain"]["methods"].items():
        grid = {**data, "method": method, **hparams}
        pretrain[method] = _run("pretrain", method, grid, common, study_dir, notebooks)

    t = study["train"]
    runs = []
    for init, method, kind, rate, seed in itertools.product(
            t["inits"], t["methods"], t["noise_kinds"], t["noise_rates"], t["seeds"]):
        hparams = dict(t["methods"][method])
        source = pretrain.get(init)
        grid = {**data, "init": init, "init_run": source.name if source else "", "method": method,
                "method_options": hparams.pop("options"), "noise_kind": kind, "noise_rate": rate, "seed": seed,
                **hparams}
        init_path = str(source.folder / "backbone.pt") if source else "random"
        runs.append(_run("train", f"{init}-{method}-{kind}-{rate:g}-s{seed}", grid, {**common, "init": init_path},
                         study_dir, notebooks, needs=source.name if source else None))
    return [*pretrain.values(), *runs]


def _run(stage, prefix, grid, given, study_dir, notebooks, needs=None) -> Run:
    named = {k: v for k, v in grid.items() if k not in RUN_ONLY}
    digest = hashlib.sha1(json.dumps(named, sort_keys=True).encode()).hexdigest()[:8]
    name = f"{stage}/{prefix}-{digest}"
    folder = study_dir / name
    params = {k: v for k, v in grid.items() if k != "init_run"}
    params.update(given, output_dir=str(folder))
    return Run(stage, name, folder, notebooks / STAGE_NOTEBOOKS[stage], params, grid, key=digest, needs=needs)


def analysis_notebooks(study: dict, notebooks) -> dict:
    """{entry of the study's `analysis` list: its notebook}: entry ``filters`` names
    ``<notebooks>/filters.ipynb`` or ``<notebooks>/NN_filters.ipynb``."""
    found = {}
    for nb in sorted(Path(notebooks).resolve().glob("*.ipynb")):
        if nb.name not in STAGE_NOTEBOOKS.values():
            found[re.sub(r"^\d+_", "", nb.stem)] = nb
    for entry in study["analysis"]:
        check_name(entry, list(found), f"analysis (notebooks in {Path(notebooks).resolve()})", "analysis notebook")
    return {entry: found[entry] for entry in study["analysis"]}


def analysis_runs(analysis: dict, study_dir) -> list[Run]:
    """One run per analysis notebook, into <study_dir>/analysis/<entry>/.

    Its key hashes the notebook and results.csv, so it runs again exactly when
    either changed: cheap to redo, and a stale figure would mislead.
    """
    study_dir = Path(study_dir).resolve()
    table = study_dir / "results.csv"
    results = table.read_bytes() if table.is_file() else b""
    runs = []
    for entry, nb in analysis.items():
        key = hashlib.sha1(nb.read_bytes() + results).hexdigest()[:8]
        name = f"analysis/{entry}"
        runs.append(Run("analysis", name, study_dir / name, nb, {"study_dir": str(study_dir)}, {}, key=key))
    return runs


def write_results(study_dir, runs: list[Run], statuses: dict) -> Path:
    """Write <study_dir>/results.csv atomically: one row per training run, its grid and its final metrics."""
    rows = []
    for run in runs:
        if run.stage != "train":
            continue
        row = {"run": run.name, "status": statuses[run.name], **run.grid}
        if row["status"] == "finished":
            row.update(json.loads((run.folder / "metrics.json").read_text())["final"])
        rows.append({k: json.dumps(v) if isinstance(v, (dict, list)) else v for k, v in row.items()})
    columns = list(dict.fromkeys(k for row in rows for k in row))
    text = io.StringIO()
    writer = csv.DictWriter(text, columns, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return write_text(Path(study_dir) / "results.csv", text.getvalue())


def write_text(path, text: str) -> Path:
    """Write a text file atomically: readers see the old or the new file, never half of one."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text))
