"""Label-efficiency curves and the crossover, on synthetic records (numbers asserted)."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from tlbench.benchmarks.reporting import label_efficiency as le
from tlbench.benchmarks.reporting.tables import results_frame

PAIRS = [(0, 0), (0, 1), (1, 0), (1, 1)]  # (draw, seed)
T3 = 3.182446305284263  # t(0.975, 3)
#: accuracy per (strategy, size), one value per (draw, seed) of PAIRS
ACCURACY = {
    ("linear_probe", "5"): [0.70] * 4,
    ("logreg_probe", "5"): [0.65] * 4,
    ("full_finetune", "5"): [0.60, 0.62, 0.58, 0.60],
    ("linear_probe", "10"): [0.75] * 4,
    ("logreg_probe", "10"): [0.70] * 4,
    ("full_finetune", "10"): [0.70, 0.80, 0.74, 0.80],
    ("linear_probe", "25"): [0.78] * 4,
    ("logreg_probe", "25"): [0.70] * 4,
    ("full_finetune", "25"): [0.88, 0.90, 0.86, 0.88],
}


def _records(accuracy=ACCURACY, extra=(), roc_auc=None):
    """One record per (strategy, size) of ``accuracy`` and (draw, seed) of PAIRS; ROC-AUC is accuracy + 0.1 unless
    ``roc_auc`` gives it per (strategy, size) (``None`` values: no ROC-AUC recorded)."""
    records = []
    for (strategy, size), values in accuracy.items():
        aucs = roc_auc[strategy, size] if roc_auc is not None else [v + 0.1 for v in values]
        for (draw, seed), value, auc in zip(PAIRS, values, aucs, strict=True):
            records.append(
                {
                    "backend": "timm",
                    "model": "m",
                    "strategy": strategy,
                    "dataset": "d",
                    "seed": seed,
                    "train_size": size,
                    "draw": draw,
                    "train_images": 2 * int(size),
                    "status": "ok",
                    "accuracy": value,
                    "roc_auc": auc,
                    "train_s": float(size) * (10 if strategy == "full_finetune" else 1),
                }
            )
    return results_frame(records + list(extra))


def test_curve_points_mean_and_t_interval_over_draws_and_seeds():
    points = le.curve_points(_records())
    assert len(points) == 9
    assert list(points["images"].unique()) == [10.0, 20.0, 50.0]  # sorted by labelled images
    row = points[(points["strategy"] == "full_finetune") & (points["train_size"] == "25")].iloc[0]
    half = T3 * pd.Series([0.88, 0.90, 0.86, 0.88]).std() / 2
    assert row["n"] == 4 and bool(row["fine_tuning"])
    assert row["accuracy"] == pytest.approx(0.88)
    assert (row["accuracy_low"], row["accuracy_high"]) == pytest.approx((0.88 - half, 0.88 + half))
    assert row["roc_auc"] == pytest.approx(0.98) and row["train_s"] == pytest.approx(250.0)
    probe = points[(points["strategy"] == "linear_probe") & (points["train_size"] == "5")].iloc[0]
    assert not probe["fine_tuning"] and probe["accuracy_low"] == pytest.approx(0.70)  # no spread
    table = le.curve_table(points)
    assert table.iloc[0]["train size"] == "5/class" and table.iloc[0]["images"] == "10"


def test_crossover_is_paired_and_needs_every_larger_size():
    (found,) = le.crossovers(_records())
    assert [g.train_size for g in found.gaps] == ["5", "10", "25"]
    assert [(g.fine_tuning, g.probe) for g in found.gaps] == [("full_finetune", "linear_probe")] * 3
    five, ten, big = found.gaps
    assert five.mean == pytest.approx(-0.10) and ten.mean == pytest.approx(0.01) and big.n == 4
    half = T3 * pd.Series([0.10, 0.12, 0.08, 0.10]).std() / 2
    assert (big.mean, big.low, big.high) == pytest.approx((0.10, 0.10 - half, 0.10 + half))
    assert ten.low < 0 < ten.high
    assert (found.at, found.resolved_at) == ("10", "25")
    assert found.metric == "accuracy"
    assert "overtakes the probes (linear_probe) in accuracy from 10/class (+0.010" in found.sentence()
    assert "resolved (interval above 0) from 25/class" in found.sentence()
    table = le.crossover_table([found])
    assert list(table["from"]) == ["10/class"] * 3 and table.iloc[2]["difference"].startswith("+0.100 [")
    assert set(table["metric"]) == {"accuracy"}


def test_no_crossover_when_the_probe_leads_at_the_largest_size():
    behind = {**ACCURACY, ("full_finetune", "25"): [0.70, 0.72, 0.74, 0.76]}
    (found,) = le.crossovers(_records(behind))
    assert found.gaps[-1].mean == pytest.approx(-0.05)
    assert found.at is None and found.resolved_at is None
    assert found.sentence().startswith("no crossover in accuracy within the sizes run")


def test_the_roc_auc_crossover_is_its_own_ranking_and_pairing():
    # ROC-AUC ranks the probes the other way round (logreg ahead) and fine-tuning stays behind it at 25/class
    auc = {key: [v + 0.1 for v in values] for key, values in ACCURACY.items()}
    auc["logreg_probe", "25"] = [0.95, 0.96, 0.97, 0.96]
    found = le.all_crossovers(_records(roc_auc=auc))
    assert [c.metric for c in found] == ["accuracy", "roc_auc"]
    accuracy, roc = found
    assert accuracy.at == "10" and accuracy.gaps[-1].probe == "linear_probe"
    assert roc.gaps[-1].probe == "logreg_probe"
    assert roc.gaps[-1].mean == pytest.approx(0.98 - 0.96)  # full_finetune 0.88 + 0.1 against logreg's mean 0.96
    roc_behind = {**auc, ("logreg_probe", "25"): [0.99] * 4}
    roc = le.crossovers(_records(roc_auc=roc_behind), "roc_auc")[0]
    assert roc.at is None and roc.sentence().startswith("no crossover in ROC-AUC within the sizes run")
    table = le.crossover_table(le.all_crossovers(_records(roc_auc=roc_behind)))
    assert list(table["metric"]) == ["accuracy"] * 3 + ["ROC-AUC"] * 3
    assert list(table["from"]) == ["10/class"] * 3 + ["no crossover"] * 3


def test_no_roc_auc_crossover_without_roc_auc_and_a_wrong_metric_is_named():
    none = {key: [None] * 4 for key in ACCURACY}
    assert [c.metric for c in le.all_crossovers(_records(roc_auc=none))] == ["accuracy"]
    with pytest.raises(ValueError, match="got 'f1'"):
        le.crossovers(_records(), "f1")


def test_whole_train_frame_keeps_subsets_out_of_the_other_tables():
    whole = {"backend": "timm", "model": "m", "strategy": "linear_probe", "dataset": "d", "seed": 0, "status": "ok"}
    frame = _records(extra=[whole])
    assert len(le.whole_train_frame(frame)) == 1
    only_subsets = _records()
    largest = le.whole_train_frame(only_subsets)  # no whole-split cell: the largest size's first draw
    assert set(largest["train_size"]) == {"25"} and set(largest["draw"]) == {0} and len(largest) == 6
    assert le.sections(frame)[0].title.startswith("Label efficiency")
    assert le.sections(results_frame([whole])) == []


def test_plot_draws_one_row_per_dataset_and_backbone(tmp_path):
    path = le.label_efficiency_plot(_records(), tmp_path / "le.png")
    assert path is not None and path.stat().st_size > 1000
    assert le.label_efficiency_plot(results_frame([]), tmp_path / "none.png") is None
    assert math.isnan(le._interval(pd.Series([None]))[0])
