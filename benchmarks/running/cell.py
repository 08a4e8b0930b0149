"""Run one cell of the matrix: the procedure every kind of cell shares, and the process entry point.

The runner executes this module in a fresh subprocess per cell (``python -m tlbench.benchmarks.running.cell``)
so that frameworks never share a process and a crash costs one cell only; tests run the same ``CellRun``
in-process (``runner.run_cell_inprocess``). The result record is written to ``--result-file``; the parent
appends it to the suite's ``results.jsonl``.

The procedure: wait for a quiet machine (``--wait-quiet``) → decide the kind of cell from the strategy row and the
model (``core.cell_kinds``: the one place) → import the backend's framework and set its engine's threads → run the
kind (``KIND_RUNNERS``: ``cell_network.py`` trains through the plan, ``cell_feature_head.py`` fits a scikit-learn
head on cached features) → wall time, peak memory → the record. What every kind shares lives here: the log, the
machine probe, the watched timed window, the dataset facts, MFU and the artifacts.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import resource
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ...backends import backend_entry, get_backend_class
from ...backends.base import Backend
from ...backends.inference import FrameworkInference
from ...core.cell_kinds import cell_kind
from ...core.strategies import Strategy, get_strategy
from ...datasets import ArrayDataset, ResizePolicy, Split
from . import artifacts
from .backend_options import backend_options
from .cell_data import data_facts, duplicates_line, groups_line, load_cell_dataset, train_subset, without_test
from .cell_feature_head import run_feature_head_cell
from .cell_incremental import run_incremental_cell
from .cell_network import run_network_cell
from .cell_tuning import run_tuning_trial_cell
from .config import CellConfig, RunOptions
from .environment import load_probe_file
from .errors import one_line_error
from .measures import mfu_columns
from .results import check_record, empty_record, write_json_atomic
from .runtime import runtime_settings
from .tuning import tuned_strategy

#: the procedure of each kind of cell (``core.cell_kinds.CELL_KINDS``): ``(run, strategy, backend_class) -> None``
KIND_RUNNERS: dict[str, Callable[[CellRun, Strategy, type[Backend]], None]] = {
    "network": run_network_cell,
    "feature_head": run_feature_head_cell,
    "tuning_trial": run_tuning_trial_cell,
}
#: the kinds that can run as ``--increments`` steps, and their procedure then (``cell_incremental.py``)
INCREMENTAL_RUNNERS: dict[str, Callable[[CellRun, Strategy, type[Backend]], None]] = {
    "network": run_incremental_cell,
}


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (``ru_maxrss``; KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (2**20 if platform.system() == "Darwin" else 2**10)


def seed_everything(seed: int) -> None:
    """Seed Python's and numpy's global generators (frameworks are seeded by ``Backend.build``)."""
    random.seed(seed)
    np.random.seed(seed)


class CellRun:
    """State of one cell's run; ``run()`` returns the result record."""

    def __init__(self, cell: CellConfig, options: RunOptions, cell_dir: Path, progress: bool = False) -> None:
        self.cell = cell
        self.options = options
        self.cell_dir = cell_dir
        self.progress = progress
        self.record = empty_record(cell, options)
        #: the trained framework model whose weights the cell keeps (``None`` for scikit-learn heads)
        self.backend: Backend | None = None
        self._probe_read = False
        self._probe: dict[str, Any] | None = None
        #: a tuning trial: its data path holds no test split (``load_dataset``)
        self.trial = False

    @property
    def probe(self) -> dict[str, Any] | None:
        """The machine probe handed to this cell (``TLBENCH_PROBE_FILE``), read once: MFU, the ``--amp`` warning
        and the speed canary all use it."""
        if not self._probe_read:
            self._probe, self._probe_read = load_probe_file(), True
        return self._probe

    def log(self, message: str) -> None:
        """One line to the cell log (stderr of the subprocess)."""
        print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    def run(self) -> dict[str, Any]:
        """Run the cell; every failure becomes a ``failed`` record with a one-line error."""
        quiet_wait = self._wait_quiet()
        wall_start = time.perf_counter()
        try:
            self._run()
            self.record["status"] = "ok"
        except Exception as exc:  # every failure becomes a record; the suite goes on
            traceback.print_exc(file=sys.stderr)
            self.record["status"] = "failed"
            self.record["error"] = one_line_error(exc)
        self.record["wall_s"] = time.perf_counter() - wall_start
        if quiet_wait is not None and isinstance(self.record.get("contention"), dict):
            self.record["contention"].update(quiet_wait)
        self.record["peak_rss_mb"] = peak_rss_mb()
        return check_record(self.record)

    def _run(self) -> None:
        cell = self.cell
        strategy = get_strategy(cell.strategy)
        kind = cell_kind(strategy, cell.model)
        self.trial = kind.name == "tuning_trial"
        if self.options.tune and not self.trial:  # the configuration its trials chose on validation
            strategy, facts = tuned_strategy(strategy, cell, self.options)
            self.record["tuning"] = {key: value for key, value in facts.items() if key != "tuning_s"}
            self.record["tuning_s"] = facts.get("tuning_s")
            self.log(f"tuned: {facts.get('won')} won of {facts.get('searched')} (val {facts.get('by')})")
        seed_everything(cell.seed)
        backend_class = get_backend_class(cell.backend)  # imports the backend's module (not yet its framework)
        self.record["runtime"] = self._apply_runtime(backend_entry(cell.backend).engine)
        self.record["framework_versions"] = backend_class.framework_versions()
        if self.options.increments and kind.name in INCREMENTAL_RUNNERS:
            INCREMENTAL_RUNNERS[kind.name](self, strategy, backend_class)
        else:
            KIND_RUNNERS[kind.name](self, strategy, backend_class)

    def _wait_quiet(self) -> dict[str, Any] | None:
        """``--wait-quiet``: wait (up to the option's seconds, outside ``wall_s``) until other processes use at
        most the contention threshold of the cores; what happened goes into the record's ``contention``."""
        limit_s = self.options.wait_quiet_s
        if not limit_s:
            return None
        from .contention import wait_until_quiet

        start = time.perf_counter()
        quiet = wait_until_quiet(timeout_s=limit_s, poll_s=min(2.0, limit_s))
        waited_s = time.perf_counter() - start
        if quiet:
            self.log(f"machine quiet after {waited_s:.1f} s (--wait-quiet {limit_s:g})")
        else:
            self.log(
                f"WARNING: other processes still busy after --wait-quiet {limit_s:g} s; "
                "measuring anyway (the cell is flagged if disturbed)"
            )
        return {"waited_quiet_s": round(waited_s, 2), "quiet_at_start": quiet}

    @contextlib.contextmanager
    def timed_window(self) -> Iterator[None]:
        """Around a cell's timed part: sample what other processes use (``contention``), and run the speed canary
        just before and after it (``canary``: is the machine as fast as when it was probed?). The record's
        ``contention`` gets both, also when the body raises."""
        from .contention import describe
        from .watch import watched

        summary: dict[str, Any] = {}
        try:
            with watched(self.options.infer_min_time_s, (self.probe or {}).get("canary_gflop_per_s")) as summary:
                yield
        finally:
            self.record["contention"] = summary
            self.log(f"contention: {describe(summary)}")

    # ---- what every kind shares ------------------------------------------------------------------------------
    def load_dataset(
        self, backend: Backend, model: str, weights: str, record_data: bool, image_size: int | None = None
    ) -> tuple[ArrayDataset, ResizePolicy]:
        """The cell's dataset resized for ``model`` (decoded once per policy, cached); its facts into the record
        when ``record_data``."""
        opts = self.options
        size = image_size if image_size is not None else opts.image_size_for(type(backend), model, weights)
        dataset, policy = load_cell_dataset(
            backend, self.cell.dataset, model, weights, size, opts, self.log, self.progress
        )
        if self.trial:  # enforced here, in the one data path: a tuning trial never holds the test split
            dataset = without_test(dataset)
        if record_data:
            self.record.update(data_facts(dataset))
            if self.record["duplicates"]:
                self.log(f"duplicates: {duplicates_line(self.record['duplicates'])}")
            if self.record["groups"]:
                self.log(f"groups: {groups_line(self.record['groups'])}")
            if self.cell.train_size is not None:  # the label-efficiency subset the kind's train_rows will take
                subset = train_subset(dataset, self.cell.train_size, self.cell.draw)
                self.record.update(train_images=len(subset.rows), train_subset=subset.facts())
                self.log(subset.note())
        return dataset, policy

    def add_mfu(self, dtype: str) -> None:
        """Model FLOPs utilization: achieved FLOP/s over this machine's probed peak for the compute dtype."""
        columns = mfu_columns(self.record, self.probe, dtype)
        for key in ("infer_mfu", "train_mfu"):
            if key in columns:
                self.record[key] = columns[key]
        if "peak_flop_per_s" in columns:
            runtime = self.record["runtime"] or {}
            runtime.update(peak_flop_per_s=columns["peak_flop_per_s"], peak_dtype=columns["peak_dtype"])
            if "train_flops" in columns:
                runtime["train_flops"] = columns["train_flops"]

    def save_artifacts(
        self,
        curve: list[dict[str, Any]],
        test: Split,
        labels: np.ndarray,
        probs: np.ndarray,
        class_names: list[str],
        latencies: tuple[float, ...],
        val_probs: np.ndarray | None = None,
        val_labels: np.ndarray | None = None,
    ) -> None:
        """Predictions (test, and validation for operating points), curve, latencies; the trained weights when
        kept for ``tlbench explain``, a teacher, or the suite's inference pass."""
        directory = self.cell_dir
        artifacts.write_predictions(directory, probs, labels, class_names, test.images, val_probs, val_labels)
        artifacts.write_curve(directory, curve)
        artifacts.write_latencies(directory, latencies, int(self.record["infer_batch_size"] or 0))
        if (artifacts.save_weights_requested() or self.options.infer_pass) and self.backend is not None:
            FrameworkInference.export(self.backend, directory)

    def _apply_runtime(self, engine: str) -> dict[str, Any]:
        """Thread pools of this process's engine, and the runtime as recorded with the result."""
        from .runtime import apply_framework_threads, runtime_record

        settings = runtime_settings(self.options)
        record = runtime_record(settings)
        if engine != "none":
            applied = apply_framework_threads(settings, engine)
            record["applied"] = applied
            for warning in applied.get("warnings", []):
                self.log(f"runtime: {warning}")
        probe = self.probe
        if probe is not None:
            from .machine_peak import amp_warning

            warning = amp_warning(probe, backend_options(self.options, self.cell.backend).amp)
            if warning:
                record.setdefault("warnings", []).append(warning)
                self.log(f"WARNING: {warning}")
        # the allocator variables only act when set before the process started (the subprocess launcher)
        wanted = settings.env
        record["allocator_active"] = all(
            os.environ.get(k) == v for k, v in wanted.items() if k.startswith("MALLOC_") or k == "LD_PRELOAD"
        )
        return record


def main(argv: list[str] | None = None) -> int:
    """Entry point of the per-cell subprocess."""
    parser = argparse.ArgumentParser(prog="python -m tlbench.benchmarks.running.cell")
    parser.add_argument("--cell", required=True, help="CellConfig as JSON")
    parser.add_argument("--options", required=True, help="RunOptions as JSON")
    parser.add_argument("--cell-dir", required=True, type=Path)
    parser.add_argument("--result-file", required=True, type=Path)
    parser.add_argument("--progress", action="store_true")
    args = parser.parse_args(argv)
    cell = CellConfig(**json.loads(args.cell))
    options = RunOptions.from_dict(json.loads(args.options))
    record = CellRun(cell, options, args.cell_dir, progress=args.progress).run()
    write_json_atomic(args.result_file, record)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
