"""Speed of the torch run options side by side: channels-last, bf16/fp16 autocast, torch.compile.

Every variant is built through the ``Backend`` contract (the runner's code path), trained with the
``full_finetune`` strategy on a fixed random uint8 batch, and timed in interleaved rounds (variant A, B, C,
then A, B, C again...) so that a noisy shared machine slows all variants alike; the table reports medians over
rounds and each median's ratio to the first variant::

    python -m tlbench.benchmarks.tools.bench_torchvision_options --model resnet18 --image-size 64 --batch-size 32 \\
        --variants fp32,channels_last,bf16,channels_last+bf16 --rounds 5

A variant is ``+``-joined tokens: ``fp32`` (no option), ``channels_last``, ``bf16``, ``fp16`` (CUDA only),
``compile``, ``infer_compile``. An ``infer_compile`` variant is inference only: after its warm-up steps the
contract's ``prepare_inference`` compiles it with inductor freezing (what a cell does after training; its compile
seconds are printed apart), so it has no training column. ``--mfu`` adds inference MFU against this machine's
cached probe (``tlbench.benchmarks.running.machine_peak``). Framework-free: the backend imports torch.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...backends import Backend, BackendError, ModelSpec, TorchOptions, get_backend_class
from ...core.plan import make_plan
from ...core.strategies import STRATEGIES
from ..running.timing import measure_latency

EXIT_USAGE = 2
TOKENS = ("fp32", "channels_last", "bf16", "fp16", "compile", "infer_compile")


@dataclass(frozen=True)
class VariantResult:
    """Medians over rounds for one variant, and their ratios to the first (reference) variant."""

    variant: str
    dtype: str
    memory_format: str
    compiled: bool
    train_images_per_s: float | None  # None: an inference-only (infer_compile) variant
    train_ratio: float | None
    infer_images_per_s: float
    infer_ratio: float
    infer_latency_ms_p50: float
    rounds: int
    infer_compiled: bool = False
    infer_prepare_s: float | None = None
    infer_gflop_per_s: float | None = None
    infer_mfu: float | None = None


def parse_variant(text: str) -> dict[str, Any]:
    """Run options of a variant such as ``channels_last+bf16``.

    Raises:
        ValueError: an unknown token (the message lists the valid ones).
    """
    options: dict[str, Any] = {"channels_last": False, "amp": "", "compile": False}
    infer_compile = False
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
        elif token == "infer_compile":
            infer_compile = True
        elif token != "fp32":
            raise ValueError(
                f"unknown variant token {token!r} in {text!r}; expected +-joined tokens from: {', '.join(TOKENS)}"
            )
    if infer_compile:
        options["infer_compile"] = True
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
    peak_flop_per_s: float | None = None,
) -> list[VariantResult]:
    """Measure every variant in interleaved rounds; return medians and ratios to ``variants[0]``.

    ``peak_flop_per_s`` (the probe's fp32 peak) adds inference MFU; the first variant must train (it is the
    reference of the training ratios).

    Raises:
        ValueError: bad variant or non-positive size/count.
        BackendError: unknown model, or an option the device does not support (fp16 on CPU).
    """
    for name, value in (
        ("image-size", image_size),
        ("batch-size", batch_size),
        ("rounds", rounds),
        ("train-steps", train_steps),
    ):
        if value < 1:
            raise ValueError(f"--{name} must be >= 1, got {value}")
    if batch_size < 2:
        raise ValueError(f"--batch-size must be >= 2 (BatchNorm in train mode), got {batch_size}")
    parsed = [parse_variant(v) for v in variants]
    if not parsed:
        raise ValueError("--variants needs at least one variant")
    if parsed[0].get("infer_compile"):
        raise ValueError(f"the first variant is the reference and must train; got inference-only {variants[0]!r}")
    cls = get_backend_class(backend_name)
    cls.validate_model(model)
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (batch_size, image_size, image_size, 3), dtype=np.uint8)
    labels = rng.integers(0, num_classes, batch_size)
    backends, infos, prepare_s, flops = [], [], [], []
    for options in parsed:
        backend = cls(device)
        infos.append(
            backend.build(
                ModelSpec(model, num_classes, image_size, weights="none", seed=seed, options=TorchOptions(**options))
            )
        )
        plan = make_plan(STRATEGIES["scratch"], backend.stages(), epochs=1, seed=seed)
        backend.apply_phase(plan.phases[-1])  # every layer trains, as in full fine-tuning
        for _ in range(warmup_steps):
            backend.train_step(images, labels)
        backend.pop_train_loss()
        flops.append(backend.flops_per_image() if peak_flop_per_s else None)
        # training is over for an inference-only variant: compiled and frozen here, outside the timed rounds
        prepare_s.append(backend.prepare_inference(batch_size) if options.get("infer_compile") else None)
        backends.append(backend)
    train: list[list[float]] = [[] for _ in backends]
    infer: list[list[float]] = [[] for _ in backends]
    latency: list[list[float]] = [[] for _ in backends]
    for _ in range(rounds):
        for i, backend in enumerate(backends):
            if not parsed[i].get("infer_compile"):
                train[i].append(_time_train(backend, images, labels, train_steps))
            stats = measure_latency(
                backend.predict_proba, [images], backend.synchronize, warmup=1, repeats=infer_repeats
            )
            infer[i].append(stats.images_per_s)
            latency[i].append(stats.latency_ms_p50)
    train_med = [float(np.median(t)) if t else None for t in train]
    infer_med = [float(np.median(t)) for t in infer]
    results = []
    for i in range(len(backends)):
        gflop_s = infer_med[i] * flops[i] / 1e9 if flops[i] else None
        results.append(
            VariantResult(
                variant=variants[i],
                dtype=infos[i].dtype,
                memory_format=str(infos[i].facts.get("memory_format", "")),
                compiled=bool(infos[i].facts.get("compiled", False)),
                train_images_per_s=train_med[i],
                train_ratio=None if train_med[i] is None else train_med[i] / train_med[0],
                infer_images_per_s=infer_med[i],
                infer_ratio=infer_med[i] / infer_med[0],
                infer_latency_ms_p50=float(np.median(latency[i])),
                rounds=rounds,
                infer_compiled=bool(parsed[i].get("infer_compile")),
                infer_prepare_s=prepare_s[i],
                infer_gflop_per_s=gflop_s,
                infer_mfu=gflop_s * 1e9 / peak_flop_per_s if gflop_s and peak_flop_per_s else None,
            )
        )
    return results


def format_table(results: Sequence[VariantResult]) -> str:
    """A GitHub-markdown table of the results."""
    from tabulate import tabulate

    mfu = any(r.infer_mfu is not None for r in results)
    rows = []
    for r in results:
        train = "— (inference only)" if r.train_images_per_s is None else f"{r.train_images_per_s:.1f}"
        row = [
            r.variant,
            r.dtype,
            r.memory_format,
            r.compiled,
            train,
            "—" if r.train_ratio is None else f"{r.train_ratio:.2f}x",
            f"{r.infer_images_per_s:.1f}",
            f"{r.infer_ratio:.2f}x",
            f"{r.infer_latency_ms_p50:.1f}",
        ]
        if mfu:
            row += [
                f"{r.infer_gflop_per_s:.0f}" if r.infer_gflop_per_s else "—",
                f"{100 * r.infer_mfu:.1f} %" if r.infer_mfu else "—",
            ]
        rows.append(row)
    headers = [
        "variant",
        "dtype",
        "memory_format",
        "compiled",
        "train img/s (median)",
        "train ratio",
        "infer img/s (median)",
        "infer ratio",
        "infer p50 ms/batch",
    ]
    if mfu:
        headers += ["infer GFLOP/s", "infer MFU"]
    table = tabulate(rows, headers=headers, tablefmt="github")
    compiled = [f"{r.variant} {r.infer_prepare_s:.1f} s" for r in results if r.infer_prepare_s is not None]
    if compiled:
        table += "\n\nCompiled for inference before the timed rounds (not in any throughput): " + ", ".join(compiled)
    return table


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        print(f"bench_torchvision_options: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    """Command-line options of the script."""
    parser = _Parser(
        prog="python -m tlbench.benchmarks.tools.bench_torchvision_options", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--backend", default="torchvision", help="a torch backend (torchvision, timm)")
    parser.add_argument("--model", default="resnet18")
    parser.add_argument(
        "--variants",
        default="fp32,channels_last,bf16,channels_last+bf16",
        help=f"comma-separated; tokens {', '.join(TOKENS)} joined by +",
    )
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved measurement rounds (medians over them)")
    parser.add_argument("--train-steps", type=int, default=5, help="timed train steps per round")
    parser.add_argument("--infer-repeats", type=int, default=10, help="timed inference batches per round (>= 10)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--mfu",
        action="store_true",
        help="add inference GFLOP/s and MFU against this machine's cached fp32 probe (probed first if missing)",
    )
    parser.add_argument("--out", type=Path, default=None, help="also write the results as JSON to this file")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; bad values print one line and return 2."""
    args = build_parser().parse_args(argv)
    if args.out is not None and not args.out.parent.is_dir():
        print(
            f"bench_torchvision_options: error: output directory {str(args.out.parent)!r} does not exist",
            file=sys.stderr,
        )
        return EXIT_USAGE
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    peak = None
    try:
        if args.mfu:
            from ..running.machine_peak import load_or_probe, peak_flop_per_s

            probe = load_or_probe(device=args.device, dtypes=("float32",), threads=_threads())
            peak = peak_flop_per_s(probe, "float32")
        results = bench(
            variants,
            args.backend,
            args.model,
            args.image_size,
            args.batch_size,
            rounds=args.rounds,
            train_steps=args.train_steps,
            infer_repeats=args.infer_repeats,
            device=args.device,
            peak_flop_per_s=peak,
        )
    except (BackendError, ValueError, KeyError) as exc:
        print(f"bench_torchvision_options: error: {str(exc).strip(chr(39) + chr(34))}", file=sys.stderr)
        return EXIT_USAGE
    cls = get_backend_class(args.backend)
    versions = ", ".join(f"{k} {v}" for k, v in cls.framework_versions().items())
    print(
        f"{args.backend}/{args.model}, {args.image_size} px, batch {args.batch_size}, device {args.device}, "
        f"{args.rounds} rounds (medians); {versions}"
        + (f"; MFU peak: probed fp32 {peak / 1e9:.0f} GFLOP/s" if peak else "")
    )
    print(format_table(results))
    if args.out is not None:
        args.out.write_text(json.dumps([asdict(r) for r in results], indent=2))
    return 0


def _threads() -> int:
    import torch

    return torch.get_num_threads()


if __name__ == "__main__":
    raise SystemExit(main())
