"""Live progress: the training loop's reports (throttled, with an ETA), their stderr lines, and how the runner
delivers them from in-process and subprocess cells (numpy fake backend)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from tlbench.benchmarks.running import progress
from tlbench.benchmarks.running.config import RunOptions, SuiteConfig
from tlbench.benchmarks.running.progress import Event, Progress, TrainingReporter, forward_line, parse_line
from tlbench.benchmarks.running.runner import run_cell_inprocess, run_suite

#: in-process cells here are not watched (a process per timed part): what is tested is the suite, not the watch
pytestmark = pytest.mark.usefixtures("quick_watch")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_reports_are_throttled_and_price_the_remaining_steps_at_the_measured_rate() -> None:
    clock, reports = Clock(), []
    reporter = TrainingReporter([("images", 2), ("images", 3)], reports.append, clock=clock, interval_s=2.0)
    reporter.phase("head_warmup")
    assert reports[-1] == Progress("head_warmup", 1, 2, 0, 2, eta_s=None, elapsed_s=0.0)  # no step priced yet
    reporter.epoch_started(1, 10)
    for _ in range(5):  # one second per step of 32 images: reports at most every 2 s
        clock.now += 1.0
        reporter.step(32)
    assert [r.step for r in reports[1:]] == [2, 4]  # the phase's start reported at t=0
    # 4 s for 4 steps: 16 steps of this phase and 30 of the next at 1 s each
    assert reports[-1] == Progress("head_warmup", 1, 2, 1, 2, 4, 10, images_per_s=32.0, eta_s=46.0, elapsed_s=4.0)
    for _ in range(5):
        clock.now += 1.0
        reporter.step(32)
    clock.now += 2.0  # validation: counted in the price of a step (12 s for 10 steps)
    reporter.epoch_ended(images_per_s=40.0)  # the phase's synchronized steady rate replaces the live one
    assert reports[-1].images_per_s == 40.0 and reports[-1].eta_s == pytest.approx(40 * 1.2)
    reporter.epoch_started(2, 10)
    for _ in range(10):
        clock.now += 1.2
        reporter.step(32)
    reporter.epoch_ended(images_per_s=40.0)  # the phase's last epoch always reports
    assert (reports[-1].epoch, reports[-1].step, reports[-1].eta_s) == (2, 10, pytest.approx(30 * 1.2))
    reporter.phase("main")
    assert (reports[-1].phase, reports[-1].phase_index, reports[-1].epoch) == ("main", 2, 0)
    reporter.finished()
    assert reports[-1] == Progress("evaluating", 2, 2, eta_s=0.0, elapsed_s=round(clock.now - 100.0, 1))


def test_an_image_phase_after_a_probe_has_no_price_until_it_runs_and_a_later_probe_is_free() -> None:
    clock, reports = Clock(), []
    reporter = TrainingReporter([("features", 30), ("images", 5)], reports.append, clock=clock, interval_s=0.0)
    reporter.phase("probe")
    reporter.epoch_started(1, 4)
    clock.now += 0.01
    reporter.step(32)
    assert reports[-1].eta_s is None  # the fine-tuning phase ahead costs an unknown amount
    probe_first = TrainingReporter([("images", 1), ("features", 30)], reports.append, clock=clock, interval_s=0.0)
    probe_first.phase("main")
    probe_first.epoch_started(1, 4)
    clock.now += 2.0
    probe_first.step(32)
    assert reports[-1].eta_s == pytest.approx(3 * 2.0)  # three image steps left; the feature phase counts as free


def test_progress_lines_round_trip_and_other_lines_are_left_alone(tmp_path: Path) -> None:
    report = Progress("main", 2, 2, 3, 5, 12, 34, images_per_s=402.5, eta_s=80.0, elapsed_s=40.0)
    line = report.to_line()
    assert line.startswith("tlbench-progress {") and "\n" not in line
    assert parse_line(line) == report
    assert parse_line("tlbench-progress {not json") is None
    assert parse_line("[12:00:00] epoch 1 (main): train_loss=0.1") is None
    events = []
    with progress.listening(events.append):
        assert forward_line(line + "\n", tmp_path / "cells" / "timm__m__scratch__digits__s0" / "log.txt")
        assert not forward_line("[12:00:00] epoch 1\n", tmp_path / "cells" / "x" / "log.txt")
    assert events == [Event("progress", "timm__m__scratch__digits__s0", report)]


def test_nobody_listening_means_a_silent_reporter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(progress.PROGRESS_ENV, raising=False)
    assert not isinstance(progress.training_reporter([("images", 1)]), TrainingReporter)
    monkeypatch.setenv(progress.PROGRESS_ENV, "1")
    assert isinstance(progress.training_reporter([("images", 1)]), TrainingReporter)


FAST = RunOptions(
    epochs=2, image_size=16, batch_size=64, device="cpu", infer_repeats=10, infer_warmup=1, infer_min_time_s=0.0
)


@pytest.fixture(autouse=True)
def own_registry(tmp_path, monkeypatch):
    monkeypatch.setenv("TLBENCH_CELL_REGISTRY", str(tmp_path / "registry"))


def one_cell_suite(cache_dir: Path, strategy: str) -> SuiteConfig:
    return SuiteConfig(
        name="t",
        backends=("fake",),
        models=("softmax",),
        strategies=(strategy,),
        datasets=("digits",),
        seeds=(0,),
        options=replace(FAST, cache_dir=str(cache_dir), infer_pass=False),
    )


@pytest.mark.parametrize("launcher", ["inprocess", "subprocess"])
def test_the_runner_delivers_a_cells_training_progress(fake_backend, cache_dir, tmp_path, launcher, monkeypatch):
    monkeypatch.setattr(progress, "REPORT_INTERVAL_S", 0.0)  # in-process: every step reports
    events: list[Event] = []
    runner = {"cell_runner": run_cell_inprocess} if launcher == "inprocess" else {}
    with progress.listening(events.append):
        (record,) = run_suite(one_cell_suite(cache_dir, "full_finetune"), tmp_path / "s", **runner)
    cell = "fake__softmax__full_finetune__digits__s0"
    assert record["status"] == "ok"
    assert events[0] == Event("planned", count=1) and events[1] == Event("started", cell)
    reports = [e.progress for e in events[2:]]
    assert all(e.kind == "progress" and e.cell == cell for e in events[2:])
    # full fine-tuning: one head warm-up epoch, then the main phase; the last report says training is over
    assert [r.phase for r in reports][0] == "head_warmup" and "main" in [r.phase for r in reports]
    assert reports[-1].phase == "evaluating" and reports[-1].eta_s == 0.0
    mains = [r for r in reports if r.phase == "main"]
    assert mains[0].phase_index == 2 and mains[0].phases == 2 and mains[-1].epoch == mains[-1].epochs
    log = (tmp_path / "s" / "cells" / cell / "log.txt").read_text()
    assert "tlbench-progress" not in log and "epoch 1 (head_warmup)" in log  # the log keeps its human lines
