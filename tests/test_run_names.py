"""A run's name is its identity: a study finds its finished runs by name, so a name that changes makes every
existing study redo that run. tests/data/run_names.json holds the names the study runner gave the shipped demo
and paper grids before the backbone and class_weights parameters existed (commit f467423); a parameter added
since, at its default, must leave them as they were (`nbstudy.params.LATER`). A deliberate change to a study file
renames the runs it changes, and only those: the demo's SimCLR recipe (2026-12-02) renamed its 7 SimCLR runs, CE's
24 epochs (2026-12-03) its 6 CE runs."""

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


def test_a_vits_name_and_resume_key_leave_out_the_stem_it_ignores(tmp_path):
    """Two studies that differ only in `stem` share their ViT runs (same names, same resume keys), not their
    ResNet runs."""
    from nbstudy.lnl.params import RUN_ONLY
    from nbstudy.params import named
    from nbstudy.pretrain.params import RUN_ONLY as PRETRAIN_RUN_ONLY
    from nbstudy.resume import run_key

    smoke = load_study(ROOT / "parameters" / "smoke.yaml")
    assert smoke["dataset"]["stem"] == "imagenet" and smoke["backbones"] == ["resnet18", "vit_tiny"]
    small = {**smoke, "dataset": {**smoke["dataset"], "stem": "small"}}
    imagenet, other = expand(smoke, tmp_path, ROOT / "notebooks"), expand(small, tmp_path, ROOT / "notebooks")
    for a, b in zip(imagenet, other):
        assert a.params["stem"] != b.params["stem"]
        vit = a.grid["backbone"] == "vit_tiny"
        assert (a.name == b.name) == vit, (a.name, b.name)
        run_only = PRETRAIN_RUN_ONLY if a.stage == "pretrain" else RUN_ONLY   # as each stage keys its resume
        assert (run_key(named(a.params), run_only) == run_key(named(b.params), run_only)) == vit
    assert sum(r.grid["backbone"] == "vit_tiny" for r in imagenet) == len(imagenet) // 2 > 0
