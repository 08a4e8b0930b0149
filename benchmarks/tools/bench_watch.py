"""What does watching a timed part cost the work it watches? (Target: the watch process costs <= 1 %.)

Each arm runs in its own fresh process with the suite's tuned runtime (threads, allocator) and times the same
inference loop (a timm model, random init, seed 0, a fixed float32 batch, 3 warm-up calls, then ``--infer-s`` seconds,
median batch latency):

- ``unwatched``: nothing else;
- ``watch_process``: inside ``running.watch.watched`` (what cells and the inference pass use): the contention sampler
  and the speed canary in a separate single-threaded process;
- ``watch_in_thread``: the way cells watched before: the sampler in a thread of the measured process and the canary's
  multi-threaded BLAS matmul in the measured process, just before and after the timed loop.

Rounds run the arms one after the other, the opening arm rotating; the table shows each arm's median over rounds and
its ratio to ``unwatched``. Run it on a quiet machine::

    python -m tlbench.benchmarks.tools.bench_watch --rounds 7 --out results/bench_watch.md
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .arms import arm_runtime, arm_table, emit, interleaved_rounds, run_arm_process, usage_error

EXIT_USAGE = 2
ARMS = ("unwatched", "watch_process", "watch_in_thread")

ARM = r"""
import contextlib, json, statistics, sys, time
import torch, timm
arm, model_name, size, batch, infer_s, threads = sys.argv[1:7]
size, batch, infer_s = int(size), int(batch), float(infer_s)
torch.set_num_threads(int(threads))
torch.manual_seed(0)
model = timm.create_model(model_name, pretrained=False, num_classes=10).eval()
x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0))


@contextlib.contextmanager
def in_thread():
    from tlbench.benchmarks.running.canary import _matmul_gflop_per_s
    from tlbench.benchmarks.running.contention import ContentionSampler

    _matmul_gflop_per_s(0.25, 512)  # the old canary: numpy's BLAS on every thread, in this process
    with ContentionSampler():
        yield
    _matmul_gflop_per_s(0.25, 512)


if arm == "watch_process":
    from tlbench.benchmarks.running.watch import watched

    watch = watched(0.25, None)
elif arm == "watch_in_thread":
    watch = in_thread()
else:
    watch = contextlib.nullcontext()
times = []
with torch.inference_mode(), watch:
    for _ in range(3):
        model(x)
    start = time.perf_counter()
    while time.perf_counter() - start < infer_s or len(times) < 10:
        t = time.perf_counter(); model(x); times.append(time.perf_counter() - t)
print(json.dumps({"images_per_s": batch / statistics.median(times), "batches": len(times)}))
"""


def run_arm(arm: str, args: argparse.Namespace, env: dict[str, str]) -> float:
    """One arm in a fresh process; its inference images/s."""
    argv = [arm, args.model, str(args.image_size), str(args.batch_size), str(args.infer_s), str(args.threads)]
    return run_arm_process(ARM, argv, env)


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the rounds, print (and write) the table."""
    from ..running.environment import cpu_model

    parser = argparse.ArgumentParser(
        prog="python -m tlbench.benchmarks.tools.bench_watch", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--model", default="tf_efficientnet_lite0", help="a timm model name")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--infer-s", type=float, default=6.0, help="seconds of timed inference per arm")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--out", type=Path, default=None, help="also write the Markdown table here")
    args = parser.parse_args(argv)
    error = usage_error("bench_watch", vars(args), ("image_size", "batch_size", "rounds"), ("infer_s",))
    if error:
        print(error, file=sys.stderr)
        return EXIT_USAGE
    runtime, env = arm_runtime()
    args.threads = runtime.threads
    figures = interleaved_rounds(ARMS, args.rounds, lambda arm: run_arm(arm, args, env))
    command = (
        f"python -m tlbench.benchmarks.tools.bench_watch --rounds {args.rounds} "
        f"--image-size {args.image_size} --batch-size {args.batch_size} --infer-s {args.infer_s:g}"
    )
    conditions = (
        f"CPU {cpu_model()}, {runtime.threads} threads, float32, "
        f"batch {args.batch_size}, allocator {runtime.allocator}; each arm a fresh process, arms interleaved per "
        f"round (opening arm rotating), {args.infer_s:g} s of timed inference (median batch latency)."
    )
    emit(
        arm_table(
            f"What the watch costs the watched work ({args.model}, {args.image_size} px inference)",
            command,
            conditions,
            figures,
            "unwatched",
        ),
        args.out,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
