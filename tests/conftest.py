"""Shared fixtures and the fast tier. torch is imported before anything can import TensorFlow (they must load in that
order).

The fast tier (``make test-fast`` = ``pytest -m "not slow"``, for the inner loop) leaves out every test marked
``slow``: those that train real models, start a framework in a fresh process or Chromium, or measure the machine
carry the mark themselves; those that read the offline data in ``../shared`` (the ``shared_data`` fixture) or start
Ray (``ray_cluster``) get it here. In-process suites of the fast tier run unwatched (``quick_watch``)."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

try:  # torch first: loading TensorFlow before torch in one process is unsupported
    import torch  # noqa: F401
except ImportError:  # pragma: no cover - CI installs every extra
    pass

# XLA programs compiled once per machine: the Keras-on-JAX tests build the same small models many times, here and in
# the fresh processes of the other Keras engines (which inherit this environment); JAX's persistent cache, keyed by
# the program, the compile options and the jaxlib version, turns each repeat into a file read. Tests only: a suite's
# cells measure their first steps (compilation included) without it.
os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR", str(Path(tempfile.gettempdir()) / f"tlbench-tests-jax-cache-{os.getuid()}")
)

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
def quick_watch(monkeypatch: pytest.MonkeyPatch) -> dict:
    """In-process cells of this test are not watched: ``watch.watched`` (a Python process started around every
    timed part, ~0.5 s each, two per cell) becomes a stub that records why. For tests of what a suite does with its
    cells, not of the watch (``test_watch.py`` and the pass tests keep the real one). Returns the stub's summary."""
    import contextlib

    from tlbench.benchmarks.running import watch

    summary = {"watch_error": "not watched: a test's quick_watch"}

    @contextlib.contextmanager
    def stub(canary_max_s: float, canary_reference_gflop_per_s: float | None):
        found: dict = {}
        try:
            yield found
        finally:
            found.update(summary)

    monkeypatch.setattr(watch, "watched", stub)
    return summary


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


#: fixtures whose tests belong to the slow tier whatever they do: the offline data beside the project, a Ray cluster
SLOW_FIXTURES = ("shared_data", "ray_cluster")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark ``slow`` every test that reads ``../shared`` or starts Ray (see the module docstring)."""
    for item in items:
        if any(name in getattr(item, "fixturenames", ()) for name in SLOW_FIXTURES):
            item.add_marker(pytest.mark.slow)
