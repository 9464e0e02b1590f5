"""Stand-in stage and analysis notebooks: the real notebooks' parameters, seconds of work.

Each stub appends a line to an execution log (so tests can count what ran),
checks that the paths it gets are absolute and writes the files its stage
promises. A pretraining stub fails on purpose for the methods given as
`fail`; a test can also give stage notebook bodies of its own.
"""

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

from nbstudy import lnl, pretrain

PRETRAIN = dict(pretrain.DEFAULTS)   # the real notebooks declare exactly the stages' parameters
TRAIN = dict(lnl.DEFAULTS)

PRETRAIN_BODY = """
out = pathlib.Path(output_dir)
assert out.is_absolute(), output_dir
log(f"pretrain {method}")
if method in FAIL:
    raise RuntimeError(f"stub failure for {method}")
(out / "backbone.pt").write_text(method)
(out / "pretrain_metrics.json").write_text(json.dumps({"loss": [1.0]}))
"""

TRAIN_BODY = """
out = pathlib.Path(output_dir)
assert out.is_absolute(), output_dir
name = init
if init != "random":  # the backbone of the pretraining run the init names
    name = pathlib.Path(init).read_text()
    assert pathlib.Path(init).parent.name.startswith(f"{name}-"), init
log(f"train {name} {method} {noise_rate} {seed}")
final = {"best_acc": 1 - noise_rate / 2, "last_acc": 1 - noise_rate, "actual_noise_rate": noise_rate}
(out / "metrics.json").write_text(json.dumps({"final": final}))
(out / "records.npz").write_bytes(b"")
(out / "suspects.csv").write_text("rank,index")
"""

ANALYSIS_BODY = """
rows = list(csv.DictReader(open(pathlib.Path(study_dir) / "results.csv")))
log(f"analysis {len(rows)} rows")
"""


def write_stubs(folder, log_path, pretrain=PRETRAIN, analysis=("10_summary",), fail=(), train_body=TRAIN_BODY,
                pretrain_body=PRETRAIN_BODY):
    """Write stub 01_pretrain / 02_train_noisy / analysis notebooks into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    _write(folder / "01_pretrain.ipynb", pretrain, pretrain_body, log_path, fail)
    _write(folder / "02_train_noisy.ipynb", TRAIN, train_body, log_path, fail)
    for stem in analysis:
        _write(folder / f"{stem}.ipynb", {"study_dir": "", "output_dir": ""}, ANALYSIS_BODY, log_path, fail)
    return folder


def _write(path, params, body, log_path, fail):
    setup = (f"import csv, json, pathlib\nFAIL = {tuple(fail)!r}\n"
             f"def log(line):\n    with open({str(log_path)!r}, 'a') as f:\n        f.write(line + '\\n')")
    cells = [new_code_cell("\n".join(f"{k} = {v!r}" for k, v in params.items()), metadata={"tags": ["parameters"]}),
             new_code_cell(setup), new_code_cell(body.strip())]
    nb = new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                            "language": "python"}})
    nbformat.write(nb, str(path))
