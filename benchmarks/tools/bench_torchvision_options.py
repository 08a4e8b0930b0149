"""Speed of the torch run options side by side: channels-last, bf16/fp16 autocast, torch.compile.

Every variant is built through the ``Backend`` contract (the runner's code path), trained with the
``full_finetune`` strategy on a fixed random uint8 batch, and timed in interleaved rounds (variant A, B, C,
then A, B, C again...) so that a noisy shared machine slows all variants alike; the table reports medians over
rounds and each median's ratio to the first variant::

    python -m tlbench.benchmarks.tools.bench_torchvision_options --model resnet18 --image-size 64 --batch-size 32 \\
        --variants fp32,channels_last,bf16,channels_last+bf16 --rounds 5

A variant is ``+``-joined tokens: ``fp32`` (no option), ``channels_last``, ``bf16``, ``fp16`` (CUDA only),
``compile``. Framework-free: the backend imports torch.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from tlbench.backends import Backend, BackendError, ModelSpec, TorchOptions, get_backend_class
from tlbench.plan import make_plan
from tlbench.strategies import STRATEGIES
from tlbench.benchmarks.running.timing import measure_latency

EXIT_USAGE = 2
TOKENS = ("fp32", "channels_last", "bf16", "fp16", "compile")


@dataclass(frozen=True)
class VariantResult:
    """Medians over rounds for one variant, and their ratios to the first (reference) variant."""

    variant: str
    dtype: str
    memory_format: str
    compiled: bool
    train_images_per_s: float
    train_ratio: float
    infer_images_per_s: float
    infer_ratio: float
    infer_latency_ms_p50: float
    rounds: int


def parse_variant(text: str) -> dict[str, Any]:
    """Run options of a variant such as ``channels_last+bf16``.

    Raises:
        ValueError: an unknown token (the message lists the valid ones).
    """
    options: dict[str, Any] = {"channels_last": False, "amp": "", "compile": False}
    tokens = [t for t in text.split("+") if t]
    if not tokens:
        raise ValueError(f"empty variant {text!r}; expected +-joined tokens from: {', '.join(TOKENS)}")
    for token in tokens:
        if token == "channels_last":
            options["channels_last"] = True
        elif token in ("bf16", "fp16"):
            options["amp"] = token
        elif token == "compile":
            options["compile"] = True
        elif token != "fp32":
            raise ValueError(f"unknown variant token {token!r} in {text!r}; expected +-joined tokens from: {', '.join(TOKENS)}")
    return options


def _time_train(backend: Backend, images: np.ndarray, labels: np.ndarray, steps: int) -> float:
    """Images per second over ``steps`` synchronized train steps."""
    backend.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        backend.train_step(images, labels)
    backend.pop_train_loss()  # reads the loss: waits for the device
    backend.synchronize()
    return steps * len(images) / (time.perf_counter() - start)


def bench(
    variants: Sequence[str],
    backend_name: str = "torchvision",
    model: str = "resnet18",
    image_size: int = 64,
    batch_size: int = 32,
    num_classes: int = 10,
    rounds: int = 5,
    train_steps: int = 5,
    infer_repeats: int = 10,
    warmup_steps: int = 2,
    device: str = "cpu",
    seed: int = 0,
) -> list[VariantResult]:
    """Measure every variant in interleaved rounds; return medians and ratios to ``variants[0]``.

    Raises:
        ValueError: bad variant or non-positive size/count.
        BackendError: unknown model, or an option the device does not support (fp16 on CPU).
    """
    for name, value in (("image-size", image_size), ("batch-size", batch_size), ("rounds", rounds), ("train-steps", train_steps)):
        if value < 1:
            raise ValueError(f"--{name} must be >= 1, got {value}")
    if batch_size < 2:
        raise ValueError(f"--batch-size must be >= 2 (BatchNorm in train mode), got {batch_size}")
    parsed = [parse_variant(v) for v in variants]
    if not parsed:
        raise ValueError("--variants needs at least one variant")
    cls = get_backend_class(backend_name)
    cls.validate_model(model)
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (batch_size, image_size, image_size, 3), dtype=np.uint8)
    labels = rng.integers(0, num_classes, batch_size)
    backends, infos = [], []
    for options in parsed:
        backend = cls(device)
        infos.append(backend.build(ModelSpec(model, num_classes, image_size, weights="none", seed=seed, options=TorchOptions(**options))))
        plan = make_plan(STRATEGIES["scratch"], backend.stages(), epochs=1, seed=seed)
        backend.apply_phase(plan.phases[-1])  # every layer trains, as in full fine-tuning
        for _ in range(warmup_steps):
            backend.train_step(images, labels)
        backend.pop_train_loss()
        backends.append(backend)
    train = [[] for _ in backends]
    infer = [[] for _ in backends]
    latency = [[] for _ in backends]
    for _ in range(rounds):
        for i, backend in enumerate(backends):
            train[i].append(_time_train(backend, images, labels, train_steps))
            stats = measure_latency(backend.predict_proba, [images], backend.synchronize, warmup=1, repeats=infer_repeats)
            infer[i].append(stats.images_per_s)
            latency[i].append(stats.latency_ms_p50)
    train_med = [float(np.median(t)) for t in train]
    infer_med = [float(np.median(t)) for t in infer]
    return [
        VariantResult(
            variant=variants[i], dtype=infos[i].dtype, memory_format=str(infos[i].facts.get("memory_format", "")),
            compiled=bool(infos[i].facts.get("compiled", False)),
            train_images_per_s=train_med[i], train_ratio=train_med[i] / train_med[0],
            infer_images_per_s=infer_med[i], infer_ratio=infer_med[i] / infer_med[0],
            infer_latency_ms_p50=float(np.median(latency[i])), rounds=rounds,
        )  # fmt: skip
        for i in range(len(backends))
    ]


def format_table(results: Sequence[VariantResult]) -> str:
    """A GitHub-markdown table of the results."""
    from tabulate import tabulate

    rows = [
        [r.variant, r.dtype, r.memory_format, r.compiled, f"{r.train_images_per_s:.1f}", f"{r.train_ratio:.2f}x",
         f"{r.infer_images_per_s:.1f}", f"{r.infer_ratio:.2f}x", f"{r.infer_latency_ms_p50:.1f}"]  # fmt: skip
        for r in results
    ]
    headers = ["variant", "dtype", "memory_format", "compiled", "train img/s (median)", "train ratio",
               "infer img/s (median)", "infer ratio", "infer p50 ms/batch"]  # fmt: skip
    return tabulate(rows, headers=headers, tablefmt="github")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        print(f"bench_torchvision_options: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    """Command-line options of the script."""
    parser = _Parser(prog="python -m tlbench.benchmarks.tools.bench_torchvision_options", description=__doc__.split("\n")[0])
    parser.add_argument("--backend", default="torchvision", help="a torch backend (torchvision, timm)")
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--variants", default="fp32,channels_last,bf16,channels_last+bf16", help=f"comma-separated; tokens {', '.join(TOKENS)} joined by +")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved measurement rounds (medians over them)")
    parser.add_argument("--train-steps", type=int, default=5, help="timed train steps per round")
    parser.add_argument("--infer-repeats", type=int, default=10, help="timed inference batches per round (>= 10)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=None, help="also write the results as JSON to this file")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; bad values print one line and return 2."""
    args = build_parser().parse_args(argv)
    if args.out is not None and not args.out.parent.is_dir():
        print(f"bench_torchvision_options: error: output directory {str(args.out.parent)!r} does not exist", file=sys.stderr)
        return EXIT_USAGE
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    try:
        results = bench(variants, args.backend, args.model, args.image_size, args.batch_size, rounds=args.rounds,
                        train_steps=args.train_steps, infer_repeats=args.infer_repeats, device=args.device)  # fmt: skip
    except (BackendError, ValueError, KeyError) as exc:
        print(f"bench_torchvision_options: error: {str(exc).strip(chr(39) + chr(34))}", file=sys.stderr)
        return EXIT_USAGE
    cls = get_backend_class(args.backend)
    versions = ", ".join(f"{k} {v}" for k, v in cls.framework_versions().items())
    print(f"{args.backend}/{args.model}, {args.image_size} px, batch {args.batch_size}, device {args.device}, "
          f"{args.rounds} rounds (medians); {versions}")  # fmt: skip
    print(format_table(results))
    if args.out is not None:
        args.out.write_text(json.dumps([asdict(r) for r in results], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
