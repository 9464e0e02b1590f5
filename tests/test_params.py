"""One checker set for both stages, the study file and the CLI: the same value gets the same answer
everywhere, and nothing that passes a study's --dry-run fails a run for a parameter reason."""

import math

import numpy as np
import pytest

from nbstudy import lnl, pretrain
from nbstudy.cli import main
from nbstudy.errors import NbstudyError
from nbstudy.params import Param, real, resolve, whole
from nbstudy.study import check_study

STAGES = {"pretrain": pretrain.resolve, "train": lambda **kw: lnl.resolve(kw)}


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("name, value, clean", [
    ("epochs", np.int64(3), 3), ("epochs", np.int32(3), 3), ("lr", np.float32(0.25), 0.25),
    ("lr", np.float64(1e-3), 1e-3), ("lr", 1, 1.0), ("seed", np.uint8(4), 4)])
def test_numpy_numbers_are_numbers_in_both_stages(stage, name, value, clean):
    p = STAGES[stage](**{name: value})
    assert p[name] == clean and type(p[name]) is type(clean)


def test_noise_rate_takes_numpy_floats():
    assert lnl.resolve(noise_rate=np.float32(0.2))["noise_rate"] == pytest.approx(0.2)


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("name, value, want", [
    ("lr", True, "a number > 0"), ("epochs", True, "a whole number >= 1"), ("epochs", np.bool_(True), "whole"),
    ("lr", math.nan, "a number > 0"), ("lr", math.inf, "a number > 0"), ("lr", np.float32("nan"), "a number"),
    ("epochs", 2.0, "a whole number"), ("epochs", "3", "a whole number"), ("epochs", 0, ">= 1"),
    ("seed", -1, "in [0, 4294967295]"), ("seed", 2**64, "in [0, 4294967295]"), ("device", "gpu", "auto, cpu, cuda or cuda:N"), ("progress", 1, "True or False"),
    ("dataset_options", None, "a mapping"), ("precision", "BF16", "(did you mean 'bf16'?): give one of auto, fp32"),
    ("stem", "ImageNet", "(did you mean 'imagenet'?)"), ("dataset", "Synthetic", "(did you mean 'synthetic'?)")])
def test_bad_values_are_one_line_errors_naming_key_value_and_fix(stage, name, value, want):
    with pytest.raises(NbstudyError) as e:
        STAGES[stage](**{name: value})
    text = str(e.value)
    assert text.startswith(f"{name}={value!r} is invalid") and want in text and "\n" not in text


@pytest.mark.parametrize("call, message", [
    (lambda: pretrain.resolve(method="simclr", method_options={"temperature": math.inf}),
     "method_options.temperature=inf is invalid: give a number > 0"),
    (lambda: pretrain.resolve(method="simclr", method_options={"temperature": True}), "temperature=True is invalid"),
    (lambda: pretrain.resolve(method="simclr", method_options={"view_options": {"blurp": 1}}),
     "unknown view option 'blurp' (did you mean 'blur_p'?)"),
    (lambda: pretrain.resolve(method="jigsaw", method_options={"crop": 0}), "crop=0 is invalid"),
    (lambda: pretrain.resolve(warmup_epochs=20, epochs=20), "warmup_epochs=20.0 is invalid: give fewer than epochs"),
    (lambda: lnl.resolve(val_fraction=0.7), "val_fraction=0.7 is invalid: give a number in [0, 0.5]"),
    (lambda: lnl.resolve(noise_rate=1.5), "noise_rate=1.5 is invalid: give a number in [0, 1]"),
    (lambda: lnl.resolve(noise_kind="asymmetric"), "noise_kind='asymmetric' needs noise_options={'mapping': ...}"),
    (lambda: lnl.resolve(noise_kind="matrix"), "noise_kind='matrix' needs noise_options={'matrix': ...}"),
    (lambda: lnl.resolve(noise_kind="matrix", noise_options={"matrix": [[1, 0], [0.5, 0.4]]}), "row 1 sums to 0.9"),
    (lambda: lnl.resolve(noise_options={"mappping": [1, 0]}), "unknown noise option 'mappping' (did you mean"),
    (lambda: lnl.resolve(method="coteaching", method_options={"num_gradual": 2.5}), "num_gradual=2.5 is invalid"),
    (lambda: lnl.resolve(method="dividemix", method_options={"confidence_penalty": "yes"}),
     "confidence_penalty='yes' is invalid: give None (on for non-symmetric noise) or True or False"),
])
def test_cross_and_option_checks(call, message):
    with pytest.raises(NbstudyError) as e:
        call()
    assert message in str(e.value) and "\n" not in str(e.value)


def test_resolving_twice_changes_nothing():
    for p in (pretrain.resolve(method="jigsaw"), lnl.resolve(method="dividemix", noise_rate=0.95)):
        again = (pretrain.resolve if "knn_k" in p else lnl.resolve)(p)
        assert again == p
    assert lnl.resolve(method="dividemix", noise_rate=0.95)["method_options"]["loss_window"] == 5


def test_checks_on_a_table_of_ones_own():
    table = {"k": Param(5, whole(1, 10), "neighbours"), "t": Param(0.5, real(0, low_open=True), "temperature")}
    assert resolve(table, {"k": np.int16(3)}) == {"k": 3, "t": 0.5}
    for bad in ({"k": 11}, {"t": 0}, {"t": -math.inf}):
        with pytest.raises(NbstudyError):
            resolve(table, bad)


def _study(**train):
    return {"name": "t", "dataset": {"name": "synthetic", "resolution": 16},
            "train": {"methods": ["ce"], "noise_rates": [0.4], "epochs": 1, **train}}


@pytest.mark.parametrize("train, message", [
    ({"val_fraction": 0.7}, "train: val_fraction=0.7 is invalid: give a number in [0, 0.5]"),
    ({"noise_kinds": ["asymmetric"]}, "train: methods: ce (asymmetric 0.4): noise_kind='asymmetric' needs noise_options"),
    ({"noise_kinds": ["matrix"]}, "train: methods: ce (matrix 0.4): noise_kind='matrix' needs noise_options"),
    ({"lr": True}, "train: lr=True is invalid"),
    ({"methods": {"coteaching": {"options": {"forget_rate": math.nan}}}}, "method_options.forget_rate=nan is invalid"),
    ({"methods": ["CE"]}, "train: methods: unknown method 'CE' (did you mean 'ce'?)"),   # a name's case aside
    ({"Epochs": 2}, "train: unknown key 'Epochs' (did you mean 'epochs'?)"),
])
def test_the_study_check_runs_every_runs_own_checks_at_dry_run(tmp_path, capsys, train, message):
    import yaml

    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(_study(**train)))
    assert main(["study", str(path), "--dry-run", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_noise_kinds_that_need_a_mapping_or_matrix_get_it_from_the_study_file():
    study = check_study(_study(noise_kinds=["asymmetric", "matrix", "symmetric"],
                               noise_options={"mapping": [1, 0, 3, 2], "matrix": np.eye(4).tolist()}))
    assert study["train"]["methods"]["ce"]["noise_options"]["mapping"] == [1, 0, 3, 2]


@pytest.mark.parametrize("options, message", [
    ({"mapping": [0.5, 1.7, 2.2]}, "noise_options.mapping[0]=0.5 is invalid: give a whole number"),
    ({"mapping": [True, False, True]}, "noise_options.mapping[0]=True is invalid"),
    ({"mapping": "abc"}, "noise_options.mapping='abc' is invalid: give a list"),
    ({"mapping": [math.nan, 0, 1]}, "noise_options.mapping[0]=nan is invalid"),
    ({"mapping": [1, 0]}, "noise_options.mapping has 2 entries for 3 classes"),
    ({"mapping": [1, 0, 3]}, "noise_options.mapping[2]=3 is invalid: give a whole number in [0, 2]"),
])
def test_an_asymmetric_mapping_is_checked_entry_by_entry(options, message):
    with pytest.raises(NbstudyError) as e:
        lnl.resolve(noise_kind="asymmetric", noise_options=options, dataset_options={"num_classes": 3})
    assert message in str(e.value) and "\n" not in str(e.value)


def test_noise_options_and_option_mappings_come_back_as_plain_python():
    p = lnl.resolve(noise_kind="matrix", noise_options={"matrix": np.full((3, 3), 1 / 3)},
                    dataset_options={"per_class": np.int64(20)})
    assert p["noise_options"]["matrix"] == [[1 / 3] * 3] * 3 and type(p["dataset_options"]["per_class"]) is int
    assert lnl.resolve(noise_kind="asymmetric", noise_options={"mapping": np.array([1, 0, 2])})["noise_options"] \
        == {"mapping": [1, 0, 2]}
    from nbstudy.resume import run_key

    assert run_key(lnl.resolve(dataset_options={"per_class": np.int64(20)}), ()) == \
        run_key(lnl.resolve(dataset_options={"per_class": 20}), ())


@pytest.mark.parametrize("call, message", [
    (lambda: pretrain.resolve("simclr"), "parameters must be a dict of names to values, not 'simclr'"),
    (lambda: lnl.resolve(lr=10**400), "lr=1000000"),
    (lambda: lnl.resolve(noise_options=np.eye(3)), "noise_options=array([[1., 0., 0.], [0., 1., 0.]"),
    (lambda: lnl.resolve(noise_kind="matrix", noise_options={"matrix": 1.0}), "transition matrix 1.0 is not a K x K"),
    (lambda: pretrain.resolve(method_options={"view_options": {"blur_p": "x"}}),
     "method_options.view_options.blur_p='x' is invalid: give a number in [0, 1]"),
    (lambda: pretrain.resolve(method_options={"view_options": {"crop_scale": 5}}), "crop_scale=5 is invalid"),
    (lambda: pretrain.resolve(method_options={"view_options": {"jitter": [1, 2]}}), "give 4 numbers >= 0"),
    (lambda: pretrain.resolve(method_options={"view_options": {"blur_p": math.nan}}), "blur_p=nan is invalid"),
    (lambda: pretrain.resolve(method_options={"view_options": {1: 2}}), "unknown view option 1"),
    (lambda: pretrain.resolve(method_options={"view_options": {"crop_scale": [0.5, 0.2]}}), "low <= high"),
])
def test_odd_values_get_one_line_not_a_traceback(call, message):
    with pytest.raises(NbstudyError) as e:
        call()
    assert message in str(e.value) and "\n" not in str(e.value)


def test_view_option_checks_cover_every_field_of_the_view_recipe():
    from dataclasses import fields

    from nbstudy.augment import ViewProfile
    from nbstudy.pretrain.simclr import SimCLR

    assert set(SimCLR.view_checks) == {f.name for f in fields(ViewProfile)}


@pytest.mark.parametrize("edit, message", [
    (lambda s: s["train"].update(methods={"ce": {"options": []}}), "methods: ce: options must be a mapping"),
    (lambda s: s["train"].update(methods={"ce": {"options": False}}), "methods: ce: options must be a mapping"),
    (lambda s: s["train"].update(seeds=[1, True]), "seeds: seed=True is invalid"),
])
def test_study_sections_are_checked_before_they_are_used(edit, message):
    study = _study()
    edit(study)
    with pytest.raises(NbstudyError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_study(study)


def test_a_pretraining_seed_is_a_stage_parameter_in_a_study_file():
    study = _study()
    study["pretrain"] = {"methods": {"simclr": {"seed": 3}, "rotation": None}, "seed": 1}
    methods = check_study(study)["pretrain"]["methods"]
    assert methods["simclr"]["seed"] == 3 and methods["rotation"]["seed"] == 1
