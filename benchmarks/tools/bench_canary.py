"""Does the speed canary read the machine, or the cell it watches? (Issue 21: "the canary's own bias".)

A cell's record flags it "slower than probed" when the watch's speed canary (``running.canary``), timed just before
and just after the timed part, runs below ``SLOW_RATIO`` of the canary the machine probe measured. If the measured
process left threads spinning (TensorFlow's and XLA's thread pools spin before they sleep; OpenMP waits actively),
the canary would compete with them and flag cells on a quiet machine. This benchmark times the canary the way the
probe does, and the way the watch does around each training engine's timed loop:

- ``probe``: ``canary_gflop_per_s()`` in a fresh process that has done nothing else (what the probe compares with);
- ``torch``, ``keras``, ``keras-jax``, ``keras-torch``: a fresh process trains a small convolutional network with
  that engine (3 warm-up steps, then ``--train-s`` seconds of steps inside ``running.watch.watched``, exactly as a
  cell's timed part); the figure is the lower of the watch's two canaries, the one a cell's flag reads.

Rounds run the arms one after the other, the opening arm rotating; the table shows each arm's median over rounds,
its ratio to ``probe`` and the measured tree's CPU while the watch ran. Run it on a quiet machine::

    python -m tlbench.benchmarks.tools.bench_canary --rounds 5 --out results/bench_canary.md
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from ..running.results import SLOW_RATIO
from .arms import arm_runtime, interleaved_rounds, usage_error

EXIT_USAGE = 2
#: the arms: the probe's canary, then each training engine watched (Keras arms are skipped when not installed)
ARMS = ("probe", "torch", "keras", "keras-jax", "keras-torch")
#: the Keras engine of each Keras arm (``KERAS_BACKEND``, read when Keras loads)
KERAS_ENGINES = {"keras": "tensorflow", "keras-jax": "jax", "keras-torch": "torch"}

ARM = r"""
import json, os, sys, time
arm, train_s, threads = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
if arm == "probe":
    from tlbench.benchmarks.running.canary import canary_gflop_per_s
    print(json.dumps({"canary_gflop_per_s": canary_gflop_per_s()}))
    raise SystemExit(0)
import numpy as np
rng = np.random.default_rng(0)
x = rng.standard_normal((32, 32, 32, 3)).astype("float32")
y = (np.arange(32) % 2).astype("int64")
if arm == "torch":
    import torch
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 64, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(64, 128, 3, padding=1),
        torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(128, 2),
    )
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    xt, yt = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(y)
    def step():
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(xt), yt).backward()
        opt.step()
else:
    import keras
    keras.utils.set_random_seed(0)
    net = keras.Sequential([
        keras.Input((32, 32, 3)), keras.layers.Conv2D(64, 3, padding="same", activation="relu"),
        keras.layers.Conv2D(128, 3, padding="same", activation="relu"), keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(2),
    ])
    net.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    def step():
        net.train_on_batch(x, y)
for _ in range(3):
    step()
from tlbench.benchmarks.running.watch import watched
steps = 0
with watched(0.25, None) as summary:
    start = time.perf_counter()
    while time.perf_counter() - start < train_s:
        step()
        steps += 1
if "watch_error" in summary:
    raise SystemExit(summary["watch_error"])
before, after = summary["canary_gflop_per_s"]
print(json.dumps({"canary_gflop_per_s": min(before, after), "before": before, "after": after, "steps": steps,
                  "measured_cpu_cores": summary.get("own_cpu_cores_mean"),
                  "company_cpu_cores": max(summary.get("canary_company_cpu_cores") or [0.0])}))
"""


def run_arm(arm: str, args: argparse.Namespace, env: dict[str, str]) -> dict[str, float]:
    """One arm in a fresh process: its JSON line (``canary_gflop_per_s`` and, for an engine, its details).

    Raises:
        RuntimeError: the arm failed (its last stderr line).
    """
    arm_env = {**env, "KERAS_BACKEND": KERAS_ENGINES[arm]} if arm in KERAS_ENGINES else env
    proc = subprocess.run(
        [sys.executable, "-c", ARM, arm, str(args.train_s), str(args.threads)],
        capture_output=True,
        text=True,
        env=arm_env,
        timeout=600,
        check=False,
    )
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"arm {arm} failed: {tail}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def available_arms() -> tuple[str, ...]:
    """The arms whose engine is installed here (``probe`` and ``torch`` always: torch is the watch benchmarks'
    engine)."""
    import importlib.util

    from ...backends.engines import engine_available

    keras_here = importlib.util.find_spec("keras") is not None
    return tuple(
        arm for arm in ARMS if arm not in KERAS_ENGINES or (keras_here and engine_available(KERAS_ENGINES[arm]))
    )


def canary_table(command: str, conditions: str, rows: dict[str, list[dict[str, float]]]) -> str:
    """The Markdown page: each arm's median canary, its ratio to ``probe``, the flag it would raise."""
    probe = statistics.median(row["canary_gflop_per_s"] for row in rows["probe"])
    lines = [
        "# Does the speed canary read the machine or the watched engine?",
        "",
        f"Command: `{command}`",
        "",
        conditions,
        "",
        "| arm | canary GFLOP/s (median of rounds) | ratio to probe | below the flag's "
        f"{SLOW_RATIO:.0%} | measured process CPU cores (median) | cores busy beside the canary (median) | "
        "per round |",
        "|---|---|---|---|---|---|---|",
    ]
    for arm, values in rows.items():
        canaries = [row["canary_gflop_per_s"] for row in values]
        median = statistics.median(canaries)
        below = sum(value / probe < SLOW_RATIO for value in canaries)
        cores = [row["measured_cpu_cores"] for row in values if row.get("measured_cpu_cores") is not None]
        cores_text = f"{statistics.median(cores):.2f}" if cores else "–"
        company = [row["company_cpu_cores"] for row in values if row.get("company_cpu_cores") is not None]
        company_text = f"{statistics.median(company):.2f}" if company else "–"
        per_round = ", ".join(f"{value:.0f}" for value in canaries)
        lines.append(
            f"| {arm} | {median:.0f} | {median / probe:.3f} | {below} of {len(canaries)} | {cores_text} | "
            f"{company_text} | {per_round} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the rounds, print (and write) the table."""
    from ..running.environment import cpu_model

    parser = argparse.ArgumentParser(
        prog="python -m tlbench.benchmarks.tools.bench_canary", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--train-s", type=float, default=4.0, help="seconds of watched training per engine arm")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None, help="also write the Markdown table here")
    args = parser.parse_args(argv)
    error = usage_error("bench_canary", vars(args), ("rounds",), ("train_s",))
    if error:
        print(error, file=sys.stderr)
        return EXIT_USAGE
    runtime, env = arm_runtime()
    args.threads = runtime.threads
    arms = available_arms()
    rows: dict[str, list[dict[str, float]]] = {arm: [] for arm in arms}

    def measure(arm: str) -> float:
        rows[arm].append(run_arm(arm, args, env))
        return rows[arm][-1]["canary_gflop_per_s"]

    interleaved_rounds(arms, args.rounds, measure)
    command = f"python -m tlbench.benchmarks.tools.bench_canary --rounds {args.rounds} --train-s {args.train_s:g}"
    conditions = (
        f"CPU {cpu_model()}, {runtime.threads} threads for the engines (the canary: one BLAS thread), allocator "
        f"{runtime.allocator}; each arm a fresh process, arms interleaved per round (opening arm rotating); an "
        f"engine arm's figure is the lower of the watch's canaries around {args.train_s:g} s of training steps "
        "(32 images of 32 px, two 3x3 convolutions, float32). Nothing else ran."
    )
    page = canary_table(command, conditions, rows)
    print(page)
    if args.out is not None:
        args.out.write_text(page)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
