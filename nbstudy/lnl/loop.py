"""Stage 2's loop, the same for every noisy-label method: prepare the data and noise, train, evaluate, record.

1. `prepare(params)`: check the parameters (`params.resolve`), load the dataset, corrupt the labels (same seed,
   same noisy labels) and take a validation set with noisy labels (for the checkpoint a user would pick without
   test labels): the data set's own validation split, noised alike, or held-out training images (`setup_on`).
2. `train(setup)`: build the networks (random or pretrained init), then per epoch: the method's schedule and
   epoch (`base.Method`), test accuracy of every network and the ensemble, selection scored against the
   wrong-label mask, per-sample losses, an atomic checkpoint; at the end the records (`records.write_run`).

A run started again with the same parameters and output folder (resume, the default) reuses it if it finished,
else resumes from its last checkpoint (`nbstudy.resume`) and ends as an uninterrupted run would (bit for bit on
the CPU): the checkpoint holds the networks, optimisers (the schedule is a pure function of the epoch), every
random stream and the history so far.
"""

from __future__ import annotations

import hashlib
import math
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from nbstudy import augment, noise, resume
from nbstudy.checkpoint import load_backbone, load_checkpoint
from nbstudy.data import load_dataset
from nbstudy.errors import NbstudyError
from nbstudy.evaluate import classification_metrics
from nbstudy.lnl import records, suspects, validation
from nbstudy.lnl.base import Context, Setup
from nbstudy.lnl.params import RUN_ONLY, noise_rate_warning, resolve
from nbstudy.lnl.registry import METHODS
from nbstudy.models import Classifier, first_layer_filters, run_backbone
from nbstudy.params import named, save_params
from nbstudy.runtime import (compile_model, configure, prepare_model, resolve_device, resolve_precision,
                             seed_everything)

CHECKPOINT_FILE = "checkpoint.pt"


def prepare(params: dict | None = None, **kwargs) -> Setup:
    """Check parameters, load the dataset, then `setup_on` it: corrupt the labels and take the noisy validation set."""
    p = resolve(params, **kwargs)
    ds = load_dataset(p["dataset"], data_path=p["data_path"], resolution=p["resolution"], seed=p["data_seed"],
                      **p["dataset_options"])
    if p["init"] != "random":
        _check_init_data(p)
    setup = setup_on(p, ds)
    held_out = (f"{len(setup.val_idx)} of the {len(ds.train_labels)} given labels are held out as the noisy "
                "validation set and not ranked in suspects.csv: val_fraction 0 ranks them all")
    for message in (noise_rate_warning(p["noise_kind"], [p["noise_rate"]], ds.num_classes),
                    held_out if ds.labels_file and len(setup.val_idx) else None):
        if message:
            warnings.warn(message, stacklevel=2)
    return setup


def setup_on(p: dict, ds) -> Setup:
    """A run's Setup on its loaded data set `ds` (resolved parameters `p`): the labels corrupted (same seed, same
    noisy labels), the method's options, the noisy validation set (`validation.split`), the batch size against
    the images left. Every check a run makes against its data is here, so a study makes them all before it
    starts (`nbstudy.runner.check_runs_on_data`). Errors: NbstudyError, one line."""
    method = METHODS[p["method"]]
    clean = np.asarray(ds.train_labels, dtype=np.int64)
    noisy = noise.corrupt_labels(clean, ds.num_classes, p["noise_rate"], p["noise_kind"], seed=p["seed"],
                                 images=ds.train_images, **p["noise_options"])
    expected = noise.expected_noise_rate(clean, ds.num_classes, p["noise_rate"], p["noise_kind"], **p["noise_options"])
    options = method.check_options(p["method_options"], {**p, "expected_noise_rate": expected})
    p = {**p, "method_options": options}   # derived options (Co-teaching's forget rate) recorded as run
    train_idx, val_idx, val_images, val_labels = validation.split(p, ds)
    batch = p["batch_size"] or method.batch_size
    if len(train_idx) < 2 * batch:
        raise NbstudyError(f"only {len(train_idx)} training images for batch_size={batch}: "
                           f"use batch_size <= {len(train_idx) // 2} or a larger dataset")
    return Setup(p, method, options, ds, clean, noisy, train_idx, val_idx, val_images, val_labels)


def train(setup: Setup) -> dict:
    """Train `setup`'s method, write the records to output_dir, return the `final` metrics."""
    p, method, out = setup.params, setup.method, Path(setup.params["output_dir"])
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise NbstudyError(f"output_dir {out} cannot be created ({exc.strerror}): choose a writable folder") from None
    resume.remove_stale_temps(out, (CHECKPOINT_FILE, records.METRICS_FILE, records.RECORDS_FILE, records.PARAMS_FILE,
                                    suspects.SUSPECTS_FILE))
    ckpt_path = out / CHECKPOINT_FILE
    val = b"" if setup.val_labels is None else setup.val_labels.tobytes()   # empty: earlier runs' keys hold
    labels = hashlib.sha256(setup.noisy_labels.tobytes() + setup.train_idx.tobytes() + val).hexdigest()
    key = resume.run_key(named(p), RUN_ONLY, labels_sha256=labels)
    _refuse_other_finished_run(out, key)
    done = records.finished_final(out, setup.noisy_labels, setup.train_idx) if p["resume"] else None
    if done is not None:
        tqdm.write(f"{out} is a finished run with these parameters: reusing it (resume=False retrains)")
        return done
    saved = resume.load_state(ckpt_path, key) if p["resume"] else None
    save_params(out, p, records.PARAMS_FILE)   # after both checks: another run's folder is left as it was
    device = resolve_device(p["device"])
    configure(device, p["deterministic"])
    ctx = build(setup, device)
    n, mask = len(setup.clean_labels), setup.noise_mask[setup.train_idx]
    state = {"epoch": 0, "history": [], "record_epochs": [], "losses": [], "selection": [], "train_time_s": 0.0,
             "filters_initial": first_layer_filters(ctx.nets[0].backbone).numpy(), "method": {},
             "init": _init_info(p["init"])}
    if saved is not None:
        for net, sd in zip(ctx.nets, saved["nets"]):
            net.load_state_dict(sd)
        for opt, sd in zip(ctx.optimizers, saved["optimizers"]):
            opt.load_state_dict(sd)
        resume.set_rng_state(saved["rng"], ctx.gen)
        ctx.rng.bit_generator.state = saved["host_rng"]
        state = saved["run"]
    method_state = method.state(ctx)
    method_state.update(state["method"])

    bar = tqdm(range(state["epoch"] + 1, p["epochs"] + 1), desc=f"{p['method']} {p['noise_kind']} {p['noise_rate']}",
               disable=not p["progress"])
    for epoch in bar:
        t0 = time.perf_counter()
        lr = method.schedule(ctx, epoch - 1)  # methods count epochs from 0, as the reference code does
        res = method.train_epoch(ctx, epoch - 1, method_state)
        ctx.weights_changed()
        if not math.isfinite(res["loss"]):
            raise NbstudyError(f"training loss became {res['loss']} at epoch {epoch} ({p['method']}, lr {lr:g}): "
                               "lower lr, or check the images and labels for bad values")
        row = {"epoch": epoch, "train_loss": res["loss"], "lr": lr, **evaluate(ctx, setup)}
        sel = {"precision": None, "recall": None, "auc": None}
        if res.get("selected") is not None and setup.mask_known:
            sel = records.selection_metrics(res["selected"], res["score"], mask)
        row.update(selection_precision=sel["precision"], selection_recall=sel["recall"], selection_auc=sel["auc"])
        if epoch % p["record_every"] == 0 or epoch == p["epochs"]:
            state["record_epochs"].append(epoch)
            state["losses"].append(_full(n, setup.train_idx, ctx.train_losses(0)))
            state["selection"].append(_full(n, setup.train_idx, res.get("selection")))
        state["train_time_s"] += time.perf_counter() - t0
        row["time_s"] = time.perf_counter() - t0
        state["history"].append(row)
        state["epoch"], state["method"] = epoch, method_state
        bar.set_postfix(loss=f"{res['loss']:.3f}", acc=f"{row['test_acc']:.3f}")
        every = p["checkpoint_every"]
        if every and (epoch % every == 0 or (epoch == p["epochs"] and p["keep_checkpoint"])):
            resume.save_state(ckpt_path, key, nets=[net.state_dict() for net in ctx.nets],
                              optimizers=[o.state_dict() for o in ctx.optimizers], rng=resume.rng_state(ctx.gen),
                              host_rng=ctx.rng.bit_generator.state, run=state)

    final = records.summarize(state["history"], method.reported, setup.actual_noise_rate, state["train_time_s"])
    final.update(_write_suspects(out, setup, ctx))
    final.update(device=str(ctx.device), computed_in=resolve_precision(p["precision"], ctx.device))
    state["filters_final"] = first_layer_filters(ctx.nets[0].backbone).numpy()
    records.write_run(out, setup, ctx, state, final)
    if not p["keep_checkpoint"]:
        ckpt_path.unlink(missing_ok=True)
    return final


def build(setup: Setup, device) -> Context:
    """The method's networks (random or pretrained init), optimisers and random streams, seeded by the run."""
    p, ds, method = setup.params, setup.dataset, setup.method
    seed_everything(p["seed"])
    nets = []
    for _ in range(method.networks):
        net = Classifier(ds.num_classes, backbone=run_backbone(p["backbone"], p["stem"], ds.resolution))
        if p["init"] != "random":
            load_backbone(net.backbone, p["init"], ds.resolution)
        nets.append(compile_model(prepare_model(net, device), p["torch_compile"]))
    mean, std = augment.channel_stats(ds.mean, ds.std, device)
    ctx = Context(nets=nets, optimizers=[], images=ds.train_images, labels=setup.noisy_labels,
                  train_idx=setup.train_idx, num_classes=ds.num_classes, mean=mean, std=std, device=device,
                  batch_size=p["batch_size"] or method.batch_size, epochs=p["epochs"],
                  lr=p["lr"] if p["lr"] is not None else method.lr, seed=p["seed"], options=setup.options,
                  noise_kind=p["noise_kind"], noise_rate=p["noise_rate"], class_weights=p["class_weights"],
                  precision=p["precision"], test_images=ds.test_images,
                  gen=torch.Generator(device=device).manual_seed(p["seed"]), rng=np.random.default_rng([p["seed"], 2]))
    ctx.optimizers = method.optimizers(ctx)
    return ctx


def evaluate(ctx: Context, setup: Setup) -> dict:
    """Test accuracy per network and of the ensemble (sum of logits, as DivideMix tests); the reported
    network's balanced accuracy, macro-F1 and accuracy on the noisy validation labels."""
    test_y = np.asarray(setup.dataset.test_labels)
    test = [ctx.test_logits(k) for k in range(len(ctx.nets))]
    if setup.val_images is not None:
        val, val_y = [ctx.logits(net, images=setup.val_images) for net in ctx.nets], setup.val_labels
    else:
        val = [ctx.logits(net, indices=setup.val_idx) for net in ctx.nets] if len(setup.val_idx) else []
        val_y = setup.noisy_labels[setup.val_idx]
    two = len(ctx.nets) == 2
    acc = lambda logits, y: float((logits.argmax(1).numpy() == y).mean())  # noqa: E731
    row = {"test_acc_A": acc(test[0], test_y),
           "test_acc_B": acc(test[1], test_y) if two else None,
           "test_acc_ensemble": acc(sum(test), test_y) if two else None}
    pick = (lambda outs: outs[0]) if setup.method.reported == "A" else sum
    m = classification_metrics(test_y, pick(test).argmax(1).numpy())
    row.update(test_acc=m["acc"], test_balanced_acc=m["balanced_acc"], test_macro_f1=m["macro_f1"])
    row["val_acc"] = acc(pick(val), val_y) if val else None
    return row


def _write_suspects(out: Path, setup: Setup, ctx: Context) -> dict:
    """suspects.csv (`nbstudy.lnl.suspects`) and how well its ranking finds the wrong labels."""
    idx, ds = setup.train_idx, setup.dataset
    suspicion = np.asarray(setup.method.suspicion(ctx), dtype=np.float64)
    logits = [ctx.train_logits(k) for k in range(len(ctx.nets))]
    predicted = (logits[0] if setup.method.reported == "A" else sum(logits)).argmax(1).numpy()
    wrong = setup.noise_mask[idx] if setup.mask_known else None
    suspects.write(out, idx, suspicion, setup.noisy_labels[idx], predicted, ds.class_names, ds.train_files, wrong)
    return suspects.scores(suspicion, np.zeros(len(idx), bool) if wrong is None else wrong)


def _refuse_other_finished_run(out: Path, key: dict) -> None:
    """A finished run of other parameters in output_dir is never overwritten; one of these parameters is redone."""
    done = records.finished_params(out)
    done = None if done is None else resume.run_key(named(done), RUN_ONLY)
    if done is not None and done["params"] != key["params"]:
        raise NbstudyError(f"{out} holds a finished run with other "
                           f"{resume.describe_difference(done, key)}: use another "
                           "output_dir, or delete its metrics.json to train there anew")


def _full(n: int, idx: np.ndarray, values) -> np.ndarray:
    """A per-sample array over the whole training set (NaN for held-out samples)."""
    arr = np.full(n, np.nan, dtype=np.float32)
    if values is not None:
        arr[idx] = values
    return arr


def _check_init_data(p: dict) -> None:
    """Warn when the backbone was pretrained on the same source drawn with another data seed: the
    split or subsample differs, so this run's test images may be among those it was pretrained on."""
    pre = load_checkpoint(p["init"]).get("hparams") or {}
    same_source = all(pre.get(k) == p[k] for k in ("dataset", "data_path", "dataset_options"))
    pre_seed = pre.get("data_seed", pre.get("seed", 0))   # before data_seed, the run's seed drew the data
    if same_source and pre_seed != p["data_seed"]:
        warnings.warn(f"the init backbone was pretrained with data_seed={pre_seed} but this run uses "
                      f"data_seed={p['data_seed']}: its test images may have been pretrained on; use the same "
                      "data_seed for both", stacklevel=3)


def _init_info(init: str) -> dict:
    if init == "random":
        return {"init": "random"}
    meta = load_checkpoint(init)
    return {"init": init, **{k: v for k, v in meta.items() if isinstance(v, (str, int, float, bool)) and k != "format"}}
