"""One default per parameter: the notebooks' parameters cells, the docs tables and the study keys follow
from the stages' PARAMS tables, and no module imports one that imports it back."""

import ast
import re
from pathlib import Path

import papermill
import pytest
import yaml

from nbstudy import contract, lnl, pretrain
from nbstudy.study import NOT_STAGE_KEYS, check_study, stage_keys

ROOT = Path(__file__).resolve().parents[1]
STAGES = {"01_pretrain.ipynb": pretrain, "02_train_noisy.ipynb": lnl}


@pytest.mark.parametrize("name", STAGES)
def test_parameters_cell_is_made_from_the_stage_params(name):
    nb, cell = contract.notebook_cell(ROOT / "notebooks" / name)
    assert cell.source == contract.parameters_cells()[name], "run python -m nbstudy.contract"
    declared = {}
    exec(cell.source, {}, declared)                                  # literals only
    assert declared == STAGES[name].DEFAULTS                          # the same names, order aside, and values
    parsed = papermill.inspect_notebook(str(ROOT / "notebooks" / name))
    assert list(parsed) == list(STAGES[name].DEFAULTS), "papermill must see every parameter (no '=' in comments)"


@pytest.mark.parametrize("name", STAGES)
def test_notebook_builds_params_from_its_globals_by_the_defaults_keys(name):
    nb, cell = contract.notebook_cell(ROOT / "notebooks" / name)
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code" and c is not cell)
    assert "for name in" in code and ".DEFAULTS}" in code
    by_hand = [p for p in STAGES[name].DEFAULTS if re.search(rf"\b{p}={p}\b", code)]
    assert len(by_hand) <= 1, by_hand                                 # no parameter dict written out again by hand


def test_docs_tables_are_made_from_the_params():
    found = {}
    for path in (ROOT / "docs").glob("*.md"):
        found.update(contract.doc_tables(path))
    assert found == contract.tables(), "run python -m nbstudy.contract"


def test_a_changed_default_shows_up_as_drift(tmp_path, monkeypatch):
    """The drift tests can fail: a default changed in PARAMS no longer matches the committed cell and table."""
    from nbstudy.params import Param

    old = lnl.PARAMS["epochs"]
    monkeypatch.setitem(lnl.PARAMS, "epochs", Param(7, old.check, old.doc))
    _, cell = contract.notebook_cell(ROOT / "notebooks" / "02_train_noisy.ipynb")
    assert cell.source != contract.parameters_cells()["02_train_noisy.ipynb"]
    assert contract.doc_tables(ROOT / "docs" / "records.md")["train-params"] != contract.tables()["train-params"]


@pytest.mark.parametrize("stage, module", [("pretrain", pretrain), ("train", lnl)])
def test_study_keys_are_the_stage_params_with_their_defaults(stage, module):
    keys = stage_keys(stage)
    grid_axes = {"init", "noise_kind", "noise_rate", "seed"} if stage == "train" else set()
    assert set(keys) == set(module.PARAMS) - NOT_STAGE_KEYS - grid_axes
    study = check_study({"name": "t", "dataset": {"name": "synthetic"}, "pretrain": {"methods": ["jigsaw"]},
                         "train": {"methods": ["dividemix"], "noise_rates": [0.5]}})
    section = study[stage]["methods"]["jigsaw" if stage == "pretrain" else "dividemix"]
    assert {k: v for k, v in section.items() if k != "options"} == {k: module.DEFAULTS[k] for k in keys}
    assert study["dataset"] == {"name": module.DEFAULTS["dataset"], "data_path": module.DEFAULTS["data_path"],
                                "options": module.DEFAULTS["dataset_options"], "resolution": module.DEFAULTS["resolution"],
                                "stem": module.DEFAULTS["stem"], "seed": module.DEFAULTS["data_seed"]}


def test_the_docs_example_study_is_a_valid_study():
    text = (ROOT / "docs" / "studies.md").read_text()
    example = re.search(r"## The file\n\n```yaml\n(.*?)```", text, re.S).group(1)
    study = check_study(yaml.safe_load(example))
    assert study["pretrain"]["methods"]["jigsaw"]["options"] == {"permutations": 10}


def _imports(path: Path) -> set:
    """The nbstudy modules a module imports anywhere in it (not the packages above them)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("nbstudy"):
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if (ROOT / (sub.replace(".", "/") + ".py")).exists() else node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("nbstudy")}
    return found


def test_readme_names_every_method_of_each_stage():
    """README's "From Python" lists the registries' methods; a method added to a registry is added there too."""
    api = ROOT.joinpath("README.md").read_text().split("## From Python", 1)[1].split("\n## ", 1)[0]
    api = " ".join(api.split())
    for stage in (pretrain, lnl):
        listed = api.split(f"`nbstudy.{stage.__name__.split('.')[-1]}.METHODS` (", 1)[1].split(")", 1)[0]
        assert re.findall(r"`(\w+)`", listed) == list(stage.METHODS)


def test_no_module_imports_a_module_that_imports_it_back():
    def name(path):   # nbstudy/lnl/__init__.py is the module nbstudy.lnl
        parts = path.relative_to(ROOT).with_suffix("").parts
        return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)

    modules = {name(p): p for p in (ROOT / "nbstudy").rglob("*.py")}
    graph = {module: _imports(path) & set(modules) for module, path in modules.items()}

    def reaches(start, target, seen):
        return any(n == target or (n not in seen and not seen.add(n) and reaches(n, target, seen))
                   for n in graph[start])

    cycles = [(a, b) for a in graph for b in graph[a] if reaches(b, a, set())]
    assert not cycles, cycles


@pytest.mark.parametrize("path", ["nbstudy/lnl/loop.py", "nbstudy/pretrain/run.py"])
def test_stage_loops_stay_short(path):
    assert len((ROOT / path).read_text().splitlines()) < 250


def test_the_modules_started_first_exist():
    """conftest.SLOW_FIRST orders the suite for pytest-xdist by file name: a renamed module would drop out silently."""
    from conftest import SLOW_FIRST

    assert [name for name in SLOW_FIRST if not (Path(__file__).parent / name).is_file()] == []
