"""Suites as files (``tlbench run suites/<name>.toml``) and one matrix per suite directory."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from tlbench.benchmarks import cli
from tlbench.benchmarks.cli import apply_suite_file, build_parser, main, suite_from_args
from tlbench.benchmarks.running import runner
from tlbench.benchmarks.running.config import DEFAULT_INCREMENT_MODES, SHRINK_PERTURB, RunOptions, SuiteConfig
from tlbench.benchmarks.running.results import cell_id
from tlbench.benchmarks.suite_files import matrix_dir_name, recorded_suite

#: in-process cells here are not watched (a process per timed part): what is tested is the suite, not the watch
pytestmark = pytest.mark.usefixtures("quick_watch")

ROOT = Path(__file__).resolve().parents[2]


def _args(argv: list[str]):
    parser = build_parser()
    args = parser.parse_args(argv)
    return apply_suite_file(parser, argv, args) if args.suite_file is not None else args


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


SMALL = """
backends = ["fake"]
models = ["softmax"]
strategies = ["linear_probe", "scratch"]
datasets = ["digits"]
seeds = [0, 1]
epochs = 2
image_size = 32
batch_size = 16
weights = "none"
allow_random_init = true
no_infer_pass = true
amp = "bf16"
min_time = 0.5
"""


def test_a_suite_file_builds_the_suite_its_flags_build(fake_backend, tmp_path: Path) -> None:
    path = _write(tmp_path / "small.toml", SMALL)
    from_file = suite_from_args(_args(["run", str(path)]))
    flags = ["--suite", "small", "--backends", "fake", "--models", "softmax", "--strategies", "linear_probe,scratch"]
    flags += ["--dataset", "digits", "--seeds", "0,1", "--epochs", "2", "--image-size", "32", "--batch-size", "16"]
    flags += ["--weights", "none", "--allow-random-init", "--no-infer-pass", "--amp", "bf16", "--min-time", "0.5"]
    assert from_file == suite_from_args(_args(["run", *flags]))
    assert from_file.name == "small" and from_file.seeds == (0, 1) and from_file.options.infer_pass is False
    assert from_file.options.backend_options == {"fake": {"amp": "bf16"}} and from_file.options.infer_min_time_s == 0.5


def test_command_line_flags_override_the_file(fake_backend, tmp_path: Path) -> None:
    path = _write(tmp_path / "small.toml", SMALL)
    suite = suite_from_args(_args(["run", "--epochs", "3", str(path), "--strategies", "scratch", "--suite", "mine"]))
    assert (suite.options.epochs, suite.strategies, suite.name) == (3, ("scratch",), "mine")
    assert suite.seeds == (0, 1) and suite.options.image_size == 32  # the rest from the file


def test_per_backend_weights_as_a_table(tmp_path: Path) -> None:
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"")
    path = _write(
        tmp_path / "w.toml",
        f'backends = ["timm", "torchvision"]\nmodels = ["resnet18"]\nstrategies = ["scratch"]\n'
        f'weights = {{timm = "{weights}", torchvision = "none"}}\n',
    )
    args = _args(["run", str(path)])
    assert args.weights == f"timm={weights},torchvision=none"


@pytest.mark.parametrize(
    "text, message",
    [
        ("epoch = 3\n", "unknown key 'epoch'; expected some of: "),
        ("out = 'elsewhere'\n", "unknown key 'out'; expected some of: "),  # where results go is the invocation's
        ("epochs = 0\n", "--epochs must be >= 1, got 0"),
        ("epochs = 'three'\n", "argument --epochs: invalid int value: 'three'"),
        ("strategies = ['linear_probe', 'finetune']\n", "unknown strategy 'finetune'"),
        ("infer_compile = 'yes'\n", "key 'infer_compile' is on/off; expected true or false, got 'yes'"),
        ("seeds = []\n", "key 'seeds' is an empty list; expected at least one value"),
        ("epochs = [1, 2]\n", "key 'epochs' must be a string or a number, got [1, 2]"),
        ("dataset = ['digits']\ndatasets = ['digits']\n", "keys 'dataset' and 'datasets' set the same flag; keep one"),
        ("epochs = \n", "not a valid TOML suite file"),
    ],
)
def test_a_bad_suite_file_is_one_line_naming_the_file_exit_2(
    fake_backend, tmp_path: Path, capsys, text: str, message: str
) -> None:
    path = _write(tmp_path / "bad.toml", 'backends = ["fake"]\nmodels = ["softmax"]\n' + text)
    assert main(["run", str(path), "--no-probe"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"tlbench: error: {path}: ") and message in err, err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_a_bad_value_on_the_command_line_is_not_blamed_on_the_file(fake_backend, tmp_path: Path, capsys) -> None:
    path = _write(tmp_path / "ok.toml", SMALL)
    assert main(["run", str(path), "--epochs", "0", "--no-probe"]) == 2
    assert capsys.readouterr().err == "tlbench: error: --epochs must be >= 1, got 0\n"
    assert main(["run", str(tmp_path / "missing.toml")]) == 2
    assert "does not exist; expected a TOML file such as suites/default.toml" in capsys.readouterr().err


def test_the_default_suite_file_is_the_bare_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "_validate_models", lambda *args: None)  # the matrix only: no timm import
    bare = suite_from_args(_args(["run"]))
    from_file = suite_from_args(_args(["run", str(ROOT / "suites" / "default.toml")]))
    assert from_file.name == bare.name == "default"
    assert from_file.matrix() == bare.matrix()
    assert from_file.options.wait_quiet_s == 60.0  # how the committed default suite was made (speed only)
    # the committed default suite is this matrix: `make bench` on a clone resumes results/default, no new directory
    assert recorded_suite(ROOT / "results" / "default").matrix() == bare.matrix()


def _committed_suites() -> list[str]:
    return sorted(p.parent.name for p in (ROOT / "results").glob("*/suite.json"))


@pytest.mark.parametrize("name", _committed_suites())
def test_every_committed_results_folder_is_made_by_its_suite_file(name: str) -> None:
    """``suites/<folder>.toml`` names the committed folder's matrix and the options it was run with (read, not
    validated: its data, checkpoints and teacher need not exist here)."""
    path = ROOT / "suites" / f"{name}.toml"
    assert path.is_file(), f"results/{name}/ has no suite file suites/{name}.toml"
    args = _args(["run", str(path)])
    recorded = json.loads((ROOT / "results" / name / "suite.json").read_text())
    options = RunOptions.from_dict(recorded["options"])
    assert args.suite == name
    # a suite file may name engines its committed folder has not measured yet (an evidence run pending: the README's
    # "Which framework" says "not measured yet" for them), never drop one, and the rest of the matrix is the folder's
    pending = [b for b in cli._csv(args.backends) if b not in recorded["backends"]]
    assert [b for b in cli._csv(args.backends) if b not in pending] == recorded["backends"]
    assert cli._csv(args.models) == recorded["models"]
    assert cli._csv(args.strategies) == recorded["strategies"]
    assert cli._csv(args.datasets) == recorded["datasets"]
    assert [int(s) for s in cli._csv(args.seeds)] == recorded["seeds"]
    assert (args.epochs, args.image_size, args.batch_size) == (options.epochs, options.image_size, options.batch_size)
    assert (args.max_train_images, args.weights) == (options.max_train_images, options.weights)
    assert (args.lr, args.optimizer, args.augment) == (options.lr, options.optimizer, options.augment)
    if options.increments is not None:  # the incremental scenario's modes and shrink are what the folder ran
        assert args.increments == options.increments
        modes = tuple(cli._csv(args.increment_modes)) if args.increment_modes else DEFAULT_INCREMENT_MODES
        shrink = tuple(float(v) for v in args.shrink_perturb.split(",")) if args.shrink_perturb else SHRINK_PERTURB
        assert (modes, shrink) == (options.increment_modes, options.shrink_perturb)
    # --wait-quiet shapes speed only, not the matrix: `make bench` (a bare `tlbench run`) re-makes results/default
    # in a clone without it, and the folder is still this file's
    backends = tuple(recorded["backends"])  # typed per-backend options, built from the flags as `run` builds them
    assert cli._backend_options(backends, args, args.device, args.image_size, args.in_chans) == options.backend_options
    if options.teacher is not None:  # .cache/teachers/<teacher suite>/cells/<its one cell>, under the current id
        teacher = _args(["run", str(ROOT / "suites" / f"{Path(options.teacher).parts[2]}.toml")])
        key = (teacher.backends, teacher.models, teacher.strategies, teacher.datasets, int(teacher.seeds))
        assert Path(args.teacher) == Path(options.teacher).parent / cell_id(*key)


def test_the_acceptance_steps_run_the_suite_files() -> None:
    script = (ROOT / "benchmarks" / "tools" / "acceptance.sh").read_text()
    for name in _committed_suites():  # run by tlbench, or timed by bench_tuning_cost (the race's BreastMNIST pair)
        ways = (f"$TL run suites/{name}.toml", f"--untuned suites/{name}.toml", f"--tuned suites/{name}.toml")
        assert any(way in script for way in ways), name
    assert "--suite" not in script  # every suite step is a file


# ---- one matrix per suite directory ------------------------------------------------------------------------------
def _fake_run_suite(calls: list[tuple[str, Path]]):
    def run_suite(suite: SuiteConfig, out_dir: Path, **kwargs):
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "suite.json").write_text(json.dumps(suite.to_dict()))
        calls.append((suite.name, out_dir))
        return []

    return run_suite


FAKE_RUN = ["run", "--backends", "fake", "--models", "softmax", "--strategies", "scratch", "--device", "cpu"]
QUIET = ["--no-probe", "--no-report", "--no-infer-pass", "--image-size", "16"]


def test_another_matrix_goes_to_its_own_directory_or_exits_2_when_one_was_named(
    fake_backend, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    calls: list[tuple[str, Path]] = []
    monkeypatch.setattr(runner, "run_suite", _fake_run_suite(calls))
    images = tmp_path / "my images"
    (images / "a").mkdir(parents=True)
    (images / "b").mkdir()
    for cls in ("a", "b"):
        (images / cls / "x.png").write_bytes(b"")
    assert main(FAKE_RUN + QUIET) == 0
    assert calls == [("default", Path("results/default"))]
    before = (tmp_path / "results" / "default" / "suite.json").read_text()
    capsys.readouterr()

    assert main(FAKE_RUN + QUIET + ["--dataset", f"folder:{images}"]) == 0
    (name, out_dir) = calls[-1]
    suite = recorded_suite(out_dir)
    assert name == matrix_dir_name(suite) == out_dir.name and name.startswith("softmax-my-images-")
    assert suite.datasets == (f"folder:{images}",)
    err = capsys.readouterr().err
    assert f"tlbench: results/default holds another matrix (datasets ['digits'] -> ['folder:{images}']); " in err
    assert f"this one goes to {out_dir}" in err
    assert (tmp_path / "results" / "default" / "suite.json").read_text() == before  # untouched

    # the same matrix again: the same directory (resume), whatever the order of its lists
    assert main(FAKE_RUN + QUIET + ["--dataset", f"folder:{images}"]) == 0
    assert calls[-1] == (name, out_dir)
    assert main(FAKE_RUN + QUIET) == 0 and calls[-1] == ("default", Path("results/default"))
    capsys.readouterr()

    # a directory named on purpose that holds another matrix: exit 2, nothing runs
    for named in (["--suite", "default"], ["--out", "results/default"]):
        count = len(calls)
        assert main(FAKE_RUN + QUIET + ["--dataset", f"folder:{images}"] + named) == 2
        err = capsys.readouterr().err
        assert err.startswith("tlbench: error: suite directory 'results/default' holds another matrix (datasets")
        assert err.count("\n") == 1 and len(calls) == count
    # other options that change results are another matrix too; speed-only ones are not
    assert main(FAKE_RUN + QUIET + ["--epochs", "2", "--suite", "default"]) == 2
    assert "holds another matrix (run options" in capsys.readouterr().err
    assert main(FAKE_RUN + QUIET + ["--wait-quiet", "5", "--suite", "default"]) == 0


def test_matrix_dir_names() -> None:
    base = SuiteConfig(backends=("timm",), models=("resnet18",), datasets=("medmnist:../d/breastmnist.npz",))
    name = matrix_dir_name(base)
    assert name.startswith("resnet18-breastmnist-") and len(name.rsplit("-", 1)[1]) == 8
    assert matrix_dir_name(replace(base, strategies=tuple(reversed(base.strategies)))) == name  # order-free
    assert matrix_dir_name(replace(base, seeds=(0, 1))) != name
    several = replace(base, models=("resnet18", "vgg16"), datasets=("digits", "folder:/x/y/"))
    assert matrix_dir_name(several).startswith("resnet18+1-digits+1-")


@pytest.mark.slow
def test_a_user_dataset_run_leaves_the_default_suite_alone(fake_backend, cache_dir, tmp_path, monkeypatch, capsys):
    """End to end (cells run): after the default suite directory exists, a run on the user's own image folder
    writes elsewhere and results/default keeps every byte (no user path lands in a committed file)."""
    from PIL import Image

    monkeypatch.chdir(tmp_path)
    common = FAKE_RUN + ["--seeds", "0", "--epochs", "1", "--batch-size", "64", "--threads", "1"]
    common += ["--cache-dir", str(cache_dir), *QUIET]
    assert main(common) == 0
    default = tmp_path / "results" / "default"
    snapshot = {p: p.read_bytes() for p in default.rglob("*") if p.is_file()}
    assert any(p.name == "results.jsonl" for p in snapshot)
    images = tmp_path / "pictures"
    for label, color in (("cats", (200, 30, 30)), ("dogs", (30, 30, 200))):
        for i in range(12):
            (images / label).mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (20, 20), (color[0], i * 9, color[2])).save(images / label / f"{i}.png")
    capsys.readouterr()
    assert main(common + ["--dataset", f"folder:{images}"]) == 0
    err = capsys.readouterr().err
    (elsewhere,) = [p for p in (tmp_path / "results").iterdir() if p.name != "default"]
    assert f"this one goes to results/{elsewhere.name}" in err
    (record,) = [json.loads(line) for line in (elsewhere / "results.jsonl").read_text().splitlines()]
    assert record["status"] == "ok" and record["dataset"] == f"folder:{images}"
    assert {p: p.read_bytes() for p in default.rglob("*") if p.is_file()} == snapshot


@pytest.mark.parametrize("dataset", ["breastmnist", "digits", "chest_xray"])
def test_the_fair_race_suites_are_twins_that_differ_only_by_tuning(dataset, monkeypatch) -> None:
    monkeypatch.chdir(ROOT)
    tuned = suite_from_args(_args(["run", f"suites/tuned_{dataset}.toml"]))
    untuned = suite_from_args(_args(["run", f"suites/untuned_{dataset}.toml"]))
    committed = suite_from_args(_args(["run", f"suites/strategies_{dataset}.toml"]))
    assert replace(tuned, name="x", options=untuned.options) == replace(untuned, name="x")
    assert (tuned.strategies, tuned.datasets, tuned.seeds) == (committed.strategies, committed.datasets, (0, 1, 2))
    assert tuned.options == replace(untuned.options, tune=True, tune_eta=4)  # the same recipe, tuned
    options = tuned.options
    assert (options.tune_scheduler, options.epochs, options.schedule, options.patience) == ("halving", 15, "cosine", 5)
    assert (options.select_by, options.select_from) == ("roc_auc", "main")
    assert options.max_train_images == committed.options.max_train_images
    patients = r"((?:person|NORMAL2-IM-|IM-)\d+)[_-]"  # pneumonia person<N>_, normal IM-<N>- and NORMAL2-IM-<N>-
    assert options.group_by == (patients if dataset == "chest_xray" else None)
