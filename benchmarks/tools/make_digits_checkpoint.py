"""Make an offline "pretrained" checkpoint: train a model from scratch on a dataset (digits by default), save it.

The saved state dict is a transfer source for another dataset when no ImageNet weights can be downloaded::

    python -m tlbench.benchmarks.tools.make_digits_checkpoint --out /tmp/rn18_digits.pth
    tlbench run --backends torchvision --models resnet18 --weights /tmp/rn18_digits.pth \\
        --strategies linear_probe,partial_finetune,full_finetune --dataset medmnist:breastmnist.npz

Training is the ``scratch`` strategy's plan run by the suite's one training loop (``running.training``:
shuffled batches, validation accuracy each epoch, the best epoch's weights kept); a JSON sidecar
``<out>.json`` records where the weights came from and how good they are. Framework-free: the backend's
``save_weights`` writes its own safe format (a torch state dict; Keras ``.weights.h5``).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...backends import BackendError, ModelSpec, get_backend_class
from ...core.plan import make_plan
from ...core.strategies import STRATEGIES
from ...datasets import DatasetError, ResizePolicy, load_dataset
from ..running.cell_data import train_rows, train_split
from ..running.results import write_json_atomic
from ..running.training import Inputs, predict_in_batches, train_plan

EXIT_USAGE = 2


@dataclass(frozen=True)
class CheckpointResult:
    """What ``make_checkpoint`` trained and saved."""

    path: str
    best_epoch: int
    val_accuracy: float
    test_accuracy: float
    train_s: float
    num_classes: int

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict view for the JSON sidecar."""
        return dict(self.__dict__)


def accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy of class probabilities against integer labels."""
    return float((np.asarray(probs).argmax(1) == np.asarray(labels)).mean())


def make_checkpoint(
    out: str,
    backend_name: str = "torchvision",
    model: str = "resnet18",
    dataset: str = "digits",
    epochs: int = 3,
    image_size: int = 64,
    batch_size: int = 32,
    lr: float | None = None,
    seed: int = 0,
    in_chans: int = 3,
    max_train_images: int | None = None,
    cache_dir: str | None = None,
    device: str = "cpu",
) -> CheckpointResult:
    """Train ``model`` from scratch on ``dataset`` and save the best epoch's state dict to ``out``.

    Args:
        out: destination file (its directory must exist); a ``.json`` sidecar is written beside it.
        backend_name: a backend with ``save_weights`` (``torchvision`` or ``timm``).
        model: model name in that backend's namespace.
        dataset: dataset spec (``digits``, ``folder:PATH``...).
        epochs: training epochs (the best by validation accuracy is kept).
        image_size: square input side in pixels.
        batch_size: images per optimizer step.
        lr: learning rate (default: the ``scratch`` strategy's).
        seed: seed of the init, the batch order and the train subset.
        in_chans: 3, or 1 for a single-channel stem.
        max_train_images: train on a stratified subset of this size.
        cache_dir: dataset cache root.
        device: ``cpu``, ``cuda`` or ``auto``.

    Raises:
        BackendError: unknown model, or a backend that cannot save weights.
        DatasetError: bad dataset spec.
        ValueError: bad numeric argument or missing output directory.
    """
    out_dir = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(out_dir):
        raise ValueError(f"output directory {out_dir!r} does not exist; expected an existing directory for --out")
    for name, value in (("epochs", epochs), ("image-size", image_size), ("batch-size", batch_size)):
        if value < 1:
            raise ValueError(f"--{name} must be >= 1, got {value}")
    backend = get_backend_class(backend_name)(device)
    backend.validate_model(model)
    config = backend.default_data_config(model, image_size, "none")
    data = load_dataset(dataset, ResizePolicy(config.image_size, config.crop_pct, config.interpolation), cache_dir)
    train = train_split(data, train_rows(data, max_train_images, seed))
    val, test = data.splits["val"], data.splits["test"]
    spec = ModelSpec(
        name=model,
        num_classes=data.num_classes,
        image_size=image_size,
        weights="none",
        pretrained=False,
        in_chans=in_chans,
        seed=seed,
    )
    backend.build(spec)
    plan = make_plan(STRATEGIES["scratch"], backend.stages(), epochs=epochs, head_lr=lr, seed=seed)
    outcome = train_plan(
        backend,
        plan,
        Inputs(np.asarray(train.images), np.asarray(train.labels)),
        Inputs(val.images, np.asarray(val.labels)),
        batch_size,
        log=lambda message: print(message, file=sys.stderr, flush=True),
    )
    assert outcome.best_epoch is not None and outcome.best_val_accuracy is not None
    best = (outcome.best_val_accuracy, outcome.best_epoch)
    train_s = outcome.train_s
    test_acc = accuracy(predict_in_batches(backend.predict_proba, test.images, batch_size), test.labels)
    backend.save_weights(out)
    result = CheckpointResult(
        path=os.path.abspath(out),
        best_epoch=best[1],
        val_accuracy=best[0],
        test_accuracy=test_acc,
        train_s=train_s,
        num_classes=data.num_classes,
    )
    sidecar = {
        **result.to_dict(),
        "backend": backend_name,
        "model": model,
        "dataset": dataset,
        "epochs": epochs,
        "image_size": image_size,
        "in_chans": in_chans,
        "seed": seed,
        "data_config": config.__dict__,
        "framework_versions": backend.framework_versions(),
    }
    write_json_atomic(Path(out + ".json"), sidecar)
    return result


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        print(f"make_digits_checkpoint: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    """Command-line options of the script."""
    parser = _Parser(
        prog="python -m tlbench.benchmarks.tools.make_digits_checkpoint", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--out", required=True, help="destination .pth file")
    parser.add_argument("--backend", default="torchvision")
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--dataset", default="digits", help="dataset spec (see `tlbench list datasets`)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--in-chans", type=int, default=3, choices=(1, 3))
    parser.add_argument("--max-train-images", type=int, default=None)
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--device", default="cpu")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; bad values print one line and return 2."""
    args = build_parser().parse_args(argv)
    try:
        result = make_checkpoint(
            args.out,
            args.backend,
            args.model,
            args.dataset,
            args.epochs,
            args.image_size,
            args.batch_size,
            args.lr,
            args.seed,
            args.in_chans,
            args.max_train_images,
            args.cache_dir,
            args.device,
        )
    except (BackendError, DatasetError, ValueError, KeyError) as exc:
        print(f"make_digits_checkpoint: error: {str(exc).strip(chr(39) + chr(34))}", file=sys.stderr)
        return EXIT_USAGE
    print(
        f"saved {result.path}: best epoch {result.best_epoch}, val_accuracy={result.val_accuracy:.4f}, "
        f"test_accuracy={result.test_accuracy:.4f}, train {result.train_s:.1f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
