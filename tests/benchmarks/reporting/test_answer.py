"""The answer, from constructed suites whose right answer is known: a configuration right on every image, one
that differs from it on a single image, two identical ones; backends that train different networks; old records
without predictions; three suites ranked across datasets; the command line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from tlbench.benchmarks.cli import main
from tlbench.benchmarks.reporting.options import ReportOptions
from tlbench.benchmarks.reporting.report import write_report
from tlbench.benchmarks.running.metrics import classification_metrics
from tlbench.benchmarks.running.results import append_result, cell_id

#: in-process cells here are not watched (a process per timed part): what is tested is the suite, not the watch
pytestmark = pytest.mark.usefixtures("quick_watch")

N = 100
LABELS = np.arange(N) % 2  # 50 NORMAL (0), 50 PNEUMONIA (1)


def scores_right_on(right: np.ndarray, confidence: float = 0.9) -> np.ndarray:
    """P(PNEUMONIA) that is on the right side of 0.5 exactly where ``right`` is True."""
    toward_truth = np.where(LABELS == 1, confidence, 1 - confidence)
    return np.where(right, toward_truth, 1 - toward_truth)


def as_probs(scores: np.ndarray) -> np.ndarray:
    return np.stack([1 - scores, scores], axis=1)


def write_cell(
    root: Path,
    strategy: str,
    scores: np.ndarray,
    *,
    seeds: tuple[int, ...] = (0, 1),
    backend: str = "timm",
    model: str = "m",
    dataset: str = "folder:xray",
    train_s: float = 10.0,
    infer: float = 100.0,
    total_params: int = 1000,
    head: str = "native",
    val: tuple[np.ndarray, np.ndarray] | None = None,
    predictions: bool = True,
) -> None:
    """One configuration over ``seeds``, each seed with the same stored test predictions."""
    probs = as_probs(scores)
    for seed in seeds:
        record = {
            "backend": backend,
            "model": model,
            "strategy": strategy,
            "dataset": dataset,
            "seed": seed,
            "status": "ok",
            "pretrained": "imagenet:x",
            "total_params": total_params,
            "backend_facts": {"head": head},
            "num_classes": 2,
            "class_names": ["NORMAL", "PNEUMONIA"],
            "train_s": train_s,
            "infer_images_per_s": infer,
            **classification_metrics(LABELS, probs),
        }
        append_result(root / "results.jsonl", record)
        if not predictions:
            continue
        directory = root / "cells" / cell_id(backend, model, strategy, dataset, seed)
        directory.mkdir(parents=True, exist_ok=True)
        arrays = {
            "probs": probs.astype(np.float32),
            "labels": LABELS,
            "class_names": np.array(["NORMAL", "PNEUMONIA"]),
            "sample_indices": np.zeros(0, int),
            "sample_images": np.zeros((0, 4, 4, 3), np.uint8),
        }
        if val is not None:
            arrays.update(val_probs=as_probs(val[1]).astype(np.float32), val_labels=val[0])
        np.savez_compressed(directory / "predictions.npz", **arrays)


def known_suite(root: Path) -> Path:
    """``perfect`` is right on every image; ``near`` misses one; ``noisy`` and ``twin`` are identical (70 % right)."""
    everywhere = np.ones(N, dtype=bool)
    one_miss = everywhere.copy()
    one_miss[7] = False
    seventy = np.arange(N) < 70
    val_labels = np.array([0, 0, 0, 1, 1, 1])
    val = (val_labels, np.array([0.1, 0.2, 0.3, 0.5, 0.8, 0.9]))  # Youden: threshold 0.5 (sensitivity 1, spec. 1)
    write_cell(root, "perfect", scores_right_on(everywhere), train_s=50.0, infer=100.0, val=val)
    write_cell(root, "near", scores_right_on(one_miss), train_s=5.0, infer=400.0, val=val)
    write_cell(root, "noisy", scores_right_on(seventy, 0.7), train_s=1.0, infer=900.0, val=val)
    write_cell(root, "twin", scores_right_on(seventy, 0.7), train_s=1.0, infer=900.0, val=val)
    return root


def test_the_answer_names_the_best_the_tied_the_worse_and_the_cheapest(tmp_path):
    suite = known_suite(tmp_path / "suite")
    paths = write_report(suite, plots=False, options=ReportOptions(select_by="accuracy"))
    answer = paths["answer"].read_text()
    assert "- Best by accuracy (mean of 2 seed(s)): **perfect**, 1.000 ± 0.000 (n=2)." in answer
    assert "Statistically tied with it (McNemar test on the same test images, Holm-adjusted p ≥ 0.05): near." in answer
    assert "- Worse: noisy, twin." in answer
    assert (
        "Cheapest of the tied set: fewest training seconds: **near** (5.0 s; the best: 50.0 s); "
        "fastest inference: **near** (400 images/s; the best: 100 images/s)." in answer
    )
    table = pd.read_csv(paths["md"].parent / "clinical.csv")
    assert len(table) == 8  # one row per cell
    rows = {r["configuration"]: r for r in _markdown_table(answer, "| dataset").to_dict("records")}
    assert rows["perfect"]["verdict"] == "best" and rows["near"]["verdict"] == "tied"
    # near: one image A gets right and B does not, on both (identical) seeds: exact binomial(1, 1/2) -> p = 1
    assert rows["near"]["Δ vs best [95% CI]"].startswith("-0.010 [") and rows["near"]["p (Holm)"] == "1.000"
    # noisy: 30 discordant images, all for the best: 2 * 0.5^30, Holm x3 then the running maximum
    assert rows["noisy"]["p (Holm)"] == rows["twin"]["p (Holm)"] == "<0.0001"
    assert rows["noisy"]["verdict"] == rows["twin"]["verdict"] == "worse"
    assert rows["noisy"]["Δ vs best [95% CI]"].startswith("-0.300 [")
    md = paths["md"].read_text()
    assert md.startswith("# tlbench suite `suite`\n\n## The answer\n")  # the answer opens the summary
    assert md.index("## The answer") < md.index("## Paired comparisons") < md.index("## Accuracy and training cost")


def test_two_identical_configurations_differ_by_exactly_nothing(tmp_path):
    suite = known_suite(tmp_path / "suite")
    paths = write_report(suite, plots=False, options=ReportOptions(select_by="accuracy"))
    pairwise = _markdown_table(paths["md"].read_text(), "| dataset ", after="## Paired comparisons")
    twins = pairwise[(pairwise["A"] == "noisy") & (pairwise["B"] == "twin")].iloc[0]
    assert twins["Δ accuracy [95% CI]"] == "+0.000 [+0.000, +0.000]"
    assert twins["p McNemar (Holm)"] == "1.000" and twins["p DeLong (Holm)"] == "1.000"
    assert twins["per seed: Δ accuracy (p)"] == "s0 +0.000 (p 1.000), s1 +0.000 (p 1.000)"
    best = pairwise[(pairwise["A"] == "perfect") & (pairwise["B"] == "noisy")].iloc[0]
    # all pairs of 4 strategies: a family of 6, the two 30-image McNemar p-values rank first: 6 x 2 x 0.5^30
    assert best["p McNemar (Holm)"] == "<0.0001" and best["Δ accuracy [95% CI]"].startswith("+0.300 [+0.")


def test_the_operating_point_and_calibration_of_the_best(tmp_path):
    suite = known_suite(tmp_path / "suite")
    paths = write_report(suite, plots=False, options=ReportOptions(select_by="accuracy"))
    answer = paths["answer"].read_text()
    # perfect is 90 % confident and always right: ECE 0.1; threshold 0.5 from validation: all test calls right
    assert (
        "Calibration of the best: ECE 0.100 ± 0.000 (n=2); at the threshold chosen on validation (Youden's J): "
        "sensitivity 1.000 ± 0.000 (n=2), specificity 1.000 ± 0.000 (n=2)." in answer
    )
    assert "100 test images (50 NORMAL, 50 PNEUMONIA); positive class for sensitivity: PNEUMONIA" in answer
    cells = pd.read_csv(paths["clinical"])
    noisy = cells[(cells["strategy"] == "noisy") & (cells["seed"] == 0)].iloc[0]
    assert noisy["threshold"] == 0.5 and noisy["ece"] == pytest.approx(0.0, abs=1e-6)  # 70 % sure, 70 % right
    assert noisy["sensitivity"] == pytest.approx(35 / 50) and noisy["specificity"] == pytest.approx(35 / 50)
    assert noisy["recall:PNEUMONIA"] == pytest.approx(0.7) and noisy["operating_point"] == "Youden's J"
    confusion = _markdown_table(paths["md"].read_text(), "| true", after="### Confusion matrix — folder:xray: perfect")
    assert confusion.values.tolist() == [["NORMAL", "100", "0", "1.000"], ["PNEUMONIA", "0", "100", "1.000"]]


def test_auto_selects_roc_auc_and_a_sensitivity_target(tmp_path):
    suite = known_suite(tmp_path / "suite")
    paths = write_report(suite, plots=False, options=ReportOptions(operating_point=_point("sens:0.99")))
    answer = paths["answer"].read_text()
    assert "Best by ROC-AUC (mean of 2 seed(s)): **perfect**, 1.000 ± 0.000 (n=2)." in answer
    # near's missed positive ties with the 50 negatives (all at 0.1): AUC (49 + 1/2) / 50; DeLong: z = 1
    rows = {r["configuration"]: r for r in _markdown_table(answer, "| dataset").to_dict("records")}
    assert rows["near"]["value (95% CI)"] == "0.990 ± 0.000 (n=2)" and rows["near"]["verdict"] == "tied"
    assert rows["near"]["p (Holm)"] == f"{2 * sps.norm.sf(1.0):.3f}" == "0.317"  # the largest of 3: Holm x 1
    assert "(DeLong test on the same test images, Holm-adjusted p ≥ 0.05): near." in answer
    # validation sensitivity 0.99 needs every positive: the highest such threshold is 0.5
    assert "at the threshold chosen on validation (sensitivity ≥ 0.99)" in answer


def test_backends_training_different_networks_are_not_ranked(tmp_path):
    root = tmp_path / "vgg"
    good, fair = scores_right_on(np.arange(N) < 90), scores_right_on(np.arange(N) < 80)
    write_cell(root, "full_finetune", good, backend="torchvision", model="vgg16", total_params=134_268_738)
    write_cell(root, "full_finetune", fair, backend="keras", model="vgg16", total_params=14_846_530, head="fcn-1x1")
    answer = write_report(root, plots=False).get("answer").read_text()
    assert (
        "- Frameworks not ranked against each other: the backends train different networks (vgg16/full_finetune: "
        "torchvision: 134,268,738 parameters, head native, weights imagenet:x; keras: 14,846,530 parameters, head "
        "fcn-1x1, weights imagenet:x)." in answer
    )
    assert "- backend torchvision: Best by ROC-AUC" in answer and "- backend keras: Best by ROC-AUC" in answer
    assert "Paired comparisons" not in (root / "summary.md").read_text()  # no family: one strategy, no backend pair

    same = tmp_path / "same"
    write_cell(same, "full_finetune", good, backend="torchvision", model="vgg16", head="fcn-1x1")
    write_cell(same, "full_finetune", fair, backend="keras", model="vgg16", head="fcn-1x1")
    paths = write_report(same, plots=False, options=ReportOptions(select_by="accuracy"))
    answer = paths["answer"].read_text()
    assert "Frameworks not ranked" not in answer
    assert "Best by accuracy (mean of 2 seed(s)): **torchvision**" in answer and "- Worse: keras." in answer
    assert "| backends on vgg16/full_finetune | torchvision | keras" in paths["md"].read_text()


def test_records_without_predictions_are_answered_untested(tmp_path):
    root = tmp_path / "old"
    write_cell(root, "a", scores_right_on(np.arange(N) < 90), predictions=False)
    write_cell(root, "b", scores_right_on(np.arange(N) < 80), predictions=False)
    paths = write_report(root, plots=False)
    answer = paths["answer"].read_text()
    assert "Best by ROC-AUC (mean of 2 seed(s)): **a**" in answer
    assert "Ties not tested: not every cell stored test predictions on one test set" in answer
    assert "Cheapest of all (ties not tested): fewest training seconds: the best itself (10.0 s)" in answer
    rows = {r["configuration"]: r for r in _markdown_table(answer, "| dataset").to_dict("records")}
    assert rows["b"]["verdict"] == "untested" and rows["b"]["p (Holm)"] == ""
    assert rows["a"]["value (95% CI)"] == "0.900 ± 0.000 (n=2)"  # the records' ROC-AUC over seeds
    assert "clinical" not in paths


def _point(text: str):
    from tlbench.benchmarks.reporting.options import parse_operating_point

    return parse_operating_point(text)


def _markdown_table(text: str, header: str, after: str = "") -> pd.DataFrame:
    """The first Markdown table whose header line starts with ``header`` (after the line ``after``)."""
    lines = text[text.index(after) :].splitlines() if after else text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return pd.DataFrame(rows[2:], columns=rows[0])


# ---- across datasets ---------------------------------------------------------------------------------------
def ranked_suites(tmp_path: Path) -> list[Path]:
    """Three suites (one dataset each) where A > B > C > D in accuracy on every dataset."""
    suites = []
    for d, dataset in enumerate(("folder:one", "folder:two", "folder:three")):
        root = tmp_path / f"suite_{d}"
        for rank, strategy in enumerate("ABCD"):
            right = np.arange(N) < 95 - 10 * rank - d
            write_cell(root, strategy, scores_right_on(right), dataset=dataset, seeds=(0,))
        (root / "suite.json").write_text(json.dumps({"name": f"s{d}"}))
        suites.append(root)
    return suites


def test_three_suites_together_rank_strategies_across_datasets(tmp_path, capsys, monkeypatch):
    from tlbench.benchmarks.reporting import report

    monkeypatch.setattr(report, "draw_suite_plots", lambda *args: {})  # only the evidence plots: seconds less
    suites = ranked_suites(tmp_path)
    out = tmp_path / "together"
    argv = ["report", *map(str, suites), "--out", str(out), "--select-by", "accuracy"]
    assert main(argv) == 0
    printed = " ".join(capsys.readouterr().out.split())  # the console wraps lines to the terminal
    # k = 4 ranked 1..4 on N = 3 datasets: Friedman chi2 = 12N/(k(k+1)) (sum R^2 - k(k+1)^2/4) = 9
    p = sps.chi2.sf(9.0, 3)
    assert f"Friedman p = {p:.3g}" in printed
    # Nemenyi critical difference q(0.95, 4, inf)/sqrt(2) * sqrt(k(k+1)/6N) = 2.71: D (3 ranks away) differs
    assert "best mean rank A (1.00 of 4)" in printed  # the console drops Markdown emphasis
    assert "not distinguishable from it (Nemenyi, p ≥ 0.05): B, C." in printed
    md = (out / "summary.md").read_text()
    assert md.startswith("# tlbench suite `s0 + s1 + s2`")
    assert "Nemenyi critical difference at α = 0.05: 2.71 mean ranks" in md
    assert (out / "plots" / "critical_difference.png").stat().st_size > 5000
    assert (out / "plots" / "reliability.png").is_file()
    assert not (suites[0] / "summary.md").exists()  # the suites themselves are left alone


@pytest.mark.parametrize(
    "extra, message",
    [
        ([], "3 suite directories given: name the report's directory with --out DIR"),
        (["--out", "X", "--operating-point", "sens:2"], "invalid --operating-point 'sens:2'"),
        (["--out", "X", "--select-by", "f1"], "invalid --select-by 'f1'"),
        (["--out", "X", "--positive-class", "tumour"], "--positive-class 'tumour' is not a class of a binary"),
    ],
)
def test_report_usage_errors_are_one_line(tmp_path, capsys, extra, message):
    suites = ranked_suites(tmp_path)
    extra = [str(tmp_path / "out") if e == "X" else e for e in extra]
    assert main(["report", *map(str, suites), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("tlbench: error: ") and message in err[0]


def test_a_cell_in_two_suites_is_read_from_the_later_one(tmp_path):
    from tlbench.benchmarks.reporting.sources import load_suites

    first, second = tmp_path / "first", tmp_path / "second"
    write_cell(first, "a", scores_right_on(np.arange(N) < 60), seeds=(0,))
    write_cell(first, "b", scores_right_on(np.arange(N) < 50), seeds=(0,))
    write_cell(second, "a", scores_right_on(np.arange(N) < 90), seeds=(0,))
    records, sources = load_suites([first, second])
    by_strategy = {r["strategy"]: r for r in records}
    assert len(records) == 2 and by_strategy["a"]["accuracy"] == pytest.approx(0.9)
    assert sources.dir_of(by_strategy["a"]) == second and sources.dir_of(by_strategy["b"]) == first
    preds = sources.predictions(by_strategy["a"])
    assert (preds.probs.argmax(axis=1) == preds.labels).mean() == pytest.approx(0.9)
    assert sources.predictions(by_strategy["a"]) is preds  # loaded once


def test_a_suite_where_every_cell_failed_says_so(tmp_path, capsys):
    root = tmp_path / "failed"
    record = {"backend": "timm", "model": "m", "strategy": "a", "dataset": "d", "seed": 0, "status": "failed"}
    append_result(root / "results.jsonl", {**record, "error": "RuntimeError: out of memory"})
    assert main(["report", str(root)]) == 0
    printed = capsys.readouterr().out
    assert (
        "\nTHE ANSWER\n\nNo configuration finished (every cell failed): nothing to compare; see the failed" in printed
    )
    assert (root / "summary.md").read_text().split("\n## The answer\n\n")[1].startswith("No configuration finished")
