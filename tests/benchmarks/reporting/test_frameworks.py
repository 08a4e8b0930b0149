"""Which framework: agreement of backends within seed noise (ANOVA) and speed ratios, from result records."""

from __future__ import annotations

import pytest

from tlbench.benchmarks.reporting.frameworks import agreement_table, anova_p, pooled_sd, speed_table
from tlbench.benchmarks.reporting.tables import build_tables, render_markdown, results_frame


def _record(
    backend: str, strategy: str, seed: int, accuracy: float, roc_auc: float, train: float | None, infer: float
) -> dict:
    return {
        "backend": backend,
        "model": "vgg16",
        "strategy": strategy,
        "dataset": "d",
        "seed": seed,
        "status": "ok",
        "accuracy": accuracy,
        "roc_auc": roc_auc,
        "train_images_per_s": train,
        "infer_images_per_s": infer,
    }


def _records() -> list[dict]:
    records = []
    # full_finetune: keras and timm within seed noise; partial_finetune: timm clearly lower; scratch: identical
    for seed, (k, t) in enumerate([(0.80, 0.81), (0.84, 0.79), (0.82, 0.83)]):
        records.append(_record("keras", "full_finetune", seed, k, 0.88 + seed / 100, 60.0 + seed, 200.0))
        records.append(_record("timm", "full_finetune", seed, t, 0.89 - seed / 100, 75.0 + seed, 250.0))
    for seed in range(3):
        records.append(_record("keras", "partial_finetune", seed, 0.90 + seed / 1000, 0.9, 90.0, 210.0))
        records.append(_record("timm", "partial_finetune", seed, 0.70 + seed / 1000, 0.9, 80.0, 205.0))
        records.append(_record("keras", "scratch", seed, 0.729, 0.5, 61.0, 220.0))
        records.append(_record("timm", "scratch", seed, 0.729, 0.5, 67.0, 200.0))
    records.append(_record("keras", "linear_probe", 0, 0.75, 0.77, None, 217.0))  # one seed only: not compared
    records.append(_record("timm", "linear_probe", 0, 0.76, 0.73, None, 281.0))
    return records


def test_anova_and_pooled_sd():
    assert anova_p([[0.729] * 3, [0.729] * 3]) == 1.0  # no spread anywhere: identical
    assert anova_p([[0.9] * 3, [0.7] * 3]) == 0.0  # no spread within, different means
    assert anova_p([[0.80, 0.84, 0.82], [0.81, 0.79, 0.83]]) == pytest.approx(0.573, abs=0.002)
    assert anova_p([[0.900, 0.901, 0.902], [0.700, 0.701, 0.702]]) < 1e-6
    assert pooled_sd([[1.0, 3.0], [2.0, 4.0, 6.0]]) == pytest.approx(((2.0 * 1) + (4.0 * 2)) ** 0.5 / 3**0.5)


def test_agreement_table_says_which_configurations_agree():
    table = agreement_table(results_frame(_records()))
    verdict = {(r["strategy"], r["metric"]): r["agree"] for r in table.to_dict("records")}
    assert verdict[("full_finetune", "accuracy")] == "yes"
    assert verdict[("partial_finetune", "accuracy")] == "NO"
    assert verdict[("scratch", "accuracy")] == "yes"
    assert not any(s == "linear_probe" for s, _ in verdict)  # a single seed per backend is not a comparison
    row = table[(table["strategy"] == "full_finetune") & (table["metric"] == "accuracy")].iloc[0]
    assert row["keras"].startswith("0.820 ± ") and row["keras"].endswith("(n=3)")
    assert row["spread of means"] == "0.010" and row["seed SD"] == "0.020"
    assert list(table.columns[:6]) == ["dataset", "model", "strategy", "metric", "keras", "timm"]


def test_speed_table_ratios_to_the_fastest_backend():
    table = speed_table(results_frame(_records()))
    row = table[table["strategy"] == "full_finetune"].iloc[0]
    assert row["keras: train images/s"] == "61 (0.80x)" and row["timm: train images/s"] == "76 (1.00x)"
    assert row["keras: inference images/s"] == "200 (0.80x)" and row["timm: inference images/s"] == "250 (1.00x)"


def test_summary_has_the_framework_section_only_when_backends_can_be_compared():
    text = render_markdown(build_tables(results_frame(_records()), None), "s", "")
    assert "## Which framework — do the backends agree?" in text and "### Which framework — speed" in text
    one_backend = [r for r in _records() if r["backend"] == "keras"]
    assert "Which framework" not in render_markdown(build_tables(results_frame(one_backend), None), "s", "")


def test_backends_training_different_networks_are_not_compared():
    """torchvision's native VGG16 (134 M parameters, MLP head) beside Keras' FCN head (14.8 M): no agreement row."""
    records = _records()
    for record in records:
        if record["backend"] == "keras" and record["strategy"] == "full_finetune":
            record.update(total_params=14_846_530, backend_facts={"head": "fcn-1x1"})
        elif record["strategy"] == "full_finetune":
            record.update(total_params=134_268_738, backend_facts={"head": "native"})
    frame = results_frame(records)
    assert "full_finetune" not in set(agreement_table(frame)["strategy"])
    assert set(agreement_table(frame)["strategy"]) == {"partial_finetune", "scratch"}
    assert "full_finetune" not in set(speed_table(frame)["strategy"])
