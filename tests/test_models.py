import pytest
import torch

from nbstudy.checkpoint import load_backbone, save_atomic, save_backbone
from nbstudy.errors import NbstudyError
from nbstudy.models import Classifier, build_backbone, first_layer_filters, use_small_stem


def test_stems_shapes_and_features():
    big, small = build_backbone(False), build_backbone(True)
    assert big.conv1.kernel_size == (7, 7) and big.conv1.stride == (2, 2)
    assert small.conv1.kernel_size == (3, 3) and small.conv1.stride == (1, 1)
    assert isinstance(small.maxpool, torch.nn.Identity)
    x = torch.randn(2, 3, 32, 32)
    assert big.feature_dim == small.feature_dim == 512
    assert big(x).shape == (2, 512) and small(x).shape == (2, 512)
    clf = Classifier(7, small_stem=True)
    assert clf(x).shape == (2, 7) and clf.features(x).shape == (2, 512)
    assert not any(k.startswith("fc.") for k in big.state_dict())
    assert first_layer_filters(small).shape == (64, 3, 3, 3)


def test_auto_stem_by_resolution():
    assert use_small_stem("auto", 28) and use_small_stem("auto", 64)
    assert not use_small_stem("auto", 224) and use_small_stem("small", 224) and not use_small_stem("imagenet", 28)
    with pytest.raises(NbstudyError, match="unknown stem"):
        use_small_stem("tiny", 32)


def test_random_init_differs_by_seed_and_matches_for_same_seed():
    torch.manual_seed(0)
    a = build_backbone().conv1.weight
    torch.manual_seed(0)
    b = build_backbone().conv1.weight
    assert torch.equal(a, b)


def test_checkpoint_round_trip(tmp_path):
    src = build_backbone(True)
    path = save_backbone(tmp_path / "bb.pt", src, resolution=32, method="rotation", epochs_done=3)
    dst = build_backbone(True)
    meta = load_backbone(dst, path, resolution=32)
    assert meta["method"] == "rotation" and meta["epochs_done"] == 3
    for k, v in src.state_dict().items():
        assert torch.equal(v, dst.state_dict()[k]), k


def test_checkpoint_mismatches_fail_loudly(tmp_path):
    path = save_backbone(tmp_path / "bb.pt", build_backbone(True), resolution=32)
    with pytest.raises(NbstudyError, match="other stem"):
        load_backbone(build_backbone(False), path)
    with pytest.raises(NbstudyError, match="32 px"):
        load_backbone(build_backbone(True), path, resolution=64)
    # weights of another architecture under the nbstudy format: key check names missing keys
    ckpt = torch.load(path, weights_only=False)
    ckpt["backbone"] = {"conv1.weight": ckpt["backbone"]["conv1.weight"], "head.weight": torch.zeros(1)}
    save_atomic(ckpt, tmp_path / "other.pt")
    with pytest.raises(NbstudyError, match="missing keys"):
        load_backbone(build_backbone(True), tmp_path / "other.pt")
    # a file that is not an nbstudy checkpoint at all
    torch.save({"state_dict": {}}, tmp_path / "foreign.pt")
    with pytest.raises(NbstudyError, match="not an nbstudy backbone checkpoint"):
        load_backbone(build_backbone(True), tmp_path / "foreign.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(NbstudyError, match="cannot be read"):
        load_backbone(build_backbone(True), tmp_path / "junk.pt")
    with pytest.raises(NbstudyError, match="does not exist"):
        load_backbone(build_backbone(True), tmp_path / "missing.pt")


def test_wrong_shapes_are_reported(tmp_path):
    bb = build_backbone(True)
    path = save_backbone(tmp_path / "bb.pt", bb, resolution=32)
    ckpt = torch.load(path, weights_only=False)
    ckpt["backbone"]["conv1.weight"] = torch.zeros(64, 3, 5, 5)
    save_atomic(ckpt, path)
    with pytest.raises(NbstudyError, match="wrong shape"):
        load_backbone(build_backbone(True), path)


def test_checkpoints_are_readable_by_others(tmp_path):
    path = save_backbone(tmp_path / "bb.pt", build_backbone(False), resolution=224)
    assert path.stat().st_mode & 0o777 == 0o644
