"""Study files: read and check a study YAML, expand its grid into runs, tabulate results.

A study file names a dataset, the pretraining runs and the grid of noisy-label
training runs (docs/studies.md lists every key). Everything a user can get
wrong in it is caught here, before any notebook runs: unknown keys, misspelt
method names, values of the wrong type, empty grids, noise rates outside
[0, 1], a dataset path that does not exist.

The keys follow from the stages' parameter tables (`nbstudy.pretrain.params`,
`nbstudy.lnl.params`): a stage section sets any stage parameter, for all its
methods or per method, and `options` sets a method's own options. Every run the
grid expands to is checked by its stage, as the notebook will check it.

A run's folder name is a readable prefix plus a short hash of what it computes
(its parameters with every default filled in, not the device, how often it
saves its state, or where outputs go), so running a study again finds the runs
it already did.
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from nbstudy.checkpoint import atomic_write
from nbstudy.errors import NbstudyError
from nbstudy.lnl.params import PARAMS as TRAIN_PARAMS
from nbstudy.lnl.params import RUN_ONLY as TRAIN_RUN_ONLY
from nbstudy.lnl.params import noise_rate_warning
from nbstudy.lnl.params import resolve as resolve_train
from nbstudy.lnl.registry import METHODS as TRAIN_METHODS
from nbstudy.models import RESNETS, use_small_stem
from nbstudy.params import Check, did_you_mean, is_real, named, shown
from nbstudy.pretrain.params import PARAMS as PRETRAIN_PARAMS
from nbstudy.pretrain.params import RUN_ONLY as PRETRAIN_RUN_ONLY
from nbstudy.pretrain.params import resolve as resolve_pretrain
from nbstudy.pretrain.records import init_probes
from nbstudy.pretrain.registry import METHODS as PRETRAIN_METHODS

REQUIRED = object()
STAGES = ("pretrain", "train", "analysis")
STAGE_PARAMS = {"pretrain": PRETRAIN_PARAMS, "train": TRAIN_PARAMS}
# Study keys that are stage parameters under another name: the dataset section, and the top-level run settings.
DATASET_KEYS = {"name": "dataset", "data_path": "data_path", "options": "dataset_options", "resolution": "resolution",
                "stem": "stem", "seed": "data_seed"}
TOP_KEYS = ("device", "precision", "torch_compile")
# The grid axis both stages share (pretraining runs are per backbone too): a top-level list of `backbone`.
BACKBONES_KEY = "backbones"
# Training parameters that are grid axes: a list each, under the plural name.
GRID_AXES = {"inits": "init", "noise_kinds": "noise_kind", "noise_rates": "noise_rate", "seeds": "seed"}
# Set by the runner, never by a stage section (and in training the grid axes, each a list of its own).
NOT_STAGE_KEYS = {*DATASET_KEYS.values(), *TOP_KEYS, "backbone", "method", "method_options", "output_dir"}
RESOURCES = ("num_cpus", "num_gpus", "memory")  # what a stage's runs ask Ray for (--executor ray)
NEEDS_DATA_PATH = ("nct_crc_he", "covid_qu_ex", "image_folder")  # medmnist can download into a new folder


def stage_keys(stage: str) -> dict:
    """{key: Param} a study file's `pretrain` or `train` section (and each of its methods) may set."""
    grid = set(GRID_AXES.values()) if stage == "train" else set()
    return {k: p for k, p in STAGE_PARAMS[stage].items() if k not in NOT_STAGE_KEYS | grid}


def _resource(low_open=False, gpu=False):
    ok = lambda v: is_real(v) and (v > 0 if low_open else v >= 0) and (not gpu or v <= 1 or v == int(v))  # noqa: E731
    what = ("a number of bytes > 0, such as 8.0e+9" if low_open else
            "a number >= 0, a whole one above 1 (Ray shares a GPU only as fractions of one)" if gpu else "a number >= 0")
    return Check(ok, what)


RESOURCE_CHECKS = {"num_cpus": _resource(), "num_gpus": _resource(gpu=True), "memory": _resource(low_open=True)}

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
    """PyYAML reads 1e-3 as text (YAML 1.1); a study file means the number. A key given twice in one mapping
    is an error (PyYAML would keep the last one silently: a second `train:` would replace the first)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                line = key_node.start_mark.line + 1
                raise yaml.constructor.ConstructorError(None, None, f"{key!r} is given twice (line {line})",
                                                        key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789"))


def load_study(path) -> dict:
    """Read a study file; return it checked, every default filled in."""
    path = Path(path)
    if path.is_dir():
        found = sorted(p.name for p in path.glob("*.y*ml"))
        raise NbstudyError(f"study file {path} is a folder, not a YAML file: give the path of a study file"
                           + (f" in it ({', '.join(found[:3])}{' ...' if len(found) > 3 else ''})" if found else
                              " such as parameters/demo.yaml"))
    if not path.is_file():
        raise NbstudyError(f"study file {path} does not exist: give the path of a YAML file such as parameters/demo.yaml")
    try:
        raw = yaml.load(path.read_bytes(), Loader=_Loader)   # bytes: YAML's own UTF-8/16 detection
    except yaml.reader.ReaderError as e:
        char = f"{e.character:#04x}" if isinstance(e.character, int) else repr(e.character)
        raise NbstudyError(f"{path} is not UTF-8 or UTF-16 text (byte {e.position} is {char}): save it as UTF-8"
                           ) from None
    except yaml.YAMLError as e:
        text = " ".join(str(e).split()).replace('"<byte string>"', path.name)
        raise NbstudyError(f"{path} is not valid YAML ({text}): fix the file") from None
    return check_study(raw, where=path.name)


def check_study(raw, where: str = "study") -> dict:
    """Check a study given as a dict (the parsed YAML); return it with every default filled in.

    Every run the grid expands to then goes through its stage's own checks, so
    nothing that passes here (and `--dry-run`) fails a run for a parameter reason.
    """
    study = _fill(raw, {"name": REQUIRED, **{key: TRAIN_PARAMS[key].default for key in TOP_KEYS}, "dataset": REQUIRED,
                        BACKBONES_KEY: [TRAIN_PARAMS["backbone"].default], "pretrain": None,
                        "train": REQUIRED, "analysis": [], "resources": {}}, where)
    study["name"] = str(study["name"])
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", study["name"]):
        raise NbstudyError(f"{where}: name {study['name']!r} cannot be a folder name: use letters, digits, '-', '_', '.'")
    for key in TOP_KEYS:
        study[key] = _checked(where, TRAIN_PARAMS[key], key, study[key])
    study["dataset"] = _check_dataset(study["dataset"], f"{where}: dataset")
    at, backbones = f"{where}: {BACKBONES_KEY}", study[BACKBONES_KEY]
    backbones = backbones if isinstance(backbones, (list, tuple)) else [backbones]
    study[BACKBONES_KEY] = _as_list([_checked(at, TRAIN_PARAMS["backbone"], "backbone", v) for v in backbones], at)
    pretrain = {} if study["pretrain"] is None else _stage(study["pretrain"], "pretrain", {}, f"{where}: pretrain")
    study["pretrain"] = {"methods": pretrain}
    study["train"] = _check_train(study["train"], list(pretrain), f"{where}: train")
    study["analysis"] = _as_list(study["analysis"], f"{where}: analysis", allow_empty=True)
    study["resources"] = _resources(study["resources"], f"{where}: resources")
    expand(study, ".", ".", where)   # every run's own checks
    return study


def _checked(where: str, param, key: str, value):
    """The check of a `Param` (or a bare `Check`) on `value`, its error prefixed with where it is in the file."""
    try:
        return getattr(param, "check", param)(key, value)
    except NbstudyError as e:
        raise NbstudyError(f"{where}: {e}") from None


def _check_dataset(section, where) -> dict:
    """The dataset section: the data parameters both stages share, under their study names."""
    from nbstudy.data import DATASETS, accepted_options

    ds = _fill(section, {k: REQUIRED if k == "name" else TRAIN_PARAMS[v].default for k, v in DATASET_KEYS.items()},
               where)
    check_name(ds["name"], list(DATASETS), where, "dataset")
    ds = {k: _checked(where, TRAIN_PARAMS[DATASET_KEYS[k]], k, v) for k, v in ds.items()}
    accepted = accepted_options(ds["name"])
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


def noise_warning(study: dict, num_classes: int) -> str | None:
    """The check-time warning (`nbstudy.lnl.params.noise_rate_warning`) for the study's symmetric noise rates on
    its data set's `num_classes` classes, prefixed with the study's name; None when the rates say what they do."""
    train = study["train"]
    if "symmetric" not in train["noise_kinds"]:
        return None
    far = noise_rate_warning("symmetric", train["noise_rates"], num_classes)
    return f"{study['name']}: {far}" if far else None


def stem_warning(study: dict, resolution: int, synthetic: bool) -> str | None:
    """For a study of real images of <= 64 px on a ResNet with the ImageNet stem, what that stem costs (measured
    on BreastMNIST, docs/results.md "Small images, fairly"); None otherwise. The synthetic set is left out: the
    demo and the tests choose that stem for speed on purpose."""
    resnet = any(b in RESNETS for b in study[BACKBONES_KEY])
    if study["dataset"]["stem"] != "imagenet" or not resnet or synthetic or not use_small_stem("auto", resolution):
        return None
    side = -(-resolution // 4)
    return (f"{study['name']}: stem imagenet at {resolution} px shrinks each image to {side}x{side} before the "
            "ResNet's first block: 4-7x faster on a CPU, but on BreastMNIST (28 px) it cost CE 5.8 points of LAST "
            "and the random-init features 4.5 points of k-NN probe against the small stem (docs/results.md, "
            "'Small images, fairly'); stem auto picks the small stem for images of 64 px or less")


def _resources(section, where) -> dict:
    """{stage: what each of its runs asks Ray for}; nothing given is Ray's default, one CPU."""
    given = _keys(section, STAGES, where)
    out = {}
    for stage in STAGES:
        asked = _keys(given.get(stage), RESOURCES, f"{where}: {stage}")
        out[stage] = {k: _checked(f"{where}: {stage}", RESOURCE_CHECKS[k], k, v) for k, v in asked.items()}
    return out


def _check_train(section, pretrained, where):
    """The training section: grid axes (each a list of values of its parameter) and the methods."""
    axes = {"inits": None, "noise_kinds": [TRAIN_PARAMS["noise_kind"].default], "noise_rates": REQUIRED,
            "seeds": [TRAIN_PARAMS["seed"].default]}
    t = _fill({k: v for k, v in _keys(section, [*axes, "methods", *stage_keys("train")], where).items()
               if k in axes}, axes, where)
    t["methods"] = _stage(section, "train", axes, where)
    t["inits"] = _as_list(["random", *pretrained] if t["inits"] is None else t["inits"], f"{where}: inits")
    for init in t["inits"]:
        if init != "random" and init in PRETRAIN_METHODS and init not in pretrained:
            raise NbstudyError(f"{where}: init {shown(init)} is not pretrained by this study: add it to pretrain: methods")
        check_name(init, ["random", *pretrained], f"{where}: inits", "init")
    for axis in ("noise_kinds", "noise_rates", "seeds"):
        param = TRAIN_PARAMS[GRID_AXES[axis]]
        values = t[axis] if isinstance(t[axis], (list, tuple)) else [t[axis]]
        checked = [_checked(f"{where}: {axis}", param, GRID_AXES[axis], v) for v in values]
        t[axis] = _as_list(checked, f"{where}: {axis}")   # checked first: true is not a seed, let alone a repeat
    return {k: t[k] for k in ("inits", "methods", "noise_kinds", "noise_rates", "seeds")}


def _stage(section, stage, axes, where) -> dict:
    """{method: the stage parameters of its runs, and its `options`}.

    The section sets any stage parameter (`stage_keys`) for all its methods;
    `methods` is a list of names, or a mapping name -> overrides of those, plus
    `options`, the method's own options (its `method_options`).
    """
    keys = stage_keys(stage)
    given = _keys(section, [*axes, "methods", *keys], where)
    if "methods" not in given:
        raise NbstudyError(f"{where}: methods is missing: add it to the study file (see docs/studies.md)")
    common = {k: _checked(where, p, k, given.get(k, p.default)) for k, p in keys.items()}
    methods = given["methods"]
    if not isinstance(methods, dict):
        methods = dict.fromkeys(_as_list(methods, f"{where}: methods"))
    if not methods:
        raise NbstudyError(f"{where}: methods is empty, so the grid expands to no runs: name at least one method")
    registry = PRETRAIN_METHODS if stage == "pretrain" else TRAIN_METHODS
    out = {}
    for name, overrides in methods.items():
        check_name(name, list(registry), f"{where}: methods", "method")
        at = f"{where}: methods: {name}"
        own = _keys(overrides, ["options", *keys], at)
        values = {**common, **{k: _checked(at, keys[k], k, v) for k, v in own.items() if k != "options"}}
        options = own.get("options", {}) if own.get("options") is not None else {}
        if not isinstance(options, dict):
            raise NbstudyError(f"{at}: options must be a mapping of the method's options, not {shown(options)}")
        for option in options:
            check_name(option, list(registry[name].options), f"{at}: options", "option")
        out[name] = {**values, "options": options}
    return out


def _keys(section, allowed, where) -> dict:
    """The section as a dict, every key known."""
    if section is None:
        return {}
    if not isinstance(section, dict):
        raise NbstudyError(f"{where} must be a mapping of keys to values, not {shown(section)}: see docs/studies.md")
    for key in section:
        if key in TOP_KEYS and key not in allowed:
            raise NbstudyError(f"{where}: {key} is a top-level key (it applies to every run): move it to the top "
                               "of the study file")
        check_name(key, list(allowed), where, "key")
    return dict(section)


def _fill(section, schema, where) -> dict:
    """The section with the schema's defaults filled in; a required key left out is an error."""
    filled = {**schema, **_keys(section, schema, where)}
    for key, value in filled.items():
        if value is REQUIRED:
            raise NbstudyError(f"{where}: {key} is missing: add it to the study file (see docs/studies.md)")
    return filled


def check_name(name, known, where, what) -> None:
    """An unknown name is an error that suggests the closest known one."""
    if name in known:
        return
    choices = f"use one of {', '.join(map(str, known))}" if known else "there are none"
    raise NbstudyError(f"{where}: unknown {what} {shown(name)}{did_you_mean(name, known)}: {choices}")


def _as_list(value, where, allow_empty=False) -> list:
    """A grid axis: a list (a single value counts as a list of one), no repeats, empty only where allowed."""
    values = list(value) if isinstance(value, (list, tuple)) else [] if value is None else [value]
    if not values and not allow_empty:
        raise NbstudyError(f"{where} is empty, so the grid expands to no runs: give at least one value")
    repeated = [v for i, v in enumerate(values) if v in values[:i]]
    if repeated:
        raise NbstudyError(f"{where} lists {shown(repeated[0])} twice: list each value once")
    return values


def expand(study: dict, study_dir, notebooks, where: str = "study") -> list[Run]:
    """The study's pretraining and training runs, pretraining first, each with absolute paths and its
    parameters checked by its stage (`resolve`): a one-line error names the method whose values fail."""
    study_dir, notebooks = Path(study_dir).resolve(), Path(notebooks).resolve()
    data = {DATASET_KEYS[k]: v for k, v in study["dataset"].items()}
    data_path = None if data["data_path"] is None else str(Path(data["data_path"]).expanduser().resolve())
    # top-level settings that change the numbers (precision) go in each run's grid, so they name the runs
    named_top = {k: study[k] for k in TOP_KEYS if not TRAIN_PARAMS[k].run_only}
    common = {"data_path": data_path, **{k: study[k] for k in TOP_KEYS if TRAIN_PARAMS[k].run_only}}
    salt = {}   # what names the runs beyond their parameters
    if data["dataset_options"].get("labels") is not None:   # a run's notebook runs elsewhere; names keep the given path
        labels = Path(data["dataset_options"]["labels"]).expanduser().resolve()
        common["dataset_options"] = {**data["dataset_options"], "labels": str(labels)}
        if labels.is_file():   # edited labels are new runs, not finished ones (a missing file fails the data check)
            salt["labels_sha256"] = hashlib.sha256(labels.read_bytes()).hexdigest()

    pretrain = {}   # {(method, backbone): its run}: each backbone is pretrained by each method
    for backbone, (method, values) in itertools.product(study[BACKBONES_KEY], study["pretrain"]["methods"].items()):
        values = dict(values)
        grid = {**data, **named_top, "backbone": backbone, "method": method, "method_options": values.pop("options"),
                **values}
        pretrain[method, backbone] = _run("pretrain", _shown(backbone) + method, grid, common, study_dir, notebooks,
                                          f"{where}: pretrain", salt=salt)

    t = study["train"]
    runs = []
    for backbone, init, method, kind, rate, seed in itertools.product(
            study[BACKBONES_KEY], t["inits"], t["methods"], t["noise_kinds"], t["noise_rates"], t["seeds"]):
        values = dict(t["methods"][method])
        source = pretrain.get((init, backbone))
        grid = {**data, **named_top, "backbone": backbone, "init": init, "init_run": source.name if source else "",
                "method": method, "method_options": values.pop("options"), "noise_kind": kind, "noise_rate": rate,
                "seed": seed, **values}
        init_path = str(source.folder / "backbone.pt") if source else "random"
        runs.append(_run("train", f"{_shown(backbone)}{init}-{method}-{kind}-{rate:g}-s{seed}", grid,
                         {**common, "init": init_path}, study_dir, notebooks, f"{where}: train",
                         needs=source.name if source else None, salt=salt))
    return [*pretrain.values(), *runs]


def _shown(backbone: str) -> str:
    """The run name's backbone prefix: none for the study's resnet18, so runs named before backbones keep
    their names."""
    return "" if backbone == TRAIN_PARAMS["backbone"].default else f"{backbone}-"


def _run(stage, prefix, grid, given, study_dir, notebooks, where, needs=None, salt=None) -> Run:
    """One run: its parameters resolved by its stage (method options filled in), named by a hash of what
    it computes (not its run-only parameters: device, output folder, how often it saves its state...)."""
    params = {k: v for k, v in grid.items() if k != "init_run"}
    params.update(given, output_dir=".")
    try:
        if stage == "pretrain":
            params = resolve_pretrain(params)
        else:
            params = resolve_train(params, check_files=False)
    except NbstudyError as e:
        at = f"{where}: methods: {grid['method']}" + (f" ({grid['noise_kind']} {grid['noise_rate']:g})"
                                                     if stage == "train" else "")
        raise NbstudyError(f"{at}: {e}") from None
    grid = {**grid, "method_options": params["method_options"]}
    run_only = PRETRAIN_RUN_ONLY if stage == "pretrain" else TRAIN_RUN_ONLY
    identity = {**named({k: v for k, v in grid.items() if k not in run_only}), **(salt or {})}
    digest = hashlib.sha1(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:8]
    name = f"{stage}/{prefix}-{digest}"
    folder = study_dir / name
    params["output_dir"] = str(folder)
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
        folder = study_dir / name
        runs.append(Run("analysis", name, folder, nb, {"study_dir": str(study_dir), "output_dir": str(folder)}, {},
                        key=key))
    return runs


def write_results(study_dir, runs: list[Run], statuses: dict) -> Path:
    """Write <study_dir>/results.csv atomically: one row per training run, its grid and its final metrics, and
    the k-NN probe of its init's pretraining beside the same network's at random init (`init_probe_acc`,
    `random_probe_acc`; empty for random init)."""
    rows = []
    for run in runs:
        if run.stage != "train":
            continue
        row = {"run": run.name, "status": statuses[run.name], **run.grid}
        if row["status"] == "finished":
            metrics = json.loads((run.folder / "metrics.json").read_text())
            row.update(metrics["final"], **init_probes({"params": run.params, **metrics}))   # the run knows its init
        rows.append({k: json.dumps(v) if isinstance(v, (dict, list)) else v for k, v in row.items()})
    columns = list(dict.fromkeys(k for row in rows for k in row))
    text = io.StringIO()
    writer = csv.DictWriter(text, columns, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return write_text(Path(study_dir) / "results.csv", text.getvalue())


def write_text(path, text: str) -> Path:
    """Write a text file atomically: readers see the old or the new file, never half of one.

    Errors: NbstudyError (one line) when the file cannot be written (a full disk, no permission); the old
    file, if any, stays whole."""
    try:
        return atomic_write(path, lambda tmp: Path(tmp).write_text(text))
    except OSError as e:
        raise NbstudyError(f"cannot write {path} ({e.strerror or e}): free space or fix the folder's permissions,"
                           " then run the same command again (finished runs are kept)") from None
