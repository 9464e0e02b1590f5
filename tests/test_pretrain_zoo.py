"""The follow-up's two-view methods (Barlow Twins, BYOL, MoCo v2, SimSiam, VICReg): losses against lightly and
hand computations, momentum and queue known answers, SimSiam's stop-gradient, a few training steps each, and a
killed BYOL / MoCo run resuming bit for bit."""

import math

import pytest
import torch
import torch.nn.functional as F
from lightly.loss import NegativeCosineSimilarity, NTXentLoss

from nbstudy.data import load_dataset
from nbstudy.errors import NbstudyError
from nbstudy.models import build_backbone
from nbstudy.pretrain import METHODS, build_method, resolve, run_pretraining
from nbstudy.pretrain import run as run_module
from nbstudy.pretrain.barlow_twins import barlow_twins_loss
from nbstudy.pretrain.byol import byol_loss, target_momentum
from nbstudy.pretrain.moco import MoCo, enqueue, in_batch_logits, info_nce, moco_logits
from nbstudy.pretrain.simsiam import simsiam_loss
from nbstudy.pretrain.vicreg import vicreg_loss
from conftest import interrupt_pretraining

TWO_VIEW = ("barlow_twins", "byol", "moco", "simsiam", "vicreg")
MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
SMALL = {"barlow_twins": {"projector_dim": 128}, "vicreg": {"projector_dim": 128}, "simsiam": {"projector_dim": 128},
         "byol": {"hidden_dim": 128, "out_dim": 64}, "moco": {"queue_size": 64, "out_dim": 64}}   # small heads: fast
TINY = {"dataset_options": {"per_class": 5, "test_per_class": 3}, "resolution": 16, "stem": "imagenet",
        "batch_size": 8, "device": "cpu", "progress": False}


def _randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def tiny_data():
    return load_dataset("synthetic", resolution=16, **TINY["dataset_options"])


# ---- losses -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("lambd", [0.0051, 0.5])
def test_barlow_twins_loss_by_hand(lambd):
    z0, z1 = _randn(10, 6, seed=1) * 3 + 1, _randn(10, 6, seed=2)
    standard = lambda z: (z - z.mean(0)) / (z.var(0, unbiased=False) + 1e-5).sqrt()  # noqa: E731
    c = standard(z0).T @ standard(z1) / 10
    off = c - torch.diag(c.diagonal())
    expected = ((1 - c.diagonal()) ** 2).sum() + lambd * (off ** 2).sum()
    torch.testing.assert_close(barlow_twins_loss(z0, z1, lambd), expected, rtol=1e-5, atol=1e-5)
    z = _randn(10, 6)                                       # identical views: only the redundancy term is left
    c = standard(z).T @ standard(z) / 10
    expected = lambd * ((c - torch.eye(6)) ** 2).sum()
    torch.testing.assert_close(barlow_twins_loss(z, z, lambd), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("weights", [(25.0, 25.0, 1.0), (1.0, 2.0, 3.0)])
def test_vicreg_loss_by_hand(weights):
    z0, z1 = _randn(12, 5, seed=3) * 0.3, _randn(12, 5, seed=4) * 2
    hinge = lambda z: F.relu(1 - (z.var(0) + 1e-4).sqrt()).mean()  # noqa: E731 (unbiased, as the paper's code)

    def cov(z):
        zc = z - z.mean(0)
        m = zc.T @ zc / (len(z) - 1)
        return (m ** 2).sum() - (m.diagonal() ** 2).sum()

    inv, var, covar = weights
    expected = inv * ((z0 - z1) ** 2).mean() + var * (hinge(z0) + hinge(z1)) / 2 + covar * (cov(z0) + cov(z1)) / 5
    torch.testing.assert_close(vicreg_loss(z0, z1, *weights), expected, rtol=1e-5, atol=1e-5)


def test_simsiam_loss_equals_lightly_and_stops_the_gradient_at_the_target():
    p, z = _randn(8, 16, seed=5).requires_grad_(), _randn(8, 16, seed=6).requires_grad_()
    cos = NegativeCosineSimilarity()
    ours = simsiam_loss(p, z)
    torch.testing.assert_close(ours, (cos(p[:4], z[4:]) + cos(p[4:], z[:4])).detach() / 2)
    ours.backward()
    assert z.grad is None and p.grad.abs().sum() > 0      # no gradient reaches the target branch
    assert simsiam_loss(z, z).item() == pytest.approx(-math.fsum(  # a view's partner, by hand
        F.cosine_similarity(z[:4], z[4:], dim=1).tolist()) / 4, rel=1e-5)


def test_byol_loss_by_hand_and_against_lightly():
    q, z = _randn(6, 8, seed=7).requires_grad_(), _randn(6, 8, seed=8).requires_grad_()
    partner = torch.cat([z[3:], z[:3]])
    expected = ((F.normalize(q, dim=1) - F.normalize(partner, dim=1)) ** 2).sum(1).mean()   # 2 - 2 cos
    ours = byol_loss(q, z)
    torch.testing.assert_close(ours, expected.detach())
    cos = NegativeCosineSimilarity()
    torch.testing.assert_close(ours.detach(), 2 + (cos(q[:3], z[3:]) + cos(q[3:], z[:3])).detach())
    ours.backward()
    assert z.grad is None and q.grad.abs().sum() > 0


@pytest.mark.parametrize("n, k, temperature", [(4, 16, 0.2), (7, 5, 0.07)])
def test_moco_info_nce_equals_lightly_with_the_same_queue(n, k, temperature):
    q, key = _randn(n, 8, seed=n), _randn(n, 8, seed=n + 1)
    queue = F.normalize(_randn(k, 8, seed=k), dim=1)
    theirs = NTXentLoss(temperature=temperature, memory_bank_size=(k, 8))
    theirs.memory_bank.bank = queue.clone()
    logits = moco_logits(q, key, queue, temperature)
    assert logits.shape == (n, 1 + k)
    torch.testing.assert_close(info_nce(logits), theirs(q, key), rtol=1e-5, atol=1e-6)


# ---- momentum and queue: known answers ----------------------------------------------------------------------

def test_byol_target_momentum_follows_the_cosine_schedule():
    assert target_momentum(0, 101, 0.99) == pytest.approx(0.99)
    assert target_momentum(50, 101, 0.99) == pytest.approx(0.995)          # half-way: (tau_0 + 1) / 2
    assert target_momentum(100, 101, 0.99) == 1.0                          # the last step leaves the target
    k, total = 30, 101                                                      # BYOL's formula with K - 1 steps
    assert target_momentum(k, total, 0.996) == pytest.approx(1 - 0.004 * (math.cos(math.pi * k / 100) + 1) / 2)


def test_byol_after_step_moves_the_target_by_the_scheduled_momentum():
    data = type("D", (), {"resolution": 16, "mean": MEAN, "std": STD})()
    method = build_method({"method": "byol", "stem": "imagenet"}, data)
    assert not any(w.requires_grad for w in method.target_backbone.parameters())
    with torch.no_grad():
        for w in method.backbone.parameters():
            w.fill_(1.0)
        for w in method.target_backbone.parameters():
            w.fill_(0.0)
    method.after_step(50, 101)                                              # tau = 0.995
    for w in method.target_backbone.parameters():
        torch.testing.assert_close(w, torch.full_like(w, 0.005))
    online = torch.cat([w.flatten() for w in method.projector.parameters()])
    target = torch.cat([w.flatten() for w in method.target_projector.parameters()])
    torch.testing.assert_close(target, online)                              # a copy: the EMA of equals is itself


def test_queue_is_a_fifo_that_wraps_around():
    queue, ptr = torch.zeros(5, 2), torch.zeros((), dtype=torch.long)
    enqueue(queue, ptr, torch.tensor([[1.0, 1], [2, 2], [3, 3]]))
    assert queue[:, 0].tolist() == [1, 2, 3, 0, 0] and ptr.item() == 3
    enqueue(queue, ptr, torch.tensor([[4.0, 4], [5, 5], [6, 6]]))
    assert queue[:, 0].tolist() == [6, 2, 3, 4, 5] and ptr.item() == 1     # the oldest key was overwritten
    enqueue(queue, ptr, torch.arange(14.0).view(7, 2))                      # more keys than places: the last 5
    assert sorted(queue[:, 0].tolist()) == [4, 6, 8, 10, 12] and ptr.item() == 1


def test_moco_queues_both_views_keys_in_training_only():
    method = MoCo(build_backbone(small_stem=False), MEAN, STD, 16, queue_size=10, momentum=0.5)
    q, k = _randn(6, 128, seed=1), _randn(6, 128, seed=2)
    before = method.queue.clone()
    method.eval()
    method.loss((q, k))
    assert torch.equal(method.queue, before) and method.queue_ptr.item() == 0
    method.train()
    loss, acc = method.loss((q, k))
    expected = (info_nce(moco_logits(q[:3], k[3:], before, 0.2)) + info_nce(moco_logits(q[3:], k[:3], before, 0.2))) / 2
    torch.testing.assert_close(loss, expected)                              # symmetrised, against the old queue
    torch.testing.assert_close(method.queue[:6], F.normalize(k, dim=1))
    assert torch.equal(method.queue[6:], before[6:]) and method.queue_ptr.item() == 6
    with torch.no_grad():
        for w in method.key_head.parameters():
            w.zero_()
    method.after_step(0, 10)                                                # m = 0.5, constant
    for online, key in zip(method.head.parameters(), method.key_head.parameters()):
        torch.testing.assert_close(key, online / 2)
    assert {"queue", "queue_ptr", "key_backbone.conv1.weight"} <= set(method.state_dict())


def test_moco_without_a_queue_contrasts_each_query_with_the_batch_keys_by_hand():
    """queue_size 0 (MoCo v3's loss): a query's positive is its image's other-view key, its negatives the other
    images' keys of that view; computed here term by term."""
    method = MoCo(build_backbone(small_stem=False), MEAN, STD, 16, queue_size=0, temperature=0.5, momentum=0.5)
    assert method.queue.shape == (0, 128)
    q, k = _randn(6, 128, seed=1).requires_grad_(), _randn(6, 128, seed=2).requires_grad_()
    method.train()
    loss, acc = method.loss((q, k))
    cos = lambda a, b: F.cosine_similarity(a, b, dim=0)                     # noqa: E731
    terms = []
    for queries, keys in ((q[:3], k[3:]), (q[3:], k[:3])):
        for i in range(3):
            logits = torch.stack([cos(queries[i], keys[j]) / 0.5 for j in range(3)])
            terms.append(-torch.log_softmax(logits, 0)[i])
    torch.testing.assert_close(loss, torch.stack(terms).mean())
    assert in_batch_logits(q[:3], k[3:], 0.5).shape == (3, 3) and method.queue_ptr.item() == 0
    loss.backward()
    assert k.grad is None and q.grad.abs().sum() > 0                        # no gradient into the keys


def test_moco_with_momentum_0_uses_the_queries_as_keys():
    """momentum 0: the key encoder equals the query encoder, so the keys are the queries, detached (one
    forward pass), and after a step the key encoder is a copy of the query encoder."""
    method = MoCo(build_backbone(small_stem=False), MEAN, STD, 16, queue_size=0, momentum=0.0)
    method.train()
    q, k = method(torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(0)))
    assert torch.equal(q.detach(), k) and q.requires_grad and not k.requires_grad
    with torch.no_grad():
        for w in method.backbone.parameters():
            w.mul_(0.5)
    method.after_step(0, 10)
    assert all(torch.equal(a, b) for a, b in zip(method.backbone.parameters(), method.key_backbone.parameters()))


# ---- training ----------------------------------------------------------------------------------------------

def test_registry_and_options():
    assert list(METHODS)[4:] == list(TWO_VIEW)
    assert resolve({"method": "barlow_twins"})["method_options"]["lambd"] == 0.0051
    assert resolve({"method": "byol"})["method_options"]["base_momentum"] == 0.99
    assert resolve({"method": "vicreg"})["method_options"]["invariance"] == 25.0
    assert resolve({"method": "moco", "method_options": {"queue_size": 0}})["method_options"]["queue_size"] == 0
    for bad, pattern in [({"method": "moco", "method_options": {"queue_size": -1}}, "queue_size=-1"),
                         ({"method": "byol", "method_options": {"base_momentum": 1.5}}, "base_momentum=1.5"),
                         ({"method": "simsiam", "method_options": {"view_options": {"blur_p": 2}}}, "blur_p=2"),
                         ({"method": "vicreg", "method_options": {"temperature": 1}}, "unknown option")]:
        with pytest.raises(NbstudyError, match=pattern):
            resolve(bad)


@pytest.mark.parametrize("name", ["byol", "simsiam"])
def test_head_lr_factor_puts_projector_and_predictor_at_a_multiple_of_the_base_lr(name, tiny_data):
    """head_lr_factor 10: the run's optimizer holds the backbone at the base lr and exactly the projector's and
    predictor's weights at 10x it (BYOL's target in neither); by default one group of every trainable weight."""
    p = {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4}
    method = build_method({"method": name, "stem": "imagenet",
                           "method_options": {**SMALL[name], "head_lr_factor": 10.0}}, tiny_data)
    base, heads = run_module.make_optimizer(p, method.param_groups()).param_groups
    assert base["lr"] == 0.05 and heads["lr"] == pytest.approx(0.5)
    assert {id(w) for w in heads["params"]} == {id(w) for m in (method.projector, method.predictor)
                                                for w in m.parameters()}
    assert {id(w) for w in base["params"]} == {id(w) for w in method.backbone.parameters()}
    default = build_method({"method": name, "stem": "imagenet", "method_options": SMALL[name]}, tiny_data)
    (group,) = run_module.make_optimizer(p, default.param_groups()).param_groups
    assert group["lr"] == 0.05 and len(group["params"]) == sum(w.requires_grad for w in default.parameters())


@pytest.mark.parametrize("name", TWO_VIEW)
def test_each_method_lowers_its_loss_in_a_few_steps(name, tiny_data, one_torch_thread):
    """8 Adam steps on one fixed pair of views of 16 synthetic images (seed 0): the loss falls at each of the
    last four steps and ends below the third (by then MoCo's queue of 64 holds real keys, not its random
    start, against which the first loss is low)."""
    torch.manual_seed(0)
    method = build_method({"method": name, "stem": "imagenet", "method_options": SMALL[name]}, tiny_data)
    method.train()
    optimizer = torch.optim.Adam([w for w in method.parameters() if w.requires_grad], lr=1e-3)
    x = torch.from_numpy(tiny_data.train_images[:16]).permute(0, 3, 1, 2).float() / 255
    inputs, targets = method.make_inputs(x, torch.Generator().manual_seed(0))
    losses = []
    for step in range(8):
        loss, acc = run_module.train_step(method, inputs, targets, optimizer, torch.device("cpu"))
        method.after_step(step, 8)
        losses.append(loss.item())
        assert 0 <= acc.item() <= 1
    assert all(a > b for a, b in zip(losses[-4:], losses[-3:])) and losses[-1] < losses[2], losses


def test_each_method_runs_through_the_loop_and_the_probe(tmp_path, tiny_data, one_torch_thread):
    for name in TWO_VIEW:
        ckpt = run_pretraining(TINY, data=tiny_data, method=name, method_options=SMALL[name], epochs=1,
                               batch_size=6, output_dir=str(tmp_path / name))   # batches 6, 6, 6, 2: a short last one
        meta = torch.load(ckpt, weights_only=False)
        assert meta["method"] == name and 0 <= meta["probe_acc"] <= 1 and math.isfinite(meta["loss_history"][0])
        assert not any(k.startswith(("target_", "key_")) for k in meta["backbone"])   # only the online backbone


@pytest.mark.parametrize("name", ["byol", "moco"])
def test_killed_run_resumes_bit_for_bit(name, tmp_path, tiny_data, monkeypatch, one_torch_thread):
    """The momentum network and MoCo's queue (12 keys: it wraps within a step) are in the epoch checkpoint: a
    run killed in epoch 2 of 2 and started again ends with the same weights and losses, bit for bit, as one
    never stopped."""
    options = {**SMALL[name], "queue_size": 12} if name == "moco" else SMALL[name]
    params = {**TINY, "method": name, "method_options": options, "epochs": 2, "batch_size": 10}
    straight = run_pretraining(params, data=tiny_data, output_dir=str(tmp_path / "a"))
    real_epoch = interrupt_pretraining(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        run_pretraining(params, data=tiny_data, output_dir=str(tmp_path / "b"))
    state = torch.load(tmp_path / "b" / "pretrain_state.pt", weights_only=False)
    moving = "target_backbone.conv1.weight" if name == "byol" else "queue"
    assert state["epoch"] == 1 and moving in state["model"]
    monkeypatch.setattr(run_module, "train_epoch", real_epoch)
    resumed = run_pretraining(params, data=tiny_data, output_dir=str(tmp_path / "b"))
    a, b = torch.load(straight, weights_only=False), torch.load(resumed, weights_only=False)
    assert all(torch.equal(b["backbone"][key], value) for key, value in a["backbone"].items())
    assert b["loss_history"] == a["loss_history"]
