"""The classroom lesson (notebooks/00_classroom.ipynb): watch a network learn, then memorise wrong labels.

Training reuses stage 2 as it is (`nbstudy.lnl`: `prepare`, the method's
schedule and epoch, the loop's network building and test evaluation), run one
epoch at a time by `epochs`, a generator that writes nothing to disk. On top of
it:

- `train_live(params, stop=, on_epoch=)`: one run, headless; after each epoch
  `on_epoch(run)` sees the numbers so far. `stop` (a `threading.Event`) ends it
  between two epochs, so a stopped run holds only whole epochs.
- `LiveFigure`: one figure updated in place each epoch: training accuracy on
  the given and on the true labels, test accuracy with BEST and LAST marked, and
  the per-sample loss histogram of right vs wrong labels.
- `Classroom`: the controls (noise, init, method, epochs, Train / Stop) over a
  live figure; training runs in a background thread, as the ipywidgets docs
  recommend for long work, so the notebook stays responsive and Stop works.
- `replay` (two runs side by side, epoch by epoch) and `story` (what happened,
  in sentences made from the numbers).

Parameters are stage 2's (`nbstudy.lnl.PARAMS`, same names and checks); the
lesson changes only the few in `LESSON` (a small, fast data set and run) and the
method options in `METHOD_OPTIONS`. `init` also takes a pretraining method name
("rotation", "simclr", ...): that backbone is pretrained live first (`PRETRAIN`),
or reused from `output_dir` when the same pretraining already ran there.
"""

from __future__ import annotations

import hashlib
import io
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from matplotlib.ticker import MaxNLocator

from nbstudy.data import load_dataset
from nbstudy.analysis.plots import CLEAN_COLOR, NOISY_COLOR, titled
from nbstudy.errors import NbstudyError
from nbstudy.figures import Figure
from nbstudy.lnl import METHODS, prepare, resolve
from nbstudy.lnl.loop import build, evaluate
from nbstudy.params import merged, named
from nbstudy.plain import jsonable
from nbstudy.pretrain import METHODS as METHODS_PRETRAIN
from nbstudy.pretrain import run_pretraining
from nbstudy.runtime import resolve_device

# The lesson's departures from nbstudy.lnl.PARAMS, chosen to run on a 2-core CPU in seconds per epoch:
# two synthetic classes (learnt within a few epochs, so memorisation shows within a dozen; a 100-image
# test set per class keeps test accuracy steady), 32 px with the imagenet stem (16x cheaper than the
# small stem on a CPU), batch 32 and Adam at 1e-3 (the demo study's settings: more steps per epoch).
LESSON = {
    "dataset": "synthetic",
    "dataset_options": {"num_classes": 2, "per_class": 100, "test_per_class": 100},
    "resolution": 32,
    "stem": "imagenet",
    "noise_rate": 0.6,
    "epochs": 14,
    "batch_size": 32,
    "lr": 1e-3,
    "progress": False,
}
# Per method, as in parameters/demo.yaml: Adam, and short ramps and warm-ups for short runs.
METHOD_OPTIONS = {
    "ce": {"optimizer": "adam"},
    "coteaching": {"num_gradual": 4},
    "dividemix": {"optimizer": "adam", "warmup_epochs": 2, "lambda_u": 0},
}
# Live pretraining (init = a pretraining method): short, about 40 s for rotation on a 2-core CPU;
# SimCLR with its default views needs ~30 epochs on this data to beat random init (12 with its colour
# randomised, as parameters/demo.yaml runs it: docs/pretraining.md), rotation 6.
PRETRAIN = {"epochs": 6, "batch_size": 64}
PRETRAIN_OPTIONS = {"simclr": {"temperature": 0.5}}
OUTPUT_DIR = "outputs/classroom"
NOISE_KINDS = ("symmetric", "symmetric_exclusive", "pairflip")   # the kinds that need no class mapping


def lesson_params(params: dict | None = None, **kwargs) -> dict:
    """The lesson's training parameters: `LESSON`, the method's `METHOD_OPTIONS`, then `params` / keywords
    (nbstudy.lnl names), checked by `nbstudy.lnl.resolve`. `init` stays as given when it names a
    pretraining method (pretrained live by `train_live`). Errors: a one-line NbstudyError."""
    p = {**LESSON, **merged(params, kwargs)}
    method = p.get("method", resolve()["method"])
    p.setdefault("method_options", METHOD_OPTIONS.get(method, {}))
    init = p.get("init", "random")
    live = isinstance(init, str) and init in METHODS_PRETRAIN
    if isinstance(init, str) and not live and init != "random" and not Path(init).is_file():
        raise NbstudyError(f"init={init!r} is invalid: give random, a pretraining method to pretrain live "
                           f"({', '.join(METHODS_PRETRAIN)}) or the path of an existing backbone.pt")
    checked = resolve({**p, "init": "random"} if live else p)
    return {**checked, "init": init} if live else checked


# ---- one run, epoch by epoch ---------------------------------------------------------------------------


@dataclass
class Run:
    """One lesson run: its parameters and what each finished epoch measured.

    history: one dict per epoch with epoch, train_loss, lr, train_acc_given
    (accuracy on the training images against their given, noisy labels),
    train_acc_true (against their true labels), wrong_fitted (fraction of the
    wrongly labelled training images predicted as their wrong label), test_acc,
    val_acc, seconds; accuracies in [0, 1], computed on un-augmented images with
    the network the method reports (A, or the ensemble for DivideMix).
    losses: per epoch, network A's per-sample training loss (nats), aligned
    with `wrong`, the mask of training images whose given label is wrong.
    """

    params: dict
    init_name: str
    class_names: list
    synthetic: bool
    wrong: np.ndarray
    actual_noise_rate: float
    history: list = field(default_factory=list)
    losses: list = field(default_factory=list)
    stopped: bool = False

    @property
    def label(self) -> str:
        return f"{self.params['method']}, {self.init_name} init"

    @property
    def done(self) -> int:
        return len(self.history)

    def table(self) -> pd.DataFrame:
        """The history as a DataFrame indexed by epoch."""
        return pd.DataFrame(self.history).set_index("epoch")

    def best(self, upto: int | None = None) -> dict:
        """{epoch, test_acc} of the first epoch with the highest test accuracy (up to epoch `upto`)."""
        rows = self.history[:upto]
        row = max(rows, key=lambda r: r["test_acc"])   # max keeps the first of equals
        return {"epoch": row["epoch"], "test_acc": row["test_acc"]}


def epochs(setup, stop: threading.Event | None = None):
    """Train `setup` (`nbstudy.lnl.prepare`) epoch by epoch as `nbstudy.lnl.train` does, without writing
    records or checkpoints; yield (history row, per-sample losses) after each epoch (see `Run`). Ends early,
    between epochs, once `stop` is set."""
    p, method = setup.params, setup.method
    ctx = build(setup, resolve_device(p["device"]))
    state = method.state(ctx)
    idx = setup.train_idx
    given, true = setup.noisy_labels[idx], setup.clean_labels[idx]
    wrong = given != true
    for epoch in range(1, p["epochs"] + 1):
        if stop is not None and stop.is_set():
            return
        t0 = time.perf_counter()
        lr = method.schedule(ctx, epoch - 1)   # methods count epochs from 0, as in the loop
        res = method.train_epoch(ctx, epoch - 1, state)
        ctx.weights_changed()
        if not np.isfinite(res["loss"]):
            raise NbstudyError(f"training loss became {res['loss']} at epoch {epoch}: lower lr (now {lr:g})")
        logits = [ctx.logits(net, indices=idx) for net in ctx.nets]
        reported = logits[0] if method.reported == "A" else sum(logits)   # what test_acc is measured on
        pred = reported.argmax(1).numpy()
        losses = F.cross_entropy(logits[0], torch.from_numpy(given), reduction="none").numpy()
        test = evaluate(ctx, setup)
        row = {"epoch": epoch, "train_loss": res["loss"], "lr": lr,
               "train_acc_given": float((pred == given).mean()), "train_acc_true": float((pred == true).mean()),
               "wrong_fitted": float((pred[wrong] == given[wrong]).mean()) if wrong.any() else None,
               "test_acc": test["test_acc"], "val_acc": test["val_acc"], "seconds": time.perf_counter() - t0}
        yield row, losses


def train_live(params: dict | None = None, *, stop: threading.Event | None = None, on_epoch=None,
               on_status=None, output_dir=OUTPUT_DIR, pretrain: dict | None = None, **kwargs) -> Run:
    """One lesson run, headless: `lesson_params(params, **kwargs)`, pretraining live first when `init` names a
    pretraining method (`pretrain_live`, with `pretrain` overriding `PRETRAIN`). After every epoch
    `on_epoch(run)`; `on_status(text)` hears what is being done. `stop` ends the run between epochs
    (run.stopped). Same parameters and seed, same numbers (on one device and thread count)."""
    p = lesson_params(params, **kwargs)
    say = on_status or (lambda text: None)
    init_name = p["init"] if p["init"] == "random" else Path(p["init"]).parent.name or p["init"]
    if p["init"] in METHODS_PRETRAIN:
        init_name = f"{p['init']} (pretrained live)"
        say(f"pretraining {p['init']} live ({({**PRETRAIN, **(pretrain or {})})['epochs']} epochs)...")
        p = {**p, "init": str(pretrain_live(p["init"], p, output_dir, pretrain))}
    say("loading the data and corrupting the labels...")
    setup = prepare(p)
    run = Run(setup.params, init_name, list(setup.dataset.class_names), bool(setup.dataset.synthetic),
              setup.noise_mask[setup.train_idx], setup.actual_noise_rate)
    say("training...")
    for row, losses in epochs(setup, stop):
        run.history.append(row)
        run.losses.append(losses)
        if on_epoch is not None:
            on_epoch(run)
    run.stopped = run.done < p["epochs"]
    return run


def pretrain_live(method: str, params: dict, output_dir=OUTPUT_DIR, overrides: dict | None = None) -> Path:
    """Pretrain `method` (a key of nbstudy.pretrain.METHODS) on the lesson's data (the data parameters of
    `params`) with `PRETRAIN`, then `overrides` (nbstudy.pretrain names); returns the backbone.pt path. The
    run folder under `output_dir` is named by its parameters, so the same pretraining is reused, not redone."""
    shared = ("dataset", "data_path", "dataset_options", "data_seed", "resolution", "stem", "backbone", "seed",
              "device", "precision")
    pre = {**{k: params[k] for k in shared}, **PRETRAIN, "method": method,
           "method_options": PRETRAIN_OPTIONS.get(method, {}), "progress": False, **(overrides or {})}
    # named: backbone and precision at their earlier values leave the name of a lesson's earlier pretraining as it was
    tag = hashlib.sha256(json.dumps(jsonable(named(pre)), sort_keys=True).encode()).hexdigest()[:8]
    return run_pretraining(pre, output_dir=str(Path(output_dir) / f"pretrain_{method}_{tag}"))


def lesson_data(params: dict):
    """The lesson's dataset (`nbstudy.data.Dataset`) as a run with `params` (`lesson_params`) loads it."""
    return load_dataset(params["dataset"], data_path=params["data_path"], resolution=params["resolution"],
                        seed=params["data_seed"], **params["dataset_options"])


# ---- the live figure -----------------------------------------------------------------------------------


class LiveFigure:
    """Accuracy curves and the loss histogram of one run, redrawn in place by `update(run)`.

    Left (or top, `stacked`): training accuracy on the given labels, on the
    true labels, test accuracy, BEST (star) and LAST (square) marked. Right (or
    bottom): network A's per-sample training loss at the latest epoch, right
    vs wrong labels, each group as a fraction of its own size. `target`: a
    Figure or SubFigure to draw in (default: a new `nbstudy.figures.Figure`).
    """

    def __init__(self, target=None, stacked: bool = False):
        self.figure = target if target is not None else Figure(figsize=(11, 3.6), layout="constrained")
        self.stacked = stacked
        self.acc_ax, self.loss_ax = self.figure.subplots(2 if stacked else 1, 1 if stacked else 2,
                                                         squeeze=True)
        ax = self.acc_ax
        self.lines = {key: ax.plot([], [], style, color=color, label=label, marker=".")[0]
                      for key, style, color, label in (
                          ("train_acc_given", "--", "tab:orange", "train, given labels"),
                          ("train_acc_true", "--", CLEAN_COLOR, "train, true labels"),
                          ("test_acc", "-", "black", "test"))}
        self.best = ax.scatter([], [], s=120, marker="*", c="tab:green", zorder=3, label="BEST")
        self.last = ax.scatter([], [], s=70, marker="s", c=NOISY_COLOR, zorder=3, label="LAST")
        ax.set(xlabel="epoch", ylabel="accuracy", ylim=(0, 1.02))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        self.legend = ax.legend(fontsize=8, loc="lower right")
        self.stairs = {group: self.loss_ax.stairs([0.0], [0.0, 1.0], fill=True, alpha=0.5, color=color)
                       for group, color in (("right", CLEAN_COLOR), ("wrong", NOISY_COLOR))}
        self.loss_ax.set(xlabel="training loss of the sample (given label)", ylabel="fraction of the group")

    def update(self, run: Run, upto: int | None = None) -> None:
        """Show `run` up to epoch `upto` (default: all it has)."""
        rows = run.history[:upto]
        if not rows:
            return
        x = [r["epoch"] for r in rows]
        for key, line in self.lines.items():
            line.set_data(x, [r[key] for r in rows])
        best, last = run.best(len(rows)), rows[-1]
        self.best.set_offsets([[best["epoch"], best["test_acc"]]])
        self.last.set_offsets([[last["epoch"], last["test_acc"]]])
        self.best.set_label(f"BEST {best['test_acc']:.2f} (epoch {best['epoch']})")
        self.last.set_label(f"LAST {last['test_acc']:.2f}")
        self.acc_ax.legend(fontsize=8, loc="lower right")
        self.acc_ax.set_xlim(0.5, max(run.params["epochs"], 2) + 0.5)
        self.acc_ax.set_title(f"accuracy, epoch {last['epoch']} of {run.params['epochs']}", fontsize=10)
        self._histogram(run.losses[len(rows) - 1], run.wrong)
        between = "\n" if self.stacked else ": "   # a column is narrow: two lines
        self.figure.suptitle(titled(f"{run.label}{between}{run.params['noise_kind']} noise "
                                    f"{run.params['noise_rate']:g}, {run.actual_noise_rate:.0%} of labels wrong",
                                    run.synthetic), fontsize=11)

    def _histogram(self, losses: np.ndarray, wrong: np.ndarray) -> None:
        edges = np.linspace(0.0, max(float(losses.max()), 1e-3), 31)
        for group, members in (("right", losses[~wrong]), ("wrong", losses[wrong])):
            counts = np.histogram(members, edges)[0] / max(len(members), 1)   # an empty group draws flat at 0
            self.stairs[group].set_data(counts, edges)
            self.stairs[group].set_label(f"{group} label ({len(members)})")
        self.loss_ax.legend(fontsize=8)
        self.loss_ax.relim()
        self.loss_ax.autoscale_view()
        self.loss_ax.set_title("per-sample loss, right vs wrong labels", fontsize=10)

    def png(self) -> bytes:
        buffer = io.BytesIO()
        self.figure.savefig(buffer, format="png", dpi=80)
        return buffer.getvalue()


def compare_figure(runs: list, upto: int | None = None) -> Figure:
    """Runs side by side (one column each, accuracy above the loss histogram), each up to epoch `upto`."""
    if not runs:
        raise NbstudyError("no runs to compare yet: train one with the controls above, or give runs")
    fig = Figure(figsize=(5.5 * len(runs), 6.5), layout="constrained")
    for sub, run in zip(np.atleast_1d(fig.subfigures(1, len(runs))), runs):
        LiveFigure(sub, stacked=True).update(run, upto)
    return fig


# ---- what happened, in words made from the numbers ----------------------------------------------------


def story(runs: list) -> str:
    """A few sentences on what each run did (peak, fall, wrong labels fitted) and, for two or more runs at the
    same noise, how the last ones differ from the first. Every number is taken from the runs; accuracies in
    percent with one decimal, differences in percentage points."""
    done = [r for r in runs if r.history]
    lines = [_one_story(r) for r in done]
    for other in done[1:]:
        base = done[0]
        if (other.params["noise_kind"], other.params["noise_rate"]) != (base.params["noise_kind"],
                                                                        base.params["noise_rate"]):
            continue
        a, b = base.history[-1]["test_acc"], other.history[-1]["test_acc"]
        lines.append(f"{other.label} against {base.label}, same noise: LAST test accuracy {_points(b - a)} "
                     f"({_pct(b)} vs {_pct(a)}), BEST {_points(other.best()['test_acc'] - base.best()['test_acc'])}.")
    return "\n".join(lines) if lines else "No run has finished an epoch yet."


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _points(diff: float) -> str:
    pts = round(100 * diff, 1)
    return "the same" if pts == 0 else f"{abs(pts):.1f} points {'higher' if pts > 0 else 'lower'}"


def _one_story(run: Run) -> str:
    best, last = run.best(), run.history[-1]
    at_best = run.history[best["epoch"] - 1]
    fall = round(100 * (best["test_acc"] - last["test_acc"]), 1)
    head = f"{run.label} ({run.params['noise_kind']} noise {run.params['noise_rate']:g}, " \
           f"{run.actual_noise_rate:.0%} of labels wrong)"
    if run.stopped:
        head += f", stopped after epoch {last['epoch']} of {run.params['epochs']}"
    if fall > 0:
        text = (f"{head}: test accuracy peaked at {_pct(best['test_acc'])} at epoch {best['epoch']} and fell "
                f"{fall:.1f} points to {_pct(last['test_acc'])} by epoch {last['epoch']}, while training accuracy "
                f"on the given labels went from {_pct(at_best['train_acc_given'])} to "
                f"{_pct(last['train_acc_given'])}")
    elif best["epoch"] == last["epoch"]:
        text = (f"{head}: test accuracy was still at its best at the last epoch, {_pct(last['test_acc'])} "
                f"(epoch {last['epoch']}); training accuracy on the given labels reached "
                f"{_pct(last['train_acc_given'])}")
    else:
        text = (f"{head}: test accuracy ended level with its best, {_pct(last['test_acc'])} (first reached at "
                f"epoch {best['epoch']}); training accuracy on the given labels went from "
                f"{_pct(at_best['train_acc_given'])} to {_pct(last['train_acc_given'])}")
    if last["wrong_fitted"] is None:
        return text + "; there were no wrong labels to fit."
    k = len(run.class_names)
    fitted, then = round(100 * last["wrong_fitted"]), round(100 * at_best["wrong_fitted"])
    since = "" if best["epoch"] == last["epoch"] else \
        f", {'up from' if fitted > then else 'down from' if fitted < then else 'the same as'} {then}% at its best epoch"
    return (text + f". At the end it predicted the wrong given label for {fitted}% of the wrongly labelled "
            f"training images{since} (a network that ignored those labels: about 0%; a random guess: "
            f"{100 / k:.0f}%).")


# ---- the controls ---------------------------------------------------------------------------------------


class Classroom:
    """Controls for one live run (noise rate and kind, init, method, epochs, Train, Stop) above its
    `LiveFigure`, a status line with the latest numbers, and `story_view` (what the runs so far did).

    Train starts `train_live` in a background thread, so the kernel stays free for Stop and for the other
    cells; the figure is redrawn after every epoch. Every finished or stopped run is kept in `runs` (for
    `replay` and `story`). `params`, keywords: the lesson's starting values (`lesson_params`); `output_dir`,
    `pretrain`: as `train_live` takes them.
    """

    def __init__(self, params: dict | None = None, output_dir=OUTPUT_DIR, pretrain: dict | None = None, **kwargs):
        import ipywidgets as W

        self.base = lesson_params(params, **kwargs)
        self.output_dir, self.pretrain = output_dir, pretrain
        self.runs: list[Run] = []
        self.listeners = []          # called with no arguments whenever `runs` changes
        self.thread: threading.Thread | None = None
        self._stop = threading.Event()
        b = self.base
        style = {"description_width": "initial"}
        self.controls = {
            "noise_rate": W.FloatSlider(value=b["noise_rate"], min=0, max=0.95, step=0.05, description="noise rate",
                                        continuous_update=False, style=style),
            "noise_kind": W.Dropdown(options=NOISE_KINDS, value=b["noise_kind"] if b["noise_kind"] in NOISE_KINDS
                                     else NOISE_KINDS[0], description="noise kind", style=style),
            "init": W.Combobox(value=b["init"], options=["random", "rotation", "simclr"], ensure_option=False,
                               description="init", placeholder="random, rotation, simclr or a backbone.pt path",
                               style=style),
            "method": W.ToggleButtons(options=list(METHODS), value=b["method"], description="method", style=style),
            "epochs": W.IntSlider(value=b["epochs"], min=1, max=max(60, b["epochs"]), description="epochs",
                                  continuous_update=False, style=style),
        }
        self.train_button = W.Button(description="Train", button_style="success", icon="play")
        self.stop_button = W.Button(description="Stop", button_style="danger", icon="stop", disabled=True)
        self.train_button.on_click(lambda _: self.train())
        self.stop_button.on_click(lambda _: self.stop())
        self.status = W.HTML("Choose the settings and press <b>Train</b>.").add_class("nbstudy-status")
        self.figure = LiveFigure()
        self.image = W.Image(format="png", layout=W.Layout(max_width="100%")).add_class("nbstudy-live")
        self.story = W.HTML()
        rows = [W.HBox([self.controls["noise_rate"], self.controls["noise_kind"], self.controls["epochs"]]),
                W.HBox([self.controls["init"], self.controls["method"]]),
                W.HBox([self.train_button, self.stop_button]), self.status, self.image]
        self.widget = W.VBox(rows)

    def params(self) -> dict:
        """The parameters the controls give now (the lesson's for everything else)."""
        values = {name: control.value for name, control in self.controls.items()}
        values["init"] = values["init"].strip() or "random"
        method_options = {} if values["method"] != self.base["method"] else self.base["method_options"]
        return {**self.base, **values, "method_options": method_options or METHOD_OPTIONS.get(values["method"], {})}

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def train(self) -> threading.Thread | None:
        """Start a run with the controls' values in a background thread (None if one is running); returns it."""
        if self.running:
            return None
        params = self.params()
        self._stop = threading.Event()
        self.train_button.disabled, self.stop_button.disabled = True, False
        self.thread = threading.Thread(target=self._work, args=(params, self._stop), daemon=True)
        self.thread.start()
        return self.thread

    def stop(self) -> None:
        """Ask the run to stop after its current epoch (it keeps the epochs it finished)."""
        self._stop.set()
        if self.running:
            self.status.value += " <b>stopping after this epoch...</b>"

    def _work(self, params: dict, stop: threading.Event) -> None:
        try:
            run = train_live(params, stop=stop, on_epoch=self._show, on_status=self._say,
                             output_dir=self.output_dir, pretrain=self.pretrain)
        except Exception as e:   # a thread's error would go nowhere: show it, one line
            message = str(e) if isinstance(e, NbstudyError) else f"{type(e).__name__}: {e}"
            self.status.value = f"<span style='color: #c00'>{message}</span>"
            return
        finally:
            self.train_button.disabled, self.stop_button.disabled = False, True
        self._finish(run)

    def _say(self, text: str) -> None:
        self.status.value = text

    def _show(self, run: Run) -> None:
        self.figure.update(run)
        self.image.value = self.figure.png()
        self.status.value = status_line(run)

    def _finish(self, run: Run) -> None:
        if run.history:
            self.runs.append(run)
        word = f"stopped after epoch {run.done}" if run.stopped else "finished"
        self.status.value = f"<b>{word}</b> · " + (status_line(run) if run.history else "no epoch ran")
        self.story.value = "<br>".join(story(self.runs).splitlines())
        for listener in self.listeners:
            listener()

    def story_view(self):
        """A widget stating what the runs so far did, updated after every run (see `story`)."""
        if not self.story.value:
            self.story.value = "Train a run above: what it did appears here when it ends."
        return self.story

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)


def status_line(run: Run) -> str:
    """The latest epoch's numbers, one line."""
    last, best = run.history[-1], run.best()
    wrong = "" if last["wrong_fitted"] is None else f" · wrong labels fitted {last['wrong_fitted']:.0%}"
    return (f"epoch {last['epoch']}/{run.params['epochs']} · train acc given labels {last['train_acc_given']:.2f}"
            f" · true labels {last['train_acc_true']:.2f} · test {last['test_acc']:.2f}"
            f" · BEST {best['test_acc']:.2f} (epoch {best['epoch']}){wrong}")


def replay(runs, interactive: bool = False):
    """Runs side by side (`compare_figure`). Interactive: a widget to pick two runs and replay them epoch by
    epoch (slider and play button); `runs` may be a `Classroom`, whose runs so far it offers (updated as runs
    finish). Static: the figure of every run at its last epoch."""
    if not interactive:
        return compare_figure(list(runs.runs if isinstance(runs, Classroom) else runs))
    return Replay(runs)


class Replay:
    """Two dropdowns choosing runs, an epoch slider with a play button, and the side-by-side figure.
    One redraw per change, also when new runs arrive (the controls are set quietly, then drawn once)."""

    def __init__(self, runs):
        import ipywidgets as W

        self.source = (lambda: runs.runs) if isinstance(runs, Classroom) else (lambda: list(runs))
        self.left, self.right = W.Dropdown(description="left"), W.Dropdown(description="right")
        self.epoch = W.IntSlider(value=1, min=1, max=1, description="epoch", continuous_update=False)
        self.play = W.Play(min=1, max=1, interval=700)
        W.jslink((self.play, "value"), (self.epoch, "value"))
        self.image, self.message = W.Image(format="png", layout=W.Layout(max_width="100%")), W.HTML()
        self.widget = W.VBox([W.HBox([self.left, self.right]), W.HBox([self.play, self.epoch]), self.message,
                              self.image])
        self._quiet = False
        for control in (self.left, self.right):
            control.observe(lambda _: self._chosen(), names="value")
        self.epoch.observe(lambda _: self.redraw(), names="value")
        if isinstance(runs, Classroom):
            runs.listeners.append(self.runs_changed)
        self.runs_changed()

    def runs_changed(self) -> None:
        """Offer every run; left keeps its choice (the first run by default), right shows the newest."""
        runs = self.source()
        options = [(f"{i + 1}: {r.label}, {r.params['noise_kind']} {r.params['noise_rate']:g}", i)
                   for i, r in enumerate(runs)]
        keep = self.left.value
        self._quiet = True
        try:
            self.left.options, self.right.options = options, options
            if options:
                self.left.value = keep if keep is not None else 0
                self.right.value = len(options) - 1
        finally:
            self._quiet = False
        self._chosen()

    def chosen(self) -> list:
        runs = self.source()
        return [runs[i] for i in (self.left.value, self.right.value) if i is not None]

    def _chosen(self) -> None:
        """New runs chosen: the slider spans their epochs and starts at the end."""
        if self._quiet:
            return
        top = max((r.done for r in self.chosen()), default=1)
        self._quiet = True
        try:
            self.epoch.max = self.play.max = top
            self.epoch.value = top
        finally:
            self._quiet = False
        self.redraw()

    def redraw(self) -> None:
        if self._quiet:
            return
        try:
            fig = compare_figure(self.chosen(), self.epoch.value)
        except NbstudyError as e:
            self.message.value = f"<span style='color: #c00'>{e}</span>"
            return
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=80)
        self.image.value, self.message.value = buffer.getvalue(), ""

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)
