"""The report's environment header names only environments that measured a reported cell."""

from __future__ import annotations

from pathlib import Path

from tlbench.benchmarks.reporting.tables import environment_line
from tlbench.benchmarks.running.environment import add_environment
from tlbench.benchmarks.running.results import append_result


def environment(environment_id: str, cpu: str) -> dict:
    return {
        "environment_id": environment_id,
        "cpu": cpu,
        "cpu_count": 2,
        "gpus": [],
        "packages": {"numpy": "2.0"},
        "git_sha": "abc",
    }


def record(strategy: str, environment_id: str) -> dict:
    return {
        "backend": "timm",
        "model": "m",
        "strategy": strategy,
        "dataset": "digits",
        "seed": 0,
        "status": "ok",
        "environment_id": environment_id,
    }


def test_an_environment_whose_cells_were_all_rerun_is_not_named(tmp_path: Path) -> None:
    # committed results measured on an Intel machine, re-run on a fresh clone on an AMD one: the newest record wins
    add_environment(tmp_path, environment("intel", "Intel Xeon"))
    add_environment(tmp_path, environment("amd", "AMD EPYC"))
    for strategy in ("linear_probe", "scratch"):
        append_result(tmp_path / "results.jsonl", record(strategy, "intel"))
        append_result(tmp_path / "results.jsonl", record(strategy, "amd"))
    line = environment_line(tmp_path)
    assert line == "Measured on AMD EPYC (2 CPUs), no GPU; numpy 2.0; git abc."


def test_several_measuring_environments_are_named_with_their_cell_counts(tmp_path: Path) -> None:
    add_environment(tmp_path, environment("intel", "Intel Xeon"))
    add_environment(tmp_path, environment("amd", "AMD EPYC"))
    add_environment(tmp_path, environment("arm", "Neoverse"))  # described, but measured nothing reported
    append_result(tmp_path / "results.jsonl", record("linear_probe", "intel"))
    append_result(tmp_path / "results.jsonl", record("scratch", "amd"))
    append_result(tmp_path / "results.jsonl", record("full_finetune", "amd"))
    line = environment_line(tmp_path)
    assert "[1 cell(s), environment intel]" in line and "[2 cell(s), environment amd]" in line
    assert "Neoverse" not in line and line.count("Measured on") == 2


def test_no_environment_file_gives_no_header(tmp_path: Path) -> None:
    append_result(tmp_path / "results.jsonl", record("scratch", "amd"))
    assert environment_line(tmp_path) == ""
