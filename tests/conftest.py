"""Shared fixtures. torch is imported before anything can import TensorFlow (they must load in that order)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

try:  # torch first: loading TensorFlow before torch in one process is unsupported
    import torch  # noqa: F401
except ImportError:  # pragma: no cover - CI installs every extra
    pass

SUPPORT = Path(__file__).parent / "support"
if str(SUPPORT) not in sys.path:  # shared test helpers (report_suite, plans, fake_backend) import by name
    sys.path.insert(0, str(SUPPORT))
SHARED_DATA = Path(os.environ.get("TLBENCH_SHARED_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")


@pytest.fixture
def fake_backend(monkeypatch: pytest.MonkeyPatch) -> str:
    """Register the numpy ``fake`` backend in this process and in cell subprocesses."""
    from tlbench import backends

    monkeypatch.setenv("TLBENCH_BACKENDS", "fake=fake_backend:FakeBackend")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(SUPPORT), os.environ.get("PYTHONPATH", "")])))
    monkeypatch.syspath_prepend(str(SUPPORT))
    monkeypatch.setitem(
        backends.REGISTRY, "fake", backends.BackendEntry("fake", "fake_backend:FakeBackend", "fake", ())
    )
    return "fake"


@pytest.fixture
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A per-session dataset cache (digits resized once per size for all tests)."""
    return tmp_path_factory.getbasetemp().parent / "tlbench-test-cache"


@pytest.fixture
def shared_data() -> Path:
    """``../shared/data`` beside the project; tests needing it skip when it is absent (user machines)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"offline data folder {SHARED_DATA} not present")
    return SHARED_DATA
