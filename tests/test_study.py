"""Study files: checking, grid expansion, run names, analysis lookup, results table. No kernels run here."""

import csv
import json
from pathlib import Path

import pytest
import yaml

from nbstudy.errors import NbstudyError
from nbstudy.execute import check_parameters
from nbstudy import lnl, pretrain
from nbstudy.study import analysis_notebooks, analysis_runs, check_study, expand, load_study, stage_keys, write_results
from stub_notebooks import PRETRAIN, write_stubs

PARAMETERS = Path(__file__).resolve().parent.parent / "parameters"
NOTEBOOKS = PARAMETERS.parent / "notebooks"


def base():
    return {"name": "t", "dataset": {"name": "synthetic", "resolution": 32},
            "pretrain": {"methods": ["simclr", "rotation"], "epochs": 2},
            "train": {"methods": ["ce", "dividemix"], "noise_rates": [0.2, 0.6], "epochs": 3}}


def error(study):
    with pytest.raises(NbstudyError) as e:
        check_study(study)
    return str(e.value)


@pytest.mark.parametrize("name", ["demo", "smoke", "paper_nct", "paper_covid", "pathmnist", "breastmnist_suspects"])
def test_shipped_study_files_are_valid(name):
    study = load_study(PARAMETERS / f"{name}.yaml")
    assert study["name"] == name
    runs = expand(study, "/tmp/out/x", "/tmp/nb")
    assert any(r.stage == "train" for r in runs)
    assert list(analysis_notebooks(study, NOTEBOOKS)) == study["analysis"]


def test_demo_covers_every_init_and_method_and_a_high_noise_rate():
    study = load_study(PARAMETERS / "demo.yaml")
    assert study["dataset"]["name"] == "synthetic"
    assert set(study["pretrain"]["methods"]) == {"simclr", "rotation", "jigsaw", "jigmag"}
    assert study["train"]["inits"][0] == "random" and {"simclr", "rotation"} <= set(study["train"]["inits"])
    assert set(study["train"]["methods"]) == {"ce", "coteaching", "dividemix"}
    assert len(study["train"]["noise_rates"]) >= 2 and max(study["train"]["noise_rates"]) >= 0.6


def test_defaults_are_filled_and_inits_default_to_random_plus_every_pretraining():
    study = check_study(base())
    assert study["device"] == "auto" and study["analysis"] == []
    assert study["resources"] == {"pretrain": {}, "train": {}, "analysis": {}}
    assert study["dataset"] == {"name": "synthetic", "data_path": None, "options": {}, "resolution": 32, "stem": "auto",
                                "seed": 0}
    simclr = study["pretrain"]["methods"]["simclr"]
    assert simclr["epochs"] == 2 and simclr["options"] == {}
    assert {k: v for k, v in simclr.items() if k not in ("epochs", "options")} == \
        {k: pretrain.DEFAULTS[k] for k in stage_keys("pretrain") if k != "epochs"}   # the stage's own defaults
    assert study["train"]["inits"] == ["random", "simclr", "rotation"]
    assert study["train"]["noise_kinds"] == ["symmetric"] and study["train"]["seeds"] == [0]
    ce = study["train"]["methods"]["ce"]
    assert ce["epochs"] == 3 and ce["batch_size"] is None and ce["lr"] is None and ce["options"] == {}
    assert {k: v for k, v in ce.items() if k not in ("epochs", "options")} == \
        {k: lnl.DEFAULTS[k] for k in stage_keys("train") if k != "epochs"}


def test_per_method_settings_override_the_stage_values():
    study = base()
    study["pretrain"]["methods"] = {"simclr": {"epochs": 5}, "rotation": None}
    study["train"]["methods"] = {"ce": None, "dividemix": {"lr": 0.02, "options": {"warmup_epochs": 2}}}
    study = check_study(study)
    assert study["pretrain"]["methods"]["simclr"]["epochs"] == 5
    assert study["pretrain"]["methods"]["rotation"]["epochs"] == 2
    assert study["train"]["methods"]["dividemix"]["lr"] == 0.02
    assert study["train"]["methods"]["dividemix"]["options"] == {"warmup_epochs": 2}
    assert study["train"]["methods"]["ce"]["lr"] is None


def test_a_single_grid_value_counts_as_a_list_of_one():
    study = base()
    study["train"].update(noise_rates=0.5, seeds=3, noise_kinds="pairflip", methods="ce")
    t = check_study(study)["train"]
    assert t["noise_rates"] == [0.5] and t["seeds"] == [3] and t["noise_kinds"] == ["pairflip"]
    assert list(t["methods"]) == ["ce"]


def test_resources_are_read_per_stage():
    study = base()
    study["resources"] = {"pretrain": {"num_gpus": 1, "num_cpus": 4}, "train": {"num_gpus": 0.25, "memory": 4.0e+9}}
    assert check_study(study)["resources"] == {"pretrain": {"num_gpus": 1, "num_cpus": 4},
                                               "train": {"num_gpus": 0.25, "memory": 4.0e+9}, "analysis": {}}


def test_exponent_numbers_are_numbers(tmp_path):
    path = tmp_path / "s.yaml"
    study = base()
    study["pretrain"]["lr"] = "LR"
    path.write_text(yaml.safe_dump(study).replace("LR", "1e-3"))
    assert load_study(path)["pretrain"]["methods"]["simclr"]["lr"] == 1e-3


@pytest.mark.parametrize("change, message", [
    (lambda s: s["pretrain"].update(epoch=3), "pretrain: unknown key 'epoch' (did you mean 'epochs'?)"),
    (lambda s: s.update(analyses=[]), "unknown key 'analyses' (did you mean 'analysis'?)"),
    (lambda s: s["dataset"].update(resolutoin=3), "dataset: unknown key 'resolutoin' (did you mean 'resolution'?)"),
    (lambda s: s["pretrain"].update(methods=["simclrr"]), "unknown method 'simclrr' (did you mean 'simclr'?)"),
    (lambda s: s["train"].update(methods=["coteach"]), "unknown method 'coteach' (did you mean 'coteaching'?)"),
    (lambda s: s["train"].update(methods={"ce": {"lr_": 1}}), "methods: ce: unknown key 'lr_' (did you mean 'lr'?)"),
    (lambda s: s["train"].update(noise_kinds=["symetric"]), "noise_kind='symetric' is invalid (did you mean 'symmetric'?)"),
    (lambda s: s["train"].update(inits=["random", "rotaton"]), "unknown init 'rotaton' (did you mean 'rotation'?)"),
    (lambda s: s["train"].update(inits=["jigsaw"]), "init 'jigsaw' is not pretrained by this study"),
    (lambda s: s["train"].update(noise_rates=[]), "noise_rates is empty, so the grid expands to no runs"),
    (lambda s: s["train"].update(methods={}), "methods is empty, so the grid expands to no runs"),
    (lambda s: s["train"].update(seeds=[]), "seeds is empty"),
    (lambda s: s["train"].update(noise_rates=[0.5, 1.2]), "noise_rates: noise_rate=1.2 is invalid: give a number in [0, 1]"),
    (lambda s: s["train"].update(noise_rates=[-0.1]), "noise_rate=-0.1 is invalid: give a number in [0, 1]"),
    (lambda s: s["train"].update(noise_rates=[0.5, 0.5]), "noise_rates lists 0.5 twice"),
    (lambda s: s["train"].update(seeds=[1.5]), "seeds: seed=1.5 is invalid: give a whole number in [0, 4294967295]"),
    (lambda s: s["train"].pop("noise_rates"), "train: noise_rates is missing"),
    (lambda s: s["dataset"].pop("name"), "dataset: name is missing"),
    (lambda s: s.update(name="a/b"), "name 'a/b' cannot be a folder name"),
    (lambda s: s.update(train=[1]), "train must be a mapping"),
    (lambda s: s["train"].update(epochs="ten"), "train: epochs='ten' is invalid: give a whole number >= 1"),
    (lambda s: s["pretrain"].update(lr="fast"), "pretrain: lr='fast' is invalid: give a number > 0"),
    (lambda s: s["train"].update(methods={"ce": {"batch_size": 0}}), "methods: ce: batch_size=0 is invalid: give None"),
    (lambda s: s["train"].update(val_fraction=0.7), "train: val_fraction=0.7 is invalid: give a number in [0, 0.5]"),
    (lambda s: s["train"].update(seeds="0"), "seed='0' is invalid: give a whole number"),
    (lambda s: s["train"].update(seeds=[-1]), "seed=-1 is invalid: give a whole number in [0, 4294967295]"),
    (lambda s: s["dataset"].update(seed=-1), "dataset: seed=-1 is invalid: give a whole number in [0, 4294967295]"),
    (lambda s: s["train"].update(noise_rates=["0.5"]), "noise_rate='0.5' is invalid: give a number in [0, 1]"),
    (lambda s: s["train"].update(methods={"dividemix": {"options": {"warmup": 2}}}),
     "methods: dividemix: options: unknown option 'warmup'"),
    (lambda s: s["train"].update(methods={"ce": {"options": [1]}}), "methods: ce: options must be a mapping"),
    (lambda s: s["dataset"].update(resolution="32"), "dataset: resolution='32' is invalid: give None"),
    (lambda s: s["dataset"].update(stem="tiny"), "dataset: stem='tiny' is invalid: give one of auto, imagenet, small"),
    (lambda s: s["dataset"].update(name="nct_crc"), "dataset: unknown dataset 'nct_crc' (did you mean 'nct_crc_he'?)"),
    (lambda s: s["dataset"].update(options={"per_clas": 3}), "dataset: options: unknown synthetic option 'per_clas' (did you mean 'per_class'?)"),
    (lambda s: s.update(device="gpu"), "device='gpu' is invalid: give auto, cpu, cuda or cuda:N"),
    (lambda s: s.update(resources={"training": {}}), "resources: unknown key 'training' (did you mean 'train'?)"),
    (lambda s: s.update(resources={"train": {"gpus": 1}}), "resources: train: unknown key 'gpus' (did you mean"),
    (lambda s: s.update(resources={"train": {"num_gpus": 1.5}}), "resources: train: num_gpus=1.5 is invalid: give a "
                                                                 "number >= 0, a whole one above 1"),
    (lambda s: s.update(resources={"train": {"num_cpus": "2"}}), "resources: train: num_cpus='2' is invalid: give a number >= 0"),
])
def test_mistakes_are_one_line_errors_that_name_the_fix(change, message):
    study = base()
    change(study)
    text = error(study)
    assert message in text and "\n" not in text


def test_load_study_reports_a_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(NbstudyError, match="does not exist"):
        load_study(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("name: [unclosed\n")
    with pytest.raises(NbstudyError, match="not valid YAML"):
        load_study(tmp_path / "bad.yaml")


def test_expand_orders_pretraining_first_and_wires_each_init_to_its_backbone(tmp_path):
    runs = expand(check_study(base()), tmp_path / "out" / "t", tmp_path / "nb")
    pretrain = {r.params["method"]: r for r in runs if r.stage == "pretrain"}
    train = [r for r in runs if r.stage == "train"]
    assert [r.stage for r in runs[:2]] == ["pretrain", "pretrain"] and len(train) == 3 * 2 * 2
    assert pretrain["simclr"].name.startswith("pretrain/simclr-")
    assert pretrain["simclr"].notebook == (tmp_path / "nb" / "01_pretrain.ipynb").resolve()
    assert pretrain["simclr"].params["output_dir"] == str((tmp_path / "out" / "t" / pretrain["simclr"].name).resolve())
    for run in train:
        init = run.grid["init"]
        assert run.name.startswith(f"train/{init}-{run.params['method']}-symmetric-{run.params['noise_rate']:g}-s0-")
        if init == "random":
            assert run.params["init"] == "random" and run.needs is None
        else:
            assert run.params["init"] == str(pretrain[init].folder / "backbone.pt")
            assert run.needs == pretrain[init].name == run.grid["init_run"]
        assert "init_run" not in run.params and Path(run.params["output_dir"]).is_absolute()
    assert len({r.name for r in runs}) == len(runs)


def test_run_names_follow_the_parameters_not_the_device_or_output_folder(tmp_path):
    def names(study, out="a"):
        return [r.name for r in expand(check_study(study), tmp_path / out, tmp_path)]

    first = names(base())
    assert names(base(), out="b") == first
    moved = base()
    moved["device"] = "cpu"
    assert names(moved) == first
    resources = base()
    resources["resources"] = {"train": {"num_gpus": 0.5}}
    resources["train"]["checkpoint_every"] = 5  # how often a run saves its state, not what it computes
    assert names(resources) == first
    longer = base()
    longer["pretrain"]["methods"] = {"simclr": {"epochs": 9}, "rotation": None}
    changed = names(longer)
    # simclr's runs change, and so do the training runs started from it; rotation's do not
    assert {n for n in first if "simclr" not in n} == {n for n in changed if "simclr" not in n}
    assert not {n for n in first if "simclr" in n} & set(changed)


def test_data_path_is_passed_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    study = base()
    study["dataset"]["data_path"] = "data/x.npz"
    run = expand(check_study(study), tmp_path / "o", tmp_path)[0]
    assert run.params["data_path"] == str(tmp_path / "data" / "x.npz") and run.grid["data_path"] == "data/x.npz"


def test_analysis_entries_name_notebooks_with_or_without_number_prefix(tmp_path):
    notebooks = write_stubs(tmp_path / "nb", tmp_path / "log", analysis=("11_filters", "results"))
    study = check_study({**base(), "analysis": ["filters", "results"]})
    found = analysis_notebooks(study, notebooks)
    assert {k: v.name for k, v in found.items()} == {"filters": "11_filters.ipynb", "results": "results.ipynb"}
    with pytest.raises(NbstudyError, match="unknown analysis notebook 'filter' \\(did you mean 'filters'\\?\\)"):
        analysis_notebooks({**study, "analysis": ["filter"]}, notebooks)
    with pytest.raises(NbstudyError, match="unknown analysis notebook 'pretrain'"):
        analysis_notebooks({**study, "analysis": ["pretrain"]}, notebooks)


def test_analysis_key_changes_with_the_results_table(tmp_path):
    notebooks = write_stubs(tmp_path / "nb", tmp_path / "log")
    found = analysis_notebooks({"analysis": ["summary"]}, notebooks)
    before = analysis_runs(found, tmp_path / "s")[0]
    assert before.name == "analysis/summary" and before.params == {"study_dir": str((tmp_path / "s").resolve()),
                                                                   "output_dir": str(before.folder)}
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "results.csv").write_text("run\n")
    assert analysis_runs(found, tmp_path / "s")[0].key != before.key


def test_parameters_the_notebook_does_not_declare_are_errors(tmp_path):
    notebooks = write_stubs(tmp_path / "nb", tmp_path / "log",
                            pretrain={k: v for k, v in PRETRAIN.items() if k != "knn_k"})
    runs = expand(check_study(base()), tmp_path / "o", notebooks)
    for run in runs[2:]:
        check_parameters(run)
    with pytest.raises(NbstudyError, match="unknown parameter 'knn_k'"):
        check_parameters(runs[0])


def test_results_table_has_a_row_per_training_run_with_grid_and_metrics(tmp_path):
    runs = expand(check_study(base()), tmp_path / "t", tmp_path)
    train = [r for r in runs if r.stage == "train"]
    done = train[0]
    done.folder.mkdir(parents=True)
    metrics = {"params": done.params, "final": {"best_acc": 0.9, "last_acc": 0.8}}   # as a run writes it
    (done.folder / "metrics.json").write_text(json.dumps(metrics))
    statuses = {r.name: "skipped" for r in train} | {done.name: "finished", train[1].name: "failed"}
    path = write_results(tmp_path / "t", runs, statuses)
    rows = list(csv.DictReader(path.open()))
    assert [r["run"] for r in rows] == [r.name for r in train]
    assert list(rows[0])[:4] == ["run", "status", "dataset", "data_path"]
    assert rows[0]["backbone"] == "resnet18"
    for column in ("init", "init_run", "method", "method_options", "noise_kind", "noise_rate", "seed", "epochs",
                   "lr", "best_acc", "last_acc"):
        assert column in rows[0]
    assert rows[0]["status"] == "finished" and rows[0]["best_acc"] == "0.9"
    assert json.loads(rows[0]["method_options"]) == {"optimizer": "sgd", "momentum": 0.9, "weight_decay": 5e-4}
    assert rows[1]["status"] == "failed" and rows[1]["best_acc"] == ""
    assert rows[2]["status"] == "skipped"
    assert not list(tmp_path.glob("t/.results.csv*"))  # no temporary file left behind
    assert path.stat().st_mode & 0o777 == 0o644  # readable by all, like a file written in place


def test_every_run_of_a_study_draws_the_data_with_the_dataset_seed(tmp_path):
    study = base()
    study["train"]["seeds"] = [0, 1]
    study["dataset"]["seed"] = 3
    runs = expand(check_study(study), tmp_path / "o", tmp_path)
    assert {r.params["data_seed"] for r in runs} == {3} and {r.params["seed"] for r in runs} == {0, 1}
    assert "data_seed" in PRETRAIN
    study["dataset"]["seed"] = "3"
    assert "seed" in error(study)


def test_a_study_file_reaches_every_noise_kind_a_user_gives(tmp_path):
    """A transition matrix of one's own, and instance-dependent noise, from the file to each run's parameters."""
    study = base()
    study["train"].update(noise_kinds=["matrix", "instance"], noise_rates=[0.3],
                          noise_options={"matrix": [[0.8, 0.2, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0.4, 0.6]]})
    runs = [r for r in expand(check_study(study), tmp_path, NOTEBOOKS) if r.stage == "train"]
    kinds = {r.params["noise_kind"] for r in runs}
    assert kinds == {"matrix", "instance"}
    assert all(r.params["noise_options"]["matrix"][3] == [0, 0, 0.4, 0.6] for r in runs)


def test_a_backbones_axis_pretrains_and_trains_each_backbone_from_its_own_pretraining():
    plain = {r.name for r in expand(check_study(base()), "/tmp/out/t", NOTEBOOKS)}
    study = check_study({**base(), "backbones": ["resnet18", "vit_tiny"]})
    assert study["backbones"] == ["resnet18", "vit_tiny"]
    runs = expand(study, "/tmp/out/t", NOTEBOOKS)
    assert plain < {r.name for r in runs}            # resnet18's runs keep the names they had before backbones
    vit = [r for r in runs if r.grid["backbone"] == "vit_tiny"]
    assert len(vit) == len(runs) // 2 == 2 + 3 * 2 * 2
    assert all(r.name.split("/")[1].startswith("vit_tiny-") and r.params["backbone"] == "vit_tiny" for r in vit)
    assert not any("resnet18" in r.name for r in runs)
    for r in runs:
        if r.stage == "train" and r.grid["init"] != "random":   # its init is its own backbone's pretraining
            source = next(p for p in runs if p.name == r.needs)
            assert source.grid["backbone"] == r.grid["backbone"] and r.params["init"] == str(source.folder / "backbone.pt")
    assert check_study({**base(), "backbones": "resnet50"})["backbones"] == ["resnet50"]   # one value: a list of one


@pytest.mark.parametrize("value, message", [
    (["resnet18", "vit_tini"], "study: backbones: backbone='vit_tini' is invalid (did you mean 'vit_tiny'?): give one of "
                          "resnet18, resnet50, vit_tiny"),
    (["vit_tiny", "vit_tiny"], "study: backbones lists 'vit_tiny' twice: list each value once"),
    ([], "study: backbones is empty, so the grid expands to no runs: give at least one value")])
def test_a_bad_backbones_axis_is_one_line(value, message):
    assert error({**base(), "backbones": value}) == message


def test_backbone_is_not_a_stage_key():
    assert "backbone" not in stage_keys("pretrain") and "backbone" not in stage_keys("train")
    assert "unknown key 'backbone'" in error({**base(), "train": {**base()["train"], "backbone": "resnet50"}})
