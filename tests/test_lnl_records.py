"""Selection metrics on a known mask, the records round trip, and parameter errors before any work."""

import json

import numpy as np
import pytest

from nbstudy.errors import NbstudyError
from nbstudy.lnl import load_records, records, train_noisy


def test_selection_metrics_on_a_known_mask():
    noisy = np.array([False, False, False, False, True, True])      # 4 right labels, 2 wrong
    selected = np.array([1, 1, 1, 0, 1, 0])                          # keeps 3 right, 1 wrong
    m = records.selection_metrics(selected, np.arange(6.0), noisy)
    assert m["precision"] == pytest.approx(3 / 4) and m["recall"] == pytest.approx(3 / 4)
    assert m["auc"] == pytest.approx(0.0)                            # score ranks wrong labels highest
    assert records.selection_metrics(selected, -np.arange(6.0), noisy)["auc"] == pytest.approx(1.0)
    score = np.array([0.9, 0.2, 0.8, 0.7, 0.5, 0.1])                 # one right label (0.2) below one wrong (0.5)
    assert records.selection_metrics(selected, score, noisy)["auc"] == pytest.approx(7 / 8)


def test_selection_metrics_leave_out_unseen_samples_and_undefined_values():
    noisy = np.array([False, True, False, True])
    selected = np.array([1.0, np.nan, 0.0, 0.0])
    m = records.selection_metrics(selected, np.array([1.0, np.nan, 0.5, 0.0]), noisy)
    assert m["precision"] == 1.0 and m["recall"] == pytest.approx(1 / 2) and m["auc"] == 1.0
    none = records.selection_metrics(np.zeros(4), np.zeros(4), np.zeros(4, bool))
    assert none["precision"] is None and none["auc"] is None and none["recall"] == 0.0


def test_summary_picks_best_last_and_validation_epochs():
    rows = [dict(epoch=e + 1, test_acc=a, val_acc=v, test_balanced_acc=a / 2, test_macro_f1=a / 3,
                 selection_precision=None, selection_recall=None, selection_auc=None)
            for e, (a, v) in enumerate([(0.5, 0.3), (0.8, 0.4), (0.6, 0.6), (0.7, 0.5)])]
    f = records.summarize(rows, "A", 0.45, 12.0)
    assert (f["best_acc"], f["best_epoch"], f["last_acc"]) == (0.8, 2, 0.7)
    assert (f["val_pick_acc"], f["val_pick_epoch"]) == (0.6, 3)
    assert f["best_balanced_acc"] == 0.4 and f["last_macro_f1"] == pytest.approx(0.7 / 3)
    assert f["reported_network"] == "A" and f["actual_noise_rate"] == 0.45


def test_records_round_trip(tmp_path):
    arrays = {"losses": np.array([[0.1, np.nan]], np.float32), "noise_mask": np.array([True, False])}
    metrics = {"final": {"best_acc": 0.5, "selection_auc": float("nan")}, "history": [{"x": np.float32(1.5)}]}
    records.write_records(tmp_path, metrics, arrays)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json", "records.npz"]  # no temp files left
    assert json.loads((tmp_path / "metrics.json").read_text())["final"]["selection_auc"] is None
    rec = load_records(tmp_path)
    assert rec["final"]["best_acc"] == 0.5 and rec["history"][0]["x"] == 1.5
    np.testing.assert_array_equal(rec["losses"], arrays["losses"])
    assert rec["noise_mask"].dtype == bool
    with pytest.raises(NbstudyError, match="no finished training run"):
        load_records(tmp_path / "nowhere")


@pytest.mark.parametrize("kwargs, message", [
    ({"lrr": 0.1}, "unknown parameter 'lrr' .did you mean 'lr'.*valid ones are dataset"),
    ({"noise_rate": 1.2}, r"noise_rate=1.2 is invalid: give a number in \[0, 1\]"),
    ({"noise_rate": "0.5"}, "noise_rate='0.5' is invalid"),
    ({"method": "mixup"}, "method='mixup' is invalid: give one of ce, coteaching, dividemix"),
    ({"noise_kind": "uniform"}, "noise_kind='uniform' is invalid"),
    ({"epochs": 0}, "epochs=0 is invalid: give a whole number >= 1"),
    ({"epochs": 2.5}, "epochs=2.5 is invalid: give a whole number"),
    ({"val_fraction": 0.9}, "val_fraction=0.9 is invalid"),
    ({"method": "ce", "method_options": {"forget_rate": 0.5}}, "unknown option of method 'ce' 'forget_rate'"),
    ({"method": "coteaching", "method_options": {"forget_rate": 1.5}}, "forget_rate=1.5 is invalid"),
    ({"method": "dividemix", "method_options": {"p_threshold": "high"}}, "p_threshold='high' is invalid"),
    ({"method": "dividemix", "method_options": {"optimizer": "rmsprop"}}, "optimizer='rmsprop' is invalid"),
    ({"init": "/no/such/backbone.pt"}, "init='/no/such/backbone.pt' is invalid: give 'random' or an existing"),
    ({"dataset_options": [1]}, r"dataset_options=\[1\] is invalid: give a mapping"),
    ({"progress": "yes"}, "progress='yes' is invalid: give True or False"),
])
def test_bad_parameters_fail_before_any_work(tmp_path, kwargs, message):
    with pytest.raises(NbstudyError, match=message):
        train_noisy(output_dir=str(tmp_path / "run"), **kwargs)
    assert not (tmp_path / "run").exists()


def test_batch_larger_than_the_data_is_an_error(tmp_path):
    with pytest.raises(NbstudyError, match="batch_size <="):
        train_noisy(dataset_options={"num_classes": 2, "per_class": 8, "test_per_class": 2}, batch_size=32,
                    output_dir=str(tmp_path))
