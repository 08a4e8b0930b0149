"""Plots: the Pareto front, ROC/PR curves, and PNGs that exist, have the right size and depend on the data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from report_suite import make_suite
from sklearn.metrics import auc

from tlbench.benchmarks.reporting import plots
from tlbench.benchmarks.reporting.tables import results_frame
from tlbench.benchmarks.running.results import load_results


def test_pareto_front_keeps_only_non_dominated_points_sorted_by_x():
    xs = [100.0, 300.0, 800.0, 200.0, 800.0, float("nan")]
    ys = [0.95, 0.91, 0.93, 0.90, 0.80, 0.99]
    # (200, 0.90) is beaten by (300, 0.91); (300, 0.91) and (800, 0.80) by (800, 0.93); nan is ignored
    assert plots.pareto_front(xs, ys) == [0, 2]
    assert plots.pareto_front([1.0, 1.0], [0.5, 0.5]) == [0, 1]  # ties dominate neither
    assert plots.pareto_front([], []) == []


def test_roc_pr_curves_binary_and_macro_multiclass():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    p1 = np.clip(0.3 * labels + rng.random(200) * 0.7, 0, 1)
    curves = plots.roc_pr_curves(labels, np.stack([1 - p1, p1], 1))
    from sklearn.metrics import roc_auc_score

    assert auc(curves["fpr"], curves["tpr"]) == pytest.approx(roc_auc_score(labels, p1))
    labels3 = np.arange(150) % 3
    probs3 = rng.dirichlet(np.ones(3), 150) + 0.5 * np.eye(3)[labels3]
    macro = plots.roc_pr_curves(labels3, probs3 / probs3.sum(1, keepdims=True))
    assert len(macro["fpr"]) == 201 and np.all(np.diff(macro["tpr"]) >= -1e-12)
    assert macro["tpr"][-1] == pytest.approx(1.0)
    assert np.all((macro["precision"] >= 0) & (macro["precision"] <= 1))


def _draw(tmp_path: Path, name: str, shift: float) -> dict[str, Path]:
    suite = make_suite(tmp_path / name, accuracy_shift=shift)
    frame = results_frame(load_results(suite / "results.jsonl"))
    return plots.draw_suite_plots(frame, suite, suite / "plots")


@pytest.mark.slow  # draws every plot
def test_every_plot_is_drawn_sized_right_and_differs_between_inputs(tmp_path):
    first = _draw(tmp_path, "a", 0.0)
    second = _draw(tmp_path, "b", 0.05)
    assert len(first) == 6 and list(first) == list(second)
    # about 85 % of each figure's nominal size at 100 dpi (bbox "tight" trims the margins)
    expected_min = {
        "pareto_train": (540, 400),
        "pareto_inference": (540, 400),
        "roc_pr": (510, 850),
        "training_curves": (1080, 370),
        "confusion": (950, 440),
        "predictions": (1150, 380),
    }
    for title, path in first.items():
        with Image.open(path) as image:
            width, height = image.size
            pixels = np.asarray(image.convert("L"))
        assert image.format == "PNG"
        min_w, min_h = expected_min[path.stem]
        assert width >= min_w and height >= min_h, (path.name, image.size)
        assert width <= 2600 and height <= 2000, (path.name, image.size)
        assert pixels.std() > 5, f"{path.name} is blank"
        assert path.read_bytes() != second[title].read_bytes(), f"{path.name} does not depend on the data"


@pytest.mark.slow  # draws every plot
def test_plots_without_artifacts_draw_only_the_pareto_plots(tmp_path):
    suite = make_suite(tmp_path / "s", with_artifacts=False)
    frame = results_frame(load_results(suite / "results.jsonl"))
    drawn = plots.draw_suite_plots(frame, suite, suite / "plots")
    assert sorted(p.name for p in drawn.values()) == ["pareto_inference.png", "pareto_train.png"]


def test_no_ok_cell_draws_nothing(tmp_path):
    suite = make_suite(tmp_path / "s")
    frame = results_frame(load_results(suite / "results.jsonl"))
    frame["status"] = "failed"
    assert plots.draw_suite_plots(frame, suite, suite / "plots") == {}


def test_short_dataset_keeps_names_and_shortens_paths():
    assert plots.short_dataset("digits") == "digits"
    assert plots.short_dataset("medmnist:/data/x/breastmnist.npz") == "medmnist:breastmnist.npz"
    assert plots.short_dataset("csv:/data/img:/data/labels.csv") == "csv:img"
    assert plots.short_dataset("medmnist:breastmnist") == "medmnist:breastmnist"


def test_log_tick_labels_are_plain_and_short():
    from tlbench.benchmarks.reporting.plots import _plain_number

    assert [_plain_number(v) for v in (0, 200, 500, 2000, 5000, 10000, 20000, 1.5e6)] == [
        "",
        "200",
        "500",
        "2000",
        "5000",
        "10k",
        "20k",
        "1.5M",
    ]


def test_stage_sweep_plot_draws_accuracy_against_trainable_stages(tmp_path):
    rows = []
    for seed in (0, 1):
        for strategy, acc in (
            ("partial_finetune@1", 0.70),
            ("partial_finetune@2", 0.75),
            ("partial_finetune@all", 0.80),
            ("scratch", 0.5),
        ):
            rows.append(
                {
                    "backend": "timm",
                    "model": "m",
                    "strategy": strategy,
                    "dataset": "digits",
                    "seed": seed,
                    "status": "ok",
                    "accuracy": acc + 0.01 * seed,
                }
            )
    frame = pd.DataFrame(rows)
    assert plots.sweep_stages("partial_finetune@2") == 2 and plots.sweep_stages("partial_finetune") == 2
    assert plots.sweep_stages("partial_finetune@all") == "all" and plots.sweep_stages("scratch") is None
    path = plots.stage_sweep_plot(frame, tmp_path / "sweep.png")
    assert path is not None and path.stat().st_size > 10_000
    with Image.open(path) as image:
        assert image.size[0] > 500
    assert plots.stage_sweep_plot(frame[frame["strategy"] == "scratch"], tmp_path / "none.png") is None


@pytest.mark.slow  # draws every plot
def test_equal_seeds_and_a_broken_plot_never_break_the_report(tmp_path, capsys, monkeypatch):
    rows = [
        {
            "backend": "timm",
            "model": "m",
            "strategy": "knn_probe",
            "dataset": "d",
            "seed": s,
            "status": "ok",
            "accuracy": 0.8064102564102564,
            "train_s": 0.1 + 0.2,
            "infer_images_per_s": 10.0,
        }
        for s in range(3)
    ]
    frame = pd.DataFrame(rows)
    assert plots.pareto_plot(frame, "train_s", "training seconds", tmp_path / "p.png", lower_is_better=True) is not None
    monkeypatch.setattr(plots, "roc_pr_plot", lambda *a, **k: 1 / 0)
    drawn = plots.draw_suite_plots(frame, tmp_path, tmp_path / "plots")
    assert "ROC and precision-recall curves (first seed)" not in drawn and drawn
    assert "plot 'ROC and precision-recall curves (first seed)' not drawn: ZeroDivisionError" in capsys.readouterr().err
