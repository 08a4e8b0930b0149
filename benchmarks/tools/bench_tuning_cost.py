"""What does ``--tune`` cost? The tuned suite's wall time against the untuned one's, on the same machine.

Issue 22's target: the tuned 9-strategy BreastMNIST suite with 3 seeds costs at most 3x the wall time of the untuned
one. This tool runs the untuned suite file, then the tuned one, each as ``tlbench run FILE --out DIR/<arm>`` in a
fresh process with a fresh cache directory (``--cache-dir DIR/<arm>/cache``: each arm decodes the images and
extracts its features itself, so neither rides on the other's caches), without the machine probe (``--no-probe``:
the same for both arms). The wall seconds are the whole command's: the tuning trials, the cells and the inference
pass. The table adds the trials the tuned arm ran and the trial-epochs over images they spent (from its
``tuning/`` records), the CPU, the threads of a cell, and what else ran on the machine per the watch of every cell
(other processes' cores, disturbed cells, the busiest other processes). Run it in a quiet moment::

    python -m tlbench.benchmarks.tools.bench_tuning_cost --out results/bench_tuning_cost.md

A smoke test on a smaller matrix (the flags override both suite files alike)::

    python -m tlbench.benchmarks.tools.bench_tuning_cost --seeds 0 --strategies linear_probe,full_finetune \\
        --epochs 3 --max-train-images 64
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .arms import emit

EXIT_USAGE = 2
#: the issue's target: tuned wall time <= this x untuned
TARGET_RATIO = 3.0
UNTUNED = Path("suites/untuned_breastmnist.toml")
TUNED = Path("suites/tuned_breastmnist.toml")
ARMS = ("untuned", "tuned")


@dataclass
class ArmResult:
    """One arm's run.

    Attributes:
        name: ``untuned`` or ``tuned``.
        suite_file: the suite file it ran.
        wall_s: wall seconds of the whole ``tlbench run`` command.
        cells: the suite's own cell records (latest per cell).
        trials: trial cells run (every rung of a halving).
        trial_epochs: epochs over images the trials ran.
        watch: what else ran, per the watch of every cell and trial (``watch_summary``).
        returncode: the command's exit status.
    """

    name: str
    suite_file: str
    wall_s: float
    cells: int = 0
    trials: int = 0
    trial_epochs: int = 0
    watch: str = "-"
    returncode: int = 0


def _records(path: Path) -> list[dict[str, Any]]:
    from ..running.results import latest_by_cell, load_results

    return latest_by_cell(load_results(path)) if path.is_file() else []


def watch_summary(records: Sequence[dict[str, Any]]) -> str:
    """``other processes 0.12 cores (mean over 30 watched cells, duration-weighted), 2 disturbed; busiest:
    python 0.40`` from the records' ``contention`` (``-`` when nothing was watched)."""
    watched = [
        r["contention"]
        for r in records
        if isinstance(r.get("contention"), dict) and "other_cpu_cores_mean" in r["contention"]
    ]
    if not watched:
        return "-"
    seconds = sum(float(c.get("duration_s") or 0.0) for c in watched)
    if seconds > 0:
        mean = sum(c["other_cpu_cores_mean"] * float(c.get("duration_s") or 0.0) for c in watched) / seconds
    else:
        mean = sum(c["other_cpu_cores_mean"] for c in watched) / len(watched)
    disturbed = sum(bool(c.get("disturbed")) for c in watched)
    busiest: dict[str, float] = {}
    for c in watched:
        for process in c.get("top_other_processes") or []:
            busiest[process["name"]] = max(busiest.get(process["name"], 0.0), float(process["cores"]))
    top = ", ".join(f"{name} {cores:.2f}" for name, cores in sorted(busiest.items(), key=lambda i: -i[1])[:3])
    return (
        f"other processes {mean:.2f} cores (duration-weighted over {len(watched)} watched cells), "
        f"{disturbed} disturbed" + (f"; busiest: {top}" if top else "")
    )


def collect(name: str, suite_file: str, wall_s: float, out_dir: Path, returncode: int = 0) -> ArmResult:
    """An arm's figures from its suite directory: its cells, and under ``tuning/`` the trials (every rung) and the
    trial-epochs over images they ran."""
    from ..running.halving import trial_epochs
    from ..running.tuning import TUNING_DIR

    cells = _records(out_dir / "results.jsonl")
    trials = [r for path in sorted((out_dir / TUNING_DIR).rglob("results.jsonl")) for r in _records(path)]
    return ArmResult(
        name=name,
        suite_file=suite_file,
        wall_s=wall_s,
        cells=len(cells),
        trials=len(trials),
        trial_epochs=sum(trial_epochs(r) for r in trials),
        watch=watch_summary(cells + trials),
        returncode=returncode,
    )


def cost_table(untuned: ArmResult, tuned: ArmResult, command: str, conditions: str) -> str:
    """The Markdown page: the command, the conditions, one row per arm and the verdict on the 3x target."""
    ratio = tuned.wall_s / untuned.wall_s if untuned.wall_s > 0 else float("nan")
    lines = [
        "# What tuning costs: the tuned suite's wall time against the untuned one's",
        "",
        f"Command: `{command}`",
        "",
        conditions,
        "",
        "| arm | suite file | cells | trials | trial-epochs on images | wall s | ratio to untuned | what else ran "
        "(the watch) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for arm in (untuned, tuned):
        failed = "" if arm.returncode == 0 else f" (exit {arm.returncode})"
        lines.append(
            f"| {arm.name}{failed} | `{arm.suite_file}` | {arm.cells} | {arm.trials} | {arm.trial_epochs} | "
            f"{arm.wall_s:.1f} | {arm.wall_s / untuned.wall_s if untuned.wall_s > 0 else float('nan'):.2f} | "
            f"{arm.watch} |"
        )
    met = "met" if ratio <= TARGET_RATIO else "missed"
    lines += ["", f"Ratio tuned / untuned: **{ratio:.2f}x** (target <= {TARGET_RATIO:g}x: {met})."]
    if any(arm.returncode != 0 for arm in (untuned, tuned)):
        lines.append("A run failed: the ratio is not evidence.")
    return "\n".join(lines) + "\n"


def run_arm(
    name: str,
    suite_file: Path,
    out_dir: Path,
    overrides: Sequence[str],
    clock: Callable[[], float] = time.perf_counter,
    runner: Callable[[list[str]], int] | None = None,
) -> ArmResult:
    """``tlbench run suite_file --out out_dir --cache-dir out_dir/cache --no-probe *overrides`` timed by ``clock``."""
    argv = [
        sys.executable,
        "-m",
        "tlbench.benchmarks.cli",
        "run",
        str(suite_file),
        "--out",
        str(out_dir),
        "--cache-dir",
        str(out_dir / "cache"),
        "--no-probe",
        *overrides,
    ]
    run = runner or (lambda command: subprocess.run(command, check=False).returncode)
    print(f"bench_tuning_cost: {name}: {' '.join(argv[2:])}", file=sys.stderr, flush=True)
    start = clock()
    code = run(argv)
    return collect(name, str(suite_file), clock() - start, out_dir, code)


def overrides_of(args: argparse.Namespace) -> list[str]:
    """The ``tlbench run`` flags the smoke options give (both arms alike)."""
    flags: list[str] = []
    for name in ("seeds", "strategies", "epochs", "max_train_images", "image_size", "dataset", "parallel"):
        value = getattr(args, name)
        if value is not None:
            flags += [f"--{name.replace('_', '-')}", str(value)]
    return flags


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tlbench.benchmarks.tools.bench_tuning_cost", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--untuned", type=Path, default=UNTUNED, help=f"the untuned suite file (default {UNTUNED})")
    parser.add_argument("--tuned", type=Path, default=TUNED, help=f"the tuned suite file (default {TUNED})")
    parser.add_argument(
        "--work-dir", type=Path, default=None, help="where the two suites run (empty or new; default: a temporary one)"
    )
    parser.add_argument("--out", type=Path, default=None, help="also write the Markdown table here")
    smoke = parser.add_argument_group("a smaller matrix (overrides both suite files alike)")
    smoke.add_argument("--seeds", default=None, help="e.g. 0")
    smoke.add_argument("--strategies", default=None, help="e.g. linear_probe,full_finetune")
    smoke.add_argument("--epochs", type=int, default=None)
    smoke.add_argument("--max-train-images", type=int, default=None)
    smoke.add_argument("--image-size", type=int, default=None)
    smoke.add_argument("--dataset", default=None, help="another dataset spec (e.g. digits)")
    smoke.add_argument("--parallel", type=int, default=None, help="cells at once (both arms alike)")
    return parser


def usage_error(args: argparse.Namespace) -> str | None:
    """The one-line error for the first bad argument, else ``None``."""
    for name in ("untuned", "tuned"):
        path = getattr(args, name)
        if not path.is_file():
            return f"bench_tuning_cost: error: --{name} {str(path)!r} is not a suite file"
    for name in ("epochs", "max_train_images", "image_size", "parallel"):
        value = getattr(args, name)
        if value is not None and value < 1:
            return f"bench_tuning_cost: error: --{name.replace('_', '-')} must be >= 1, got {value}"
    if args.work_dir is not None and args.work_dir.exists() and any(args.work_dir.iterdir()):
        return f"bench_tuning_cost: error: --work-dir {str(args.work_dir)!r} is not empty (a suite would resume)"
    return None


def main(
    argv: list[str] | None = None,
    runner: Callable[[list[str]], int] | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> int:
    """Parse arguments, run both arms (untuned first), print (and write) the table; ``runner`` (runs one command,
    returns its exit status) and ``clock`` are for tests."""
    from ..running.config import RunOptions
    from ..running.environment import cpu_model
    from ..running.runtime import runtime_settings

    args = _parser().parse_args(argv)
    error = usage_error(args)
    if error:
        print(error, file=sys.stderr)
        return EXIT_USAGE
    overrides = overrides_of(args)
    with tempfile.TemporaryDirectory(prefix="bench_tuning_cost.") as scratch:
        work = args.work_dir if args.work_dir is not None else Path(scratch)
        arms = [
            run_arm(name, path, work / name, overrides, clock=clock, runner=runner)
            for name, path in zip(ARMS, (args.untuned, args.tuned), strict=True)
        ]
    command = "python -m tlbench.benchmarks.tools.bench_tuning_cost " + " ".join(
        [f"--untuned {args.untuned}", f"--tuned {args.tuned}", *overrides]
    )
    threads = runtime_settings(RunOptions()).threads
    conditions = (
        f"CPU {cpu_model()}, {threads} threads per cell; each arm `tlbench run FILE --no-probe` in a fresh process "
        "with a fresh cache directory (its own image decoding and feature extraction), the untuned arm first; wall "
        "seconds of the whole command (tuning trials, cells, inference pass)."
    )
    emit(cost_table(arms[0], arms[1], command, conditions), args.out)
    return 0 if all(arm.returncode == 0 for arm in arms) else 1


if __name__ == "__main__":
    raise SystemExit(main())
