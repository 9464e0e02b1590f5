"""The three methods end to end on the synthetic set with symmetric noise 0.6, small enough for the CPU.

What this checks, honestly, at a scale CI can afford: Co-teaching and DivideMix
pick out right labels far better than chance (their kept / labelled sets are
much cleaner than the data), and they do not fit the wrong labels the way CE
does. From random init these runs learn nothing in CPU time (the synthetic
textures need ~1000 images and tens of epochs even with clean labels), so the
networks start from a head-start backbone: trained with *clean* labels on a
disjoint draw of the synthetic set (another seed), the way an ImageNet or
pretrained init would be. At this scale the test-accuracy effects (CE's LAST
below its BEST, the LNL methods above CE's LAST) are within the noise of a
200-image test set and are not asserted.
"""

import numpy as np
import pytest
import torch

from nbstudy.checkpoint import save_backbone
from nbstudy.lnl import load_records, train_noisy
from nbstudy.models import build_backbone

NOISY = dict(dataset_options=dict(num_classes=4, per_class=60, test_per_class=50), resolution=32,
             stem="imagenet", noise_kind="symmetric", noise_rate=0.6, epochs=8, batch_size=16, lr=1e-4, seed=0,
             record_every=4, checkpoint_every=0, progress=False)
OPTIONS = {"ce": {"optimizer": "adam"}, "coteaching": {"num_gradual": 3},
           "dividemix": {"optimizer": "adam", "warmup_epochs": 2, "lambda_u": 0}}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # fastest on a shared CPU, and results then repeat exactly
    root = tmp_path_factory.mktemp("lnl")
    head_start = root / "head_start.pt"
    train_noisy(dataset_options=dict(num_classes=4, per_class=250, test_per_class=10), resolution=32,
                stem="imagenet", method="ce", method_options={"optimizer": "adam"}, lr=1e-3, batch_size=32,
                epochs=8, seed=1, val_fraction=0.0, record_every=8, checkpoint_every=8, keep_checkpoint=True,
                progress=False, output_dir=str(root / "clean"))
    net = torch.load(root / "clean" / "checkpoint.pt", weights_only=False)["nets"][0]
    backbone = build_backbone(small_stem=False)
    backbone.load_state_dict({k.removeprefix("backbone."): v for k, v in net.items() if k.startswith("backbone.")})
    save_backbone(head_start, backbone, 32, method="supervised-clean-seed1")
    out = {}
    for method, options in OPTIONS.items():
        train_noisy(NOISY, method=method, method_options=options, init=str(head_start),
                    output_dir=str(root / method))
        out[method] = load_records(root / method)
    torch.set_num_threads(before)
    return out


def wrong_label_loss(rec):
    """Mean final per-sample loss on the training samples whose label is wrong (high = not memorised)."""
    tr = rec["train_indices"]
    return float(rec["losses"][-1][tr][rec["noise_mask"][tr]].mean())


@pytest.mark.slow
@pytest.mark.parametrize("method", ["coteaching", "dividemix"])
def test_selection_is_far_cleaner_than_the_data(runs, method):
    final = runs[method]["final"]
    clean_fraction = 1 - final["actual_noise_rate"]
    assert final["actual_noise_rate"] == pytest.approx(0.6 * 3 / 4, abs=0.05)
    assert final["selection_precision"] > clean_fraction + 0.15
    assert final["selection_auc"] > 0.75
    assert final["selection_recall"] > 0.4


@pytest.mark.slow
@pytest.mark.parametrize("method", ["coteaching", "dividemix"])
def test_lnl_methods_do_not_fit_the_wrong_labels_like_ce(runs, method):
    assert wrong_label_loss(runs[method]) > 1.3 * wrong_label_loss(runs["ce"])


@pytest.mark.slow
def test_records_of_each_method(runs):
    for method, rec in runs.items():
        n = len(rec["clean_labels"])
        assert rec["params"]["method"] == method and rec["dataset"]["synthetic"] is True
        assert [h["epoch"] for h in rec["history"]] == list(range(1, 9))
        assert list(rec["record_epochs"]) == [4, 8] and rec["losses"].shape == rec["selection"].shape == (2, n)
        assert np.isnan(rec["losses"][:, rec["val_indices"]]).all()
        assert np.isfinite(rec["losses"][:, rec["train_indices"]]).all()
        assert rec["init"]["method"] == "supervised-clean-seed1"
        assert not np.array_equal(rec["filters_initial"], rec["filters_final"])
        final = rec["final"]
        assert final["best_acc"] >= final["last_acc"] and final["best_acc"] > 0.5  # the head start carried over
        assert final["val_pick_epoch"] in range(1, 9)
    assert runs["ce"]["final"]["selection_precision"] is None
    assert np.isnan(runs["ce"]["selection"]).all()
    assert runs["coteaching"]["final"]["reported_network"] == "A"
    assert runs["dividemix"]["final"]["reported_network"] == "ensemble"
    assert runs["dividemix"]["history"][0]["selection_precision"] is None  # warm-up selects nothing
    kept = runs["coteaching"]["selection"][-1][runs["coteaching"]["train_indices"]]
    assert set(np.unique(kept[~np.isnan(kept)])) == {0.0, 1.0}
