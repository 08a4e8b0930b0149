"""The fair race's page from synthetic suite folders: side by side, ranks, what won, and each verdict by its rule;
a tuned suite not run yet is said so (no crash), also through a findings block."""

from __future__ import annotations

from pathlib import Path

import pytest

from tlbench.benchmarks.running.results import append_result
from tlbench.benchmarks.tools import findings
from tlbench.benchmarks.tools.findings_cells import FindingsError
from tlbench.benchmarks.tools.race import (
    full_finetune_state,
    lp_ft_state,
    main,
    most_accurate,
    paired,
    probe_gap_state,
    race_page,
    race_verdicts,
    ranks,
    verdict,
    why_changed,
)


def _records(accuracies: dict[str, list[float]], roc: float = 0.9, tuning: dict | None = None) -> list[dict]:
    records = []
    for strategy, values in accuracies.items():
        for seed, accuracy in enumerate(values):
            record = {
                "backend": "timm",
                "model": "m",
                "strategy": strategy,
                "dataset": "d",
                "seed": seed,
                "status": "ok",
                "accuracy": accuracy,
                "roc_auc": roc + accuracy / 10,
            }
            if tuning and strategy in tuning:
                record["tuning"], record["tuning_s"] = tuning[strategy], 123.4
            records.append(record)
    return records


def _suite(root: Path, name: str, records: list[dict]) -> None:
    for record in records:
        append_result(root / name / "results.jsonl", record)


UNTUNED = {
    "linear_probe": [0.80, 0.82, 0.81],
    "lp_ft": [0.80, 0.82, 0.81],  # bit-identical to the probe
    "full_finetune": [0.78, 0.79, 0.80],
    "partial_finetune": [0.83, 0.82, 0.85],
    "scratch": [0.70, 0.71, 0.69],
}
TUNED = {
    "linear_probe": [0.81, 0.82, 0.82],
    "lp_ft": [0.84, 0.855, 0.86],
    "full_finetune": [0.88, 0.89, 0.90],
    "partial_finetune": [0.86, 0.87, 0.87],
    "scratch": [0.72, 0.73, 0.71],
}


def test_the_rules_of_each_conclusion():
    untuned, tuned = _records(UNTUNED), _records(TUNED)
    assert ranks(untuned) == {"linear_probe": 2, "lp_ft": 2, "full_finetune": 4, "partial_finetune": 1, "scratch": 5}
    assert lp_ft_state(untuned) == "identical" and lp_ft_state(tuned) == "LP-FT better"
    assert paired(tuned, "full_finetune", "partial_finetune") == "full_finetune better"
    assert paired(untuned, "linear_probe", "full_finetune") == "within noise"  # +0.02 ± 0.025
    assert full_finetune_state(untuned) == (
        "not first",
        "rank 4 of 5; the best, `partial_finetune`: ahead beyond noise",
    )
    assert full_finetune_state(tuned) == ("first", "rank 1 of 5")
    assert probe_gap_state(untuned) == (
        "no gap",
        "best fine-tuning `partial_finetune` - best probe `linear_probe` = +0.023",
    )
    assert probe_gap_state(tuned)[0] == "gap"
    assert probe_gap_state(_records({"linear_probe": [0.9, 0.91], "full_finetune": [0.8, 0.8]}))[0] == "probe ahead"
    assert verdict("identical", "identical") == "survives" and verdict("not first", "first") == "reversed"
    assert verdict("no gap", "gap") == "changed" and verdict("gap", "probe ahead") == "reversed"
    assert paired(_records({"a": [0.5], "b": [0.4]}), "a", "b") == "one seed"
    assert verdict("missing", "missing") == verdict("one seed", "one seed") == verdict("gap", "one seed")
    assert verdict("missing", "identical") == "undetermined"


def test_the_page_side_by_side_with_what_won_and_the_verdicts(tmp_path):
    tuning = {"full_finetune": {"won": {"head_lr": 0.003, "weight_decay": 0.0001}, "trial_epochs": 85}}
    _suite(tmp_path, "results/untuned_x", _records(UNTUNED))
    _suite(tmp_path, "results/tuned_x", _records(TUNED, tuning=tuning))
    page = race_page("results/untuned_x", "results/tuned_x", tmp_path)
    lines = page.splitlines()
    assert lines[2] == (
        "| `full_finetune` | 0.790 ± 0.025 | 0.890 ± 0.025 | 0.979 ± 0.002 | 0.989 ± 0.002 | 4 | 1 | "
        "head_lr=0.003, weight_decay=0.0001 (85 trial-epochs) | 123 |"
    )
    assert lines[3].startswith("| `partial_finetune` | 0.833 ± 0.038 | 0.867 ± 0.014 |")
    assert "| LP-FT equals LP | identical | LP-FT better | **changed** |" in page
    assert (
        "| full fine-tuning's rank | not first (rank 4 of 5; the best, `partial_finetune`: ahead beyond noise) | "
        "first (rank 1 of 5) | **reversed** |"
    ) in page
    assert (
        "| the probe gap | no gap (best fine-tuning `partial_finetune` - best probe `linear_probe` = +0.023) | gap"
        in page
    )


def test_a_tuned_suite_not_run_yet_is_said_so(tmp_path, capsys, monkeypatch):
    _suite(tmp_path, "results/untuned_x", _records(UNTUNED))
    page = race_page("results/untuned_x", "results/tuned_x", tmp_path)
    assert "| `linear_probe` | 0.810 ± 0.025 | – |" in page
    assert page.endswith("Not run yet: `results/tuned_x` has no results; the verdicts wait for it.\n")
    assert race_page("results/none", "results/tuned_x", tmp_path) == (
        "Not run yet: `results/none` has no results (`results/none`, `results/tuned_x` missing).\n"
    )
    monkeypatch.chdir(tmp_path)
    assert main(["results/untuned_x", "results/tuned_x"]) == 0 and "Not run yet" in capsys.readouterr().out
    assert main(["results/a", "results/b"]) == 2
    assert "neither 'results/a' nor 'results/b' is a directory" in capsys.readouterr().err


def test_a_race_block_of_the_findings_page_is_generated_and_checked(tmp_path, capsys):
    page = tmp_path / "docs" / "page.md"
    page.parent.mkdir()
    block = "<!-- findings: kind=race untuned=results/untuned_x tuned=results/tuned_x -->\n"
    page.write_text(f"Intro\n{block}<!-- /findings -->\n")
    assert findings.main([str(page), "--write"]) == 0
    assert "Not run yet: `results/untuned_x` has no results" in page.read_text()
    assert findings.main([str(page)]) == 0
    _suite(tmp_path, "results/untuned_x", _records(UNTUNED))
    _suite(tmp_path, "results/tuned_x", _records(TUNED))
    assert findings.main([str(page)]) == 1  # the results arrived: the block is stale
    assert findings.main([str(page), "--write"]) == 0 and "**reversed**" in page.read_text()
    page.write_text("<!-- findings: kind=race untuned=results/u -->\n<!-- /findings -->\n")
    assert findings.main([str(page)]) == 2 and "has no tuned=" in capsys.readouterr().err


def test_the_readme_summary_has_a_column_per_dataset_and_names_those_not_run(tmp_path):
    _suite(tmp_path, "results/untuned_x", _records(UNTUNED))
    _suite(tmp_path, "results/tuned_x", _records(TUNED))
    _suite(tmp_path, "results/untuned_y", _records(UNTUNED))  # its tuned twin has not run, its file exists
    (tmp_path / "suites").mkdir()
    (tmp_path / "suites" / "tuned_y.toml").write_text("")
    assert most_accurate(_records(UNTUNED)) == "partial_finetune" and most_accurate([]) is None
    assert most_accurate(_records({"b": [0.8], "a": [0.8]})) == "a"  # ties: the first by name
    table = race_verdicts(["x", "y"], tmp_path)
    assert table.splitlines() == [
        "| | x | y |",
        "|---|---|---|",
        "| most accurate (untuned → tuned) | `partial_finetune` → `full_finetune` (0.890 ± 0.025) | not run yet |",
        "| LP-FT equals LP | **changed**: identical → LP-FT better | not run yet |",
        "| full fine-tuning's rank | **reversed**: not first → first | not run yet |",
        "| the probe gap | **changed**: no gap → gap | not run yet |",
        "",
        "Not run yet: `suites/untuned_y.toml` + `suites/tuned_y.toml` (`tlbench run` each).",
    ]
    _suite(tmp_path, "results/untuned_z", _records(UNTUNED))
    _suite(tmp_path, "results/tuned_z", _records(UNTUNED))  # tuning changed nothing: every conclusion survives
    assert race_verdicts(["z"], tmp_path).splitlines()[2:] == [
        "| most accurate (untuned → tuned) | `partial_finetune` → `partial_finetune` (0.833 ± 0.038) |",
        "| LP-FT equals LP | **survives** (identical) |",
        "| full fine-tuning's rank | **survives** (not first) |",
        "| the probe gap | **survives** (no gap) |",
    ]
    with pytest.raises(FindingsError, match="results/untuned_w has no results and no suites/untuned_w.toml"):
        race_verdicts(["x", "w"], tmp_path)  # a typo is an error, not "not run yet" forever
    page = tmp_path / "README.md"
    (tmp_path / "pyproject.toml").write_text("")
    page.write_text("<!-- findings: kind=race_verdicts datasets=x,y -->\n<!-- /findings -->\n")
    assert findings.main([str(page)]) == 1 and findings.main([str(page), "--write"]) == 0
    assert table in page.read_text() and findings.main([str(page)]) == 0


#: the fixed recipe the conclusions were committed from (LP-FT bit-identical to LP) and a converged untuned suite
#: where LP-FT leaves the probe by noise only
COMMITTED = UNTUNED
CONVERGED = {**UNTUNED, "lp_ft": [0.81, 0.82, 0.80]}


def test_with_the_committed_suite_the_verdict_compares_it_with_the_tuned_one_and_says_what_moved_it(tmp_path):
    _suite(tmp_path, "results/strategies_x", _records(COMMITTED))
    _suite(tmp_path, "results/untuned_x", _records(CONVERGED))
    _suite(tmp_path, "results/tuned_x", _records(TUNED))
    page = race_page("results/untuned_x", "results/tuned_x", tmp_path, "results/strategies_x")
    lines = page.splitlines()
    assert lines[0].startswith("| strategy | accuracy committed | accuracy untuned | accuracy tuned | ROC-AUC untuned")
    assert "| rank committed | rank untuned | rank tuned | won in tuning | tuning (s) |" in lines[0]
    assert "| committed conclusion | committed | untuned | tuned | verdict |" in page
    assert "| LP-FT equals LP | identical | within noise | LP-FT better | **changed** by both |" in page
    assert "first (rank 1 of 5) | **reversed** by tuning |" in page
    assert why_changed(["identical", "within noise", "within noise"]) == " by the recipe"
    assert why_changed(["no gap", "no gap", "gap"]) == " by tuning"
    with pytest.raises(FindingsError, match="committed=results/strategies_typo has no results.jsonl"):
        race_page("results/untuned_x", "results/tuned_x", tmp_path, "results/strategies_typo")

    _suite(tmp_path, "results/untuned_y", _records(CONVERGED))
    _suite(tmp_path, "results/tuned_y", _records(CONVERGED))  # tuning changed nothing, the recipe did
    table = race_verdicts(["y"], tmp_path, committed="strategies")  # y has no strategies_ suite: two-way
    assert "| LP-FT equals LP | **survives** (within noise) |" in table
    _suite(tmp_path, "results/strategies_y", _records(COMMITTED))
    assert race_verdicts(["y"], tmp_path, committed="strategies").splitlines()[3:] == [
        "| LP-FT equals LP | **changed** by the recipe: identical → within noise → within noise |",
        "| full fine-tuning's rank | **survives** (not first) |",
        "| the probe gap | **survives** (no gap) |",
    ]
    page_file = tmp_path / "docs" / "page.md"
    page_file.parent.mkdir()
    block = "kind=race untuned=results/untuned_x tuned=results/tuned_x committed=results/strategies_x"
    page_file.write_text(f"<!-- findings: {block} -->\n<!-- /findings -->\n")
    assert findings.main([str(page_file), "--write"]) == 0 and "**reversed** by tuning" in page_file.read_text()
