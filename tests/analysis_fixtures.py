"""A fake study folder for the analysis tests, written with the training loop's own record writer.

Its numbers follow the study's story so the figures have something to show:
wrong labels have larger losses than right ones, more so after SSL pretraining
and early in training; CE memorises at the end (its separation and accuracy
drop), so LAST < BEST for CE at the high noise rate.
"""

import json
from pathlib import Path

import numpy as np

from nbstudy.lnl import suspects
from nbstudy.lnl.records import selection_metrics, summarize, write_records
from nbstudy.noise import corrupt_labels, noise_mask

CLASSES = ["stripes", "checks", "rings", "spots"]
N_TEST = 400   # test images each run is scored on (the fake accuracies are not counts of them)
PROBES = {"simclr": (0.71, 0.52)}   # init: (its k-NN probe, random init's), as a pretraining run records them


def make_study(root, inits=("random", "simclr"), methods=("ce", "coteaching", "dividemix"), rates=(0.4, 0.8),
               seeds=(0, 1), epochs=6, n_train=200, n_val=20, kind="symmetric", probes=None, shift=None,
               answers=False, backbones=("resnet18",)) -> Path:
    """`probes`: {init: (probe_acc, random_init_probe_acc)} recorded in each run's init (default `PROBES`);
    `shift`: {init: points} added to that init's every test accuracy (a planted difference from random init);
    `answers`: record last-epoch test predictions and labels, right on the round(LAST x 400) easiest images, by a
    difficulty mostly shared by a seed's runs (so two runs agree on most images, as real networks do).;
    `backbones`: each run once per backbone (named with it as the runner does, but for resnet18)."""
    study = Path(root) / "fake-study"
    for backbone in backbones:
        for init in inits:
            for method in methods:
                for rate in rates:
                    for seed in seeds:
                        prefix = "" if backbone == "resnet18" else f"{backbone}-"
                        folder = study / "train" / f"{prefix}{init}-{method}-{kind}-{rate:g}-s{seed}-0123abcd"
                        _write_run(folder, study, init, method, kind, rate, seed, epochs, n_train, n_val,
                                   (PROBES if probes is None else probes).get(init), (shift or {}).get(init, 0.0),
                                   answers, backbone)
    return study


def _write_run(folder, study, init, method, kind, rate, seed, epochs, n_train, n_val, probe=None, shift=0.0,
               answers=False, backbone="resnet18"):
    rng = np.random.default_rng([seed, int(rate * 10), *map(ord, init + method + backbone.replace("resnet18", ""))])
    n = n_train + n_val
    clean = np.arange(n) % len(CLASSES)
    noisy_labels = corrupt_labels(clean, len(CLASSES), rate, kind, seed=seed)
    wrong = noise_mask(clean, noisy_labels)
    train_idx, val_idx = np.arange(n_train), np.arange(n_train, n)
    pretrained = init != "random"
    losses, selection, history = [], [], []
    for epoch in range(1, epochs + 1):
        gap = (1.6 if pretrained else 0.5) + 0.3 * epoch / epochs  # separation of wrong from right labels
        if method == "ce" and epoch > epochs // 2:
            gap *= 0.3  # memorisation: CE fits the wrong labels too
        loss = np.abs(rng.normal(0.3, 0.25, n) + wrong * rng.normal(gap, 0.4, n)).astype(np.float32)
        loss[val_idx] = np.nan
        sel = np.full(n, np.nan, np.float32)
        sel_row = {"selection_precision": None, "selection_recall": None, "selection_auc": None}
        if method == "coteaching":
            sel[train_idx] = loss[train_idx] < np.quantile(loss[train_idx], min(1 - rate * min(epoch / 3, 1) + 1e-9, 1))
        elif method == "dividemix":
            sel[train_idx] = 1 / (1 + np.exp(4 * (loss[train_idx] - 0.3 - gap / 2)))
        if method != "ce":
            m = selection_metrics(sel[train_idx] > 0.5, -loss[train_idx], wrong[train_idx])
            sel_row = {f"selection_{k}": v for k, v in m.items()}
        acc = 0.55 + (0.2 if pretrained else 0.0) + 0.2 * epoch / epochs - rate * 0.2
        if method == "ce" and epoch > epochs // 2:
            acc -= 0.1 * rate * (epoch - epochs // 2)
        acc = float(np.clip(acc + rng.normal(0, 0.01) + shift / 100, 0, 1))
        history.append({"epoch": epoch, "train_loss": float(np.nanmean(loss)), "lr": 1e-3, "test_acc": acc,
                        "test_acc_A": acc, "test_acc_B": None, "test_acc_ensemble": None,
                        "test_balanced_acc": acc - 0.02, "test_macro_f1": acc - 0.03,
                        "val_acc": acc - 0.1, "time_s": 0.1, **sel_row})
        losses.append(loss)
        selection.append(sel)
    init_path = "random" if not pretrained else str(study / "pretrain" / f"{init}-89abcdef" / "backbone.pt")
    assert n % len(CLASSES) == 0, "the synthetic set has as many images of each class"
    params = {"dataset": "synthetic", "data_path": None, "dataset_options": {"per_class": n // len(CLASSES)},
              "resolution": 32, "stem": "auto",
              "method": method, "method_options": {}, "noise_kind": kind, "noise_rate": rate, "noise_options": {},
              "init": init_path, "epochs": epochs, "seed": seed, "record_every": 1, "output_dir": str(folder),
              "backbone": backbone}
    # the weights a run starts from: drawn from its seed for random init, else its checkpoint's, whatever the method
    start = np.random.default_rng([0 if pretrained else seed, *map(ord, init)])
    filters = start.normal(0, 0.3, (64, 3, 3, 3)).astype(np.float32)
    if pretrained:  # smooth, oriented first-layer filters, as pretraining tends to learn
        ramp = np.linspace(-1, 1, 3)
        filters = np.cos(start.uniform(0, np.pi, (64, 3, 1, 1))) * ramp[None, None, :, None] + \
            np.sin(start.uniform(0, np.pi, (64, 3, 1, 1))) * ramp[None, None, None, :]
    final = filters + rng.normal(0, 0.05, filters.shape)
    metrics = {"format": "nbstudy-train-records/1", "params": params,
               "init": {"init": init_path, **({"method": init} if pretrained else {}),
                        **({"probe_acc": probe[0], "random_init_probe_acc": probe[1]} if probe else {})},
               "dataset": {"name": "synthetic", "synthetic": True, "class_names": CLASSES,
                           "num_classes": len(CLASSES), "resolution": 32, "n_train": n_train, "n_val": n_val,
                           "n_test": N_TEST},
               "noise": {"kind": kind, "rate": rate, "actual_rate": float(wrong.mean())},
               "history": history,
               "final": summarize(history, "A" if method == "ce" else "ensemble", float(wrong.mean()), 1.0)}
    arrays = {"clean_labels": clean, "noisy_labels": noisy_labels, "noise_mask": wrong, "train_indices": train_idx,
              "val_indices": val_idx, "record_epochs": np.arange(1, epochs + 1), "losses": np.stack(losses),
              "selection": np.stack(selection), "filters_initial": filters.astype(np.float32),
              "filters_final": final.astype(np.float32)}
    if answers:
        test_labels = np.arange(N_TEST) % len(CLASSES)
        right = np.zeros(N_TEST, bool)
        hard = np.random.default_rng([seed, 7]).random(N_TEST) + 0.3 * rng.random(N_TEST)   # shared, and the run's own
        right[np.argsort(hard)[:round(metrics["final"]["last_acc"] * N_TEST)]] = True
        arrays.update(test_labels=test_labels, test_predictions=np.where(right, test_labels, (test_labels + 1) % 4))
    write_records(folder, metrics, arrays)
    # the suspects a run of the method would list: its last losses rank the labels; it predicts the true class
    suspects.write(folder, train_idx, losses[-1][train_idx], noisy_labels[train_idx], clean[train_idx], CLASSES,
                   wrong=wrong[train_idx])


def forget_wrong_labels(run_dir) -> None:
    """Make a fake run one on the user's own labels with no planted noise, as the training loop records it: no
    wrong-label mask in records.npz, and metrics.json saying the mask is not known."""
    arrays = dict(np.load(f"{run_dir}/records.npz"))
    del arrays["noise_mask"]
    np.savez(f"{run_dir}/records.npz", **arrays)
    metrics = json.loads(Path(run_dir, "metrics.json").read_text())
    metrics["noise"]["mask_known"] = False
    Path(run_dir, "metrics.json").write_text(json.dumps(metrics))
