"""The pure parts of the noisy-label methods, on planted inputs whose right answer is known."""

import numpy as np
import pytest
import torch

from nbstudy.errors import NbstudyError
from nbstudy.lnl import coteaching as ct
from nbstudy.lnl import dividemix as dm
from nbstudy.lnl.ce import step_lr


# ---------------------------------------------------------------- Co-teaching

def test_small_loss_indices_keep_the_smallest_fraction():
    losses = torch.tensor([0.1, 5.0, 0.2, 4.0, 0.3, 3.0, 0.05, 2.0, 0.4, 6.0])
    kept = ct.small_loss_indices(losses, forget_rate=0.5)
    assert sorted(kept.tolist()) == [0, 2, 4, 6, 8]
    assert ct.small_loss_indices(losses, 0.0).numel() == 10
    assert ct.small_loss_indices(losses, 0.99).tolist() == [6]  # never empty


def test_cross_update_uses_the_other_networks_kept_samples():
    loss_a = torch.tensor([0.1, 0.2, 9.0, 9.0])   # A trusts samples 0, 1
    loss_b = torch.tensor([9.0, 9.0, 0.3, 0.4])   # B trusts samples 2, 3
    la, lb, keep_a, keep_b = ct.coteaching_losses(loss_a, loss_b, forget_rate=0.5)
    assert sorted(keep_a.tolist()) == [0, 1] and sorted(keep_b.tolist()) == [2, 3]
    assert la.item() == pytest.approx(9.0)        # A is taught on B's picks: a plain mean, not mean / count
    assert lb.item() == pytest.approx(9.0)
    la, lb, _, _ = ct.coteaching_losses(loss_a, loss_b, forget_rate=0.0)
    assert la.item() == pytest.approx(loss_a.mean().item())


def test_forget_rate_ramps_like_the_official_linspace():
    tau, tk = 0.6, 10
    expected = np.linspace(0, tau, tk)
    got = [ct.forget_rate_schedule(e, tau, tk) for e in range(tk)]
    np.testing.assert_allclose(got, expected)
    assert ct.forget_rate_schedule(25, tau, tk) == pytest.approx(tau)
    assert ct.forget_rate_schedule(0, tau, 1) == pytest.approx(tau)


def test_adam_schedule_decays_linearly_and_switches_beta1():
    assert ct.adam_schedule(79, 200, 1e-3, 0.4) == (1e-3, 0.9)
    lr, beta1 = ct.adam_schedule(80, 200, 1e-3, 0.4)
    assert lr == pytest.approx(1e-3) and beta1 == 0.1
    assert ct.adam_schedule(199, 200, 1e-3, 0.4)[0] == pytest.approx(1e-3 / 120)


def test_step_schedule_divides_by_ten_at_half():
    assert step_lr(149, 300, 0.02) == 0.02 and step_lr(150, 300, 0.02) == pytest.approx(0.002)


# ---------------------------------------------------------------- DivideMix

def test_gmm_gives_the_low_loss_mode_a_high_clean_probability():
    rng = np.random.default_rng(0)
    clean = rng.normal(0.5, 0.15, 700).clip(0)
    noisy = rng.normal(3.0, 0.5, 300)
    w = dm.clean_probability(dm.normalize_losses(np.concatenate([clean, noisy])), seed=0)
    assert w[:700].mean() > 0.95 and w[700:].mean() < 0.05
    assert ((w > 0.5) == np.r_[np.ones(700, bool), np.zeros(300, bool)]).mean() > 0.98


def test_normalize_losses_maps_to_unit_interval():
    x = dm.normalize_losses(np.array([2.0, 4.0, 3.0]))
    np.testing.assert_allclose(x, [0.0, 1.0, 0.5])
    assert (dm.normalize_losses(np.ones(5)) == 0).all()
    assert (dm.clean_probability(np.zeros(5)) == 1).all()


def test_division_threshold_is_clipped_at_extreme_noise():
    prob = np.linspace(0.0, 0.2, 100)                 # everything looks noisy
    labelled = dm.divide(prob, 0.5, min_count=16)
    assert labelled.sum() == 16 and prob[labelled].min() >= prob[~labelled].max()
    prob = np.linspace(0.8, 1.0, 100)                 # everything looks clean
    labelled = dm.divide(prob, 0.5, min_count=16)
    assert (~labelled).sum() == 16 and prob[~labelled].max() <= prob[labelled].min()
    prob = np.r_[np.zeros(50), np.ones(50)]           # no clipping needed
    assert (dm.divide(prob, 0.5, min_count=16) == (prob > 0.5)).all()
    assert dm.divide(np.zeros(3), 0.5, min_count=64).sum() == 1  # tiny sets: both sides still non-empty


def test_sharpen():
    p = torch.tensor([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]])
    s = dm.sharpen(p, 0.5)
    torch.testing.assert_close(s.sum(1), torch.ones(2))
    assert (s.argmax(1) == p.argmax(1)).all() and (s.max(1).values > p.max(1).values).all()
    torch.testing.assert_close(s[0], torch.tensor([25.0, 9.0, 4.0]) / 38)
    torch.testing.assert_close(dm.sharpen(p, 1.0), p)


def test_co_refinement_and_co_guessing():
    onehot = torch.tensor([[0.0, 1.0]])
    own = torch.tensor([[0.9, 0.1]])
    assert torch.equal(dm.co_refine(own, own, onehot, torch.tensor([1.0]), 0.5), onehot)  # trusted label kept
    torch.testing.assert_close(dm.co_refine(own, own, onehot, torch.tensor([0.0]), 0.5),
                               dm.sharpen(own, 0.5))                                     # distrusted: own guess
    guess = dm.co_guess([torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])] * 2, 0.5)
    torch.testing.assert_close(guess, torch.tensor([[0.5, 0.5]]))


def test_mixmatch_lambda_is_at_least_half():
    rng = np.random.default_rng(0)
    lams = np.array([dm.mixmatch_lambda(rng, 4.0) for _ in range(2000)])
    assert lams.min() >= 0.5 and lams.max() <= 1.0
    assert 0.5 < lams.mean() < 0.75 and lams.std() > 0.05  # folded Beta(4, 4), not a constant


def test_lambda_u_ramp():
    assert dm.lambda_u_ramp(10, warmup=10, lambda_u=25) == 0
    assert dm.lambda_u_ramp(18, warmup=10, lambda_u=25) == pytest.approx(12.5)
    assert dm.lambda_u_ramp(26, warmup=10, lambda_u=25) == pytest.approx(25)
    assert dm.lambda_u_ramp(500, warmup=10, lambda_u=25) == pytest.approx(25)
    assert dm.lambda_u_ramp(3, warmup=10, lambda_u=25) == 0


def test_losses_and_penalties():
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
    lx, lu = dm.semi_loss(logits, torch.eye(2), logits, torch.softmax(logits, 1))
    assert lx.item() == pytest.approx(torch.nn.functional.cross_entropy(logits, torch.arange(2)).item())
    assert lu.item() == pytest.approx(0.0)
    assert dm.prior_penalty(logits).item() == pytest.approx(0.0, abs=1e-6)      # balanced batch
    assert dm.prior_penalty(torch.tensor([[5.0, 0.0], [5.0, 0.0]])).item() > 0.5  # collapsed batch
    assert dm.neg_entropy(torch.zeros(1, 2)).item() == pytest.approx(-np.log(2))


def test_coteaching_forgets_the_expected_fraction_of_wrong_labels_by_default():
    from nbstudy.lnl import prepare

    small = dict(method="coteaching", noise_rate=0.6, dataset_options=dict(num_classes=4, per_class=20, test_per_class=5),
                 resolution=16, stem="imagenet", batch_size=8)
    assert prepare(small).options["forget_rate"] == pytest.approx(0.45)          # symmetric: 0.6 * 3 / 4
    assert prepare(small, noise_kind="symmetric_exclusive").options["forget_rate"] == pytest.approx(0.6)
    assert prepare(small, method_options={"forget_rate": 0.3}).options["forget_rate"] == 0.3


def test_seeds_share_the_data_and_data_seed_changes_it():
    """A study's seeds differ in noise, init and order, never in which images are train and test."""
    from nbstudy.lnl import prepare

    small = dict(dataset_options=dict(num_classes=3, per_class=10, test_per_class=5), resolution=16, noise_rate=0.5,
                 stem="imagenet", batch_size=8)
    a, b, other = prepare(small, seed=0), prepare(small, seed=1), prepare(small, seed=0, data_seed=1)
    assert np.array_equal(a.dataset.train_images, b.dataset.train_images)
    assert np.array_equal(a.dataset.test_images, b.dataset.test_images)
    assert not np.array_equal(a.noisy_labels, b.noisy_labels)
    assert not np.array_equal(a.dataset.test_images, other.dataset.test_images)
    with pytest.raises(NbstudyError, match="data_seed"):
        prepare(small, data_seed=-1)


def test_a_backbone_pretrained_on_another_draw_of_the_same_data_is_warned_about(tmp_path):
    import warnings

    from nbstudy.checkpoint import save_backbone
    from nbstudy.lnl import prepare
    from nbstudy.models import build_backbone

    options = dict(num_classes=3, per_class=10, test_per_class=5)
    small = dict(dataset_options=options, resolution=16, stem="imagenet", batch_size=8)
    hparams = {"dataset": "synthetic", "data_path": None, "dataset_options": options, "data_seed": 1}
    path = str(save_backbone(tmp_path / "backbone.pt", build_backbone(small_stem=False), 16, hparams=hparams))
    with pytest.warns(UserWarning, match="pretrained with data_seed=1 but this run uses data_seed=0"):
        prepare(small, init=path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        prepare(small, init=path, data_seed=1)                                  # same draw
        prepare({**small, "dataset_options": {**options, "per_class": 12}}, init=path)  # other data: transfer


def _context(labels, class_weights):
    from nbstudy.lnl.base import Context
    labels = np.asarray(labels)
    return Context(nets=[], optimizers=[], images=np.zeros((len(labels), 4, 4, 3), np.uint8), labels=labels,
                   train_idx=np.arange(len(labels)), num_classes=3, mean=None, std=None, device=torch.device("cpu"),
                   batch_size=2, epochs=1, lr=1e-3, seed=0, options={}, noise_kind="symmetric", noise_rate=0.0,
                   gen=None, rng=None, class_weights=class_weights)


def test_balanced_class_weights_are_n_over_k_times_the_class_count():
    # n / (K count): 6 labels of 3 classes, counts 3, 2, 1; 4 labels, counts 2, 2, 0 (no label: weight 0)
    assert _context([0, 0, 0, 1, 1, 2], "balanced").loss_weights().tolist() == pytest.approx([2 / 3, 1, 2])
    assert _context([0, 0, 1, 1], "balanced").loss_weights().tolist() == pytest.approx([2 / 3, 2 / 3, 0])
    assert _context([0, 0, 1, 1], "none").loss_weights() is None


def test_weighted_cross_update_is_the_weighted_mean_over_the_kept_samples_selected_on_plain_losses():
    loss_a = torch.tensor([0.1, 0.2, 0.3, 5.0])
    loss_b = torch.tensor([0.4, 0.1, 0.2, 5.0])
    weight = torch.tensor([1.0, 1.0, 4.0, 100.0])
    la, lb, keep_a, keep_b = ct.coteaching_losses(loss_a, loss_b, 0.25, weight)
    assert sorted(keep_a.tolist()) == [0, 1, 2] and sorted(keep_b.tolist()) == [0, 1, 2]   # 5.0 dropped, whatever its weight
    assert float(la) == pytest.approx((0.1 + 0.2 + 4 * 0.3) / 6) and float(lb) == pytest.approx((0.4 + 0.1 + 4 * 0.2) / 6)
    plain = ct.coteaching_losses(loss_a, loss_b, 0.25)
    assert float(plain[0]) == pytest.approx(0.2)


def test_class_weights_must_be_none_or_balanced():
    from nbstudy.lnl.params import resolve
    assert resolve(class_weights="balanced")["class_weights"] == "balanced"
    with pytest.raises(NbstudyError, match="class_weights") as e:
        resolve(class_weights="inverse")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("method", ["ce", "coteaching"])
def test_a_run_with_balanced_class_weights_trains_on_the_weighted_loss(tmp_path, method):
    from nbstudy.lnl import train_noisy
    from nbstudy.lnl.records import load_records
    # 4 classes, 10 images each; asymmetric noise 0.5 sends 0 -> 1, 1 -> 2, 2 -> 1, 3 -> 2: about 5, 15, 15 and 5
    # noisy labels, so balanced weights are far from 1 and change the first epoch's loss
    common = dict(method=method, dataset="synthetic", dataset_options={"per_class": 10, "test_per_class": 2},
                  resolution=16, stem="imagenet", epochs=1, batch_size=8, noise_kind="asymmetric", noise_rate=0.5,
                  noise_options={"mapping": [1, 2, 1, 2]}, progress=False, checkpoint_every=0, val_fraction=0.0)
    losses = {}
    for weights in ("none", "balanced"):
        train_noisy(**common, class_weights=weights, output_dir=str(tmp_path / weights))
        records = load_records(tmp_path / weights)
        assert records["params"]["class_weights"] == weights
        losses[weights] = records["history"][0]["train_loss"]
    assert losses["none"] != pytest.approx(losses["balanced"], rel=1e-3)
