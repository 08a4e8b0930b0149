"""The run's console: live lines redrawn in place on a terminal, quiet plain lines elsewhere (injected clock)."""

from __future__ import annotations

import io
import re

from tlbench.benchmarks.live_console import LiveConsole, format_duration
from tlbench.benchmarks.running.progress import Event, Progress

CELL_A = "timm__m__full_finetune__digits__s0"
CELL_B = "timm__m__scratch__digits__s0"
CLEAR = re.compile(r"\x1b\[(\d+)A\x1b\[J")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def screen(text: str) -> list[str]:
    """What a terminal shows after ``text``: the console writes whole lines and erases its last N ones."""
    lines: list[str] = []
    position = 0
    for match in CLEAR.finditer(text):
        lines += text[position : match.start()].split("\n")[:-1]
        del lines[len(lines) - int(match.group(1)) :]
        position = match.end()
    return lines + text[position:].split("\n")[:-1]


def main_epoch(step: int, eta_s: float) -> Progress:
    return Progress("main", 2, 2, 3, 5, step, 34, images_per_s=402.4, eta_s=eta_s, elapsed_s=40.0)


def test_durations_read_like_a_clock() -> None:
    assert [format_duration(s) for s in (None, 4.4, 125, 3725)] == ["?", "4s", "2m05s", "1h02m"]


def test_a_terminal_gets_one_live_line_per_running_cell_redrawn_in_place() -> None:
    out, clock = io.StringIO(), Clock()
    console = LiveConsole(out, live=True, clock=clock, width=100, refresh_s=None)
    console(Event("planned", count=3))
    console(Event("started", CELL_A))
    assert screen(out.getvalue()) == ["▸ timm/m/full_finetune/digits/s0: starting (0s) · suite ETA ? [1/3]"]
    clock.now = 40.0
    console(Event("progress", CELL_A, main_epoch(12, 80.0)))
    clock.now = 50.0  # the cell's ETA counts down between reports
    console(Event("started", CELL_B))
    shown = screen(out.getvalue())
    assert shown == [
        "▸ …/full_finetune/digits/s0: main epoch 3/5, step 12/34 · 402 img/s · ETA 1m10s · suite ETA ? [2/3]",
        "▸ timm/m/scratch/digits/s0: starting (0s) · suite ETA ? [2/3]",
    ]
    # narrower terminals: the label loses its start (backend and model rarely vary), then the step, the images/s
    long_cell = "timm__tf_efficientnet_lite0__partial_finetune__digits__s0"
    lines = {}
    for width in (140, 100, 80):
        narrow = LiveConsole(io.StringIO(), live=True, clock=clock, width=width, refresh_s=None)
        narrow(Event("planned", count=3))
        narrow(Event("progress", long_cell, main_epoch(12, 80.0)))
        (lines[width],) = narrow._live_lines(clock.now)
    assert lines == {
        140: "▸ timm/tf_efficientnet_lite0/partial_finetune/digits/s0: main epoch 3/5, step 12/34 · 402 img/s · "
        "ETA 1m20s · suite ETA 4m00s [1/3]",
        100: "▸ …/partial_finetune/digits/s0: main epoch 3/5 · 402 img/s · ETA 1m20s · suite ETA 4m00s [1/3]",
        80: "▸ …/partial_finetune/digits/s0: main epoch 3/5 · ETA 1m20s · suite ETA 4m00s […",
    }
    clock.now = 120.0
    console(Event("progress", CELL_A, Progress("evaluating", 2, 2, eta_s=0.0, elapsed_s=80.0)))
    console.cell_finished(CELL_A, "[1/3] timm/m/full_finetune/digits/s0: accuracy=0.900")
    assert screen(out.getvalue()) == [
        "[1/3] timm/m/full_finetune/digits/s0: accuracy=0.900",
        "▸ timm/m/scratch/digits/s0: starting (1m10s) · suite ETA ? [2/3]",
    ]
    console.message("tlbench: a note")
    console.cell_finished(CELL_B, "[2/3] timm/m/scratch/digits/s0: accuracy=0.800")
    console.close()
    assert screen(out.getvalue()) == [
        "[1/3] timm/m/full_finetune/digits/s0: accuracy=0.900",
        "tlbench: a note",
        "[2/3] timm/m/scratch/digits/s0: accuracy=0.800",
    ]


def test_the_suite_eta_adds_the_queued_cells_at_the_mean_finished_duration() -> None:
    out, clock = io.StringIO(), Clock()
    console = LiveConsole(out, live=True, clock=clock, width=200, refresh_s=None)
    console(Event("planned", count=4))
    console(Event("started", CELL_A))
    clock.now = 30.0
    console.cell_finished(CELL_A, "[1/4] done")  # 30 s per cell
    console(Event("started", CELL_B))
    clock.now = 35.0
    console(Event("progress", CELL_B, main_epoch(5, 20.0)))
    # 20 s left in this cell, then 2 queued cells x 30 s
    assert screen(out.getvalue())[-1].endswith("ETA 20s · suite ETA 1m20s [2/4]")


def test_elsewhere_plain_lines_without_control_characters_and_at_most_one_per_interval() -> None:
    out, clock = io.StringIO(), Clock()
    console = LiveConsole(out, live=False, clock=clock, plain_interval_s=30.0, refresh_s=None)
    console(Event("planned", count=1))
    console(Event("started", CELL_A))
    for second, step in ((10.0, 5), (29.0, 9), (31.0, 12), (50.0, 20), (62.0, 30)):
        clock.now = second
        console(Event("progress", CELL_A, main_epoch(step, 40.0)))
    console.cell_finished(CELL_A, "[1/1] timm/m/full_finetune/digits/s0: accuracy=0.900")
    console.close()
    text = out.getvalue()
    assert "\x1b" not in text and "▸" not in text
    assert text.splitlines() == [
        "tlbench: started timm/m/full_finetune/digits/s0 [1/1]",
        "tlbench: timm/m/full_finetune/digits/s0: main epoch 3/5, step 12/34 · 402 img/s · ETA 40s · suite ETA 40s",
        "tlbench: timm/m/full_finetune/digits/s0: main epoch 3/5, step 30/34 · 402 img/s · ETA 40s · suite ETA 40s",
        "[1/1] timm/m/full_finetune/digits/s0: accuracy=0.900",
    ]
