"""Issue 18's statistics: SSL init minus random init with intervals, pretraining below random init flagged,
actual noise next to nominal, and the warning for symmetric noise with few classes."""

import json
import warnings

import numpy as np
import pytest
import yaml
from analysis_fixtures import make_study

from nbstudy import runner
from nbstudy.analysis import runs, stats, tables
from nbstudy.cli import main
from nbstudy.lnl.loop import prepare
from nbstudy.lnl.params import noise_rate_warning
from nbstudy.study import Run, check_study, noise_warning


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """simclr: the fake study's 20-point lead; rotation: that lead taken away (no difference), and a probe
    below random init's."""
    return runs.load_study(make_study(tmp_path_factory.mktemp("planted"), inits=("random", "simclr", "rotation"),
                                      methods=("ce", "dividemix"), seeds=(0, 1, 2), epochs=4,
                                      probes={"simclr": (0.71, 0.52), "rotation": (0.60, 0.75)},
                                      shift={"rotation": -20}))


def test_seed_interval_is_the_paired_t_interval():
    mean, low, high = stats.seed_interval([1.0, 2.0, 3.0])
    half = 4.302653 / np.sqrt(3)   # t(0.975, 2 df) x sd 1 / sqrt(3)
    assert (mean, low, high) == pytest.approx((2.0, 2.0 - half, 2.0 + half))
    with pytest.raises(ValueError, match="at least 2 seeds"):
        stats.seed_interval([1.0])


def test_seed_interval_covers_a_planted_difference_95_times_in_100():
    rng = np.random.default_rng(0)
    hits = [low <= 5 <= high for low, high in
            (stats.seed_interval(rng.normal(5, 3, 3))[1:] for _ in range(2000))]
    assert 0.93 < np.mean(hits) < 0.97


def test_test_set_interval_covers_test_sampling_95_times_in_100():
    rng = np.random.default_rng(1)
    n, p = 156, 0.72
    hits = [low <= 0 <= high for low, high in
            (stats.test_set_interval(*(rng.binomial(n, p, 2) / n), n)[1:] for _ in range(2000))]
    assert 0.93 < np.mean(hits) < 0.98


def test_test_set_interval_finds_a_large_gap_and_not_the_issues_small_one():
    diff, low, high = stats.test_set_interval(0.85, 0.70, 1000)
    assert diff == pytest.approx(15) and 11 < low < high < 19
    diff, low, high = stats.test_set_interval(120 / 156, 111 / 156, 156)   # BreastMNIST, CE LAST at 0.8
    assert diff == pytest.approx(100 * 9 / 156) and low < 0 < high


def test_matched_interval_is_agresti_min_by_hand():
    a = np.array([1] * 60 + [1] * 25 + [0] * 10 + [0] * 5, bool)   # 60 both right, 25 only a, 10 only b, 5 neither
    b = np.array([1] * 60 + [0] * 25 + [1] * 10 + [0] * 5, bool)
    diff, low, high = stats.matched_interval(a, b)
    p_ab, p_ba = 25.5 / 102, 10.5 / 102
    half = 1.959964 * np.sqrt((p_ab + p_ba - (p_ab - p_ba) ** 2) / 102)
    assert (diff, low, high) == pytest.approx((15.0, 100 * (p_ab - p_ba - half), 100 * (p_ab - p_ba + half)))
    with pytest.raises(ValueError, match="same test images"):
        stats.matched_interval(a, b[:-1])


def test_matched_interval_agrees_with_a_paired_bootstrap_and_covers_95_times_in_100():
    rng = np.random.default_rng(2)
    n = 156
    cells = rng.choice(4, size=n, p=[0.65, 0.12, 0.08, 0.15])        # both right, only a, only b, neither
    a, b = np.isin(cells, (0, 1)), np.isin(cells, (0, 2))
    boot = [np.mean(a[i]) - np.mean(b[i]) for i in rng.integers(0, n, (4000, n))]
    _, low, high = stats.matched_interval(a, b)
    assert (low, high) == pytest.approx((100 * np.quantile(boot, 0.025), 100 * np.quantile(boot, 0.975)), abs=1.0)
    hits = []
    for _ in range(2000):   # true difference 0.12 - 0.08 = 4 points
        cells = rng.choice(4, size=n, p=[0.65, 0.12, 0.08, 0.15])
        _, low, high = stats.matched_interval(np.isin(cells, (0, 1)), np.isin(cells, (0, 2)))
        hits.append(low <= 4 <= high)
    assert 0.93 < np.mean(hits) < 0.97


def test_one_seed_last_pairs_the_recorded_answers_and_is_narrower(tmp_path):
    study = runs.load_study(make_study(tmp_path, inits=("random", "simclr", "rotation"), methods=("ce",),
                                       seeds=(0,), answers=True, shift={"rotation": -20}))
    d = stats.paired_differences(study)
    last, best = d[d.metric == "LAST"], d[d.metric == "BEST"]
    assert set(last.basis) == {"test images, paired"} and set(best.basis) == {"test images"}
    row = last[(last.init == "simclr") & (last.noise_rate == 0.8)].iloc[0]
    ssl, rnd = (stats.last_answers(runs.find_run(study, init=i, method="ce", noise_rate=0.8)["run_dir"])
                for i in ("simclr", "random"))
    assert (row["diff"], row["low"], row["high"]) == pytest.approx(stats.matched_interval(ssl, rnd))
    unpaired = stats.test_set_interval(ssl.mean(), rnd.mean(), 400)
    assert row["high"] - row["low"] < 0.6 * (unpaired[2] - unpaired[1])    # two runs right on mostly the same images
    assert (last[last.init == "simclr"].low > 0).all()                       # the planted lead is found
    assert (last[last.init == "rotation"].low < 0).all() and (last[last.init == "rotation"].high > 0).all()
    assert "LAST pairs the two runs' answers on the same images" in stats.answer(study)[0]


def test_paired_differences_find_the_planted_lead_and_cover_0_without_one(planted):
    d = stats.paired_differences(planted)
    assert len(d) == 2 * 2 * 2 * 2 and set(d.basis) == {"seeds"} and set(d.n_seeds) == {3}
    simclr, rotation = d[d.init == "simclr"], d[d.init == "rotation"]
    assert (simclr["low"] > 10).all() and (simclr["low"] < 20).all() and (simclr["high"] > 20).all()
    assert (rotation["low"] < 0).all() and (rotation["high"] > 0).all()
    row = d[(d.init == "simclr") & (d.method == "ce") & (d.noise_rate == 0.8) & (d.metric == "LAST")].iloc[0]
    ssl, rnd = (runs.select(planted, init=i, method="ce", noise_rate=0.8).sort_values("seed").last_acc.to_numpy()
                for i in ("simclr", "random"))
    assert (row["diff"], row["low"], row["high"]) == pytest.approx(stats.seed_interval(100 * (ssl - rnd)))
    assert bool(row.pretraining_helped) and stats.fell_short(d[d.init == "rotation"].pretraining_helped.iloc[0])


def test_one_seed_intervals_cover_test_sampling_only(planted):
    one = runs.Study(planted.dir, runs.select(planted, seed=0), planted.synthetic)
    d = stats.paired_differences(one)
    assert set(d.basis) == {"test images"} and set(d.n_test) == {400}
    row = d.iloc[0]
    ssl, rnd = (runs.find_run(one, init=i, method=row.method, noise_rate=row.noise_rate)[
        stats.PAPER_METRICS[row.metric]] for i in (row.init, "random"))
    assert (row["diff"], row["low"], row["high"]) == pytest.approx(stats.test_set_interval(ssl, rnd, 400))
    assert "cover test-set sampling only (400 test images)" in stats.answer(one)[0]


def test_answer_says_it_in_words_from_the_numbers_and_keeps_bad_pretraining_apart(planted):
    lines = stats.answer(planted)
    d = stats.paired_differences(planted)
    row = d[(d.init == "simclr") & (d.method == "ce") & (d.noise_rate == 0.8) & (d.metric == "LAST")].iloc[0]
    wrong = runs.select(planted, noise_rate=0.8).actual_noise_rate.mean()
    assert (f"at 0.8 ({wrong:.0%} wrong), simclr init beats random init for ce by {row['diff']:.1f} points on LAST, "
            f"95% CI [{row['low']:.1f}, {row['high']:.1f}]") in "\n".join(lines)
    rotation = [line for line in lines if "rotation and random init" in line]
    assert len(rotation) == 4 and all("no clear difference" in r and "below random init" in r for r in rotation)
    assert "clearly better in 4 of 4 comparisons" in lines[-2] and "left out" in lines[-2]
    assert lines[-1].startswith("Kept apart: rotation pretraining ended below random init on its k-NN probe "
                                "(60.0% vs 75.0%)") and "more pretraining epochs" in lines[-1]


def test_pretraining_below_random_init_is_flagged_in_the_tables(planted):
    probes = runs.pretraining_probes(planted).set_index("init")
    assert probes.loc["rotation", "helped"] is False and probes.loc["simclr", "helped"] is True
    assert planted.runs.loc[planted.runs.init == "rotation", "init_probe_acc"].eq(0.60).all()
    assert tables.pretraining(planted).data.loc["rotation", "pretraining"] == "ended below random init"
    index = tables.differences(planted).diff.index.tolist()
    assert ("ce", "rotation (probe below random)") in index and ("ce", "simclr") in index
    assert stats.probe_warnings(planted) == [stats.probe_warning("rotation", 0.60, 0.75)]


def test_probe_read_from_pretrain_metrics_when_the_checkpoint_did_not_record_it(tmp_path):
    backbone = tmp_path / "pretrain" / "simclr-1" / "backbone.pt"
    backbone.parent.mkdir(parents=True)
    (backbone.parent / "pretrain_metrics.json").write_text(json.dumps({"probe_acc": 0.5,
                                                                       "random_init_probe_acc": 0.6}))
    assert runs.init_probes({"params": {"init": str(backbone)}, "init": {"method": "simclr"}}) == \
        {"init_probe_acc": 0.5, "random_probe_acc": 0.6}
    assert runs.init_probes({"params": {"init": "random"}}) == {"init_probe_acc": None, "random_probe_acc": None}


def test_study_summary_warns_of_pretraining_below_random_init(tmp_path):
    def pretrain_run(name, probe, random):
        folder = tmp_path / name
        folder.mkdir(parents=True)
        (folder / "pretrain_metrics.json").write_text(json.dumps({"method": name.split("/")[1].split("-")[0],
                                                                  "probe_acc": probe,
                                                                  "random_init_probe_acc": random}))
        return Run("pretrain", name, folder, folder / "01_pretrain.ipynb", {}, {}, "key")

    done = [pretrain_run("pretrain/simclr-1a2b3c4d", 0.60, 0.75), pretrain_run("pretrain/rotation-1a2b3c4d", 0.8, 0.75)]
    lines = runner.pretraining_warnings(done, {r.name: "finished" for r in done})
    assert lines == [stats.probe_warning("simclr (pretrain/simclr-1a2b3c4d)", 0.60, 0.75)]
    assert "ended below random init on its k-NN probe (60.0% vs 75.0%)" in lines[0] and "small stem" in lines[0]


def test_results_tables_label_each_rate_with_the_fraction_actually_wrong(planted):
    html = tables.results_table(planted).style().to_html()
    diffs = tables.differences(planted).style().to_html()
    for rate in (0.4, 0.8):
        wrong = runs.select(planted, noise_rate=rate).actual_noise_rate.mean()
        assert f">{rate:g}<" in html and f">{wrong:.0%} wrong<" in html and f">{wrong:.0%} wrong<" in diffs
    assert tables.actual_wrong(planted.runs) == pytest.approx(
        planted.runs.groupby("noise_rate").actual_noise_rate.mean().to_dict())
    t = tables.ResultsTable(tables.results_table(planted).mean, tables.results_table(planted).std, "t",
                            {0.4: 0.2, 0.8: 0.37})
    assert ">37% wrong<" in t.style().to_html() and ">20% wrong<" in t.style().to_html()


def test_symmetric_noise_with_two_classes_says_which_kind_gives_the_rate():
    line = noise_rate_warning("symmetric", [0.8], 2)
    assert "0.8 -> about 40%" in line and "symmetric_exclusive makes the rate the fraction wrong" in line
    assert "\n" not in line and "unlearnable from 0.5" in line
    assert "0.8 -> about 53%" in noise_rate_warning("symmetric", [0.2, 0.8], 3)
    assert noise_rate_warning("symmetric", [0.8], 9) is None   # 71% wrong: near enough
    assert noise_rate_warning("symmetric", [0.1], 2) is None   # 5 points off
    assert noise_rate_warning("symmetric_exclusive", [0.4], 2) is None


def _study(tmp_path, classes, rates, kind="symmetric"):
    return {"name": "s", "dataset": {"name": "synthetic", "resolution": 32,
                                     "options": {"num_classes": classes, "per_class": 10, "test_per_class": 4}},
            "train": {"inits": ["random"], "methods": ["ce"], "noise_rates": rates, "noise_kinds": [kind],
                      "epochs": 1, "batch_size": 4}}


def test_study_check_warns_of_symmetric_noise_with_two_classes(tmp_path, capsys):
    assert noise_warning(check_study(_study(tmp_path, 2, [0.4, 0.8])), 2).startswith("s: symmetric noise with 2")
    assert noise_warning(check_study(_study(tmp_path, 2, [0.8], "symmetric_exclusive")), 2) is None
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(_study(tmp_path, 2, [0.8])))
    assert main(["study", str(path), "--dry-run", "--out", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err
    assert err.count("nbstudy: warning: s: symmetric noise with 2 classes") == 1 and "0.8 -> about 40%" in err


def test_train_noisy_warns_of_symmetric_noise_with_two_classes(tmp_path):
    options = {"num_classes": 2, "per_class": 10, "test_per_class": 4}
    with pytest.warns(UserWarning, match=r"0.8 -> about 40%.*symmetric_exclusive"):
        prepare(dataset="synthetic", dataset_options=options, noise_rate=0.8, batch_size=4, output_dir=str(tmp_path))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        prepare(dataset="synthetic", dataset_options={**options, "num_classes": 9}, noise_rate=0.8, batch_size=4,
                output_dir=str(tmp_path))


def test_a_probe_equal_to_random_inits_is_not_below_it(tmp_path):
    """BreastMNIST's rotation init (10 epochs) probed exactly as random init did, 121 of 156: it did not help, but
    it did not end below random init, so it stays in the answer, with no warning."""
    study = runs.load_study(make_study(tmp_path, inits=("random", "rotation"), seeds=(0,), epochs=2,
                                       probes={"rotation": (121 / 156, 121 / 156)}))
    assert runs.pretraining_probes(study).helped.tolist() == [True] and stats.probe_warnings(study) == []
    assert tables.pretraining(study).data.loc["rotation", "pretraining"] == "no better than random init"
    assert ("ce", "rotation") in tables.differences(study).diff.index
    assert "Kept apart" not in "\n".join(stats.answer(study))


def test_each_backbone_is_paired_with_its_own_random_init(tmp_path):
    """SimCLR init ahead of random init on resnet18 (the fake study's pretrained lead) and planted 40 points lower
    on vit_tiny: two rows, two verdicts, one table."""
    root = tmp_path / "study" / "train"
    root.mkdir(parents=True)
    for backbone, shift in (("resnet18", 0.0), ("vit_tiny", -40.0)):
        made = make_study(tmp_path / backbone, inits=("random", "simclr"), methods=("ce",), rates=(0.8,),
                          seeds=(0, 1, 2), epochs=3, shift={"simclr": shift})
        for run in (made / "train").iterdir():
            metrics = json.loads((run / "metrics.json").read_text())
            metrics["params"]["backbone"] = backbone
            (run / "metrics.json").write_text(json.dumps(metrics))
            run.rename(root / f"{backbone}-{run.name}")
    study = runs.load_study(tmp_path / "study")
    last = stats.paired_differences(study).query("metric == 'LAST'").set_index("backbone")
    assert last.loc["vit_tiny", "diff"] == pytest.approx(last.loc["resnet18", "diff"] - 40, abs=2)
    assert stats.verdict(last.loc["resnet18"]) == "better" and stats.verdict(last.loc["vit_tiny"]) == "worse"
    said = "\n".join(stats.answer(study))
    assert "resnet18 simclr init beats random init for ce" in said and "vit_tiny simclr init loses to random" in said
    table = tables.differences(study)
    assert list(table.diff.index.get_level_values("init")) == ["resnet18 simclr", "vit_tiny simclr"]
