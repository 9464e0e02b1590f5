"""What a pretraining run leaves behind, and how to read it back.

- ``backbone.pt``: the backbone only (``checkpoint.save_backbone``) with the method,
  its parameters (``hparams``), the dataset, epochs done, loss history and probe accuracies;
- ``pretrain_metrics.json``: the same facts as JSON, plus every parameter, for the
  notebook's figures and the study runner;
- ``params.yaml``: the parameters the run ran with.

`probe_warning` and `init_probes` read the probe accuracies back for the study runner's summary and results table
and for the analysis; they live here, not in nbstudy.analysis, so the runner need not import the analysis modules
(about a second) to skip a run.
"""

from __future__ import annotations

import json
from pathlib import Path

from nbstudy.checkpoint import atomic_write
from nbstudy.errors import NbstudyError

STATE_FILE, BACKBONE_FILE, METRICS_FILE = "pretrain_state.pt", "backbone.pt", "pretrain_metrics.json"
ADVICE = ("more pretraining epochs, more images, the small stem (stem: small) or another temperature (SimCLR) "
          "usually help")


def write_metrics(out: Path, meta: dict, params: dict) -> Path:
    """pretrain_metrics.json: the checkpoint's facts (not its weights or permutation table) plus all parameters."""
    record = {k: v for k, v in meta.items() if k not in ("format", "backbone", "jigsaw")}
    record.update(params=json.loads(json.dumps(params, default=str)), checkpoint=str(Path(out) / BACKBONE_FILE))
    return atomic_write(Path(out) / METRICS_FILE, lambda tmp: Path(tmp).write_text(json.dumps(record, indent=1)))


def load_metrics(output_dir) -> dict:
    """pretrain_metrics.json of a finished run: method, params, history, probe accuracies, seconds."""
    path = Path(output_dir) / METRICS_FILE
    if not path.is_file():
        raise NbstudyError(f"{output_dir} holds no finished pretraining run ({METRICS_FILE} missing): give the "
                           "output_dir of a completed run_pretraining")
    return json.loads(path.read_text())


def probe_warning(init: str, probe_acc: float, random_probe_acc: float) -> str | None:
    """One line when a pretraining run's k-NN probe ended below random init's on the same features, else None."""
    if not probe_acc < random_probe_acc:   # NaN (not recorded) compares False: no warning
        return None
    return (f"{init} pretraining ended below random init on its k-NN probe ({probe_acc:.1%} vs "
            f"{random_probe_acc:.1%}): its features are worse than random ones; {ADVICE}")


def init_probes(metrics: dict) -> dict:
    """{"init_probe_acc", "random_probe_acc"} of a training run (its metrics.json, with "params"): the k-NN probe
    accuracy (fraction) of the run's init backbone at the end of its pretraining and of the same network at random
    init, on the same features and k; None for random init and for checkpoints that did not record them.

    Read from metrics.json's ``init`` (the checkpoint's metadata), else from the pretraining run's
    pretrain_metrics.json beside its backbone.pt.
    """
    if metrics["params"]["init"] == "random":
        return {"init_probe_acc": None, "random_probe_acc": None}
    meta = metrics.get("init", {})
    if "probe_acc" not in meta:
        beside = Path(metrics["params"]["init"]).parent / METRICS_FILE
        meta = json.loads(beside.read_text()) if beside.is_file() else {}
    return {"init_probe_acc": meta.get("probe_acc"), "random_probe_acc": meta.get("random_init_probe_acc")}
