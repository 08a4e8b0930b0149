"""Code version: the commit and a hash of the uncommitted changes, results/ left out; the environment id names the
commit."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tlbench.benchmarks.running import environment
from tlbench.benchmarks.running.environment import code_version, environment_id, git_sha, record_code_version


def _git(repo: Path, *args: str) -> str:
    command = ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", "-c", "commit.gpgsign=false", *args]
    return subprocess.run(command, cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A checkout with one code file and one committed suite directory under results/."""
    root = tmp_path / "checkout"
    (root / "pkg").mkdir(parents=True)
    (root / "results" / "default").mkdir(parents=True)
    (root / "pkg" / "code.py").write_text("ANSWER = 1\n")
    (root / "results" / "default" / "results.jsonl").write_text('{"seed": 0}\n')
    (root / ".gitignore").write_text("ignored/\n")
    _git(root, "init", "-q")
    _git(root, "add", ".")
    _git(root, "commit", "-q", "-m", "first")
    return root


def test_a_checkout_that_ran_a_suite_is_clean(repo: Path) -> None:
    head = _git(repo, "rev-parse", "HEAD")
    assert code_version(repo / "pkg") == {"commit": head, "dirty": False, "diff_sha": None}
    # the run appends to a tracked results file and writes untracked ones beside it: still the same code
    with open(repo / "results" / "default" / "results.jsonl", "a") as results:
        results.write('{"seed": 1}\n')
    (repo / "results" / "default" / "cells").mkdir()
    (repo / "results" / "default" / "cells" / "log.txt").write_text("cell log\n")
    (repo / "results" / "my-images-0123abcd").mkdir()
    (repo / "results" / "my-images-0123abcd" / "suite.json").write_text("{}")
    (repo / "ignored").mkdir()
    (repo / "ignored" / "cache.bin").write_bytes(b"\0")  # git-ignored: not code
    assert code_version(repo) == {"commit": head, "dirty": False, "diff_sha": None}
    assert git_sha(repo) == head


def test_changes_outside_results_are_dirty_and_hashed_by_content(repo: Path) -> None:
    head = _git(repo, "rev-parse", "HEAD")
    (repo / "pkg" / "code.py").write_text("ANSWER = 2\n")
    edited = code_version(repo)
    assert edited["commit"] == head and edited["dirty"] is True and len(edited["diff_sha"]) == 12
    assert git_sha(repo) == head + "+dirty"
    assert code_version(repo) == edited  # the same changes, the same hash
    (repo / "pkg" / "code.py").write_text("ANSWER = 3\n")
    unstaged = code_version(repo)["diff_sha"]
    assert unstaged != edited["diff_sha"]
    _git(repo, "add", "pkg/code.py")  # staged or not: the diff against the commit
    assert code_version(repo)["diff_sha"] == unstaged
    (repo / "pkg" / "code.py").write_text("ANSWER = 1\n")
    _git(repo, "add", "pkg/code.py")
    assert code_version(repo)["dirty"] is False
    # an untracked module outside results/ changes what runs: dirty, and its content counts
    (repo / "pkg" / "extra.py").write_text("X = 1\n")
    first = code_version(repo)
    (repo / "pkg" / "extra.py").write_text("X = 2\n")
    second = code_version(repo)
    assert first["dirty"] and second["dirty"] and first["diff_sha"] != second["diff_sha"]
    assert record_code_version(second) == {"commit": head, "diff_sha": second["diff_sha"]}


def test_outside_a_git_checkout_there_is_no_code_version(tmp_path: Path) -> None:
    assert code_version(tmp_path) is None and git_sha(tmp_path) is None and record_code_version(None) is None


def test_the_environment_id_names_the_commit_not_the_uncommitted_changes() -> None:
    base = {"machine": {"cpu": "x"}, "python": "3.11", "platform": "p", "packages": {"numpy": "2"}, "runtime": None}
    a = environment_id({**base, "code_version": {"commit": "a" * 40, "dirty": False, "diff_sha": None}})
    b = environment_id({**base, "code_version": {"commit": "b" * 40, "dirty": False, "diff_sha": None}})
    a_edited = environment_id({**base, "code_version": {"commit": "a" * 40, "dirty": True, "diff_sha": "0" * 12}})
    assert a != b and a == a_edited


def test_the_environment_record_carries_the_code_version(monkeypatch: pytest.MonkeyPatch) -> None:
    version = {"commit": "c" * 40, "dirty": True, "diff_sha": "123456789abc"}
    monkeypatch.setattr(environment, "code_version", lambda repo=None: version)
    record = environment.environment_record(("timm",))
    assert record["code_version"] == version and record["git_sha"] == "c" * 40 + "+dirty"
    assert record["environment_id"] == environment_id(record)
