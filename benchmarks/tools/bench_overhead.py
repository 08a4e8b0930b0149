"""How close does the suite get to the machine? Cell throughput vs a bare hand-written loop, per backend.

For each backend (timm ``tf_efficientnet_lite0``, a torchvision and a Keras model) one round runs, each in its
own fresh process with the suite's tuned runtime (threads, allocator), interleaved so a noisy machine slows
them alike:

- ``suite``: a real ``scratch`` cell through the runner (``run_cell_subprocess``): its steady training
  images/s (``train_images_per_s``) and its inference images/s (median batch latency);
- ``bare``: the same model, batch, dtype and input size in a loop written by hand in the same framework:
  synthetic uint8 batches converted once per step, forward/backward/AdamW step; inference in
  ``torch.inference_mode`` / a ``tf.function``; a synchronized clock, the same warm-up. For torch the bare loop
  runs in both memory formats (contiguous NCHW and channels-last) and the faster one counts: the target is
  the best loop a user could write, not one handicapped by a layout.

The table shows medians over rounds and the ratio suite / bare (the target is >= 0.95). Run it on a quiet
machine (nothing else running; the cells record what other processes used)::

    python -m tlbench.benchmarks.tools.bench_overhead --rounds 3 --image-size 224 --batch-size 32 \\
        --out results/bench_overhead.md
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..running.runtime import runtime_settings

EXIT_USAGE = 2
#: (backend, model) pairs measured by default
DEFAULT_PAIRS = (("timm", "tf_efficientnet_lite0"), ("torchvision", "resnet18"), ("keras", "mobilenet_v2"))

BARE_TORCH = r"""
import json, sys, time
import numpy as np, torch
backend, model_name, size, batch, steps, repeats, channels_last = sys.argv[1:8]
size, batch, steps, repeats, channels_last = int(size), int(batch), int(steps), int(repeats), channels_last == "1"
torch.manual_seed(0)
if backend == "timm":
    import timm
    model = timm.create_model(model_name, pretrained=False, num_classes=10)
else:
    import torchvision
    model = torchvision.models.get_model(model_name, weights=None, num_classes=10)
fmt = torch.channels_last if channels_last else torch.contiguous_format
model = model.to(memory_format=fmt)
opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
rng = np.random.default_rng(0)
images = rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
labels = torch.from_numpy(rng.integers(0, 10, batch))
mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1) * 255
std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1) * 255
def to_input():
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float()
    return ((x - mean) / std).contiguous(memory_format=fmt)
def step():
    loss = torch.nn.functional.cross_entropy(model(to_input()), labels)
    opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
model.train()
for _ in range(2): step()
start = time.perf_counter()
for _ in range(steps): step()
train = steps * batch / (time.perf_counter() - start)
model.eval()
times = []
with torch.inference_mode():
    for _ in range(3): model(to_input())
    while len(times) < repeats or sum(times) < 2.0:
        t = time.perf_counter(); model(to_input()); times.append(time.perf_counter() - t)
print(json.dumps({"train_images_per_s": train, "infer_images_per_s": batch / float(np.median(times))}))
"""

BARE_KERAS = r"""
import json, os, sys, time
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np, keras, tensorflow as tf
backend, model_name, size, batch, steps, repeats, _ = sys.argv[1:8]
size, batch, steps, repeats = int(size), int(batch), int(steps), int(repeats)
keras.utils.set_random_seed(0)
from tlbench.backends.keras_models import model_info
info = model_info(model_name)
app = getattr(keras.applications, info.application)
preprocess = getattr(keras.applications, info.module).preprocess_input
inputs = keras.Input((None, None, 3))
trunk = app(include_top=False, weights=None, input_shape=(None, None, 3))
x = keras.layers.Conv2D(256, 1, activation="relu")(trunk(inputs))
x = keras.layers.Dropout(0.5)(x)
outputs = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(10, 1)(x))
model = keras.Model(inputs, outputs)
opt = keras.optimizers.AdamW(learning_rate=1e-3, weight_decay=1e-4)
loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
rng = np.random.default_rng(0)
images = rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
labels = rng.integers(0, 10, batch).astype(np.int64)
@tf.function
def step(images, labels):
    with tf.GradientTape() as tape:
        loss = loss_fn(labels, model(preprocess(tf.cast(images, tf.float32)), training=True))
    grads = tape.gradient(loss, model.trainable_variables)
    opt.apply(grads, model.trainable_variables)
    return loss
@tf.function
def predict(images):
    return model(preprocess(tf.cast(images, tf.float32)), training=False)
for _ in range(2): step(images, labels).numpy()
start = time.perf_counter()
for _ in range(steps): loss = step(images, labels)
loss.numpy()
train = steps * batch / (time.perf_counter() - start)
times = []
for _ in range(3): predict(images).numpy()
while len(times) < repeats or sum(times) < 2.0:
    t = time.perf_counter(); predict(images).numpy(); times.append(time.perf_counter() - t)
print(json.dumps({"train_images_per_s": train, "infer_images_per_s": batch / float(np.median(times))}))
"""


@dataclass(frozen=True)
class OverheadRow:
    """Medians over rounds for one backend/model and the suite/bare ratios."""

    backend: str
    model: str
    suite_train_images_per_s: float
    bare_train_images_per_s: float
    suite_infer_images_per_s: float
    bare_infer_images_per_s: float
    rounds: int
    disturbed_rounds: int

    @property
    def train_ratio(self) -> float:
        return self.suite_train_images_per_s / self.bare_train_images_per_s

    @property
    def infer_ratio(self) -> float:
        return self.suite_infer_images_per_s / self.bare_infer_images_per_s


def run_bare(
    backend: str, model: str, image_size: int, batch_size: int, steps: int, channels_last: bool, env: dict[str, str]
) -> dict[str, float]:
    """The hand-written loop in a fresh process with the suite's runtime environment."""
    script = BARE_KERAS if backend == "keras" else BARE_TORCH
    argv = [
        sys.executable,
        "-c",
        script,
        backend,
        model,
        str(image_size),
        str(batch_size),
        str(steps),
        "10",
        "1" if channels_last else "0",
    ]
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"bare {backend}/{model} loop failed: {proc.stderr.strip().splitlines()[-1:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_suite_cell(backend: str, model: str, image_size: int, batch_size: int, steps: int, out: Path) -> dict[str, Any]:
    """A real ``scratch`` cell through the runner's subprocess launcher (same code path as ``tlbench run``)."""
    from ..running.config import CellConfig, RunOptions, SuiteConfig
    from ..running.runner import run_cell_subprocess

    options = RunOptions(
        epochs=1,
        image_size=image_size,
        batch_size=batch_size,
        device="cpu",
        weights="none",
        allow_random_init=True,
        max_train_images=batch_size * (steps + 2),
        warmup_steps=2,
    )
    suite = SuiteConfig(
        name="overhead",
        backends=(backend,),
        models=(model,),
        strategies=("scratch",),
        datasets=("digits",),
        options=options,
    )
    record = run_cell_subprocess(CellConfig(backend, model, "scratch", "digits", 0), suite, out)
    if record.get("status") != "ok":
        raise RuntimeError(f"suite cell {backend}/{model} failed: {record.get('error')}")
    return record


def measure(
    pairs: Sequence[tuple[str, str]], image_size: int, batch_size: int, steps: int, rounds: int
) -> list[OverheadRow]:
    """Interleaved rounds of suite cell and bare loop per pair; medians."""
    from ..running.config import RunOptions
    from ..running.runtime import cell_environment

    env = cell_environment(runtime_settings(RunOptions()), {**os.environ, "PYTHONUNBUFFERED": "1"})
    samples: dict[tuple[str, str], dict[str, list[float]]] = {
        p: {k: [] for k in ("st", "bt", "si", "bi")} for p in pairs
    }
    disturbed = {p: 0 for p in pairs}
    with tempfile.TemporaryDirectory() as tmp:
        for round_index in range(rounds):
            for backend, model in pairs:
                record = run_suite_cell(backend, model, image_size, batch_size, steps, Path(tmp) / f"r{round_index}")
                layouts = (False,) if backend == "keras" else (False, True)
                runs = [run_bare(backend, model, image_size, batch_size, steps, layout, env) for layout in layouts]
                bare = {key: max(r[key] for r in runs) for key in ("train_images_per_s", "infer_images_per_s")}
                s = samples[(backend, model)]
                s["st"].append(record["train_images_per_s"])
                s["si"].append(record["infer_images_per_s"])
                s["bt"].append(bare["train_images_per_s"])
                s["bi"].append(bare["infer_images_per_s"])
                disturbed[(backend, model)] += bool((record.get("contention") or {}).get("disturbed"))
                print(
                    f"round {round_index + 1}/{rounds} {backend}/{model}: "
                    f"suite {record['train_images_per_s']:.1f}/{record['infer_images_per_s']:.1f}, "
                    f"bare {bare['train_images_per_s']:.1f}/{bare['infer_images_per_s']:.1f} img/s (train/infer)",
                    file=sys.stderr,
                    flush=True,
                )
    median = statistics.median
    return [
        OverheadRow(b, m, median(s["st"]), median(s["bt"]), median(s["si"]), median(s["bi"]), rounds, disturbed[(b, m)])
        for (b, m), s in samples.items()
    ]


def format_table(rows: list[OverheadRow], image_size: int, batch_size: int, threads: int) -> str:
    """Markdown table with the setting in its header line."""
    from tabulate import tabulate

    head = (
        f"suite cell vs bare loop, CPU float32, {image_size} px, batch {batch_size}, {threads} threads, "
        f"tuned allocator; medians over {rows[0].rounds if rows else 0} interleaved rounds"
    )
    table = [
        (
            r.backend,
            r.model,
            f"{r.suite_train_images_per_s:.1f}",
            f"{r.bare_train_images_per_s:.1f}",
            f"{r.train_ratio:.2f}",
            f"{r.suite_infer_images_per_s:.1f}",
            f"{r.bare_infer_images_per_s:.1f}",
            f"{r.infer_ratio:.2f}",
            r.disturbed_rounds,
        )
        for r in rows
    ]
    headers = [
        "backend",
        "model",
        "suite train img/s",
        "bare train img/s",
        "train ratio",
        "suite infer img/s",
        "bare infer img/s",
        "infer ratio",
        "disturbed rounds",
    ]
    return head + "\n\n" + tabulate(table, headers=headers, tablefmt="github")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; bad values print one line and return 2."""
    parser = argparse.ArgumentParser(
        prog="python -m tlbench.benchmarks.tools.bench_overhead", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--pairs", default=",".join(f"{b}:{m}" for b, m in DEFAULT_PAIRS), help="backend:model,...")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=8, help="timed training steps per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="also write the table (Markdown) here")
    args = parser.parse_args(argv)
    try:
        pairs = [tuple(item.split(":", 1)) for item in args.pairs.split(",") if item]
        if not pairs or any(len(p) != 2 for p in pairs):
            raise ValueError(f"--pairs must be backend:model,..., got {args.pairs!r}")
        for name, value in (
            ("image-size", args.image_size),
            ("batch-size", args.batch_size),
            ("steps", args.steps),
            ("rounds", args.rounds),
        ):
            if value < 1:
                raise ValueError(f"--{name} must be >= 1, got {value}")
    except ValueError as exc:
        print(f"bench_overhead: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    from ..running.config import RunOptions

    rows = measure(pairs, args.image_size, args.batch_size, args.steps, args.rounds)  # type: ignore[arg-type]
    text = format_table(rows, args.image_size, args.batch_size, runtime_settings(RunOptions()).threads)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            text
            + "\n\nMade by `python -m tlbench.benchmarks.tools.bench_overhead "
            + " ".join(sys.argv[1:] if argv is None else argv)
            + "`.\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
