"""Stage 1's loop: pretrain a backbone with one method, checkpoint every N epochs, save the backbone.

``run_pretraining(params, **overrides)`` checks the parameters (`params.resolve`),
loads the dataset (its labels are used only by the k-NN probe), trains with Adam
(default, as in the study's code), AdamW or SGD under a linear warm-up + cosine
schedule stepped every iteration, and writes to ``output_dir`` (see `records`):
``params.yaml`` first, ``pretrain_state.pt`` every ``checkpoint_every`` epochs, and at the end
``backbone.pt`` and ``pretrain_metrics.json``.

Augmentation randomness and batch order are a function of (seed, epoch), so a
resumed run (`nbstudy.resume`) takes the same path as an uninterrupted one. If
``output_dir`` holds a run with other parameters, that is an error (use another
output_dir, or resume=False to start over); a finished run with the same
parameters is reused as is.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from nbstudy import augment, resume
from nbstudy.checkpoint import load_checkpoint, save_backbone
from nbstudy.data import load_dataset, load_request
from nbstudy.errors import NbstudyError
from nbstudy.loader import BatchLoader
from nbstudy.models import run_backbone
from nbstudy.params import named, save_params
from nbstudy.pretrain import records
from nbstudy.pretrain.params import RUN_ONLY, resolve
from nbstudy.pretrain.registry import METHODS
from nbstudy.probe import knn_accuracy
from nbstudy.runtime import (autocast, compile_model, configure, prepare_model, resolve_device, resolve_precision,
                             seed_everything)

KNN_TEMPERATURE = 0.07


def lr_factor(step: int, warmup_steps: int, total_steps: int) -> float:
    """Multiplier of the base lr at iteration `step`: linear warm-up to 1, then cosine to 0 at total_steps."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Batches per epoch; a last batch of one image is skipped (BatchNorm cannot train on it)."""
    return n // batch_size + (1 if n % batch_size >= 2 else 0)


def build_method(params: dict, data):
    """The method named in params with a fresh random-init backbone (seed it first for a reproducible init)."""
    p = resolve({**params, "resolution": data.resolution})
    backbone = run_backbone(p["backbone"], p["stem"], data.resolution)
    return METHODS[p["method"]](backbone, data.mean, data.std, data.resolution, **p["method_options"])


def make_optimizer(p: dict, parameters):
    """Fused kernels (CPU and CUDA): on the CPU an unfused Adam step costs ~10x a fused one.

    parameters: tensors, or parameter groups as a method's `param_groups` gives them (dicts with "params" and
    optionally "lr_factor", the group's multiple of the base lr)."""
    parameters = list(parameters)
    if parameters and isinstance(parameters[0], dict):
        parameters = [{"params": list(g["params"]), "lr": p["lr"] * g.get("lr_factor", 1.0)} for g in parameters]
        first = next((w for g in parameters for w in g["params"]), None)
    else:
        first = parameters[0] if parameters else None
    fused = True if first is not None and first.device.type in ("cpu", "cuda") else None
    if p["optimizer"] == "adam":      # L2 through the gradient, as the study's code did
        return torch.optim.Adam(parameters, lr=p["lr"], weight_decay=p["weight_decay"], fused=fused)
    if p["optimizer"] == "adamw":
        return torch.optim.AdamW(parameters, lr=p["lr"], weight_decay=p["weight_decay"], fused=fused)
    return torch.optim.SGD(parameters, lr=p["lr"], momentum=p["momentum"], weight_decay=p["weight_decay"], fused=fused)


def epoch_generator(device: torch.device, seed: int, epoch: int) -> torch.Generator:
    """The augmentation random stream of one epoch, the same on a resumed run."""
    g = torch.Generator(device=device)
    g.manual_seed(int(np.random.SeedSequence([int(seed), int(epoch), 17]).generate_state(1)[0]))
    return g


def train_step(method, inputs, targets, optimizer, device, precision: str = "auto"):
    """One optimisation step on ready inputs; returns (loss, pretext accuracy) as tensors (no GPU wait).
    `precision`: the forward pass's autocast (`nbstudy.runtime.autocast`); the loss is computed outside it."""
    with autocast(device, precision):
        outputs = method(inputs)
    loss, acc = method.loss(outputs, targets)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss, acc


def train_epoch(method, loader, optimizer, scheduler, generator, device, desc: str, progress: bool,
                total_steps: int | None = None, precision: str = "auto") -> dict:
    """One pass over the data; returns the sample-weighted mean pretext loss and accuracy.

    After each step the method's `after_step` hook gets the run's step index (the scheduler's count, the
    same on a resumed run) and total_steps (None: this epoch is the whole run)."""
    method.train()
    total_loss = torch.zeros((), device=device)
    total_acc = torch.zeros((), device=device)
    seen, total_steps = 0, len(loader) if total_steps is None else total_steps
    bar = tqdm(loader, desc=desc, leave=False, disable=not progress, unit="batch")
    for step, (_, x) in enumerate(bar):
        if x.shape[0] < 2:
            continue
        loss, acc = train_step(method, *method.make_inputs(augment.to_float(x), generator), optimizer, device,
                               precision=precision)
        scheduler.step()
        method.after_step(scheduler.last_epoch - 1, total_steps)
        total_loss += loss.detach() * x.shape[0]
        total_acc += acc.detach() * x.shape[0]
        seen += x.shape[0]
        if step % 10 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    return {"loss": float(total_loss) / seen, "acc": float(total_acc) / seen}


def run_pretraining(params: dict | None = None, *, data=None, **kwargs) -> Path:
    """Pretrain as `params` (plus keyword overrides) say; return the path of the backbone checkpoint.

    data: an already loaded nbstudy Dataset matching params["dataset"] (saves loading it twice).
    Errors: NbstudyError (one line) for a bad parameter, a foreign checkpoint, a loss that diverged.
    """
    p = resolve(params, **kwargs)
    key = resume.run_key(named(p), RUN_ONLY)
    out = Path(p["output_dir"])
    final, state_path = out / records.BACKBONE_FILE, out / records.STATE_FILE
    if p["resume"] and final.exists():
        meta = load_checkpoint(final)
        if meta.get("hparams") != key["params"]:
            raise NbstudyError(f"{final} is from a run with other {resume.describe_difference({'params': meta.get('hparams') or {}}, key)}:"
                               " use a new output_dir, or resume=False to start over and overwrite it")
        tqdm.write(f"{final} is a finished run with these parameters: reusing it (resume=False retrains)")
        if not (out / records.METRICS_FILE).exists():
            records.write_metrics(out, meta, p)
        return final

    resume.remove_stale_temps(out, (records.STATE_FILE, records.BACKBONE_FILE, records.METRICS_FILE, "params.yaml"))
    device = resolve_device(p["device"])
    configure(device)
    data = load_data(p) if data is None else _check_data(data, p)
    seed_everything(p["seed"])
    method = prepare_model(build_method(p, data), device)
    n = len(data.train_images)
    if n < 2:
        raise NbstudyError(f"dataset {data.name!r} has {n} training image(s): pretraining needs at least 2")
    steps = steps_per_epoch(n, p["batch_size"])
    warmup = min(10.0, p["epochs"] / 10) if p["warmup_epochs"] is None else p["warmup_epochs"]
    optimizer = make_optimizer(p, method.param_groups())   # trainable weights only (not EMA targets)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, round(warmup * steps), p["epochs"] * steps))

    history, start, seconds = [], 0, 0.0
    state = resume.load_state(state_path, key) if p["resume"] else None
    if state is not None:
        method.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        resume.set_rng_state(state["rng"])
        history, start, seconds = state["history"], state["epoch"], state["seconds"]
        random_probe = state["random_init_probe_acc"]
        tqdm.write(f"resuming {p['method']} from epoch {start} of {p['epochs']} ({state_path})")
    save_params(out, p)   # after the state check: another run's folder is left as it was
    if state is None:
        random_probe = knn_accuracy(method.backbone, data, p["knn_k"], KNN_TEMPERATURE, device,
                                    precision=p["precision"])
        tqdm.write(f"{p['method']} on {data.name} ({n} images, {data.resolution} px, {p['backbone']}"
                   f"{', small stem' if method.backbone.small_stem else ''}, {device}): "
                   f"random-init k-NN accuracy {random_probe:.3f}")

    compile_model(method, p["torch_compile"])
    loader = BatchLoader(data.train_images, batch_size=p["batch_size"], shuffle=True, seed=p["seed"], device=device)
    for epoch in range(start, p["epochs"]):
        t0 = time.perf_counter()
        loader.set_epoch(epoch)
        stats = train_epoch(method, loader, optimizer, scheduler, epoch_generator(device, p["seed"], epoch),
                            device, f"epoch {epoch + 1}/{p['epochs']}", p["progress"], p["epochs"] * steps,
                            precision=p["precision"])
        if not math.isfinite(stats["loss"]):
            raise NbstudyError(f"the {p['method']} loss became {stats['loss']} in epoch {epoch + 1}: lower lr "
                               f"(now {p['lr']}) or check method_options {p['method_options']}")
        record = {"epoch": epoch + 1, **stats, "lr": optimizer.param_groups[0]["lr"]}
        if p["probe_every"] and (epoch + 1) % p["probe_every"] == 0 and epoch + 1 < p["epochs"]:
            record["probe_acc"] = knn_accuracy(method.backbone, data, p["knn_k"], KNN_TEMPERATURE, device,
                                               precision=p["precision"])
        record["seconds"] = time.perf_counter() - t0
        seconds += record["seconds"]
        history.append(record)
        tqdm.write(_epoch_line(record, p["epochs"]))
        if p["checkpoint_every"] and (epoch + 1) % p["checkpoint_every"] == 0:
            resume.save_state(state_path, key, epoch=epoch + 1, model=method.state_dict(),
                              optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
                              rng=resume.rng_state(), history=history, seconds=seconds,
                              random_init_probe_acc=random_probe)

    probe = knn_accuracy(method.backbone, data, p["knn_k"], KNN_TEMPERATURE, device, precision=p["precision"])
    tqdm.write(f"k-NN accuracy {probe:.3f} (random init {random_probe:.3f}); backbone -> {final}")
    meta = {"method": p["method"], "hparams": key["params"], "dataset": data.name, "synthetic": bool(data.synthetic),
            "unreadable_skipped": len(data.unreadable_skipped), "epochs_done": p["epochs"], "loss_history": [h["loss"] for h in history], "history": history,
            "probe": {"kind": "knn", "k": p["knn_k"], "temperature": KNN_TEMPERATURE},
            "probe_acc": probe, "random_init_probe_acc": random_probe, "seconds": seconds,
            "device": str(device), "computed_in": resolve_precision(p["precision"], device), **method.metadata()}
    save_backbone(final, method.backbone, data.resolution, **meta)
    records.write_metrics(out, {"arch": method.backbone.arch, "small_stem": method.backbone.small_stem,
                                "resolution": data.resolution, **meta}, p)
    state_path.unlink(missing_ok=True)
    return final


def _epoch_line(r: dict, epochs: int) -> str:
    line = f"epoch {r['epoch']}/{epochs}  loss {r['loss']:.4f}  pretext acc {r['acc']:.3f}  lr {r['lr']:.2e}"
    if "probe_acc" in r:
        line += f"  k-NN acc {r['probe_acc']:.3f}"
    return line + f"  {r['seconds']:.1f}s"


def load_data(p: dict):
    """The dataset a pretraining run with (resolved) parameters `p` trains on."""
    return load_dataset(p["dataset"], data_path=p["data_path"], resolution=p["resolution"], seed=p["data_seed"],
                        **p["dataset_options"])


def _check_data(data, p: dict):
    """`data` if it is what the parameters load, else a one-line error: the records would name other data."""
    if data.name != p["dataset"] or (p["resolution"] is not None and data.resolution != p["resolution"]):
        raise NbstudyError(f"data= holds {data.name!r} at {data.resolution} px but the parameters say "
                           f"{p['dataset']!r} at {p['resolution']} px: pass the matching dataset or drop data=")
    if data.loaded_with is not None:   # a data set made by hand has only its name and size to check
        have, want = data.loaded_with, load_request(p["dataset"], p["data_path"], p["data_seed"], p["dataset_options"])
        for key in {**want, **have}:
            if have.get(key) != want.get(key):
                raise NbstudyError(f"data= was loaded with {key}={have.get(key)!r} but the parameters say "
                                   f"{key}={want.get(key)!r}: load it with the run's parameters, or drop data= "
                                   "(the run then loads its own)")
    return data
