"""suspects.csv: the ranking, its scores against a known wrong-label mask, and the file every training run writes."""

import numpy as np
import pytest

from nbstudy.lnl import load_records, suspects, train_noisy


def test_scores_on_a_known_mask_by_hand():
    wrong = np.array([True, False, True, False, False, False, False, False, False, True] * 2)   # 6 of 20 wrong
    suspicion = np.linspace(1, 0, 20)        # sample 0 most suspect, then 1, 2, ...
    s = suspects.scores(suspicion, wrong)   # k = 10% of 20 = 2: samples 0 (wrong) and 1 (right)
    assert s["suspects_k"] == 2 and s["suspects_precision_at_k"] == 0.5 and s["suspects_recall_at_k"] == 1 / 6
    # AUC by hand: pairs (wrong, right) with the wrong one more suspect, over 6 x 14 pairs
    pairs = sum(suspicion[w] > suspicion[r] for w in np.flatnonzero(wrong) for r in np.flatnonzero(~wrong))
    assert s["suspects_auc"] == pytest.approx(pairs / (6 * 14))
    assert suspects.scores(suspicion, wrong, top_fraction=0.5)["suspects_precision_at_k"] == 3 / 10  # 0, 2, 9
    none = suspects.scores(suspicion, np.zeros(20, bool))
    assert none["suspects_precision_at_k"] is None and none["suspects_auc"] is None


def test_ranking_is_most_suspect_first_and_stable_on_ties():
    assert suspects.ranking(np.array([0.1, 0.5, 0.5, 0.9])).tolist() == [3, 1, 2, 0]


def test_a_run_writes_its_suspects_ranked_with_given_and_predicted_labels(tmp_path, one_torch_thread):
    final = train_noisy(dataset_options={"num_classes": 2, "per_class": 40, "test_per_class": 10}, resolution=16,
                        stem="imagenet", noise_rate=0.4, epochs=2, batch_size=16, output_dir=str(tmp_path),
                        progress=False)
    table = suspects.read(tmp_path)
    rec = load_records(tmp_path)
    train = rec["train_indices"]
    assert list(table.columns) == list(suspects.COLUMNS) and len(table) == len(train)
    assert sorted(table["index"]) == sorted(train.tolist()) and table["rank"].tolist() == list(range(1, len(train) + 1))
    assert table["suspicion"].is_monotonic_decreasing
    assert (table["given_label"].to_numpy() == rec["noisy_labels"][table["index"]]).all()
    assert (table["wrong_label"].to_numpy() == rec["noise_mask"][table["index"]]).all()
    assert set(table["given_class"]) <= set(rec["dataset"]["class_names"]) and (table["file"] == "").all()
    # the CE suspicion is network A's final loss on the given label, as records.npz keeps it
    losses = rec["losses"][-1][table["index"]]
    assert np.allclose(table["suspicion"], losses, rtol=1e-4)
    top = suspects.scores(table["suspicion"].to_numpy(), table["wrong_label"].to_numpy(bool))
    assert final["suspects_precision_at_k"] == top["suspects_precision_at_k"]
    assert final["suspects_auc"] == pytest.approx(top["suspects_auc"])


def test_class_names_that_look_like_numbers_read_back_as_names(tmp_path):
    suspects.write(tmp_path, np.array([4, 7]), np.array([0.2, 0.9]), np.array([0, 1]), np.array([1, 1]), ["0", "1"])
    table = suspects.read(tmp_path)
    assert table["given_class"].tolist() == ["1", "0"] and table["index"].tolist() == [7, 4]
    assert table["file"].tolist() == ["", ""] and table["wrong_label"].isna().all()
