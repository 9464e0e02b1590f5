"""The three backbones (docs/backbones.md): shapes, every pretraining and LNL method on each, checkpoints.

Tiny inputs (16 px, the ImageNet stem for the ResNets), one step or one epoch each: that every
combination runs and trains, not how well (docs/backbones.md has the CPU measurements).
"""

from pathlib import Path

import pytest
import torch

from nbstudy.checkpoint import load_backbone, save_atomic, save_backbone
from nbstudy.errors import NbstudyError
from nbstudy.lnl import METHODS as LNL_METHODS
from nbstudy.lnl import train_noisy
from nbstudy.models import BACKBONES, Classifier, ViT, build_backbone, first_layer_filters, vit_patch
from nbstudy.params import defaults
from nbstudy.pretrain import METHODS, resolve
from nbstudy.pretrain.jigsaw import tile_geometry
from nbstudy.pretrain.run import make_optimizer, train_step

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
FEATURES = {"resnet18": 512, "resnet50": 2048, "vit_tiny": 192}
NEW = ("resnet50", "vit_tiny")   # resnet18 trains everywhere else in the suite
FIRST = {"resnet18": (64, 3, 7, 7), "resnet50": (64, 3, 7, 7), "vit_tiny": (192, 3, 4, 4)}


@pytest.mark.parametrize("arch", BACKBONES)
def test_each_backbone_builds_with_its_feature_dim_and_first_layer(arch):
    torch.manual_seed(0)
    net = build_backbone(False, arch, resolution=32)
    assert net.arch == arch and net.feature_dim == FEATURES[arch]
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, FEATURES[arch])
    assert first_layer_filters(net).shape == FIRST[arch]
    clf = Classifier(5, backbone=net)
    assert clf(torch.randn(3, 3, 32, 32)).shape == (3, 5)
    torch.manual_seed(0)   # same seed, same init
    assert torch.equal(first_layer_filters(build_backbone(False, arch, resolution=32)), first_layer_filters(net))


def test_the_vit_patch_follows_the_resolution_and_takes_smaller_inputs():
    assert [vit_patch(r) for r in (28, 32, 64, 96, 128, 224)] == [4, 4, 4, 8, 8, 16]
    vit = build_backbone(arch="vit_tiny", resolution=224)
    assert isinstance(vit, ViT) and vit.patch_size == 16 and vit.encoder.pos_embedding.shape == (1, 1 + 14 * 14, 192)
    vit = build_backbone(arch="vit_tiny", resolution=32).eval()
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(vit.position_embedding(8, 8), vit.encoder.pos_embedding)   # its own grid: as built
    assert vit.position_embedding(2, 3).shape == (1, 1 + 6, 192)
    assert vit(x[..., :8, :12]).shape == (2, 192)                                 # a jigsaw tile: resized grid
    # on its own grid it is torchvision's network: the class token after the last LayerNorm
    with torch.no_grad():
        ref = vit.encoder(torch.cat([vit.class_token.expand(2, -1, -1), vit._process_input(x)], 1))[:, 0]
    assert torch.allclose(vit(x), ref, atol=1e-6)
    with pytest.raises(NbstudyError, match="unknown backbone 'vit_huge'"):
        build_backbone(arch="vit_huge")


def test_jigsaw_tiles_for_a_vit_are_whole_patches():
    assert tile_geometry(32, patch=4) == (10, 8, 8)          # 2 x 2 patches
    assert tile_geometry(28, patch=4) == (9, 7, 8)
    assert tile_geometry(224, small_stem=False, patch=16) == (74, 63, 64)
    assert tile_geometry(12, patch=4) == (4, 2, 8)           # never fewer than 2 x 2 patches
    with pytest.raises(NbstudyError, match="smaller than the ViT's 4 px patch"):
        tile_geometry(32, tile=3, patch=4)
    with pytest.raises(NbstudyError, match="smaller than the ViT's 4 px patch"):   # before the run starts
        resolve(method="jigsaw", backbone="vit_tiny", resolution=32, method_options={"tile": 3})


@pytest.mark.parametrize("arch", NEW)
@pytest.mark.parametrize("name", list(METHODS))
def test_every_pretraining_method_takes_a_step_on_every_backbone(one_torch_thread, arch, name):
    torch.manual_seed(0)
    method = METHODS[name](build_backbone(False, arch, 16), MEAN, STD, 16, **defaults(METHODS[name].options))
    before = {k: v.clone() for k, v in method.backbone.state_dict().items()}
    optimizer = make_optimizer({"optimizer": "adam", "lr": 1e-3, "weight_decay": 0.0},
                               (w for w in method.parameters() if w.requires_grad))
    g = torch.Generator().manual_seed(0)
    loss, _ = train_step(method, *method.make_inputs(torch.rand(4, 3, 16, 16, generator=g), g), optimizer, torch.device("cpu"))
    method.after_step(0, 10)
    assert torch.isfinite(loss)
    first = next(iter(before))   # the first layer's weights moved: the gradient reached the whole backbone
    assert not torch.equal(method.backbone.state_dict()[first], before[first]), first


TINY = dict(dataset_options=dict(num_classes=3, per_class=8, test_per_class=4), resolution=16, stem="imagenet",
            noise_kind="symmetric_exclusive", noise_rate=0.4, epochs=1, batch_size=4, checkpoint_every=0, progress=False)


@pytest.mark.parametrize("arch", NEW)
def test_every_lnl_method_trains_every_backbone_from_its_own_checkpoint(tmp_path, one_torch_thread, arch):
    torch.manual_seed(0)
    init = save_backbone(tmp_path / "backbone.pt", build_backbone(False, arch, 16), 16, method="rotation")
    for method in LNL_METHODS:
        final = train_noisy(TINY, backbone=arch, method=method, init=str(init), output_dir=str(tmp_path / method))
        assert 0 <= final["last_acc"] <= 1, method


def test_a_checkpoint_of_another_backbone_is_one_line_naming_both(tmp_path):
    path = save_backbone(tmp_path / "bb.pt", build_backbone(False, "vit_tiny", 32), 32)
    assert torch.load(path, weights_only=False)["arch"] == "vit_tiny"
    fresh = build_backbone(False, "vit_tiny", 32)
    load_backbone(fresh, path, 32)
    assert torch.equal(fresh.conv_proj.weight, torch.load(path, weights_only=False)["backbone"]["conv_proj.weight"])
    with pytest.raises(NbstudyError, match=r"holds a vit_tiny backbone but this run builds a resnet18: set "
                                           r"backbone: vit_tiny to use it, or pretrain a resnet18$"):
        load_backbone(build_backbone(False), path)
    with pytest.raises(NbstudyError, match="holds a resnet18 backbone but this run builds a resnet50"):
        load_backbone(build_backbone(False, "resnet50"), save_backbone(tmp_path / "r18.pt", build_backbone(), 32))
    with pytest.raises(NbstudyError) as e:
        train_noisy(TINY, backbone="vit_tiny", init=str(tmp_path / "r18.pt"), output_dir=str(tmp_path / "run"))
    assert "\n" not in str(e.value) and "set backbone: resnet18" in str(e.value)


def test_an_old_checkpoint_still_loads_as_resnet18(tmp_path):
    path = save_backbone(tmp_path / "old.pt", build_backbone(True), 32)
    ckpt = torch.load(path, weights_only=False)
    assert ckpt["arch"] == "resnet18"   # what every checkpoint said before the other backbones
    save_atomic(ckpt, path)
    load_backbone(build_backbone(True), path, 32)


def test_the_followup_study_file_passes_a_dry_run(tmp_path, monkeypatch, capsys):
    """parameters/followup_pathmnist.yaml from a folder whose data/pathmnist.npz is made-up pixels in
    MedMNIST's layout (all a dry run reads): nine methods x three backbones, the size its comment says."""
    import numpy as np

    from nbstudy.cli import main
    from nbstudy.study import expand, load_study

    path = Path(__file__).resolve().parents[1] / "parameters" / "followup_pathmnist.yaml"
    (tmp_path / "data").mkdir()
    rng = np.random.default_rng(0)
    sizes = {"train": 260, "val": 18, "test": 18}   # a dry run checks each run's batch size against the images
    np.savez(tmp_path / "data" / "pathmnist.npz",
             **{f"{s}_images": rng.integers(0, 256, (n, 28, 28, 3), dtype=np.uint8) for s, n in sizes.items()},
             **{f"{s}_labels": np.arange(n).reshape(-1, 1) % 9 for s, n in sizes.items()})
    monkeypatch.chdir(tmp_path)
    assert main(["study", str(path), "--dry-run", "--out", "out"]) == 0
    out = capsys.readouterr().out
    assert "567 runs, 567 to do" in out and "todo  train/vit_tiny-byol-dividemix-" in out
    study = load_study(path)
    assert study["backbones"] == list(BACKBONES) and list(study["pretrain"]["methods"]) == list(METHODS)
    assert set(study["train"]["methods"]) == set(LNL_METHODS) and len(study["train"]["seeds"]) >= 2
    runs = expand(study, "/tmp/o/x", "/tmp/nb")
    assert sum(r.stage == "pretrain" for r in runs) == 27 and len(runs) == 567


def test_the_analysis_keeps_backbones_apart(tmp_path):
    import pandas as pd

    from nbstudy.analysis import runs as R
    from nbstudy.analysis import tables

    acc = {("resnet18", "random"): 0.5, ("resnet18", "simclr"): 0.7, ("vit_tiny", "random"): 0.3,
           ("vit_tiny", "simclr"): 0.4}
    rows = [{"backbone": b, "init": i, "method": "ce", "noise_kind": "symmetric", "noise_rate": 0.6, "seed": 0,
             "best_acc": a, "last_acc": a - 0.1, "actual_noise_rate": 0.5, "run": f"{b}-{i}", "run_dir": "",
             "init_probe_acc": None if i == "random" else a, "random_probe_acc": None if i == "random" else 0.45}
            for (b, i), a in acc.items()]
    study = R.Study(tmp_path, pd.DataFrame(rows), True)
    assert R.grid_defaults(study)["backbone"] == "resnet18"                # a figure shows one backbone
    assert set(R.accuracy_data(study)["runs"].run) == {"resnet18-random", "resnet18-simclr"}
    assert set(R.accuracy_data(study, backbone="vit_tiny")["runs"].run) == {"vit_tiny-random", "vit_tiny-simclr"}
    assert R.pretraining_probes(study).helped.tolist() == [True]            # resnet18's simclr: 0.7 > 0.45
    assert R.pretraining_probes(study, "vit_tiny").helped.tolist() == [False]   # 0.4 < 0.45
    table = tables.results_table(study)                                     # a row per backbone and init
    assert list(table.mean.index) == [("ce", f"{b} · {i}") for b, i in acc]
    assert [table.mean.loc[("ce", f"{b} · {i}"), (0.6, "BEST")] for b, i in acc] == pytest.approx(
        [100 * a for a in acc.values()])
