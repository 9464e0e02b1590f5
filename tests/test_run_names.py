"""A run's name is its identity: a study finds its finished runs by name, so a name that changes makes every
existing study redo that run. tests/data/run_names.json holds the names the study runner gave the shipped demo
and paper grids before the backbone and class_weights parameters existed (commit f467423); a parameter added
since, at its default, must leave them as they were (`nbstudy.params.LATER`)."""

import json
from pathlib import Path

import pytest

from nbstudy.study import expand, load_study

ROOT = Path(__file__).resolve().parents[1]
NAMES = json.loads((ROOT / "tests" / "data" / "run_names.json").read_text())


@pytest.mark.parametrize("study_file", sorted(NAMES))
def test_shipped_studies_keep_their_run_names(study_file, tmp_path):
    runs = expand(load_study(ROOT / "parameters" / f"{study_file}.yaml"), tmp_path, ROOT / "notebooks")
    assert sorted(r.name for r in runs) == NAMES[study_file]
