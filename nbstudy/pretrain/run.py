"""Stage 1 driver: pretrain a backbone with one method, checkpoint every epoch, save the backbone.

``run_pretraining(params, **overrides)`` validates the parameters, loads the dataset (its
labels are used only by the k-NN probe), trains with Adam (default, as in the study's code),
AdamW or SGD under a linear warm-up + cosine schedule stepped every iteration, and writes to
``output_dir``:

- ``pretrain_state.pt`` after every epoch (weights, head, optimiser, schedule, history), so
  a killed run started again with the same parameters resumes after its last finished
  epoch; it is deleted once the run is complete;
- ``backbone.pt``: the backbone only (``checkpoint.save_backbone``) with method, hparams,
  dataset, resolution, epochs done, loss history and probe accuracies;
- ``pretrain_metrics.json``: the same facts as JSON, for plots and the study runner.

Augmentation randomness and batch order are a function of (seed, epoch), so a resumed run
takes the same path as an uninterrupted one. If ``output_dir`` holds a run with other
parameters, that is an error (use another output_dir, or resume=False to start over);
a finished run with the same parameters is reused as is.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from nbstudy import augment
from nbstudy.checkpoint import atomic_write, load_checkpoint, save_atomic, save_backbone
from nbstudy.errors import NbstudyError
from nbstudy.loader import BatchLoader
from nbstudy.models import build_backbone, use_small_stem
from nbstudy.pretrain.jigmag import Jigmag
from nbstudy.pretrain.jigsaw import Jigsaw
from nbstudy.pretrain.rotation import Rotation
from nbstudy.pretrain.simclr import SimCLR
from nbstudy.probe import knn_accuracy
from nbstudy.runtime import autocast, compile_model, configure, prepare_model, resolve_device, seed_everything

METHODS = {cls.name: cls for cls in (SimCLR, Rotation, Jigsaw, Jigmag)}
OPTIMIZERS = ("adam", "adamw", "sgd")

DEFAULTS = {
    "dataset": "synthetic", "data_path": None, "dataset_options": {}, "data_seed": 0, "resolution": 32,
    "stem": "auto", "method": "simclr", "epochs": 20, "batch_size": 256, "lr": 1e-3, "weight_decay": 1e-4,
    "optimizer": "adam", "momentum": 0.9, "warmup_epochs": None,
    "temperature": 0.5, "views": "auto", "view_options": {},
    "jigsaw_permutations": 100, "jigsaw_crop": 0.85, "jigsaw_tile": None,
    "knn_k": 20, "probe_every": 0, "seed": 0, "device": "auto", "torch_compile": False,
    "output_dir": "outputs/pretrain", "resume": True, "progress": True,
}
# Parameters that do not change the trained weights: a resumed run may differ in these.
RUN_ONLY = ("device", "torch_compile", "output_dir", "resume", "progress", "probe_every")
KNN_TEMPERATURE = 0.07
STATE_FILE, BACKBONE_FILE, METRICS_FILE = "pretrain_state.pt", "backbone.pt", "pretrain_metrics.json"


def check_params(params: dict) -> dict:
    """Defaults filled in, every value checked; a one-line NbstudyError names the first bad one."""
    unknown = sorted(set(params) - set(DEFAULTS))
    if unknown:
        raise NbstudyError(f"unknown pretraining parameter(s) {', '.join(unknown)}: valid are {', '.join(DEFAULTS)}")
    p = {**DEFAULTS, **params}

    def need(ok, name, what):
        if not ok:
            raise NbstudyError(f"{name}={p[name]!r} is invalid: {what}")

    need(p["method"] in METHODS, "method", f"use one of {', '.join(METHODS)}")
    need(p["optimizer"] in OPTIMIZERS, "optimizer", f"use one of {', '.join(OPTIMIZERS)}")
    for name, low in (("epochs", 1), ("batch_size", 2), ("knn_k", 1), ("probe_every", 0), ("data_seed", 0)):
        need(isinstance(p[name], int) and not isinstance(p[name], bool) and p[name] >= low, name,
             f"use a whole number >= {low}")
    for name in ("lr", "temperature"):
        need(isinstance(p[name], (int, float)) and p[name] > 0, name, "use a positive number")
    for name in ("weight_decay", "momentum"):
        need(isinstance(p[name], (int, float)) and p[name] >= 0, name, "use a number >= 0")
    need(p["warmup_epochs"] is None or (isinstance(p["warmup_epochs"], (int, float)) and 0 <= p["warmup_epochs"] < p["epochs"]),
         "warmup_epochs", "use None (auto) or a number of epochs >= 0 and below epochs")
    need(p["resolution"] is None or (isinstance(p["resolution"], int) and p["resolution"] >= 8), "resolution",
         "use None (the data's own) or a side in pixels >= 8")
    for name in ("dataset_options", "view_options"):
        need(isinstance(p[name], dict), name, "use a dict, e.g. {}")
    for name in ("torch_compile", "resume", "progress"):
        need(isinstance(p[name], bool), name, "use True or False")
    return p


def run_key(p: dict) -> dict:
    """The parameters that decide the trained weights, in JSON form (lists, not tuples) so that they compare equal after saving."""
    return json.loads(json.dumps({k: v for k, v in p.items() if k not in RUN_ONLY}))


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
    p = check_params(params)
    cls = METHODS[p["method"]]
    backbone = build_backbone(use_small_stem(p["stem"], data.resolution))
    values = {**p, "resolution": data.resolution}
    return cls(backbone, data.mean, data.std, **{name: values[name] for name in cls.options})


def make_optimizer(p: dict, parameters):
    """Fused kernels (CPU and CUDA): on the CPU an unfused Adam step costs ~10x a fused one."""
    parameters = list(parameters)
    fused = True if parameters and parameters[0].device.type in ("cpu", "cuda") else None
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


def train_step(method, inputs, targets, optimizer, device):
    """One optimisation step on ready inputs; returns (loss, pretext accuracy) as tensors (no GPU wait)."""
    with autocast(device):
        outputs = method(inputs)
    loss, acc = method.loss(outputs, targets)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss, acc


def train_epoch(method, loader, optimizer, scheduler, generator, device, desc: str, progress: bool) -> dict:
    """One pass over the data; returns the sample-weighted mean pretext loss and accuracy."""
    method.train()
    total_loss = torch.zeros((), device=device)
    total_acc = torch.zeros((), device=device)
    seen = 0
    bar = tqdm(loader, desc=desc, leave=False, disable=not progress, unit="batch")
    for step, (_, x) in enumerate(bar):
        if x.shape[0] < 2:
            continue
        loss, acc = train_step(method, *method.make_inputs(augment.to_float(x), generator), optimizer, device)
        scheduler.step()
        total_loss += loss.detach() * x.shape[0]
        total_acc += acc.detach() * x.shape[0]
        seen += x.shape[0]
        if step % 10 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    return {"loss": float(total_loss) / seen, "acc": float(total_acc) / seen}


def run_pretraining(params: dict | None = None, *, data=None, **kwargs) -> Path:
    """Pretrain as `params` (plus keyword overrides) say; return the path of the backbone checkpoint.

    data: an already loaded nbstudy Dataset matching params["dataset"] (saves loading it twice).
    """
    p = check_params({**(params or {}), **kwargs})
    key = run_key(p)
    out = Path(p["output_dir"])
    final, state_path, metrics_path = out / BACKBONE_FILE, out / STATE_FILE, out / METRICS_FILE
    if p["resume"] and final.exists():
        meta = load_checkpoint(final)
        _check_same_run(meta.get("hparams"), key, final)
        tqdm.write(f"{final} is a finished run with these parameters: reusing it (resume=False retrains)")
        if not metrics_path.exists():
            _write_metrics(metrics_path, meta, p, final)
        return final

    device = resolve_device(p["device"])
    configure(device)
    data = _load_data(p) if data is None else _check_data(data, p)
    seed_everything(p["seed"])
    method = prepare_model(build_method(p, data), device)
    n = len(data.train_images)
    if n < 2:
        raise NbstudyError(f"dataset {data.name!r} has {n} training image(s): pretraining needs at least 2")
    steps = steps_per_epoch(n, p["batch_size"])
    warmup = min(10.0, p["epochs"] / 10) if p["warmup_epochs"] is None else p["warmup_epochs"]
    optimizer = make_optimizer(p, method.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, round(warmup * steps), p["epochs"] * steps))

    history, start, seconds = [], 0, 0.0
    state = _load_state(state_path, key) if p["resume"] else None
    if state is not None:
        method.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        history, start, seconds = state["history"], state["epoch"], state["seconds"]
        random_probe = state["random_init_probe_acc"]
        tqdm.write(f"resuming {p['method']} from epoch {start} of {p['epochs']} ({state_path})")
    else:
        random_probe = knn_accuracy(method.backbone, data, p["knn_k"], KNN_TEMPERATURE, device)
        tqdm.write(f"{p['method']} on {data.name} ({n} images, {data.resolution} px, "
                   f"{'small' if method.backbone.small_stem else 'imagenet'} stem, {device}): "
                   f"random-init k-NN accuracy {random_probe:.3f}")

    compile_model(method, p["torch_compile"])
    loader = BatchLoader(data.train_images, batch_size=p["batch_size"], shuffle=True, seed=p["seed"], device=device)
    for epoch in range(start, p["epochs"]):
        t0 = time.perf_counter()
        loader.set_epoch(epoch)
        stats = train_epoch(method, loader, optimizer, scheduler, epoch_generator(device, p["seed"], epoch),
                            device, f"epoch {epoch + 1}/{p['epochs']}", p["progress"])
        if not math.isfinite(stats["loss"]):
            raise NbstudyError(f"the {p['method']} loss became {stats['loss']} in epoch {epoch + 1}: lower lr "
                               f"(now {p['lr']}) or raise temperature")
        record = {"epoch": epoch + 1, **stats, "lr": optimizer.param_groups[0]["lr"]}
        if p["probe_every"] and (epoch + 1) % p["probe_every"] == 0 and epoch + 1 < p["epochs"]:
            record["probe_acc"] = knn_accuracy(method.backbone, data, p["knn_k"], KNN_TEMPERATURE, device)
        record["seconds"] = time.perf_counter() - t0
        seconds += record["seconds"]
        history.append(record)
        tqdm.write(_epoch_line(record, p["epochs"]))
        save_atomic({"params": key, "epoch": epoch + 1, "model": method.state_dict(),
                     "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                     "history": history, "seconds": seconds, "random_init_probe_acc": random_probe}, state_path)

    probe = knn_accuracy(method.backbone, data, p["knn_k"], KNN_TEMPERATURE, device)
    tqdm.write(f"k-NN accuracy {probe:.3f} (random init {random_probe:.3f}); backbone -> {final}")
    meta = {"method": p["method"], "hparams": key, "dataset": data.name, "synthetic": bool(data.synthetic),
            "epochs_done": p["epochs"], "loss_history": [h["loss"] for h in history], "history": history,
            "probe": {"kind": "knn", "k": p["knn_k"], "temperature": KNN_TEMPERATURE},
            "probe_acc": probe, "random_init_probe_acc": random_probe, "seconds": seconds,
            "device": str(device), **method.metadata()}
    save_backbone(final, method.backbone, data.resolution, **meta)
    _write_metrics(metrics_path, {"arch": "resnet18", "small_stem": method.backbone.small_stem,
                                  "resolution": data.resolution, **meta}, p, final)
    state_path.unlink(missing_ok=True)
    return final


def _epoch_line(r: dict, epochs: int) -> str:
    line = f"epoch {r['epoch']}/{epochs}  loss {r['loss']:.4f}  pretext acc {r['acc']:.3f}  lr {r['lr']:.2e}"
    if "probe_acc" in r:
        line += f"  k-NN acc {r['probe_acc']:.3f}"
    return line + f"  {r['seconds']:.1f}s"


def _check_same_run(saved: dict | None, key: dict, path: Path) -> None:
    if saved == key:
        return
    saved = saved or {}
    diff = [k for k in key if saved.get(k) != key[k]]
    shown = ", ".join(f"{k}: {saved.get(k)!r} there vs {key[k]!r} now" for k in diff[:3])
    raise NbstudyError(f"{path} is from a run with other parameters ({shown}): use a new output_dir, "
                       "or resume=False to start over and overwrite it")


def _load_state(path: Path, key: dict) -> dict | None:
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # a torn file cannot happen (atomic writes), a foreign one can
        raise NbstudyError(f"{path} cannot be read ({type(exc).__name__}): delete it or pass resume=False") from None
    _check_same_run(state.get("params"), key, path)
    return state


def _load_data(p: dict):
    from nbstudy.data import load_dataset

    return load_dataset(p["dataset"], data_path=p["data_path"], resolution=p["resolution"], seed=p["data_seed"],
                        **p["dataset_options"])


def _check_data(data, p: dict):
    if data.name != p["dataset"] or (p["resolution"] is not None and data.resolution != p["resolution"]):
        raise NbstudyError(f"data= holds {data.name!r} at {data.resolution} px but the parameters say "
                           f"{p['dataset']!r} at {p['resolution']} px: pass the matching dataset or drop data=")
    return data


def _write_metrics(path: Path, meta: dict, p: dict, final: Path) -> None:
    """pretrain_metrics.json: the checkpoint's facts (not its weights or permutation table) plus all parameters."""
    record = {k: v for k, v in meta.items() if k not in ("format", "backbone", "jigsaw")}
    record.update(params=json.loads(json.dumps(p, default=str)), checkpoint=str(final))
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(record, indent=1)))
