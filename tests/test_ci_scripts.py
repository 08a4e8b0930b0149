""".ci/install-chromium (run by .ci/run and `make test`): does nothing when a Chromium is on PATH, and says in one
line what to do when it cannot install one. Run with a PATH of stand-in commands only, so nothing is installed."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / ".ci" / "install-chromium"
BASH = shutil.which("bash") or "/bin/bash"


def _command(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text(f"#!{BASH}\n{body}\n")
    path.chmod(0o755)


def _run(path_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BASH, str(SCRIPT)], env={"PATH": str(path_dir)}, capture_output=True, text=True, timeout=30, check=False
    )


def test_a_chromium_on_path_is_enough(tmp_path: Path) -> None:
    _command(tmp_path, "chromium-browser", "exit 0")
    _command(tmp_path, "apt-get", "echo apt-get must not run >&2; exit 9")
    proc = _run(tmp_path)
    assert (proc.returncode, proc.stderr) == (0, "")


def test_without_chromium_or_apt_get_it_says_so_in_one_line(tmp_path: Path) -> None:
    proc = _run(tmp_path)  # an empty PATH: neither a browser nor a package manager
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        "install-chromium: no Chromium on PATH and no apt-get here; install Chromium yourself (the report-rendering "
        "tests need it)"
    ]


def test_a_user_without_root_or_sudo_is_told_the_command(tmp_path: Path) -> None:
    _command(tmp_path, "apt-get", "echo apt-get must not run >&2; exit 9")
    _command(tmp_path, "id", "echo 1000")  # not root
    _command(tmp_path, "sudo", "exit 1")  # sudo -n refuses (a password would be needed)
    proc = _run(tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        "install-chromium: no Chromium on PATH; run: sudo apt-get install chromium (the report-rendering tests need it)"
    ]
