"""A study of several backbones: the loss, separation, results and suspects notebooks show each backbone apart,
never mixed, with a backbone control in JupyterLab and every backbone's figures in batch."""

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import papermill
import pytest
from analysis_fixtures import make_study

from nbstudy import widgets
from nbstudy.analysis import findings, runs


@pytest.fixture(scope="module")
def two(tmp_path_factory):
    return runs.load_study(make_study(tmp_path_factory.mktemp("two"), methods=("ce", "coteaching"), seeds=(0,),
                                      epochs=3, backbones=("resnet18", "vit_tiny")))


def test_by_backbone_splits_the_runs(two):
    parts = runs.by_backbone(two)
    assert [b for b, _ in parts] == ["resnet18", "vit_tiny"]
    assert all(set(part.runs.backbone) == {b} and len(part.runs) == len(two.runs) // 2 for b, part in parts)


@pytest.mark.parametrize("explorer", [widgets.loss_explorer, widgets.selection_explorer, widgets.threshold_explorer])
def test_batch_shows_every_backbones_figures_under_their_own_names(two, explorer):
    shown = widgets.per_backbone(explorer, two)
    assert isinstance(shown, widgets.PerBackbone)
    first, second = shown.views["resnet18"], shown.views["vit_tiny"]
    assert len(first) == len(second) > 0
    assert second.names == [f"{name}_vit_tiny" for name in first.names]
    # the ViT's figures are drawn from the ViT's runs: its data differ from the ResNet's
    assert repr(first.data[0]) != repr(second.data[0])


def test_interactive_has_a_backbone_control_that_switches_the_explorer(two):
    shown = widgets.per_backbone(widgets.threshold_explorer, two, interactive=True)
    assert shown.control.options == ("resnet18", "vit_tiny") and list(shown.views) == ["resnet18"]
    resnet = shown.widget.children[1]
    shown.control.value = "vit_tiny"
    assert list(shown.views) == ["resnet18", "vit_tiny"] and shown.widget.children[1] is not resnet
    assert shown.widget.children[1] is shown.views["vit_tiny"].widget


def test_one_backbone_is_shown_as_before(tmp_path):
    one = runs.load_study(make_study(tmp_path, methods=("ce",), seeds=(0,), epochs=2))
    assert isinstance(widgets.per_backbone(widgets.loss_explorer, one), widgets.Figures)
    assert findings.per_backbone(findings.loss_finding, one) == findings.loss_finding(one)


def test_findings_are_said_per_backbone(two):
    text = findings.per_backbone(findings.separation_finding, two)
    resnet, vit = text.split("\n\n")
    assert resnet == f"resnet18: {findings.separation_finding(runs.by_backbone(two)[0][1])}"
    assert vit == f"vit_tiny: {findings.separation_finding(runs.by_backbone(two)[1][1])}"



def test_suspects_are_scored_and_shown_per_backbone(tmp_path):
    """A study whose ViT runs rank the right labels first: each backbone's precision@k, figures and finding are
    its own."""
    from analysis_fixtures import CLASSES

    from nbstudy.analysis import suspects as S
    from nbstudy.lnl import suspects

    study = runs.load_study(make_study(tmp_path, methods=("ce", "coteaching"), rates=(0.4,), seeds=(0,), epochs=2,
                                     backbones=("resnet18", "vit_tiny")))
    for run in study.runs[study.runs.backbone == "vit_tiny"].run_dir:   # the ViT's rankings turned upside down
        t = suspects.read(run)
        suspects.write(run, t["index"].to_numpy(), -t["suspicion"].to_numpy(), t["given_label"].to_numpy(),
                       t["predicted_label"].to_numpy(), CLASSES, wrong=t["wrong_label"].to_numpy(bool))

    scored = S.scores_per_backbone(study, baseline=False)
    assert list(scored) == ["resnet18", "vit_tiny"]
    for backbone, part in runs.by_backbone(study):   # each backbone's rankings, scored on its own runs only
        alone = S.precision_at_k(part, baseline=False)["summary"]
        assert scored[backbone]["summary"].equals(alone) and set(alone.backbone) == {backbone}
    resnet, vit = (scored[b]["summary"].precision_at_k for b in ("resnet18", "vit_tiny"))
    assert resnet.min() > 0.5 > vit.max()
    assert S.summary(scored).backbone.tolist() == ["resnet18"] * len(resnet) + ["vit_tiny"] * len(vit)

    shown = widgets.per_backbone(widgets.suspects_explorer, study, baseline=False, scored=scored)
    first, second = shown.views["resnet18"], shown.views["vit_tiny"]
    assert first.names[0] == "precision_at_k" and second.names == [f"{name}_vit_tiny" for name in first.names]
    assert first.data[0] is scored["resnet18"] and second.data[0] is scored["vit_tiny"]
    assert first.data[1]["run"] == "train/random-ce-symmetric-0.4-s0-0123abcd"
    assert second.data[1]["run"] == "train/vit_tiny-random-ce-symmetric-0.4-s0-0123abcd"

    said = findings.per_backbone(S.finding, study, scored=scored).split("\n\n")
    vit_part = runs.by_backbone(study)[1][1]
    assert said == [f"resnet18: {S.finding(study, scored)}", f"vit_tiny: {S.finding(vit_part, scored)}"]
    assert f"finds {resnet.max():.0%} wrong" in said[0] and f"finds {vit.max():.0%} wrong" in said[1]


def test_results_notebook_shows_each_backbone_apart(tmp_path):
    """The accuracy plot, the per-class recall and the pretraining probes of a study whose ViT recalls the first
    class less and whose SSL pretraining helped the ResNet only: each backbone's numbers are its own."""
    from nbstudy.analysis import tables

    root = make_study(tmp_path, methods=("ce",), rates=(0.4,), seeds=(0,), epochs=2, backbones=("resnet18", "vit_tiny"))
    for path in root.rglob("metrics.json"):
        metrics = json.loads(path.read_text())
        vit = metrics["params"]["backbone"] == "vit_tiny"
        c = np.diag([10, 10, 10, 10])
        c[0, :2] = [3, 7] if vit else [9, 1]   # the first class's recall: 30% ViT, 90% ResNet
        metrics["final"].update(confusion=c.tolist(), recall=(np.diag(c) / 10).tolist())
        if vit and "probe_acc" in metrics["init"]:
            metrics["init"]["probe_acc"] = 0.40   # below random init's 0.52
        path.write_text(json.dumps(metrics))
    runs.read_run.cache_clear()
    study = runs.load_study(root)

    shown = widgets.per_backbone(widgets.accuracy_explorer, study)
    assert shown.views["resnet18"].names == ["accuracy_symmetric"]
    assert shown.views["vit_tiny"].names == ["accuracy_symmetric_vit_tiny"]
    for backbone, view in shown.views.items():
        drawn = view.data[0]["runs"]
        mine = study.runs[study.runs.backbone == backbone].set_index("run")
        assert set(drawn.run) == set(mine.index)
        assert drawn.percent.tolist() == pytest.approx([100 * mine.loc[r, m] for r, m in zip(drawn.run, drawn.metric)])

    recall = tables.class_recall(study).data
    assert recall.loc[("ce", "resnet18 · random"), (0.4, "stripes")] == pytest.approx(90)
    assert recall.loc[("ce", "vit_tiny · simclr"), (0.4, "stripes")] == pytest.approx(30)
    probes = tables.pretraining(study).data
    assert probes["k-NN probe (%)"].to_dict() == pytest.approx({"resnet18 · simclr": 71, "vit_tiny · simclr": 40})
    assert probes.pretraining.tolist() == ["helped", "ended below random init"]
    title = tables.results_table(study).title
    assert "resnet18 · simclr 71.0% (random init 52.0%)" in title
    assert "vit_tiny · simclr 40.0% (random init 52.0%; below it: kept apart from the answer)" in title


@pytest.mark.slow
def test_results_and_suspects_notebooks_save_every_backbones_figures(tmp_path):
    """Both notebooks in batch, as the runner runs them, on a study of two backbones (one kernel each, at once)."""
    from nbstudy import figures

    study_dir = make_study(tmp_path, methods=("ce",), rates=(0.4,), seeds=(0,), epochs=2,
                           backbones=("resnet18", "vit_tiny"))
    notebooks = Path(__file__).resolve().parents[1] / "notebooks"
    extra = {"15_suspects": {"baseline": False}}   # no backbone.pt to embed with

    def run(name):
        papermill.execute_notebook(str(notebooks / f"{name}.ipynb"), str(tmp_path / f"{name}.ipynb"),
                                   parameters={"study_dir": str(study_dir), **extra.get(name, {})},
                                   kernel_name="python3", progress_bar=False, cwd=str(tmp_path),
                                   execution_timeout=120)

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(run, ["13_results", "15_suspects"]))
    saved = {entry: sorted(p.stem for p in (study_dir / "analysis" / entry / figures.FOLDER).glob("*.json"))
             for entry in ("results", "suspects")}
    assert saved["results"] == ["accuracy_symmetric", "accuracy_symmetric_vit_tiny"]
    pages = [f"suspects_ce_{init}" for init in ("random", "simclr")]
    assert saved["suspects"] == sorted(name + tail for name in ["precision_at_k", *pages] for tail in ("", "_vit_tiny"))
    vit = figures.load(study_dir / "analysis" / "results", "accuracy_symmetric_vit_tiny")["runs"]
    assert all(run.startswith("train/vit_tiny-") for run in vit["run"])
