"""The label-issue baseline: cleanlab's confident learning on a frozen backbone, scored like `suspects.csv`.

No network is trained on the noisy labels. The backbone (random init, or a
pretrained `backbone.pt`) embeds every training image once; a logistic
regression predicts each sample's class probabilities out of sample (k-fold
cross-validation, as cleanlab requires); cleanlab (Northcutt et al., JAIR 2021,
`cleanlab.filter.find_label_issues` and `cleanlab.rank.get_label_quality_scores`)
flags the label issues and scores each label. The suspicion is 1 - the label
quality (self-confidence: the predicted probability of the given label), so
it ranks and scores exactly as a training run's suspects do
(`nbstudy.lnl.suspects.scores`). cleanlab is an optional dependency:
``pip install 'nbstudy[cleanlab]'``.
"""

from __future__ import annotations

import numpy as np
import torch

from nbstudy.checkpoint import load_backbone
from nbstudy.data import check_run_data
from nbstudy.errors import NbstudyError
from nbstudy.evaluate import predict
from nbstudy.lnl import suspects
from nbstudy.models import run_backbone

FOLDS = 5


def features(dataset, init: str = "random", stem: str = "auto", seed: int = 0, device="cpu",
             indices=None, backbone: str = "resnet18", precision: str = "auto") -> np.ndarray:
    """(N, feature_dim) float32 features of the frozen `backbone` (nbstudy.models.BACKBONES; 512 for resnet18)
    on the un-augmented training images at `indices` (all by default). init: "random" (seeded by `seed`) or
    the path of a pretraining run's backbone.pt (of that backbone). precision: `nbstudy.runtime.autocast`'s."""
    torch.manual_seed(seed)
    backbone = run_backbone(backbone, stem, dataset.resolution)
    if init != "random":
        load_backbone(backbone, init, dataset.resolution)
    backbone.eval().to(device)
    with torch.no_grad():
        return predict(backbone, dataset.train_images, dataset.mean, dataset.std, device, indices=indices,
                       precision=precision).numpy()


def out_of_sample_probabilities(feats: np.ndarray, labels: np.ndarray, num_classes: int, seed: int = 0,
                                folds: int = FOLDS) -> np.ndarray:
    """(N, K) class probabilities of each sample from a logistic regression that never saw it (stratified
    `folds`-fold cross-validation on standardised features)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    smallest = int(np.bincount(labels, minlength=num_classes).min())
    folds = min(folds, smallest)
    if folds < 2:
        raise NbstudyError(f"a class has {smallest} training label(s): cross-validated probabilities need at least "
                           "2 per class")
    probs = np.zeros((len(labels), num_classes))
    for fit, held in StratifiedKFold(folds, shuffle=True, random_state=seed).split(feats, labels):
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
        model.fit(feats[fit], labels[fit])
        probs[np.ix_(held, model.classes_)] = model.predict_proba(feats[held])
    return probs


def find_suspects(probs: np.ndarray, labels: np.ndarray, wrong=None) -> dict:
    """cleanlab on out-of-sample `probs` (N, K) for the given `labels` (N,).

    Returns suspicion (N,) = 1 - self-confidence label quality, issues (N,) bool (cleanlab's
    find_label_issues, prune_by_noise_rate), n_issues and, when `wrong` (N,) bool is given, the
    `suspects.scores` of the suspicion against it. Errors: NbstudyError when cleanlab is not installed."""
    try:
        from cleanlab.filter import find_label_issues
        from cleanlab.rank import get_label_quality_scores
    except ImportError:
        raise NbstudyError("the label-issue baseline needs cleanlab: pip install 'nbstudy[cleanlab]'") from None
    suspicion = 1.0 - get_label_quality_scores(labels, probs, method="self_confidence")
    issues = find_label_issues(labels, probs)
    out = {"suspicion": suspicion, "issues": issues, "n_issues": int(issues.sum())}
    if wrong is not None:
        out.update(suspects.scores(suspicion, wrong))
    return out


def baseline_for_run(records: dict, dataset, init: str | None = None, device="cpu") -> dict:
    """cleanlab on the labels a training run trained on (`records` from `load_records`, `dataset` its data set):
    same training samples, same given labels, scored on the same wrong-label mask (None if unknown). init:
    the backbone to embed with (default the run's own init). It embeds at the run's precision."""
    p = records["params"]
    check_run_data(dataset, p, len(records["noisy_labels"]))
    idx = np.asarray(records["train_indices"])
    labels = np.asarray(records["noisy_labels"])[idx]
    feats = features(dataset, p["init"] if init is None else init, p["stem"], p["seed"], device, indices=idx,
                     backbone=p.get("backbone", "resnet18"),   # runs of before backbones trained a resnet18
                     precision=p.get("precision", "auto"))     # and before precision, at auto
    probs = out_of_sample_probabilities(feats, labels, dataset.num_classes, p["seed"])
    wrong = records["noise_mask"][idx] if "noise_mask" in records else None
    return find_suspects(probs, labels, wrong)
