"""Bad input through `nbstudy study`: a one-line error naming the key or file and the fix, and a finished
study's files untouched.

Mistakes in the study file or the command stop it before anything runs (exit 2).
Mistakes only a run can find (a checkpoint from another resolution, a corrupt
image) fail that run: the study prints its one-line error and keeps what finished.
"""

import copy
import csv
import os
from pathlib import Path

import pytest
import yaml
from PIL import Image

from nbstudy.cli import main
from stub_notebooks import write_stubs


STUDY = {"name": "s", "dataset": {"name": "synthetic", "resolution": 32},
         "pretrain": {"methods": ["simclr"], "epochs": 1},
         "train": {"methods": ["ce"], "noise_rates": [0.2, 0.6], "epochs": 1},
         "analysis": ["summary"]}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished study on the stub notebooks: (folder, notebooks, execution log)."""
    root = tmp_path_factory.mktemp("finished")
    notebooks = write_stubs(root / "nb", root / "executions.log")
    (root / "s.yaml").write_text(yaml.safe_dump(STUDY))
    assert main(["study", str(root / "s.yaml"), "--out", str(root / "out"), "--notebooks", str(notebooks)]) == 0
    return root, notebooks, root / "executions.log"


def snapshot(folder: Path) -> dict:
    return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.rglob("*")) if p.is_file()}


def edit(change):
    def write(root):
        study = copy.deepcopy(STUDY)
        change(study)
        (root / "bad.yaml").write_text(yaml.safe_dump(study))
    return write


def text(content):
    def write(root):
        (root / "bad.yaml").write_text(content)
    return write


def out_is_a_file(root):
    edit(lambda s: None)(root)
    (root / "a-file").write_text("")
    return ["--out", str(root / "a-file")]


def dry_run_out_is_a_file(root):
    return [*out_is_a_file(root), "--dry-run"]


def study_is_a_folder(root):
    (root / "bad.yaml").mkdir()


def address_without_ray(root):
    edit(lambda s: None)(root)
    return ["--address", "10.0.0.1:6379"]


CASES = {
    "unknown key": (edit(lambda s: s["train"].update(epoch=2)),
                    "bad.yaml: train: unknown key 'epoch' (did you mean 'epochs'?): use one of"),
    "misspelt method": (edit(lambda s: s["train"].update(methods=["coteachin"])),
                        "bad.yaml: train: methods: unknown method 'coteachin' (did you mean 'coteaching'?)"),
    "pretraining method that does not exist": (edit(lambda s: s["pretrain"].update(methods=["dinov2"])),
                                               "bad.yaml: pretrain: methods: unknown method 'dinov2': use one of"),
    "wrong type": (edit(lambda s: s["train"].update(epochs="ten")),
                   "bad.yaml: train: epochs='ten' is invalid: give a whole number >= 1"),
    "noise rates as text": (edit(lambda s: s["train"].update(noise_rates="0.5")),
                            "bad.yaml: train: noise_rates: noise_rate='0.5' is invalid: give a number in [0, 1]"),
    "noise rate 1.2": (edit(lambda s: s["train"].update(noise_rates=[0.6, 1.2])),
                       "bad.yaml: train: noise_rates: noise_rate=1.2 is invalid: give a number in [0, 1]"),
    "empty grid": (edit(lambda s: s["train"].update(noise_rates=[])),
                   "bad.yaml: train: noise_rates is empty, so the grid expands to no runs: give at least one value"),
    "dataset path that does not exist": (
        edit(lambda s: s["dataset"].update(name="image_folder", data_path="no/such/folder")),
        "dataset: data_path {root}/no/such/folder does not exist: fix data_path in the study file"),
    "dataset that needs a path without one": (edit(lambda s: s["dataset"].update(name="nct_crc_he")),
                                              "dataset: nct_crc_he needs data_path"),
    "unknown dataset option": (edit(lambda s: s["dataset"].update(options={"classes": 3})),
                               "bad.yaml: dataset: options: unknown synthetic option 'classes'"),
    "unknown resources key": (edit(lambda s: s.update(resources={"train": {"gpu": 1}})),
                              "bad.yaml: resources: train: unknown key 'gpu'"),
    "missing analysis notebook": (edit(lambda s: s.update(analysis=["sumary"])),
                                  "unknown analysis notebook 'sumary' (did you mean 'summary'?)"),
    "not YAML": (text("name: s\ntrain: [unclosed\n"), "bad.yaml is not valid YAML"),
    "output folder that is not writable": (out_is_a_file,
                                           "output folder {root}/a-file/s is not writable (Not a directory): pass"
                                           " --out DIR, a folder you can write to"),
    "output folder that is not writable, in a dry run": (dry_run_out_is_a_file,
                                                         "output folder {root}/a-file/s is not writable (Not a "
                                                         "directory)"),
    "a labels table given as the study file": (text("index,label\n" + "0,1\n" * 2000),
                                               "bad.yaml must be a mapping of keys to values, not 'index,label 0,1"),
    "a folder given as the study file": (study_is_a_folder, "study file {root}/bad.yaml is a folder, not a YAML file"),
    "ray option with the local executor": (address_without_ray, "--address is for the Ray executor: add --executor ray"),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_line_before_anything_runs_and_finished_runs_are_untouched(case, finished, tmp_path,
                                                                                    monkeypatch, capsys):
    root, notebooks, log = finished
    monkeypatch.chdir(tmp_path)  # relative data paths are from here
    prepare, message = CASES[case]
    args = prepare(tmp_path) or []
    before, ran = snapshot(root / "out"), log.read_text()
    capsys.readouterr()
    code = main(["study", str(tmp_path / "bad.yaml"), "--out", str(root / "out"), "--notebooks", str(notebooks),
                 *args])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("nbstudy: error: ") and err.count("\n") == 1 and len(err) < 400, err
    assert message.format(root=tmp_path) in err
    assert snapshot(root / "out") == before and log.read_text() == ran


def test_an_unwritable_output_folder_is_found_before_anything_runs(finished, capsys):
    """A read-only folder for a normal user; a file in the folder's place, which even root cannot write into."""
    root, notebooks, log = finished
    out = root / "out"
    blocked = root / "blocked"
    blocked.write_text("a file, not a folder")
    if os.geteuid() != 0:
        (out / "s").chmod(0o555)
    target, study_dir = (out, out / "s") if os.geteuid() != 0 else (blocked, blocked / "s")
    ran = log.read_text()
    try:
        assert main(["study", str(root / "s.yaml"), "--out", str(target), "--notebooks", str(notebooks),
                     "--executor", "local"]) == 2
    finally:
        (out / "s").chmod(0o755)
    assert f"output folder {study_dir} is not writable" in capsys.readouterr().err
    assert log.read_text() == ran


# Stand-ins that call the real code a stage notebook uses, so the errors are the real ones.
PRETRAIN_FROM_ELSEWHERE = """
from nbstudy.checkpoint import save_backbone
from nbstudy.models import build_backbone
out = pathlib.Path(output_dir)
log(f"pretrain {method}")
save_backbone(out / "backbone.pt", build_backbone(small_stem=True), resolution=2 * resolution)
(out / "pretrain_metrics.json").write_text("{}")
"""

TRAIN_ON_REAL_DATA = """
from nbstudy.data import load_dataset
out = pathlib.Path(output_dir)
log(f"train {pathlib.Path(init).parent.name[:6]} {noise_rate}")
if init != "random":
    from nbstudy.checkpoint import load_backbone
    from nbstudy.models import build_backbone
    load_backbone(build_backbone(small_stem=True), init, resolution)
load_dataset(dataset, data_path, resolution, **dataset_options)
(out / "metrics.json").write_text(json.dumps({"final": {"best_acc": 1.0}}))
(out / "records.npz").write_bytes(b"")
(out / "suspects.csv").write_text("rank,index")
"""


def test_errors_only_a_run_finds_fail_that_run_with_its_one_line_error_and_keep_what_finished(tmp_path, capsys):
    images = tmp_path / "images"
    for label, colour in (("a", "red"), ("b", "blue")):
        (images / label).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (8, 8), colour).save(images / label / f"{i}.png")
    log = tmp_path / "executions.log"
    notebooks = write_stubs(tmp_path / "nb", log, analysis=(), pretrain_body=PRETRAIN_FROM_ELSEWHERE,
                            train_body=TRAIN_ON_REAL_DATA)
    study = {"name": "s", "dataset": {"name": "image_folder", "data_path": str(images), "resolution": 8},
             "train": {"methods": ["ce"], "inits": ["random"], "noise_rates": [0.2], "epochs": 1,
                       "batch_size": 2}}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(study))
    cli = ["study", str(tmp_path / "s.yaml"), "--out", str(tmp_path / "out"), "--notebooks", str(notebooks)]
    assert main(cli) == 0
    kept = snapshot(tmp_path / "out" / "s" / "train")

    # then an image goes bad: found once, before any run, and nothing runs
    (images / "a" / "broken.png").write_bytes(b"not a png")
    ran = log.read_text()
    capsys.readouterr()
    assert main(cli) == 2
    last = capsys.readouterr().err.splitlines()[-1]
    assert last.startswith("nbstudy: error: dataset: 1 of ") and "cannot be decoded (first: " \
        f"{images / 'a' / 'broken.png'}:" in last
    assert last.endswith("skip_unreadable: true to leave them out") and log.read_text() == ran

    # and, the image deleted, the study grows runs that start from a backbone pretrained at another resolution
    (images / "a" / "broken.png").unlink()
    study["pretrain"] = {"methods": ["simclr"], "epochs": 1}
    study["train"].update(inits=["random", "simclr"], noise_rates=[0.2, 0.6])
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(study))
    capsys.readouterr()
    assert main([*cli, "--jobs", "2"]) == 1
    err = capsys.readouterr().err
    summary = [line for line in err.splitlines() if line.startswith("  failed ")]
    assert len(summary) == 2 and all("simclr-" in line for line in summary)
    assert all("was pretrained at 16 px but this run uses 8 px: use the same resolution" in line for line in summary)
    statuses = {r["run"].split("-")[0] + " " + r["noise_rate"]: r["status"]
                for r in csv.DictReader(open(tmp_path / "out" / "s" / "results.csv"))}
    assert statuses == {"train/random 0.2": "finished", "train/random 0.6": "finished", "train/simclr 0.2": "failed",
                        "train/simclr 0.6": "failed"}
    assert {p: v for p, v in snapshot(tmp_path / "out" / "s" / "train").items() if p in kept} == kept
