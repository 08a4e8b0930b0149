"""What ``tlbench run`` shows while cells run: one live line per running cell on a terminal, plain lines elsewhere.

On a terminal the live lines sit below the finished-cell lines and are redrawn in place (phase, epoch/step,
images/s, the cell's and the suite's ETA); a line finishing a cell is printed above them. Elsewhere (CI logs, a
file) there are no control characters: one line when a cell starts, at most one progress line per cell every
``plain_interval_s``, and the finished-cell line. Events come from ``running.progress`` (published by the runner
and the cells' training loops); time comes from an injected clock.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO

from .running.progress import Event, Progress

#: seconds between two plain progress lines of one cell (not on a terminal)
PLAIN_INTERVAL_S = 30.0
#: seconds between two redraws of the live lines when nothing is reported (their clocks tick)
REFRESH_S = 1.0


def format_duration(seconds: float | None) -> str:
    """``4s``, ``2m05s``, ``1h02m``; ``?`` when unknown."""
    if seconds is None or seconds != seconds or seconds < 0:
        return "?"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def cell_label(cell: str) -> str:
    """``timm/m/linear_probe/digits/s0`` for the cell id ``timm__m__linear_probe__digits__s0``."""
    return cell.replace("__", "/")


@dataclass
class RunningCell:
    """A cell between its start and its record."""

    label: str
    started: float
    progress: Progress | None = None
    reported: float = 0.0  # when ``progress`` arrived
    printed: float | None = None  # the last plain line about it (its start line)

    def __post_init__(self) -> None:
        if self.printed is None:
            self.printed = self.started

    def eta_s(self, now: float) -> float | None:
        """Seconds of training left, counted down from the last report."""
        if self.progress is None or self.progress.eta_s is None:
            return None
        return max(0.0, self.progress.eta_s - (now - self.reported))

    def describe(self, now: float, detail: int = 2) -> str:
        """``main epoch 3/5, step 12/34 · 402 img/s · ETA 1m20s``: what is known so far (the ETA is the cell's);
        ``detail`` 1 leaves out the step, 0 the step and the images/s."""
        report = self.progress
        if report is None:
            return f"starting ({format_duration(now - self.started)})"
        if report.phase == "evaluating":
            return f"testing and timing inference ({format_duration(now - self.started)})"
        where = report.phase
        if report.epoch:
            where += f" epoch {report.epoch}/{report.epochs}"
            if report.steps and detail >= 2:
                where += f", step {report.step}/{report.steps}"
        parts = [where]
        if report.images_per_s and detail >= 1:
            parts.append(f"{report.images_per_s:,.0f} img/s")
        parts.append(f"ETA {format_duration(self.eta_s(now))}")
        return " · ".join(parts)


class LiveConsole:
    """Receives progress events and finished cells; writes the console lines of a run.

    Args:
        stream: where to write (stderr).
        live: redraw live lines in place (a terminal); ``None``: when ``stream`` is a terminal.
        clock: monotonic seconds.
        width: terminal columns (live lines are cut to fit); ``None``: asked from the terminal.
        plain_interval_s: least seconds between two plain progress lines of one cell.
        refresh_s: on a terminal, redraw every this many seconds from a background thread (``None``: only on
            events).
    """

    def __init__(
        self,
        stream: IO[str],
        live: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
        width: int | None = None,
        plain_interval_s: float = PLAIN_INTERVAL_S,
        refresh_s: float | None = REFRESH_S,
    ) -> None:
        self.stream = stream
        self.live = bool(getattr(stream, "isatty", lambda: False)()) if live is None else live
        self.clock = clock
        self.width = width
        self.plain_interval_s = plain_interval_s
        self.running: dict[str, RunningCell] = {}
        self.planned: int | None = None
        self.finished = 0
        self.finished_s: list[float] = []
        self.drawn = 0  # live lines on screen
        self.lock = threading.RLock()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        if self.live and refresh_s:
            self._ticker = threading.Thread(target=self._tick, args=(refresh_s,), daemon=True, name="tlbench-live")
            self._ticker.start()

    # ---- events ------------------------------------------------------------------------------------------------
    def __call__(self, event: Event) -> None:
        """A ``running.progress`` listener."""
        with self.lock:
            now = self.clock()
            if event.kind == "planned":
                self.planned = event.count
            elif event.kind == "started":
                self.running[event.cell] = RunningCell(cell_label(event.cell), now)
                if not self.live:
                    self._write(f"tlbench: started {cell_label(event.cell)}{self._position()}")
            elif event.kind == "progress" and event.progress is not None:
                cell = self.running.setdefault(event.cell, RunningCell(cell_label(event.cell), now))
                cell.progress, cell.reported = event.progress, now
                if not self.live and now - cell.printed >= self.plain_interval_s:
                    cell.printed = now
                    self._write(f"tlbench: {cell.label}: {cell.describe(now)} · suite ETA {self._suite_eta(now)}")
            self._redraw()

    def cell_finished(self, cell: str, line: str) -> None:
        """Cell ``cell`` has its record; ``line`` says so (printed above the live lines)."""
        with self.lock:
            now = self.clock()
            running = self.running.pop(cell, None)
            if running is not None:
                self.finished_s.append(now - running.started)
            self.finished += 1
            self._write(line)
            self._redraw()

    def message(self, line: str) -> None:
        """A note for the user, printed above the live lines."""
        with self.lock:
            self._write(line)
            self._redraw()

    def close(self) -> None:
        """Stop redrawing and remove the live lines."""
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(timeout=2.0)
        with self.lock:
            self._clear()
            self.stream.flush()

    # ---- estimates ---------------------------------------------------------------------------------------------
    def _position(self) -> str:
        if self.planned is None:
            return ""
        return f" [{min(self.finished + len(self.running), self.planned)}/{self.planned}]"

    def _suite_eta(self, now: float) -> str:
        """Seconds until the last planned cell is done: the running cells' own ETAs, then the queued cells at the
        mean duration of this run's finished cells (or the running cells' projected durations), over the slots."""
        if self.planned is None:
            return "?"
        queued = max(0, self.planned - self.finished - len(self.running))
        etas = [cell.eta_s(now) for cell in self.running.values()]
        if any(eta is None for eta in etas):
            return "?"
        if queued:
            durations = self.finished_s or [now - c.started + (c.eta_s(now) or 0.0) for c in self.running.values()]
            if not durations:
                return "?"
            slots = max(1, len(self.running))
            per_cell = sum(durations) / len(durations)
            return format_duration(max(etas, default=0.0) + per_cell * queued / slots)
        return format_duration(max(etas, default=0.0))

    # ---- drawing -----------------------------------------------------------------------------------------------
    def _columns(self) -> int:
        """The terminal's width (of the stream written to, else of stdout), ``width`` when given."""
        if self.width:
            return self.width
        try:
            return os.get_terminal_size(self.stream.fileno()).columns
        except (AttributeError, OSError, ValueError):
            return shutil.get_terminal_size((100, 24)).columns

    def _live_lines(self, now: float) -> list[str]:
        suite = f" · suite ETA {self._suite_eta(now)}{self._position()}"
        width = max(20, self._columns() - 1)
        return [self._fit(cell, suite, now, width) for cell in self.running.values()]

    @staticmethod
    def _fit(cell: RunningCell, suite: str, now: float, width: int) -> str:
        """The richest form of a cell's line that fits ``width``: the label loses its start first (backend and
        model rarely vary within a suite), then the step, then the images/s; the leanest form is cut."""
        parts = cell.label.split("/")
        labels = [cell.label] + ["…/" + "/".join(parts[k:]) for k in range(1, max(1, len(parts) - 2))]
        text = ""
        for detail in (2, 1, 0):
            for label in labels:
                text = f"▸ {label}: {cell.describe(now, detail)}{suite}"
                if len(text) <= width:
                    return text
        return text[: width - 1] + "…"

    def _clear(self) -> None:
        if self.live and self.drawn:
            self.stream.write(f"\x1b[{self.drawn}A\x1b[J")
            self.drawn = 0

    def _write(self, line: str) -> None:
        self._clear()
        self.stream.write(line + "\n")
        self.stream.flush()

    def _redraw(self) -> None:
        if not self.live:
            return
        self._clear()
        lines = self._live_lines(self.clock())
        if lines:
            self.stream.write("".join(line + "\n" for line in lines))
        self.drawn = len(lines)
        self.stream.flush()

    def _tick(self, refresh_s: float) -> None:
        while not self._stop.wait(refresh_s):
            with self.lock:
                if self.running:
                    self._redraw()
