"""A study of several backbones: the loss and separation notebooks show each backbone apart, never mixed, with a
backbone control in JupyterLab and every backbone's figures in batch."""

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
