"""Committed results are shareable: no tracked file under results/ names a path of the machine that made it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: an absolute POSIX path into a machine's file system (home, temp, work dirs...), or a Windows drive path
ABSOLUTE_PATH = re.compile(
    r"""(?<![\w./])(/(?:work|home|tmp|root|Users|mnt|opt|var|srv|private|data|scratch)/[^\s"',;)]+|[A-Za-z]:\\\\[^\s"']+)"""
)
TEXT_SUFFIXES = {".json", ".jsonl", ".md", ".csv", ".tex", ".html", ".txt", ".sh"}


def tracked_result_files() -> list[Path]:
    proc = subprocess.run(["git", "ls-files", "results"], cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip("not a git checkout")
    return [ROOT / line for line in proc.stdout.splitlines() if Path(line).suffix in TEXT_SUFFIXES]


def test_the_pattern_finds_machine_paths():
    assert ABSOLUTE_PATH.search('"weights": "/srv/lab/.cache/checkpoints/resnet18.pth"')
    assert ABSOLUTE_PATH.search("file:/home/ann/w.pth")
    assert not ABSOLUTE_PATH.search('"weights": ".cache/checkpoints/resnet18.pth"')
    assert not ABSOLUTE_PATH.search("medmnist:../shared/data/breastmnist.npz https://example.org/a/home/b")


def test_no_tracked_result_file_holds_an_absolute_path():
    offenders = []
    for path in tracked_result_files():
        if not path.is_file():
            continue
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            match = ABSOLUTE_PATH.search(line)
            if match:
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {match.group(0)[:80]}")
    assert not offenders, "absolute paths in committed results:\n" + "\n".join(offenders[:20])
