"""Figures quoted in prose (``<!-- value: ... -->``): computed from the records, checked, rewritten."""

from __future__ import annotations

from pathlib import Path

import pytest

from tlbench.benchmarks.running.results import append_result
from tlbench.benchmarks.tools.findings import main
from tlbench.benchmarks.tools.findings_cells import FindingsError
from tlbench.benchmarks.tools.findings_values import parse_value_options, regenerate_values, render_value


def _suite(root: Path) -> None:
    figures = {("a", 0): (0.80, 10.0), ("a", 1): (0.90, 12.0), ("b", 0): (0.60, 2.0), ("b", 1): (0.70, 4.0)}
    for (strategy, seed), (accuracy, train_s) in figures.items():
        record = {"backend": "timm", "model": "m", "strategy": strategy, "dataset": "d", "seed": seed}
        append_result(root / "results" / "s" / "results.jsonl", {**record, "status": "ok", "accuracy": accuracy})
        append_result(root / "results" / "s" / "results.jsonl", {**record, "status": "ok", "train_s": train_s})


def _value(text: str, root: Path) -> str:
    return render_value(parse_value_options(text), root)


def test_a_quoted_figure_is_the_statistic_of_the_matching_records(tmp_path: Path) -> None:
    _suite(tmp_path)
    # the latest record of each cell holds train_s only: accuracy is read from no record
    with pytest.raises(FindingsError, match="no record of results/s matches"):
        _value("suites=results/s column=accuracy", tmp_path)
    assert _value("suites=results/s column=train_s strategy=a", tmp_path) == "11.0"
    assert _value("suites=results/s column=train_s strategy=a,b stat=min", tmp_path) == "2.0"
    assert _value("suites=results/s column=train_s stat=n", tmp_path) == "4"
    assert _value("suites=results/s column=train_s over=strategy of=min digits=2", tmp_path) == "3.00"
    assert _value("suites=results/s column=train_s over=strategy of=max scale=100 digits=0", tmp_path) == "1100"
    # sd of 10 and 12 is 1.414; the t half-width 12.706 x 1.414 / sqrt(2) = 12.706
    assert _value("suites=results/s column=train_s strategy=a stat=sd", tmp_path) == "1.4"
    assert _value("suites=results/s column=train_s strategy=a stat=halfwidth digits=3", tmp_path) == "12.706"
    assert _value("suites=results/s column=train_s seed=1", tmp_path) == "8.0"


def test_a_page_with_a_stale_figure_fails_the_check_and_is_rewritten(tmp_path: Path, capsys) -> None:
    _suite(tmp_path)
    page = tmp_path / "docs" / "page.md"
    page.parent.mkdir()
    sentence = "Probes train in <!-- value: suites=results/s column=train_s strategy=b -->2.5<!-- /value --> s.\n"
    page.write_text(sentence)
    assert main([str(page)]) == 1
    assert "(page says '2.5', results '3.0')" in capsys.readouterr().err
    assert main([str(page), "--write"]) == 0
    assert page.read_text() == sentence.replace("2.5", "3.0")
    assert main([str(page)]) == 0
    text, changed = regenerate_values(page.read_text(), tmp_path)
    assert changed == [] and text == page.read_text()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ("column=accuracy", "has no suites="),
        ("suites=results/s", "has no column="),
        ("suites=results/s column=accuracy stat=mode", "stat='mode': expected one of mean, min, max"),
        ("suites=results/s column=accuracy over=strategy", "over= and of=min|max go together"),
        ("suites=results/s column=accuracy strategy", "value option 'strategy': expected key=value"),
    ],
)
def test_bad_value_options_are_one_line_errors(options: str, message: str) -> None:
    with pytest.raises(FindingsError, match=message.replace("|", r"\|")):
        parse_value_options(options)


def test_a_figure_from_a_suite_not_run_yet_is_an_error_not_a_silent_gap(tmp_path: Path) -> None:
    (tmp_path / "suites").mkdir()
    (tmp_path / "suites" / "later.toml").write_text('strategies = ["linear_probe"]\n')
    with pytest.raises(FindingsError, match="results/later is not committed yet"):
        _value("suites=results/later column=accuracy", tmp_path)
