"""What a pretraining run leaves behind, and how to read it back.

- ``backbone.pt``: the backbone only (``checkpoint.save_backbone``) with the method,
  its parameters (``hparams``), the dataset, epochs done, loss history and probe accuracies;
- ``pretrain_metrics.json``: the same facts as JSON, plus every parameter, for the
  notebook's figures and the study runner;
- ``params.yaml``: the parameters the run ran with.
"""

from __future__ import annotations

import json
from pathlib import Path

from nbstudy.checkpoint import atomic_write
from nbstudy.errors import NbstudyError

STATE_FILE, BACKBONE_FILE, METRICS_FILE = "pretrain_state.pt", "backbone.pt", "pretrain_metrics.json"


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
