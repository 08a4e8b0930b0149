"""Progress reporting while a cache is built: a tqdm bar on a terminal, a few log lines otherwise.

Everything goes to stderr, which the benchmark runner captures into the cell log.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Protocol


class Progress(Protocol):
    """What a loader needs from a progress reporter."""

    def update(self, n: int = 1) -> Any:
        """Advance by ``n`` items."""

    def close(self) -> None:
        """Finish the report."""


def log(message: str) -> None:
    """One line on stderr (the cell log when running under the benchmark runner)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class LineProgress:
    """Logs ``done/total`` each time another quarter of the work is done (for logs, where ``\\r`` bars garble)."""

    def __init__(self, total: int, desc: str, steps: int = 4) -> None:
        self.total, self.desc, self.steps = total, desc, steps
        self.done, self.next_step = 0, 1
        self.start_s = time.perf_counter()

    def update(self, n: int = 1) -> None:
        """Advance by ``n`` items, logging at every quarter."""
        self.done += n
        while self.total and self.next_step <= self.steps and self.done * self.steps >= self.next_step * self.total:
            elapsed_s = time.perf_counter() - self.start_s
            log(f"{self.desc}: {self.done}/{self.total} images ({elapsed_s:.1f} s)")
            self.next_step += 1

    def close(self) -> None:
        """Nothing to flush."""


class NoProgress:
    """Silent reporter."""

    def update(self, n: int = 1) -> None:
        """Ignore."""

    def close(self) -> None:
        """Ignore."""


def progress_bar(total: int, desc: str, enabled: bool) -> Progress:
    """A tqdm bar when ``enabled`` and stderr is a terminal, quarter-step log lines when enabled elsewhere.

    Args:
        total: number of items.
        desc: what is being processed (shown before the counts).
        enabled: ``False`` gives a silent reporter.
    """
    if not enabled or total <= 0:
        return NoProgress()
    if sys.stderr.isatty():
        from tqdm import tqdm

        return tqdm(total=total, desc=desc, unit="img", file=sys.stderr, dynamic_ncols=True)
    return LineProgress(total, desc)
