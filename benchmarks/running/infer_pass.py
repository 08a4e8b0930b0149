"""The inference pass: after a suite's cells, time the cells of each model again, interleaved, in one fresh process.

Why: a cell times its inference in the process that has just trained the model. On a CPU that process is not in
the state of one that only runs inference (its heap holds the training buffers' free chunks, its caches and
thread pools saw backward passes): measured here, Lite0 at 64 px infers 5-18 % slower right after training than
in a fresh process, whatever the weights, so a linear probe (whose backbone never trained in its cell) looked
faster than a fine-tuned copy of the same network. And the cells of a suite run minutes apart, while a virtual
machine's speed drifts by more than that between minutes. Neither is a property of the strategy.

So, once every cell has run, the finished cells that share backend, model and dataset (the same network, input
size and batch; sklearn probes excluded) are loaded from the weights they saved into one fresh process with the
cells' runtime (threads, allocator), each prepared for inference the way its cell was (``prepare_inference``),
and timed round-robin (``timing.measure_interleaved``: rounds with a rotated order, each model's latencies
pooled, median). Their figures then differ only by what differs between them. The pass's figure replaces the
cell's ``infer_*`` columns in a new record of the cell (``results.jsonl`` stays append-only; the newest record
of a cell wins), the cell's own figure is kept in the record's ``infer_pass["in_cell"]``, and what other
processes used of the machine during the pass in ``infer_pass["contention"]``.

The cells save their weights for it (``RunOptions.infer_pass``, on by default; ``tlbench run
--no-infer-pass`` turns it off); the pass deletes them afterwards unless ``TLBENCH_SAVE_WEIGHTS`` asked to keep
them. A failing pass leaves the cells' own figures in place and says why in one line.

With ``--deploy`` (``RunOptions.deploy``), each cell's model is also exported to the deployment runtimes named
there and timed in the same rounds as the framework model (``running.deploy``): the record's ``deploy`` column.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from . import artifacts
from .artifacts import cell_dir as artifact_dir
from .backend_options import backend_options
from .config import RunOptions, SuiteConfig
from .results import spread, write_json_atomic
from .runtime import runtime_settings
from .training import predict_in_batches

#: round-robin rounds of the pass: each model is timed in this many slots of ``infer_min_time_s / ROUNDS``
ROUNDS = 10
#: at most this many models in one pass process (more cells of one model are timed in several processes)
MAX_MODELS_PER_PROCESS = 16
#: the inference columns a pass replaces (the cell's own values are kept under ``infer_pass["in_cell"]``)
INFER_COLUMNS = (
    "infer_images_per_s",
    "infer_latency_ms_p50",
    "infer_latency_ms_p90",
    "infer_repeats",
    "infer_timed_s",
    "infer_latency_cv",
    "infer_mfu",
)
#: the log of the pass processes, in the suite directory
LOG_FILE = "infer_pass.log"


class InferPassError(RuntimeError):
    """The pass could not time a group (one line); the cells keep their own figures."""


def pass_groups(records: Sequence[dict[str, Any]], out_dir: Path) -> list[list[dict[str, Any]]]:
    """The groups of records the pass times together: finished cells of one backend, model and dataset (so one
    network, input size and batch) that ran the model itself at inference (no sklearn probe) and saved their
    weights, split into chunks of at most ``MAX_MODELS_PER_PROCESS``. A group of one is timed too: its figure then
    comes from a fresh process like every other model's."""
    from ...core.cell_kinds import CELL_KINDS, kind_name
    from ...core.strategies import get_strategy

    groups: dict[tuple, list[dict[str, Any]]] = {}
    for record in records:
        if record.get("status") != "ok" or not record.get("infer_images_per_s"):
            continue
        if not CELL_KINDS[kind_name(get_strategy(record["strategy"]))].retimed_by_pass:
            continue
        if artifacts.find_weights(artifact_dir(out_dir, record)) is None:
            continue
        key = (
            record["backend"],
            record["model"],
            record["dataset"],
            record.get("image_size"),
            record.get("infer_batch_size"),
        )
        groups.setdefault(key, []).append(record)
    chunks = []
    for members in groups.values():
        count = -(-len(members) // MAX_MODELS_PER_PROCESS)
        size = -(-len(members) // count)  # even chunks: 17 cells -> 9 + 8, not 16 + 1
        chunks += [members[i : i + size] for i in range(0, len(members), size)]
    return chunks


# ---- in the pass process ---------------------------------------------------------------------------------------
def time_group(
    records: Sequence[dict[str, Any]], options: RunOptions, out_dir: Path, log: Callable[[str], None]
) -> dict[str, Any]:
    """Load every record's saved weights, prepare each model for inference and time them interleaved.

    Runs in the pass process (or inline, for tests). The records share backend, model, dataset and image size.

    Returns:
        ``{"cells": {cell_id: LatencyStats as a dict + "prepare_s" (+ "deploy": the cell's deploy column)},
        "contention": summary, "rounds", "models"}``.

    Raises:
        InferPassError: a cell's weights or data do not load (one line).
    """
    import tempfile

    from ...backends import backend_entry, get_backend_class
    from .runtime import apply_framework_threads

    first = records[0]
    backend_class = get_backend_class(first["backend"])
    engine_name = backend_entry(first["backend"]).engine
    if engine_name != "none":
        apply_framework_threads(runtime_settings(options), engine_name)
    if not options.deploy or artifacts.save_weights_requested():  # exports kept in the cells' directories
        return _time_records(records, options, out_dir, log, backend_class, None)
    with tempfile.TemporaryDirectory(prefix="tlbench-deploy-") as scratch:
        return _time_records(records, options, out_dir, log, backend_class, Path(scratch))


def _time_records(
    records: Sequence[dict[str, Any]],
    options: RunOptions,
    out_dir: Path,
    log: Callable[[str], None],
    backend_class: Any,
    scratch: Path | None,
) -> dict[str, Any]:
    """``time_group`` once the engine's threads are set; exported models (``--deploy``) go under ``scratch``, or
    into each cell's directory when ``scratch`` is ``None``."""
    from functools import partial

    from ...backends import BackendError
    from ...backends.inference import FrameworkInference, TrainedModel
    from . import deploy
    from .cell_data import load_cell_dataset, train_rows
    from .contention import describe
    from .environment import load_probe_file
    from .inference_timing import timing_batches
    from .timing import measure_interleaved
    from .watch import watched

    image_size = int(records[0]["image_size"])
    threads = runtime_settings(options).threads
    runners: dict[str, tuple[Callable, Callable]] = {}
    prepare_s: dict[str, float | None] = {}
    frameworks: dict[str, FrameworkInference] = {}
    deployed: dict[str, list[deploy.DeployedEngine]] = {}
    batches = dataset = None
    for record in records:
        directory = artifact_dir(out_dir, record)
        name = directory.name
        weights = artifacts.find_weights(directory)
        if weights is None:
            raise InferPassError(f"cell {name} saved no weights")
        trained = TrainedModel(
            backend=record["backend"],
            model=record["model"],
            num_classes=int(record["num_classes"]),
            image_size=image_size,
            seed=int(record["seed"]),
            artifact=weights,
            in_chans=options.in_chans,
            options=backend_options(options, record["backend"]),
        )
        engine = FrameworkInference(backend_class, options.device)
        try:
            backend = engine.rebuild(trained)
            if batches is None:  # the cells' own test bytes, resized with the pretrained weights' policy
                weights_name = options.weights_for(record["backend"])
                dataset, _ = load_cell_dataset(
                    backend, record["dataset"], record["model"], weights_name, image_size, options, log
                )
                batches = timing_batches(dataset.splits["test"].images, options.batch_size)
            if options.deploy:  # exported from the trained weights, before the framework specializes its model
                train, seed = dataset.splits["train"], int(record["seed"])
                deployed[name] = deploy.prepare_engines(
                    options.deploy,
                    backend,
                    trained,
                    deploy.deploy_directory(directory, scratch or directory, keep=scratch is None),
                    len(batches[0]),
                    threads,
                    partial(
                        deploy.calibration_images,
                        train.images,
                        train_rows(
                            dataset, options.max_train_images, seed, record.get("train_size"), record.get("draw")
                        ),
                        len(batches[0]),
                    ),
                    log,
                )
            prepare_s[name] = backend.prepare_inference(len(batches[0]))
        except BackendError as exc:
            raise InferPassError(f"cell {name}: {' '.join(str(exc).split())}") from None
        runners[name] = (engine.run, engine.synchronize)
        frameworks[name] = engine
        for item in deployed.get(name, []):
            if item.engine is not None:  # timed in the same rounds, on the same batches
                runners[deploy.runner_name(name, item.name)] = (item.engine.run, item.engine.synchronize)
        log(f"loaded {name} from {weights.name}")
    assert batches is not None and dataset is not None
    # the same watch as a cell's timed part: other processes and steal sampled, the speed canary before and after
    with watched(options.infer_min_time_s, (load_probe_file() or {}).get("canary_gflop_per_s")) as contention:
        stats = measure_interleaved(
            runners,
            batches,
            rounds=ROUNDS,
            min_time_s=options.infer_min_time_s,
            warmup=options.infer_warmup,
            repeats=options.infer_repeats,
        )
    log(f"contention: {describe(contention)}")
    for name, s in stats.items():  # the framework models and their deployed engines
        log(
            f"{name}: {s.images_per_s:.1f} img/s (median of {s.repeats} batches of {s.batch_size}, cv "
            f"{s.latency_cv:.2f})"
        )
    cells = {name: {**asdict(stats[name]), "prepare_s": prepare_s[name]} for name in frameworks}
    if deployed:  # after the timed rounds: the whole test split through the framework and every engine
        test = dataset.splits["test"]
        labels = np.asarray(test.labels)
        for name, items in deployed.items():
            framework = predict_in_batches(frameworks[name].run, test.images, len(batches[0]))
            speeds = {i.name: asdict(stats[deploy.runner_name(name, i.name)]) for i in items if i.engine is not None}
            figures = deploy.deploy_figures(
                items, speeds, stats[name].images_per_s, framework, labels, test.images, len(batches[0])
            )
            cells[name]["deploy"] = figures
            for engine_name, figure in figures.items():
                log(f"{name}@{engine_name}: " + deploy.describe(figure))
    return {"cells": cells, "contention": contention, "rounds": ROUNDS, "models": len(frameworks)}


def main(argv: list[str] | None = None) -> int:
    """Entry point of a pass process: time one group, write the outcome as JSON (``{"error": ...}`` on failure)."""
    parser = argparse.ArgumentParser(prog="python -m tlbench.benchmarks.running.infer_pass")
    parser.add_argument("--suite-dir", required=True, type=Path)
    parser.add_argument("--options", required=True, help="RunOptions as JSON")
    parser.add_argument("--records", required=True, type=Path, help="JSON file: the group's result records")
    parser.add_argument("--result-file", required=True, type=Path)
    args = parser.parse_args(argv)
    options = RunOptions.from_dict(json.loads(args.options))
    records = json.loads(args.records.read_text())

    def log(message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    try:
        outcome = time_group(records, options, args.suite_dir, log)
    except Exception as exc:  # the driver keeps the cells' own figures and prints this line
        import traceback

        from .errors import one_line_error

        traceback.print_exc(file=sys.stderr)
        outcome = {"error": one_line_error(exc)}
    write_json_atomic(args.result_file, outcome)
    return 0


# ---- in the driver ------------------------------------------------------------------------------------------------
def passed_record(
    record: dict[str, Any], stats: dict[str, Any], outcome: dict[str, Any], wall_s: float
) -> dict[str, Any]:
    """A new record of ``record``'s cell with the pass's inference figures; the cell's own under ``infer_pass``."""
    updated = dict(record)
    in_cell = {column: record.get(column) for column in INFER_COLUMNS}
    images_per_s = float(stats["images_per_s"])
    updated.update(
        infer_images_per_s=images_per_s,
        infer_latency_ms_p50=stats["latency_ms_p50"],
        infer_latency_ms_p90=stats["latency_ms_p90"],
        infer_repeats=stats["repeats"],
        infer_timed_s=stats["timed_s"],
        infer_latency_cv=stats["latency_cv"],
    )
    peak = (record.get("runtime") or {}).get("peak_flop_per_s")
    flops = record.get("flops_per_image")
    updated["infer_mfu"] = images_per_s * flops / peak if peak and flops else None
    updated["deploy"] = stats.get("deploy")
    updated["infer_pass"] = {
        "models": outcome["models"],
        "rounds": outcome["rounds"],
        "wall_s": round(wall_s, 2),
        "prepare_s": stats.get("prepare_s"),
        "in_cell": in_cell,
        "contention": outcome["contention"],
    }
    return updated


#: ``launch(command, env, log_path, append=True) -> (returncode, timed_out)``: runs a pass process
#: (``runner.run_module_subprocess``, which a suite's interruption stops like a cell)
Launcher = Callable[..., tuple[int, bool]]


def run_group(
    records: list[dict[str, Any]], suite: SuiteConfig, out_dir: Path, launch: Launcher | None = None
) -> dict[str, Any]:
    """Time one group: in a fresh process started by ``launch`` with the cells' runtime, or in this process when
    ``launch`` is ``None`` (the inline launcher of tests).

    Returns the pass outcome (see ``time_group``), or ``{"error": line}``.
    """
    log_path = out_dir / LOG_FILE
    if launch is None:
        with open(log_path, "a") as log_file:

            def log(message: str) -> None:
                print(f"[{time.strftime('%H:%M:%S')}] {message}", file=log_file, flush=True)

            try:
                return time_group(records, suite.options, out_dir, log)
            except Exception as exc:  # as in a pass process: the cells keep their figures, the cause is one line
                from .errors import one_line_error

                return {"error": str(exc) if isinstance(exc, InferPassError) else one_line_error(exc)}
    from .runtime import child_environment

    work = out_dir / ".infer-pass"
    work.mkdir(exist_ok=True)
    records_file = work / "records.json"
    result_file = work / "result.json"
    write_json_atomic(records_file, records)
    result_file.unlink(missing_ok=True)
    command = [
        sys.executable,
        "-m",
        "tlbench.benchmarks.running.infer_pass",
        "--suite-dir",
        str(out_dir),
        "--options",
        json.dumps(asdict(suite.options)),
        "--records",
        str(records_file),
        "--result-file",
        str(result_file),
    ]
    try:
        returncode, _ = launch(command, child_environment(runtime_settings(suite.options)), log_path, append=True)
        if result_file.is_file():
            return json.loads(result_file.read_text())
        tail = [ln.strip() for ln in log_path.read_text(errors="replace").splitlines() if ln.strip()][-1:] or [
            "no output"
        ]
        how = f"was killed by signal {-returncode}" if returncode < 0 else f"exited with code {returncode}"
        return {"error": f"the pass process {how} without a result; last log line: {tail[0]}"[:500]}
    finally:
        records_file.unlink(missing_ok=True)
        result_file.unlink(missing_ok=True)
        try:
            work.rmdir()
        except OSError:
            pass


def run_infer_pass(
    records: Sequence[dict[str, Any]],
    suite: SuiteConfig,
    out_dir: Path,
    launch: Launcher | None = None,
    on_message: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Time the groups of ``records`` again, interleaved; return their new records.

    ``records`` are the latest records of the suite's cells (this run's and those of earlier runs into the same
    directory whose weights are still there: a resumed suite is timed as a whole). ``launch`` starts each group's
    pass process (``None``: time in this process, for tests).

    A group's saved weights are deleted once its pass has completed (unless ``TLBENCH_SAVE_WEIGHTS`` keeps them);
    an interrupted or failed pass keeps them, so the next run of the suite times those cells again. A group whose
    pass fails keeps its cells' own figures (one line to ``on_message``).
    """
    say = on_message or (lambda message: None)
    updated: list[dict[str, Any]] = []
    for group in pass_groups(records, out_dir):
        first = group[0]
        what = f"{first['backend']}/{first['model']}/{first['dataset']}"
        start = time.perf_counter()
        outcome = run_group(group, suite, out_dir, launch)
        wall_s = time.perf_counter() - start
        if "error" in outcome:
            say(
                f"inference pass of {what} failed, the cells keep their own figures and their weights for the "
                f"next run: {outcome['error']} (see {out_dir / LOG_FILE})"
            )
            continue
        fresh = []
        for record in group:
            directory = artifact_dir(out_dir, record)
            stats = outcome["cells"][directory.name]
            fresh.append(passed_record(record, stats, outcome, wall_s))
            artifacts.write_latencies(directory, stats["latencies_ms"], int(stats["batch_size"]), keep_in_cell=True)
        updated += fresh
        before = [float(r["infer_images_per_s"]) for r in group]
        after = [float(r["infer_images_per_s"]) for r in fresh]
        say(
            f"inference pass: {len(group)} cells of {what} interleaved in one process ({ROUNDS} rounds, "
            f"{wall_s:.0f} s): "
            f"{min(after):.0f}-{max(after):.0f} img/s (spread {spread(after):.1%}); timed in their cells "
            f"{min(before):.0f}-{max(before):.0f} ({spread(before):.1%})"
        )
        discard_weights(group, out_dir)  # only now: an interrupted pass keeps what it needs
    return updated


def discard_weights(records: Sequence[dict[str, Any]], out_dir: Path) -> None:
    """Delete the weights the cells of ``records`` saved for the pass (kept when ``TLBENCH_SAVE_WEIGHTS`` asks)."""
    if artifacts.save_weights_requested():
        return
    for record in records:
        weights = artifacts.find_weights(artifact_dir(out_dir, record))
        if weights is not None:
            weights.unlink(missing_ok=True)


if __name__ == "__main__":
    raise SystemExit(main())
