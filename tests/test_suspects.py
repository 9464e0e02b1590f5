"""suspects.csv: the ranking, its scores against a known wrong-label mask, and the file every training run writes."""

from pathlib import Path

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


def test_shared_top_k_by_hand():
    from nbstudy.analysis.suspects import shared_top_k

    assert shared_top_k([5, 3, 9, 1], [9, 7, 5, 3], 3).tolist() == [5, 9]   # 3 is 4th in the second list
    assert shared_top_k([5, 3], [1, 2], 2).tolist() == []


def test_on_given_labels_each_list_is_set_beside_cleanlabs(tmp_path, one_torch_thread):
    """No planted noise, so nothing to score: the suspects notebook compares each run's first k with cleanlab's
    on the same labels instead (a newcomer found no cleanlab list at all on their own labels)."""
    from nbstudy.analysis import runs
    from nbstudy.analysis import suspects as S
    from nbstudy.data import load_dataset
    from nbstudy.lnl import train_noisy

    options = {"per_class": 20, "test_per_class": 5, "num_classes": 2}
    own = load_dataset("synthetic", resolution=16, **options)
    given = own.train_labels.copy()
    given[:6] = 1 - given[:6]
    (tmp_path / "labels.csv").write_text("index,label\n" + "".join(f"{i},{y}\n" for i, y in enumerate(given)))
    for method in ("ce", "coteaching"):
        train_noisy(dataset_options={**options, "labels": str(tmp_path / "labels.csv")}, resolution=16,
                    stem="imagenet", method=method, noise_rate=0.0, epochs=1, batch_size=8, val_fraction=0.0,
                    output_dir=str(tmp_path / "study" / "train" / method), progress=False)
    study = runs.load_study(tmp_path / "study")
    beside = S.beside_cleanlab(study)
    table = beside["table"]
    assert sorted(table["ranker"]) == ["ce", "coteaching"] and set(table["init"]) == {"random"}
    assert beside["k"] == 4 and beside["n"] == 40 and beside["chance"] == 0.1
    assert table["shared_with_cleanlab"].between(0, 1).all()
    theirs = beside["cleanlab"]["random"]
    assert theirs["rank"].tolist() == list(range(1, 41)) and sorted(theirs["index"]) == list(range(40))
    assert (theirs["suspicion"].diff().dropna() <= 0).all()
    for method in ("ce", "coteaching"):   # what every list puts first is in each list's first k
        first = S._table(str(tmp_path / "study" / "train" / method))["index"][:4]
        assert set(beside["flagged_by_all"]["random"]) <= set(first) & set(theirs["index"][:4])
    assert "a random pick would share 10%" in S.beside_finding(beside)
    # a data set that is not the runs' is refused, not read with the runs' indices and labels
    from nbstudy.errors import NbstudyError

    other = load_dataset("synthetic", resolution=16, **{**options, "per_class": 25})
    for call in (lambda: S.beside_cleanlab(study, dataset=other),
                 lambda: S.top_suspects(study, "ce", "random", dataset=other)):
        with pytest.raises(NbstudyError, match=r"the data set given \(synthetic, 50 training images at 16 px\) is "
                                               r"not the run's \(synthetic, 40 at 16 px\)"):
            call()
    # and the suspects notebook shows it, as a study would run it on these runs
    import papermill

    from nbstudy.kernels import KERNEL

    notebook = Path(__file__).resolve().parents[1] / "notebooks" / "15_suspects.ipynb"
    done = papermill.execute_notebook(str(notebook), str(tmp_path / "15_suspects.ipynb"), kernel_name=KERNEL,
                                      parameters={"study_dir": str(tmp_path / "study")}, progress_bar=False)
    shown = "".join(o.get("text", "") for c in done.cells if c.cell_type == "code" for o in c.outputs)
    assert "a random pick would share 10%" in shown and "Which labels are wrong is unknown here" in shown
