"""Is a process that has just trained a model slower at inference than a fresh one? (Why the inference pass exists.)

Each arm runs in its own fresh process with the suite's tuned runtime (threads, allocator) and times the *same*
model with the *same* weights (a timm model, random init, seed 0; the training arms train a copy of it, so only
the process's state differs, never the weights):

- ``fresh``: build, then time inference;
- ``after_training``: build, train a copy for ``--train-s`` seconds (AdamW, batch ``--batch-size``), drop the
  copy, its optimizer and gradients, then time the untouched model;
- ``after_training_trim``: the same, then ``gc.collect()`` and glibc ``malloc_trim(0)`` before timing;
- ``after_training_new_model``: the same, then time a newly built model loaded with the untouched weights.

Inference: ``torch.inference_mode``, a fixed float32 batch, 3 warm-up calls, then ``--infer-s`` seconds, median
batch latency. Rounds run the arms one after the other, the opening arm rotating; the table shows each arm's
median over rounds and its ratio to ``fresh``. Run it on a quiet machine::

    python -m tlbench.benchmarks.tools.bench_after_training --rounds 5 --out results/bench_after_training.md
"""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

from .arms import arm_runtime, arm_table, emit, interleaved_rounds, run_arm_process, usage_error

EXIT_USAGE = 2
ARMS = ("fresh", "after_training", "after_training_trim", "after_training_new_model")

ARM = r"""
import ctypes, gc, json, statistics, sys, time
import torch, timm
arm, model_name, size, batch, train_s, infer_s, threads = sys.argv[1:8]
size, batch, train_s, infer_s = int(size), int(batch), float(train_s), float(infer_s)
torch.set_num_threads(int(threads))
torch.manual_seed(0)
model = timm.create_model(model_name, pretrained=False, num_classes=10).eval()
generator = torch.Generator().manual_seed(0)
x = torch.randn(batch, 3, size, size, generator=generator)
if arm != "fresh":
    import copy
    trained = copy.deepcopy(model).train()
    opt = torch.optim.AdamW(trained.parameters(), lr=1e-3)
    y = torch.randint(0, 10, (batch,), generator=generator)
    start = time.perf_counter()
    while time.perf_counter() - start < train_s:
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(trained(x), y).backward()
        opt.step()
    del trained, opt
    gc.collect()
    if arm == "after_training_trim":
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    if arm == "after_training_new_model":
        fresh = timm.create_model(model_name, pretrained=False, num_classes=10).eval()
        fresh.load_state_dict(model.state_dict())
        model = fresh
times = []
with torch.inference_mode():
    for _ in range(3):
        model(x)
    start = time.perf_counter()
    while time.perf_counter() - start < infer_s or len(times) < 10:
        t = time.perf_counter(); model(x); times.append(time.perf_counter() - t)
print(json.dumps({"images_per_s": batch / statistics.median(times), "batches": len(times)}))
"""


def run_arm(arm: str, args: argparse.Namespace, env: dict[str, str]) -> float:
    """One arm in a fresh process; its inference images/s."""
    argv = [arm, args.model, str(args.image_size), str(args.batch_size), str(args.train_s), str(args.infer_s)]
    return run_arm_process(ARM, [*argv, str(args.threads)], env)


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the rounds, print (and write) the table."""

    parser = argparse.ArgumentParser(
        prog="python -m tlbench.benchmarks.tools.bench_after_training", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--model", default="tf_efficientnet_lite0", help="a timm model name")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--train-s", type=float, default=20.0, help="seconds of training before timing (training arms)")
    parser.add_argument("--infer-s", type=float, default=4.0, help="seconds of timed inference per arm")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None, help="also write the Markdown table here")
    args = parser.parse_args(argv)
    error = usage_error(
        "bench_after_training", vars(args), ("image_size", "batch_size", "rounds"), ("train_s", "infer_s")
    )
    if error:
        print(error, file=sys.stderr)
        return EXIT_USAGE
    runtime, env = arm_runtime()
    args.threads = runtime.threads
    figures = interleaved_rounds(ARMS, args.rounds, lambda arm: run_arm(arm, args, env))
    command = (
        f"python -m tlbench.benchmarks.tools.bench_after_training --rounds {args.rounds} "
        f"--image-size {args.image_size} --batch-size {args.batch_size} --train-s {args.train_s:g} "
        f"--infer-s {args.infer_s:g}"
    )
    conditions = (
        f"CPU {platform.processor() or platform.machine()}, {runtime.threads} threads, float32, "
        f"batch {args.batch_size}, allocator {runtime.allocator}; each arm a fresh process, arms interleaved per "
        f"round (opening arm rotating), {args.train_s:g} s of training, {args.infer_s:g} s of timed inference "
        "(median batch latency); nothing else ran."
    )
    emit(
        arm_table(
            f"Inference right after training vs in a fresh process ({args.model}, {args.image_size} px)",
            command,
            conditions,
            figures,
            "fresh",
        ),
        args.out,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
