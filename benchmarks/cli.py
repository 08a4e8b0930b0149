"""The ``tlbench`` command line: ``run``, ``report``, ``explain``, ``export``, ``list``.

User mistakes (unknown backend/model/strategy/dataset, bad option values) print one line naming the bad
value and the valid choices, and exit with code 2 — never a traceback.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..backends import REGISTRY, BackendError, OptionsError, backend_entry, get_backend_class
from ..backends.base import WEIGHTS_NAME
from ..backends.options import options_from_flags
from ..core.cell_kinds import CellKindError, check_backbones
from ..core.plan import AUGMENTS, OPTIMIZERS, SCHEDULES, SELECT_BY, SELECT_FROM
from ..core.strategies import STRATEGIES, get_strategy
from ..datasets import DEDUP_POLICIES, GROUP_LEAKAGE_POLICIES, DatasetError, dataset_usages, parse_grouped_spec
from .increment_options import add_increment_arguments, increment_options
from .running.backend_options import backend_options
from .running.config import DEFAULT_SUITE, RunOptions, SuiteConfig, format_weights_map, parse_weights_map
from .running.halving import TUNE_SCHEDULERS
from .running.runtime import runtime_settings

EXIT_USAGE = 2
DEVICES = ("auto", "cpu", "cuda", "gpu")


class UsageError(Exception):
    """A bad command-line value; printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse prints usage too; keep it short)
        raise UsageError(message)


def _csv(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _choice_list(label: str, values: list[str], valid: Sequence[str]) -> tuple[str, ...]:
    for value in values:
        if value not in valid:
            raise UsageError(f"unknown {label} {value!r}; expected one of: {', '.join(valid)}")
    if not values:
        raise UsageError(f"--{label}s needs at least one value; expected some of: {', '.join(valid)}")
    return tuple(values)


def _teacher_option(path: str | None, strategies: tuple[str, ...], backends: tuple[str, ...]) -> str | None:
    """``--teacher`` checked against the matrix (``running.teacher.check_teacher_option``)."""
    from .running.teacher import check_teacher_option

    try:
        return check_teacher_option(path, [get_strategy(s) for s in strategies], backends)
    except BackendError as exc:
        raise UsageError(str(exc)) from None


def _deploy_option(text: str | None, backends: Sequence[str], infer_pass: bool) -> tuple[str, ...]:
    """``--deploy``: deployment runtimes that are installed, for backends that export, measured by the pass."""
    if not text:
        return ()
    from ..backends.onnx_export import DEPLOY_EXTRA, NO_EXPORTER, exportable, exportable_backends, missing_exporter
    from .running.deploy import DeployError, parse_deploy

    try:
        engines = parse_deploy(text)
    except DeployError as exc:
        raise UsageError(str(exc)) from None
    if not engines:
        raise UsageError("--deploy needs at least one engine name")
    for name in backends:
        if not exportable(name):
            reason = f" ({NO_EXPORTER[name]})" if name in NO_EXPORTER else ""
            raise UsageError(
                f"--deploy cannot export backend {name!r} to ONNX{reason}; expected some of: "
                f"{', '.join(exportable_backends())}"
            )
        missing = missing_exporter(name)
        if missing is not None:
            raise UsageError(
                f"--deploy needs the package {missing!r} to export backend {name!r}; install it with: "
                f"pip install 'tlbench[{DEPLOY_EXTRA}]'"
            )
    if not infer_pass:
        raise UsageError("--deploy is measured by the inference pass; drop --no-infer-pass (and --executor ray)")
    return engines


def _non_negative_seconds(name: str, value: float) -> float:
    if not (math.isfinite(value) and value >= 0):
        raise UsageError(f"--{name} must be a number of seconds >= 0, got {value}")
    return float(value)


def _positive(name: str, value: int, minimum: int = 1) -> int:
    if value < minimum:
        raise UsageError(f"--{name} must be >= {minimum}, got {value}")
    return value


def _train_sizes_option(args: argparse.Namespace) -> tuple[tuple[str, ...], int]:
    """``--train-sizes`` and ``--draws`` checked (label efficiency): the canonical sizes and the draws."""
    from ..datasets.subsets import parse_train_sizes

    if args.train_sizes is None:
        if args.draws is not None:
            raise UsageError(f"--draws {args.draws} needs --train-sizes (the draws are of the train subsets)")
        return (), 1
    try:
        sizes = parse_train_sizes(args.train_sizes)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.max_train_images is not None:
        raise UsageError(
            f"--max-train-images {args.max_train_images} and --train-sizes {args.train_sizes}: both subset the train "
            "split; keep one"
        )
    if args.tune:
        raise UsageError(
            f"--tune and --train-sizes {args.train_sizes}: the trials would tune on the whole train split; drop one"
        )
    if args.teacher:
        raise UsageError(
            f"--teacher and --train-sizes {args.train_sizes}: the teacher learnt from the whole train split's labels; "
            "drop one"
        )
    return sizes, _positive("draws", 1 if args.draws is None else args.draws)


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of the ``tlbench`` command."""
    defaults = SuiteConfig()
    opts = RunOptions()
    parser = _Parser(prog="tlbench", description="Compare transfer-learning strategies and frameworks.")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)

    run = sub.add_parser("run", help="run a suite (backend × model × strategy × dataset × seed)")
    run.add_argument(
        "suite_file",
        nargs="?",
        type=Path,
        default=None,
        help="a suite file (suites/<name>.toml): keys are the flags below without dashes; flags given here override it",
    )
    run.add_argument(
        "--suite",
        default=None,
        help=f"suite name; results go to results/<suite> (default: the suite file's name, else {DEFAULT_SUITE})",
    )
    run.add_argument("--out", type=Path, help="write the suite to this directory instead of results/<suite>")
    run.add_argument(
        "--backends", default=",".join(defaults.backends), help=f"comma-separated, from: {', '.join(REGISTRY)}"
    )
    run.add_argument(
        "--models", default=",".join(defaults.models), help="comma-separated model names (per backend namespace)"
    )
    run.add_argument(
        "--strategies", default=",".join(defaults.strategies), help=f"comma-separated, from: {', '.join(STRATEGIES)}"
    )
    run.add_argument(
        "--dataset",
        "--datasets",
        dest="datasets",
        default=",".join(defaults.datasets),
        help="comma-separated dataset specs (see `tlbench list datasets`)",
    )
    run.add_argument("--seeds", default=",".join(map(str, defaults.seeds)), help="comma-separated integer seeds")
    run.add_argument("--epochs", type=int, default=opts.epochs)
    run.add_argument(
        "--image-size",
        type=int,
        default=None,
        help="square input side in pixels (default: each model's native pretrained size; the default suite: 64)",
    )
    run.add_argument("--batch-size", type=int, default=opts.batch_size)
    run.add_argument("--device", default=opts.device, help="auto (GPU when present), cpu, cuda[:N]")
    run.add_argument(
        "--weights",
        default=opts.weights,
        help="default (backend's pretrained), none, a local weights file, or a weights name (torchvision: "
        "IMAGENET1K_V1...); per backend: keras=FILE,torchvision=FILE (unnamed backends get default)",
    )
    run.add_argument(
        "--allow-random-init",
        action="store_true",
        help="fall back to random init when pretrained weights are unavailable (recorded as pretrained=none)",
    )
    run.add_argument(
        "--in-chans",
        type=int,
        default=opts.in_chans,
        choices=(1, 3),
        help="1: adapt the first conv to gray input; 3: replicate gray",
    )
    run.add_argument("--optimizer", default=opts.optimizer, help=f"one of: {', '.join(OPTIMIZERS)}")
    run.add_argument("--lr", type=float, default=None, help="head learning rate (default: the strategy's)")
    run.add_argument("--augment", default=opts.augment, help=f"training augmentation on device: {', '.join(AUGMENTS)}")
    run.add_argument(
        "--clip-grad-norm",
        type=float,
        default=None,
        metavar="X",
        help="clip the global norm of the gradients of all trainable parameters at X before each step (default: none)",
    )
    run.add_argument(
        "--schedule",
        default=opts.schedule,
        help=f"learning-rate schedule within each phase: {', '.join(SCHEDULES)} (cosine: linear warm-up of "
        "--lr-warmup-epochs, then cosine annealing; step: x --step-gamma every --step-every epochs; default: none)",
    )
    run.add_argument(
        "--lr-warmup-epochs", type=int, default=opts.lr_warmup_epochs, help="--schedule cosine: warm-up epochs"
    )
    run.add_argument("--step-every", type=int, default=opts.step_every, help="--schedule step: epochs between decays")
    run.add_argument("--step-gamma", type=float, default=opts.step_gamma, help="--schedule step: factor of each decay")
    run.add_argument(
        "--patience",
        type=int,
        default=None,
        help="early stopping: end the last phase after N epochs without a better validation score (--epochs is then "
        "the maximum; default: every epoch runs)",
    )
    run.add_argument(
        "--select-by",
        default=opts.select_by,
        help=f"validation metric that picks the epoch (and the C of logistic probes): {', '.join(SELECT_BY)} "
        "(default: accuracy)",
    )
    run.add_argument(
        "--tune",
        action="store_true",
        help="tune every strategy on validation first, with the same trial budget (its row's search space: learning "
        "rates per strategy family, weight decay, the logistic probe's C, k-NN's k): trial cells train on train and "
        "are scored on val by --select-by (on the first seed, in <suite>/tuning/, never reading test); the winner then "
        "runs on every seed (default: off, the strategies' own settings)",
    )
    run.add_argument(
        "--tune-scheduler",
        default=opts.tune_scheduler,
        help="with --tune: halving (default: successive halving, eta 3: the trials of strategies that train a backbone "
        "run every point for a third of --epochs, the best third again for all of them; probes run every point) or "
        "grid (every point for every epoch)",
    )
    run.add_argument(
        "--tune-eta",
        type=int,
        default=opts.tune_eta,
        help="with --tune-scheduler halving: each rung keeps the best 1/ETA of its trials, which then train ETA times "
        "more epochs (default: 3; at least 2)",
    )
    run.add_argument(
        "--select-from",
        default=opts.select_from,
        help="candidate epochs: all (default: every epoch of every phase) or main (the last phase's: LP-FT's "
        "fine-tuning, full fine-tuning after its head warm-up)",
    )
    run.add_argument("--channels-last", action="store_true", help="torch backends: channels-last memory format")
    run.add_argument("--amp", default="", help="mixed precision: bf16 (CPU/GPU) or fp16 (GPU)")
    run.add_argument("--compile", action="store_true", help="torch backends: torch.compile for training")
    run.add_argument(
        "--infer-compile",
        action="store_true",
        help="torch backends: after training, torch.compile the trained model for inference with inductor freezing "
        "(weights folded in; compile seconds in infer_prepare_s)",
    )
    run.add_argument("--jit-compile", action="store_true", help="keras backend: XLA jit_compile")
    run.add_argument(
        "--head",
        default=None,
        help="classifier head: native (the model's own; torch default), fcn (Keras' 1x1-conv head on the trunk's "
        "map; VGG models in torch, the keras default) or mlp (seed 002's 512-256-128 MLP with ReLU and dropout 0.5 on "
        "the pooled features; every torch and keras model)",
    )
    run.add_argument("--max-train-images", type=int, default=None, help="train on a stratified subset of this size")
    add_increment_arguments(run)
    run.add_argument(
        "--train-sizes",
        default=None,
        help="label-efficiency curves: train subsets as images per class (5,10,25,50) and/or fractions of each class "
        "(10%%,25%%,100%%), nested, stratified, group-aware; each size x draw is a cell (val and test stay whole)",
    )
    run.add_argument(
        "--draws", type=int, default=None, help="with --train-sizes: independent draws of the subsets (default 1)"
    )
    run.add_argument(
        "--min-time",
        type=float,
        default=opts.infer_min_time_s,
        help="inference timing: keep timing batches until at least this many seconds are covered (default: "
        "%(default)s)",
    )
    run.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="before each cell, wait up to SECONDS for other processes to use at most 10%% of the cores (the wait is "
        "recorded; a cell still disturbed is flagged as usual; default: 0, no wait)",
    )
    run.add_argument(
        "--no-infer-pass",
        action="store_true",
        help="keep each cell's own inference timing (made in its process right after training) instead of timing "
        "again, after the suite, the cells of each model interleaved in one fresh process",
    )
    run.add_argument(
        "--deploy",
        default=None,
        metavar="ENGINES",
        help=(
            "after training, export each model and time it in these deployment runtimes beside the framework, in "
            "the inference pass, with its test accuracy: comma-separated, from onnxruntime, onnxruntime-int8, "
            "openvino, openvino-int8 (pip install 'tlbench[deploy]'; default: none)"
        ),
    )
    run.add_argument("--infer-repeats", type=int, default=opts.infer_repeats, help="timed inference batches (>= 10)")
    run.add_argument(
        "--dedup",
        default=opts.dedup,
        help="exact duplicate images: drop (default: cross-split copies leave val/test, one copy kept per split, "
        "conflicting labels removed), keep (report only), error",
    )
    run.add_argument(
        "--group-by",
        default=None,
        metavar="PATTERN|column:NAME",
        help="patient-level splits: a regular expression whose first group names the patient in each image file's "
        "path relative to the dataset root (e.g. 'person(\\d+)_'), or column:NAME of a csv: dataset; carved val/test "
        "take whole patients, and patients in more than one split are counted",
    )
    run.add_argument(
        "--group-leakage",
        default=opts.group_leakage,
        help="with --group-by, patients in more than one split: drop (default: their images leave the later split), "
        "keep (report only), error",
    )
    run.add_argument(
        "--near-duplicates",
        action="store_true",
        help="also count near-duplicates across splits (perceptual hash; reported, never dropped)",
    )
    run.add_argument(
        "--teacher",
        default=None,
        help="for --strategies distill: a finished cell directory <suite>/cells/<cell_id> that saved its weights "
        "(TLBENCH_SAVE_WEIGHTS=1)",
    )
    run.add_argument(
        "--threads", type=int, default=None, help="intra-op threads of every cell (default: the cores available)"
    )
    run.add_argument(
        "--allocator",
        default=opts.allocator,
        help="memory allocator of cell processes: auto (jemalloc/tcmalloc when installed, else glibc with tuned "
        "MALLOC_* thresholds), glibc-tuned, jemalloc, tcmalloc, system",
    )
    run.add_argument(
        "--cache-dir", default=None, help="dataset cache root (default: $TLBENCH_CACHE or ~/.cache/tlbench)"
    )
    run.add_argument("--cell-timeout", type=float, default=None, help="kill a cell after this many seconds")
    run.add_argument(
        "--reuse-results",
        action="store_true",
        help="count cells finished in another environment (machine, package versions) as done instead of re-running "
        "them",
    )
    run.add_argument(
        "--no-probe",
        action="store_true",
        help="skip the machine probe (matmul/conv FLOP/s per dtype, cached per machine): no MFU columns, no --amp "
        "speed warning",
    )
    run.add_argument(
        "--executor",
        default="local",
        help="where cells run: local (this machine; default) or ray (a Ray cluster: pip install 'tlbench[ray]')",
    )
    run.add_argument(
        "--parallel",
        type=int,
        default=None,
        help="--executor local: cells at once (default 1); with GPUs, one worker per GPU, each cell pinned to its GPU",
    )
    run.add_argument(
        "--ray-address",
        default=None,
        help="--executor ray: the cluster (auto, HOST:6379, ray://HOST:10001); default: start a local one",
    )
    run.add_argument("--verbose", "-v", action="store_true", help="stream each cell's log to stderr")
    run.add_argument("--no-report", action="store_true", help="do not write the summary tables at the end")

    report = sub.add_parser("report", help="write the answer and summary tables for one suite, or several together")
    report.add_argument("suite_dir", type=Path, nargs="+", help="suite directories (several: ranked across datasets)")
    report.add_argument(
        "--out", type=Path, default=None, help="report directory (default: the suite; needed for several)"
    )
    report.add_argument(
        "--select-by",
        default="auto",
        help="ranking metric: auto (ROC-AUC if all configurations have it, else accuracy), roc_auc or accuracy",
    )
    report.add_argument(
        "--operating-point",
        default="youden",
        help="binary threshold chosen on validation: youden (default) or sens:X, e.g. sens:0.95",
    )
    report.add_argument(
        "--positive-class", default=None, help="class counted as positive for sensitivity (default: the non-normal one)"
    )

    explain = sub.add_parser("explain", help="feature maps (and Grad-CAM) of one cell's model on one stored test image")
    explain.add_argument("suite_dir", type=Path)
    explain.add_argument(
        "--cell", default=None, help="cell id, i.e. the name of its cells/ directory (default: the most accurate cell)"
    )
    explain.add_argument(
        "--image", type=int, default=0, help="index of the cell's stored test image (default: %(default)s)"
    )
    explain.add_argument("--stages", type=int, default=4, help="backbone stages to show, 1..8 (default: %(default)s)")
    explain.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    explain.add_argument(
        "--out", type=Path, default=None, help="PNG path (default: <suite>/explain/<cell>__img<N>.png)"
    )

    export = sub.add_parser(
        "export", help="export a suite's results to an experiment tracker (mlflow: one MLflow run per cell)"
    )
    export.add_argument("tracker", choices=("mlflow",), help="mlflow (needs the extra: pip install 'tlbench[mlflow]')")
    export.add_argument("suite_dir", type=Path)
    export.add_argument(
        "--tracking-uri",
        default=None,
        help="MLflow tracking URI, e.g. sqlite:///mlflow.db or http://host:5000 (default: $MLFLOW_TRACKING_URI, "
        "else MLflow's local default)",
    )
    export.add_argument("--experiment", default=None, help="experiment name (default: tlbench/<suite name>)")
    parser.set_defaults(run_parser=run)  # suite files become this parser's flags (apply_suite_file)

    lister = sub.add_parser("list", help="list backends, models, strategies or datasets")
    lister.add_argument("what", choices=("backends", "models", "strategies", "datasets"))
    lister.add_argument("--backend", default=None, help="for `list models`: only this backend")
    return parser


def _validate_models(backends: tuple[str, ...], models: list[str], options: RunOptions) -> None:
    """Every model and weights value through each backend's own ``validate_model``/``validate_weights``."""
    for backend in backends:
        weights = options.weights_for(backend)
        try:
            cls = get_backend_class(backend)
            for model in (part for name in models for part in name.split("+")):
                cls.validate_model(model)
                cls.validate_weights(model, weights)
        except BackendError as exc:
            raise UsageError(str(exc)) from None


def _backend_options(
    backends: tuple[str, ...], args: argparse.Namespace, device: str, image_size: int | None, in_chans: int
) -> dict[str, dict]:
    """One typed options object per backend from the flags, each validated against the run's settings.

    Raises:
        UsageError: a flag the backend does not take, or a combination it cannot honour (one line).
    """
    from .running.environment import gpu_names

    flags = {
        "amp": args.amp,
        "channels_last": args.channels_last,
        "compile": args.compile,
        "infer_compile": args.infer_compile,
        "jit_compile": args.jit_compile,
        "head": args.head,
    }
    gpu_visible = bool(gpu_names()) if device in ("auto", "cuda", "gpu") or device.startswith("cuda:") else False
    result = {}
    for backend in backends:
        entry = backend_entry(backend)
        try:
            typed = options_from_flags(backend, entry.options, flags)
            typed.validate(
                backend,
                device=device,
                image_size=image_size if image_size is not None else 224,
                in_chans=in_chans,
                gpu_visible=gpu_visible,
            )
        except OptionsError as exc:
            raise UsageError(str(exc)) from None
        result[backend] = typed.to_dict()
    return result


def _weights_value(value: str, label: str | None = None) -> str:
    """Check one weights value.

    A file inside the working directory is kept relative to it (cells run there too), so committed results name
    no machine-specific path; a file elsewhere becomes absolute.
    """
    value = "default" if value == "DEFAULT" else value
    if value in ("default", "none"):
        return value
    if os.path.isfile(value):
        path = os.path.abspath(value)
        inside = os.path.relpath(path)
        return inside if not inside.startswith(os.pardir) else path
    if not WEIGHTS_NAME.fullmatch(value):
        label = label or f"--weights {value!r}"
        raise UsageError(f"{label} is not a file; expected default, none, a local weights file or a weights name")
    return value


def _weights_option(text: str, backends: Sequence[str]) -> str:
    """Check ``--weights``: one value for every backend, or a ``backend=VALUE,...`` map over ``--backends``."""
    try:
        mapping = parse_weights_map(text)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if mapping is None:
        return _weights_value(text)
    for name in mapping:
        if name not in backends:
            raise UsageError(
                f"--weights names backend {name!r}, which is not in --backends; expected some of: {', '.join(backends)}"
            )
    return format_weights_map(
        {name: _weights_value(value, f"--weights {name}={value!r}") for name, value in mapping.items()}
    )


def suite_from_args(args: argparse.Namespace) -> SuiteConfig:
    """Check every value of ``tlbench run`` and build the suite.

    Raises:
        UsageError: a bad value (message names it and the valid choices).
    """
    backends = _choice_list("backend", _csv(args.backends), list(REGISTRY))
    strategies = tuple(_csv(args.strategies))
    if not strategies:
        raise UsageError(f"--strategies needs at least one value; expected some of: {', '.join(STRATEGIES)}")
    for name in strategies:
        try:
            get_strategy(name)
        except KeyError as exc:
            raise UsageError(str(exc.args[0])) from None
    models = _csv(args.models)
    if not models:
        raise UsageError("--models needs at least one model name")
    for name in strategies:
        try:  # the kind of cell takes as many backbones as the strategy says (fusion: a+b)
            check_backbones(get_strategy(name), models)
        except CellKindError as exc:
            raise UsageError(str(exc)) from None
    datasets = _csv(args.datasets)
    if not datasets:
        raise UsageError("--dataset needs at least one dataset spec")
    for spec in datasets:
        try:
            parse_grouped_spec(spec, args.group_by)
        except DatasetError as exc:
            raise UsageError(str(exc)) from None
    try:
        seeds = tuple(int(s) for s in _csv(args.seeds))
    except ValueError:
        raise UsageError(f"--seeds expects comma-separated integers, got {args.seeds!r}") from None
    if not seeds:
        raise UsageError("--seeds needs at least one integer")
    train_sizes, draws = _train_sizes_option(args)
    device = args.device.lower()
    if device not in DEVICES and not device.startswith("cuda:"):
        raise UsageError(f"unknown device {args.device!r}; expected one of: {', '.join(DEVICES)}, cuda:N")
    if device in ("cuda", "gpu") or device.startswith("cuda:"):
        from .running.environment import gpu_names

        if not gpu_names():
            raise UsageError(f"--device {args.device} requested but no NVIDIA GPU is visible; use --device cpu or auto")
    for label, value, valid in (
        ("augment", args.augment, AUGMENTS),
        ("optimizer", args.optimizer, OPTIMIZERS),
        ("dedup", args.dedup, DEDUP_POLICIES),
        ("group-leakage", args.group_leakage, GROUP_LEAKAGE_POLICIES),
        ("schedule", args.schedule, SCHEDULES),
        ("select-by", args.select_by, SELECT_BY),
        ("select-from", args.select_from, SELECT_FROM),
        ("tune-scheduler", args.tune_scheduler, TUNE_SCHEDULERS),
    ):
        if value not in valid:
            raise UsageError(
                f"unknown --{label} {value!r}; expected one of: {', '.join(v or '(empty)' for v in valid)}"
            )
    weights = _weights_option(args.weights, backends)
    if args.lr is not None and not (args.lr > 0 and math.isfinite(args.lr)):
        raise UsageError(f"--lr must be a positive number, got {args.lr}")
    if args.tune and args.lr is not None:
        raise UsageError(f"--lr {args.lr} and --tune: the tuned learning rate replaces --lr; drop one of them")
    if args.clip_grad_norm is not None and not (args.clip_grad_norm > 0 and math.isfinite(args.clip_grad_norm)):
        raise UsageError(f"--clip-grad-norm must be a positive number, got {args.clip_grad_norm}")
    if not (0 < args.step_gamma <= 1):
        raise UsageError(f"--step-gamma must be in (0, 1], got {args.step_gamma}")
    if args.cell_timeout is not None and not (args.cell_timeout > 0 and math.isfinite(args.cell_timeout)):
        raise UsageError(f"--cell-timeout must be a positive number of seconds, got {args.cell_timeout}")
    default_matrix = (backends, tuple(models), tuple(datasets)) == (
        SuiteConfig().backends,
        SuiteConfig().models,
        SuiteConfig().datasets,
    )
    if args.image_size is not None:
        image_size: int | None = _positive("image-size", args.image_size, 16)
    else:  # the default suite keeps its 64 px; any other matrix runs at each model's native pretrained size
        image_size = RunOptions().image_size if default_matrix else None
    try:
        increments = increment_options(args, strategies, models)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    options = RunOptions(
        epochs=_positive("epochs", args.epochs),
        image_size=image_size,
        batch_size=_positive("batch-size", args.batch_size),
        device=device,
        weights=weights,
        allow_random_init=args.allow_random_init,
        in_chans=args.in_chans,
        optimizer=args.optimizer,
        lr=args.lr,
        augment=args.augment,
        backend_options=_backend_options(backends, args, device, image_size, args.in_chans),
        max_train_images=None
        if args.max_train_images is None
        else _positive("max-train-images", args.max_train_images, 2),
        infer_repeats=_positive("infer-repeats", args.infer_repeats, 10),
        infer_min_time_s=_non_negative_seconds("min-time", args.min_time),
        wait_quiet_s=_non_negative_seconds("wait-quiet", args.wait_quiet),
        infer_pass=not args.no_infer_pass and args.executor != "ray",
        deploy=_deploy_option(args.deploy, backends, not args.no_infer_pass and args.executor != "ray"),
        dedup=args.dedup,
        near_duplicates=args.near_duplicates,
        group_by=args.group_by,
        group_leakage=args.group_leakage,
        schedule=args.schedule,
        lr_warmup_epochs=_positive("lr-warmup-epochs", args.lr_warmup_epochs, 0),
        step_every=_positive("step-every", args.step_every),
        step_gamma=args.step_gamma,
        patience=None if args.patience is None else _positive("patience", args.patience),
        select_by=args.select_by,
        select_from=args.select_from,
        clip_grad_norm=args.clip_grad_norm,
        tune=args.tune,
        tune_scheduler=args.tune_scheduler,
        tune_eta=_positive("tune-eta", args.tune_eta, 2),
        threads=args.threads,
        allocator=args.allocator,
        teacher=_teacher_option(args.teacher, strategies, backends),
        cache_dir=args.cache_dir,
        **increments,
    )
    try:
        runtime_settings(options)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    _validate_models(backends, models, options)
    return SuiteConfig(
        name=args.suite or DEFAULT_SUITE,
        backends=backends,
        models=tuple(models),
        strategies=strategies,
        datasets=tuple(datasets),
        seeds=seeds,
        options=options,
        train_sizes=train_sizes,
        draws=draws,
    )


def cell_summary(record: dict[str, Any]) -> str:
    """One line about a finished cell: its identity and its headline figures or its error."""
    subset = f"/{record['train_size']}-d{record['draw']}" if record.get("train_size") is not None else ""
    name = f"{record['backend']}/{record['model']}/{record['strategy']}/{record['dataset']}{subset}/s{record['seed']}"
    if record.get("status") == "ok":
        if record.get("train_images_per_s") is not None:
            train = f"train={record['train_images_per_s']:.1f} img/s"
        elif record.get("feature_cache") == "hit":
            train = f"features read from the cache in {record.get('feature_cache_read_s') or 0:.2f} s"
        else:
            train = f"features={record.get('feature_extract_images_per_s') or float('nan'):.1f} img/s"
        tuning = record.get("tuning") or {}
        if "trial" in tuning:  # a tuning trial: scored on val, never tested nor timed at inference
            score = tuning.get("val_score")
            shown = f"{score:.3f}" if isinstance(score, (int, float)) else "-"
            return f"{name}: trial val {tuning.get('by')}={shown} {train} wall={record['wall_s']:.1f} s"
        infer = f"infer={record['infer_images_per_s']:.1f} img/s"
        line = f"{name}: accuracy={record['accuracy']:.3f} {train} {infer} wall={record['wall_s']:.1f} s"
        from .reporting.incremental import increments_note  # reporting (pandas) only once a cell has finished

        return line + increments_note(record) + data_notes(record)
    return f"{name}: FAILED: {record.get('error')}"


def data_notes(record: dict[str, Any]) -> str:
    """``; 4 cross-split duplicate(s) dropped; 2 unreadable image(s) skipped`` when the data needed attention."""
    notes = []
    dups = record.get("duplicates") or {}
    if dups.get("cross_split") or dups.get("conflicting_labels"):
        action = "dropped" if dups.get("policy") == "drop" else "KEPT"
        notes.append(
            f"{dups.get('cross_split', 0)} cross-split duplicate(s), {dups.get('conflicting_labels', 0)} conflicting "
            f"label(s) {action}"
        )
    groups = record.get("groups") or {}
    if groups.get("shared_groups"):
        action = "dropped" if groups.get("policy") == "drop" else "KEPT"
        notes.append(
            f"{groups['shared_groups']} patient group(s) in more than one split, "
            f"{groups.get('leaked_images', 0)} later-split image(s) {action}"
        )
    if record.get("skipped_images"):
        notes.append(f"{record['skipped_images']} unreadable image(s) skipped")
    return "".join(f"; {note}" for note in notes)


def probe_engine(backends: tuple[str, ...] | list[str]) -> str:
    """The engine whose kernels the machine probe times: the first installed engine among the suite's backends'
    (in ``ENGINES`` order, so a suite mixing torch and Keras probes with torch), else the first installed one."""
    from ..backends.engines import ENGINES, engine_available

    wanted = {REGISTRY[name].engine for name in backends if name in REGISTRY}
    for name in ENGINES:
        if name in wanted and engine_available(name):
            return name
    return next((name for name in ENGINES if engine_available(name)), next(iter(ENGINES)))


def probe_machine_for(suite: SuiteConfig) -> dict[str, Any] | None:
    """Measure (or read from its per-machine cache) this machine's matmul/conv FLOP/s per dtype, in a subprocess
    with the cells' runtime, before any cell runs; warn about ``--amp`` dtypes slower than float32 here.

    The probe's file is handed to the cells (``TLBENCH_PROBE_FILE``) for their MFU columns and recorded in
    ``environment.json``. The probe runs on the engine of the suite's backends (``probe_engine``).
    """
    import json
    import subprocess

    from .running.environment import PROBE_FILE_ENV, gpu_names
    from .running.machine_peak import amp_warning, default_cache_dir
    from .running.runtime import cell_environment

    options = suite.options
    runtime = runtime_settings(options)
    device = (
        "cuda"
        if options.device in ("cuda", "gpu")
        or options.device.startswith("cuda")
        or (options.device == "auto" and gpu_names())
        else "cpu"
    )
    cache = default_cache_dir(options.cache_dir)  # --cache-dir: <cache-dir>/probe
    command = [
        sys.executable,
        "-m",
        "tlbench.benchmarks.running.machine_peak",
        "--device",
        device,
        "--threads",
        str(runtime.threads),
        "--engine",
        probe_engine(suite.backends),
        "--cache-dir",
        str(cache),
    ]
    try:
        proc = subprocess.run(
            command, capture_output=True, text=True, timeout=600, env=cell_environment(runtime, os.environ)
        )
        probe = json.loads(proc.stdout) if proc.returncode == 0 else None
    except (OSError, subprocess.SubprocessError, ValueError):
        probe = None
    if probe is None:
        print("tlbench: machine probe unavailable (no engine installed?); MFU columns stay empty", file=sys.stderr)
        return None
    path = cache / f"last-{os.getpid()}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(probe))
    os.environ[PROBE_FILE_ENV] = str(path)
    fp32 = probe.get("matmul_flop_per_s", {}).get("float32") or 0
    print(
        f"tlbench: machine probe ({device}, {probe.get('threads')} threads): float32 matmul {fp32 / 1e9:.0f} GFLOP/s",
        file=sys.stderr,
    )
    for backend in suite.backends:
        warning = amp_warning(probe, backend_options(options, backend).amp)
        if warning:
            print(f"tlbench: WARNING: {backend}: {warning}", file=sys.stderr)
    return probe


def apply_suite_file(
    parser: argparse.ArgumentParser, argv: Sequence[str], args: argparse.Namespace
) -> argparse.Namespace:
    """``tlbench run FILE [flags]``: the file's keys as flags, then the command line's own (which win).

    The file's flags are first parsed alone, so a bad value in it names the file.

    Raises:
        UsageError: an unreadable file, an unknown key, a bad value (one line).
    """
    from .suite_files import SuiteFileError, suite_file_tokens

    try:
        tokens = suite_file_tokens(args.suite_file, args.run_parser)
    except SuiteFileError as exc:
        raise UsageError(str(exc)) from None
    argv = list(argv)
    at = argv.index("run") + 1
    try:
        file_only = parser.parse_args(argv[:at] + [str(args.suite_file)] + tokens)
    except UsageError as exc:
        raise UsageError(f"{args.suite_file}: {exc}") from None
    merged = parser.parse_args(argv[:at] + tokens + argv[at:])
    merged.file_args = file_only  # to tell a bad value of the file from one of the command line
    return merged


def run_suite_from_args(args: argparse.Namespace) -> SuiteConfig:
    """``suite_from_args``; a value the suite file got wrong (and the command line did not override) is reported
    with the file's name.

    Raises:
        UsageError: a bad value (one line).
    """
    try:
        return suite_from_args(args)
    except UsageError as exc:
        file_only = getattr(args, "file_args", None)
        if file_only is not None:
            try:
                suite_from_args(file_only)
            except UsageError as alone:
                if str(alone) == str(exc):
                    raise UsageError(f"{args.suite_file}: {exc}") from None
        raise


def suite_directory(
    args: argparse.Namespace, suite: SuiteConfig, say: Callable[[str], None]
) -> tuple[Path, SuiteConfig]:
    """Where ``suite`` runs: ``--out``, else ``results/<suite name>``; a directory holds one matrix.

    A different matrix without ``--suite``/``--out``/suite file goes to ``results/<model>-<dataset>-<hash8>``
    instead of the default suite's directory (said through ``say``).

    Raises:
        UsageError: the directory asked for holds another matrix (one line).
    """
    from dataclasses import replace

    from .suite_files import matrix_differences, matrix_dir_name, recorded_suite

    out_dir = args.out if args.out is not None else Path("results") / suite.name
    existing = recorded_suite(out_dir)
    if existing is None or existing.matrix() == suite.matrix():
        return out_dir, suite
    differences = "; ".join(matrix_differences(existing, suite))
    if args.out is not None or args.suite is not None:
        raise UsageError(
            f"suite directory {str(out_dir)!r} holds another matrix ({differences}); choose another --suite or --out, "
            "or remove the directory to start it over"
        )
    name = matrix_dir_name(suite)
    moved = Path("results") / name
    other = recorded_suite(moved)
    if other is not None and other.matrix() != suite.matrix():
        raise UsageError(f"suite directory {str(moved)!r} holds another matrix; name this run's suite with --suite")
    say(f"tlbench: {out_dir} holds another matrix ({differences}); this one goes to {moved}")
    return moved, replace(suite, name=name)


def command_run(args: argparse.Namespace) -> int:
    from .console_summary import console_summary
    from .reporting.report import write_report
    from .running.executors import ExecutorError, make_executor
    from .running.results import cell_key, latest_by_cell, load_results
    from .running.runner import RESULTS_FILE, RunInterrupted, run_suite
    from .running.tuning_run import run_tuned_suite

    suite = run_suite_from_args(args)
    try:
        executor = make_executor(args.executor, parallel=args.parallel, ray_address=args.ray_address)
    except ExecutorError as exc:
        raise UsageError(str(exc)) from None
    out_dir, suite = suite_directory(args, suite, lambda line: print(line, file=sys.stderr, flush=True))
    total = len(suite.cells())
    print(f"tlbench: suite {suite.name!r}: {total} cell(s) -> {out_dir}", file=sys.stderr, flush=True)
    if args.executor == "ray" and not args.no_infer_pass:
        print(
            "tlbench: no inference pass with --executor ray: each cell's inference figures are its own, timed on its "
            "node right after training (see docs/methodology.md)",
            file=sys.stderr,
        )
    if not args.no_probe:
        probe_machine_for(suite)
    from .live_console import LiveConsole
    from .running import progress
    from .running.artifacts import cell_dir

    # one live line per running cell on a terminal (not while cell logs stream to it); plain lines otherwise
    console = LiveConsole(sys.stderr, live=sys.stderr.isatty() and not args.verbose)

    def on_result(index: int, todo: int, record: dict[str, Any]) -> None:
        console.cell_finished(cell_dir(out_dir, record).name, f"[{index}/{todo}] {cell_summary(record)}")

    try:
        with progress.listening(console):
            produced = (run_tuned_suite if suite.options.tune else run_suite)(
                suite,
                out_dir,
                timeout_s=args.cell_timeout,
                stream=args.verbose,
                on_result=on_result,
                reuse_other_environments=args.reuse_results,
                on_message=lambda line: console.message(f"tlbench: {line}"),
                executor=executor,
            )
    except RunInterrupted as exc:  # SIGINT or SIGTERM: cells stopped, appended records kept
        console.close()
        print("tlbench: interrupted; finished cells are kept in results.jsonl", file=sys.stderr, flush=True)
        return exc.exit_code
    except ExecutorError as exc:  # the executor cannot run this suite (no Ray node fits, ...)
        raise UsageError(str(exc)) from None
    finally:
        console.close()
    if len(produced) < total:
        print(f"tlbench: {total - len(produced)} cell(s) already finished in {out_dir} (resumed)", file=sys.stderr)
    if not args.no_report:
        paths = write_report(out_dir)
        print(console_summary(out_dir, paths))
    wanted = {cell_key(asdict(c)) for c in suite.cells()}
    latest = latest_by_cell(load_results(out_dir / RESULTS_FILE))
    failed = [r for r in latest if cell_key(r) in wanted and r.get("status") != "ok"]
    if failed:
        print(
            f"tlbench: {len(failed)} of {total} cell(s) failed; see the error column and cells/*/log.txt",
            file=sys.stderr,
        )
        return 1
    return 0


def command_report(args: argparse.Namespace) -> int:
    from .console_summary import console_summary
    from .reporting.options import ReportOptionError, ReportOptions, parse_operating_point
    from .reporting.report import write_report

    for suite_dir in args.suite_dir:
        if not suite_dir.is_dir():
            raise UsageError(
                f"suite directory {str(suite_dir)!r} does not exist; expected a directory made by `tlbench run`"
            )
    if len(args.suite_dir) > 1 and args.out is None:
        raise UsageError(f"{len(args.suite_dir)} suite directories given: name the report's directory with --out DIR")
    try:
        options = ReportOptions(args.select_by, parse_operating_point(args.operating_point), args.positive_class)
        paths = write_report(args.suite_dir, out_dir=args.out, options=options)
    except (FileNotFoundError, ReportOptionError) as exc:
        raise UsageError(str(exc)) from None
    print(console_summary(args.suite_dir, paths))
    return 0


def command_explain(args: argparse.Namespace) -> int:
    """``tlbench explain``: draw one cell's stage feature maps (and Grad-CAM) for one stored test image."""
    from .reporting.explain import ExplainError, default_output, draw_explanation, explain_cell

    if not args.suite_dir.is_dir():
        raise UsageError(
            f"suite directory {str(args.suite_dir)!r} does not exist; expected a directory made by `tlbench run`"
        )
    if args.out is not None and args.out.suffix.lower() != ".png":
        raise UsageError(f"--out {str(args.out)!r} must end in .png")
    try:
        explanation = explain_cell(args.suite_dir, args.cell, args.image, args.stages, args.device)
    except ExplainError as exc:
        raise UsageError(str(exc)) from None
    path = draw_explanation(explanation, args.out or default_output(args.suite_dir, explanation, args.image))
    stages = ", ".join(
        f"{n} {m.shape[0]}x{m.shape[1]}" for n, m in zip(explanation.stage_names, explanation.stage_maps, strict=True)
    )
    print(
        f"tlbench: {explanation.cell} image {args.image} ({explanation.weights_source} weights; stages {stages}) -> "
        f"{path}"
    )
    return 0


def command_export(args: argparse.Namespace) -> int:
    """``tlbench export mlflow``: one MLflow run per cell of a suite directory (idempotent)."""
    from .reporting.export_mlflow import ExportError, export_mlflow

    if not args.suite_dir.is_dir():
        raise UsageError(
            f"suite directory {str(args.suite_dir)!r} does not exist; expected a directory made by `tlbench run`"
        )
    try:
        done = export_mlflow(args.suite_dir, args.tracking_uri, args.experiment)
    except ExportError as exc:
        raise UsageError(str(exc)) from None
    total = done.created + done.replaced + done.unchanged
    print(
        f"tlbench: {total} cell run(s) in MLflow experiment {done.experiment!r} at {done.tracking_uri}: "
        f"{done.created} created, {done.replaced} replaced (re-run cells), {done.unchanged} unchanged"
    )
    print(f"tlbench: browse them with: mlflow ui --backend-store-uri {done.tracking_uri}")
    return 0


def command_list(args: argparse.Namespace) -> int:
    if args.what == "backends":
        for name, target in REGISTRY.items():
            print(f"{name:12s} {target}")
    elif args.what == "strategies":
        for strategy in STRATEGIES.values():
            print(f"{strategy.name:19s} {strategy.summary}")
        print(f"{'partial_finetune@K':19s} the frozen-layer sweep: last K stages + head train (K = 1, 2, ... or all)")
    elif args.what == "datasets":
        for usage in dataset_usages():
            print(usage)
    else:
        names = [args.backend] if args.backend else list(REGISTRY)
        _choice_list("backend", names, list(REGISTRY))
        for name in names:
            try:
                models = get_backend_class(name).available_models()
            except BackendError as exc:
                print(f"{name}: (unavailable: {exc})")
                continue
            print(f"{name}: {', '.join(models)}")
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "run": command_run,
    "report": command_report,
    "explain": command_explain,
    "export": command_export,
    "list": command_list,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tlbench`` console script; returns the exit code."""
    parser = build_parser()
    try:
        argv = list(sys.argv[1:] if argv is None else argv)
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return EXIT_USAGE
        if args.command == "run" and args.suite_file is not None:
            args = apply_suite_file(parser, argv, args)
        return COMMANDS[args.command](args)
    except UsageError as exc:
        print(f"tlbench: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("tlbench: interrupted; finished cells are kept in results.jsonl", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
