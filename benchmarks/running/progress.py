"""Live progress of running cells: what the training loop reports and how it reaches whoever shows it.

The training loop (``training.train_plan``) reports its phase, epoch and step through a ``TrainingReporter``. In a
cell process (the runner sets ``TLBENCH_PROGRESS=1`` there) each report is one stderr line
``tlbench-progress {json}``; the runner's log pump hands such lines to ``forward_line`` instead of the cell's
``log.txt``, which publishes them to the listeners of this process (the console of ``tlbench run``). A cell run
in-process (``inprocess_cell``) publishes directly. Nobody listening, no variable: the reporter does nothing.

Step reports are throttled (at most one every ``REPORT_INTERVAL_S`` of the loop's clock): inside a timed epoch a
report costs one clock read per step and one short write every few seconds.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path

#: set to ``1`` in a cell process's environment: its training loop writes progress lines to stderr
PROGRESS_ENV = "TLBENCH_PROGRESS"
#: the environment a cell process gets so that it reports progress
CHILD_ENV = {PROGRESS_ENV: "1"}
#: how a progress line starts in a cell's output
LINE_PREFIX = "tlbench-progress "
#: seconds between two step reports of one cell
REPORT_INTERVAL_S = 2.0


@dataclass(frozen=True)
class Progress:
    """Where a cell's training stands.

    Attributes:
        phase: the plan phase (``probe``, ``head_warmup``, ``main``), or ``evaluating`` once training is over (test
            predictions, inference timing and artifacts follow).
        phase_index: 1-based index of the phase; ``phases``: how many the plan has.
        epoch: 1-based epoch within the phase (0 before its first); ``epochs``: epochs of the phase.
        step: steps done in the current epoch; ``steps``: steps per epoch (0 before the first epoch).
        images_per_s: training images (or feature vectors) per second: live over the current epoch, then the
            phase's synchronized steady-state figure at each epoch's end.
        eta_s: estimated seconds of training left (``None`` while a phase of unmeasured cost is ahead).
        elapsed_s: seconds since training started.
    """

    phase: str
    phase_index: int
    phases: int
    epoch: int = 0
    epochs: int = 0
    step: int = 0
    steps: int = 0
    images_per_s: float | None = None
    eta_s: float | None = None
    elapsed_s: float = 0.0

    def to_line(self) -> str:
        """The stderr line of this report."""
        return LINE_PREFIX + json.dumps(asdict(self), separators=(",", ":"))


def parse_line(line: str) -> Progress | None:
    """The report in a ``tlbench-progress {json}`` line, ``None`` for any other (or malformed) line."""
    if not line.startswith(LINE_PREFIX):
        return None
    try:
        data = json.loads(line[len(LINE_PREFIX) :])
        known = {f.name for f in fields(Progress)}
        return Progress(**{k: v for k, v in data.items() if k in known})
    except (ValueError, TypeError):
        return None


@dataclass(frozen=True)
class Event:
    """What listeners receive: ``planned`` (``count`` cells will run), ``started`` (``cell`` began) or
    ``progress`` (``cell`` reported ``progress``). ``cell`` is the cell's id (its artifact directory's name)."""

    kind: str
    cell: str = ""
    progress: Progress | None = None
    count: int = 0


_LISTENERS: list[Callable[[Event], None]] = []
_INPROCESS_CELL: list[str] = []


@contextlib.contextmanager
def listening(listener: Callable[[Event], None]) -> Iterator[None]:
    """Deliver every event published in this process to ``listener`` while the block runs."""
    _LISTENERS.append(listener)
    try:
        yield
    finally:
        _LISTENERS.remove(listener)


def publish(event: Event) -> None:
    """Hand ``event`` to the listeners; a failing listener never stops a run."""
    for listener in list(_LISTENERS):
        try:
            listener(event)
        except Exception as exc:  # a display problem must not cost a measured cell
            print(f"tlbench: progress display failed: {type(exc).__name__}: {exc}", file=sys.stderr)


def forward_line(line: str, log_path: str | Path) -> bool:
    """Publish ``line`` when it is a progress line of the cell logging to ``log_path`` (``cells/<id>/log.txt``).

    Returns:
        Whether it was one (it then belongs to no log).
    """
    if not line.startswith(LINE_PREFIX):
        return False
    report = parse_line(line.strip())
    if report is not None:
        publish(Event("progress", Path(log_path).parent.name, report))
    return True


@contextlib.contextmanager
def inprocess_cell(cell: str) -> Iterator[None]:
    """A cell running in this process (the inline launcher): its reports go straight to the listeners."""
    publish(Event("started", cell))
    _INPROCESS_CELL.append(cell)
    try:
        yield
    finally:
        _INPROCESS_CELL.remove(cell)


def _stderr_sink(report: Progress) -> None:
    print(report.to_line(), file=sys.stderr, flush=True)


def default_sink() -> Callable[[Progress], None] | None:
    """Where the training loop's reports go: the listeners of an in-process cell, stderr in a cell process that
    reports progress, else nowhere (``None``)."""
    if _INPROCESS_CELL and _LISTENERS:
        cell = _INPROCESS_CELL[-1]
        return lambda report: publish(Event("progress", cell, report))
    if os.environ.get(PROGRESS_ENV) == "1":
        return _stderr_sink
    return None


class TrainingReporter:
    """Reports of one ``train_plan`` call: phases, epochs, throttled steps, and a training ETA.

    The ETA prices each remaining step at the seconds per step measured so far for inputs of its kind
    (``images``, ``features``; validation included); a later image phase is priced at the current image rate. A
    features phase not yet run counts as free (heads on cached features take milliseconds per step); an images
    phase while only features have run has no price yet (``eta_s=None``).

    Args:
        phases: ``(inputs, epochs)`` of each plan phase, in order.
        sink: receives each report.
        clock: seconds (monotonic); injected in tests.
        interval_s: least seconds between two step or epoch reports (phase starts and the end always report).
    """

    def __init__(
        self,
        phases: list[tuple[str, int]],
        sink: Callable[[Progress], None],
        clock: Callable[[], float] = time.monotonic,
        interval_s: float = REPORT_INTERVAL_S,
    ) -> None:
        self.phases = phases
        self.sink = sink
        self.clock = clock
        self.interval_s = interval_s
        self.start = clock()
        self.last_report = -float("inf")
        self.index = -1  # the running phase
        self.name = ""
        self.epoch = 0
        self.in_epoch = False
        self.steps = 0  # per epoch, known from the first epoch on (the same in every phase)
        self.step_count = 0
        self.epoch_images = 0
        self.epoch_start = self.start
        self.kind_start = self.start
        self.seconds: dict[str, float] = {}  # inputs kind -> wall seconds of its finished phases
        self.done_steps: dict[str, int] = {}  # inputs kind -> steps of its finished epochs
        self.images_per_s: float | None = None

    def phase(self, name: str) -> None:
        """A new phase starts (after its ``apply_phase``, and for a probe after the features exist)."""
        self._close_phase()
        self.index += 1
        self.name, self.epoch, self.step_count, self.images_per_s = name, 0, 0, None
        self._report(force=True)

    def epoch_started(self, epoch: int, steps: int) -> None:
        """Epoch ``epoch`` (1-based, within the phase) of ``steps`` steps begins."""
        self.epoch, self.steps, self.step_count, self.epoch_images, self.in_epoch = epoch, steps, 0, 0, True
        self.epoch_start = self.clock()

    def step(self, images: int) -> None:
        """One training step of ``images`` images (or feature vectors) is done."""
        self.step_count += 1
        self.epoch_images += images
        now = self.clock()
        if now - self.last_report >= self.interval_s:
            seconds = now - self.epoch_start
            self.images_per_s = self.epoch_images / seconds if seconds > 0 else None
            self._report(now=now)

    def epoch_ended(self, images_per_s: float | None) -> None:
        """The epoch's steps and validation are done; ``images_per_s``: the phase's steady-state rate so far."""
        kind = self.phases[self.index][0]
        self.done_steps[kind] = self.done_steps.get(kind, 0) + self.step_count
        self.in_epoch = False
        if images_per_s is not None:
            self.images_per_s = images_per_s
        self._report(force=self.epoch == self.phases[self.index][1])

    def finished(self) -> None:
        """Training is over: test predictions and inference timing follow."""
        self._close_phase()
        self.index = len(self.phases)
        self.name, self.epoch, self.step_count, self.in_epoch = "evaluating", 0, 0, False
        self._report(force=True)

    def eta_s(self, now: float) -> float | None:
        """Seconds of training left at ``now``; ``None`` while a remaining images phase has no price yet."""
        if self.index >= len(self.phases):
            return 0.0
        if self.steps == 0:
            return None
        total = 0.0
        for position in range(max(self.index, 0), len(self.phases)):
            kind, epochs = self.phases[position]
            steps = epochs * self.steps
            if position == self.index:
                steps -= (self.epoch - 1 if self.in_epoch else self.epoch) * self.steps + (
                    self.step_count if self.in_epoch else 0
                )
            if steps <= 0:
                continue
            rate = self._seconds_per_step(kind, now)
            if rate is None:
                if kind == "features":
                    continue
                return None
            total += steps * rate
        return total

    # ---- internals -----------------------------------------------------------------------------------------------
    def _close_phase(self) -> None:
        """Book the wall seconds of the phase that ends on its inputs kind."""
        now = self.clock()
        if 0 <= self.index < len(self.phases):
            kind = self.phases[self.index][0]
            self.seconds[kind] = self.seconds.get(kind, 0.0) + now - self.kind_start
        self.kind_start = now

    def _seconds_per_step(self, kind: str, now: float) -> float | None:
        """Wall seconds per step of inputs ``kind`` so far (the running phase included), ``None`` before any."""
        seconds, steps = self.seconds.get(kind, 0.0), self.done_steps.get(kind, 0)
        if 0 <= self.index < len(self.phases) and self.phases[self.index][0] == kind:
            seconds += now - self.kind_start
            steps += self.step_count if self.in_epoch else 0
        return seconds / steps if steps else None

    def _report(self, force: bool = False, now: float | None = None) -> None:
        now = self.clock() if now is None else now
        if not force and now - self.last_report < self.interval_s:
            return
        self.last_report = now
        running = 0 <= self.index < len(self.phases)
        eta = self.eta_s(now)
        self.sink(
            Progress(
                phase=self.name,
                phase_index=min(self.index + 1, len(self.phases)),
                phases=len(self.phases),
                epoch=self.epoch,
                epochs=self.phases[self.index][1] if running else 0,
                step=self.step_count,
                steps=self.steps if running else 0,
                images_per_s=None if self.images_per_s is None else round(self.images_per_s, 1),
                eta_s=None if eta is None else round(eta, 1),
                elapsed_s=round(now - self.start, 1),
            )
        )


class _Silent:
    """The reporter when nobody listens: every call does nothing."""

    def phase(self, name: str) -> None:
        pass

    def epoch_started(self, epoch: int, steps: int) -> None:
        pass

    def step(self, images: int) -> None:
        pass

    def epoch_ended(self, images_per_s: float | None) -> None:
        pass

    def finished(self) -> None:
        pass


def training_reporter(phases: list[tuple[str, int]]) -> TrainingReporter | _Silent:
    """The reporter of a ``train_plan`` call over ``phases`` (``(inputs, epochs)`` each): reporting to
    ``default_sink()``, or silent when there is none."""
    sink = default_sink()
    return _Silent() if sink is None else TrainingReporter(phases, sink, interval_s=REPORT_INTERVAL_S)
