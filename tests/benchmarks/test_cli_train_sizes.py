"""--train-sizes and --draws: validated at the edge (one line, exit 2), in suite files, and in the matrix."""

from __future__ import annotations

from dataclasses import asdict

import pytest

from tlbench.benchmarks.cli import apply_suite_file, build_parser, main, suite_from_args
from tlbench.benchmarks.running.artifacts import cell_dir
from tlbench.benchmarks.running.config import SuiteConfig
from tlbench.benchmarks.running.results import cell_id, cell_key, empty_record


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--train-sizes", "0"], "train size '0' is neither images per class"),
        (["--train-sizes", "5,abc"], "train size 'abc' is neither images per class"),
        (["--train-sizes", "150%"], "train size '150%' is neither"),
        (["--train-sizes", "5,5"], "--train-sizes '5,5' gives 5 twice"),
        (["--train-sizes", ","], "--train-sizes ',' names no size"),
        (["--train-sizes", "5", "--draws", "0"], "--draws must be >= 1, got 0"),
        (["--draws", "2"], "--draws 2 needs --train-sizes"),
        (["--train-sizes", "5", "--max-train-images", "50"], "both subset the train split; keep one"),
        (["--train-sizes", "5", "--tune"], "--tune and --train-sizes 5: the trials would tune on the whole"),
        (["--train-sizes", "5", "--teacher", "x/cells/y"], "--teacher and --train-sizes 5: the teacher learnt"),
    ],
)
def test_train_size_errors_are_one_line_exit_2(argv, message, capsys):
    assert main(["run", *argv]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tlbench: error: ")
    assert message in lines[0]


def test_sizes_and_draws_multiply_the_matrix_like_seeds():
    args = build_parser().parse_args(
        ["run", "--strategies", "linear_probe,full_finetune", "--seeds", "0,1", "--train-sizes", "5,10%,100%"]
        + ["--draws", "3"]
    )
    suite = suite_from_args(args)
    assert suite.train_sizes == ("5", "10%", "100%") and suite.draws == 3
    cells = suite.cells()
    assert len(cells) == (3 + 3 + 1) * 2 * 2  # 100 % is the same set in every draw: draw 0 only
    assert {(c.train_size, c.draw) for c in cells} == {("5", 0), ("5", 1), ("5", 2), ("10%", 0), ("10%", 1)} | {
        ("10%", 2),
        ("100%", 0),
    }
    assert len({cell_key(asdict(c)) for c in cells}) == len(cells)
    assert len(
        {
            cell_id(*(getattr(c, k) for k in ("backend", "model", "strategy", "dataset", "seed", "train_size", "draw")))
            for c in cells
        }
    ) == len(cells)  # noqa: E501
    round_trip = SuiteConfig.from_dict(suite.to_dict())
    assert round_trip.cells() == cells and round_trip.matrix_hash() == suite.matrix_hash()


def test_matrix_without_sizes_keeps_its_hash_and_ids():
    plain = SuiteConfig()
    assert "train_sizes" not in plain.matrix()
    assert {(c.train_size, c.draw) for c in plain.cells()} == {(None, None)}
    assert cell_id("timm", "m", "linear_probe", "digits", 0) == "timm__m__linear_probe__digits__s0"
    assert cell_id("timm", "m", "linear_probe", "digits", 0, "10%", 1) == "timm__m__linear_probe__digits__10pct-d1__s0"
    sized = SuiteConfig(train_sizes=("5",), draws=2)
    assert sized.matrix_hash() != plain.matrix_hash()
    record = empty_record(sized.cells()[-1], sized.options)
    assert (record["train_size"], record["draw"]) == ("5", 1)
    assert cell_dir("out", record) == cell_dir("out", sized.cells()[-1])
    assert cell_key({"backend": "timm", "model": "m", "strategy": "s", "dataset": "d", "seed": 0})[-2:] == (None, None)


def test_suite_file_takes_sizes_as_strings_or_integers(tmp_path):
    path = tmp_path / "le.toml"
    path.write_text('train_sizes = [5, "10", "25%"]\ndraws = 3\n')
    parser = build_parser()
    argv = ["run", str(path)]
    suite = suite_from_args(apply_suite_file(parser, argv, parser.parse_args(argv)))
    assert (suite.train_sizes, suite.draws) == (("5", "10", "25%"), 3)
    path.write_text('train_sizes = ["5", "0"]\n')
    assert main(["run", str(path)]) == 2


def test_matrix_differences_name_train_sizes():
    from tlbench.benchmarks.suite_files import matrix_differences

    assert matrix_differences(SuiteConfig(), SuiteConfig(train_sizes=("5",), draws=2)) == [
        "train_sizes None -> ['5']",
        "draws None -> 2",
    ]
    assert matrix_differences(SuiteConfig(train_sizes=("5",)), SuiteConfig()) == [
        "train_sizes ['5'] -> None",
        "draws 1 -> None",
    ]
