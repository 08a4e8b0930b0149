"""Figures quoted from the benchmark tools' tables (``<!-- bench: ... -->``): read, checked, rewritten."""

from __future__ import annotations

from pathlib import Path

import pytest

from tlbench.benchmarks.tools.findings import main
from tlbench.benchmarks.tools.findings_bench import markdown_rows, parse_bench_options, render_bench
from tlbench.benchmarks.tools.findings_cells import FindingsError

#: two tables with the same headers (one per model, as bench_memory_format prints them) and prose between
TABLES = """model a, 224 px
| variant       | infer img/s (median) | infer ratio |
|---------------|---------------------:|-------------|
| fp32          |                110.9 | 1.00x       |
| channels_last |                107.7 | 0.97x       |
model b
| variant       | infer img/s (median) | infer ratio |
|---------------|---------------------:|-------------|
| fp32          |                 72.6 | 1.00x       |
| channels_last |                 74.5 | 1.03x       |

The host drifted | not a table row.
"""


def _root(tmp_path: Path) -> Path:
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "bench_x.md").write_text(TABLES)
    return tmp_path


def _bench(text: str, root: Path) -> str:
    return render_bench(parse_bench_options(text), root)


def test_every_row_of_every_table_is_read_under_its_normalised_header() -> None:
    rows = markdown_rows(TABLES)
    assert [row["variant"] for row in rows] == ["fp32", "channels_last", "fp32", "channels_last"]
    assert rows[3] == {"variant": "channels_last", "infer_img/s_(median)": "74.5", "infer_ratio": "1.03x"}


def test_a_figure_is_the_one_matching_cell_or_the_end_of_a_range(tmp_path: Path) -> None:
    root = _root(tmp_path)
    assert _bench("file=results/bench_x.md column=infer_img/s_(median) stat=max", root) == "110.9"
    assert _bench("file=results/bench_x.md variant=channels_last column=infer_ratio stat=min", root) == "0.97x"
    assert _bench("file=results/bench_x.md variant=channels_last column=infer_ratio stat=max", root) == "1.03x"
    assert _bench("file=results/bench_x.md variant=channels_last column=infer_ratio stat=max part=number", root) == (
        "1.03"
    )
    # a filter with several values: any of them
    assert _bench("file=results/bench_x.md variant=fp32,channels_last column=infer_img/s_(median) stat=min", root) == (
        "72.6"
    )
    # stat=cell (the default) wants exactly one row
    with pytest.raises(FindingsError, match="2 rows of results/bench_x.md with infer_ratio"):
        _bench("file=results/bench_x.md variant=fp32 column=infer_ratio", root)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ("file=results/bench_x.md", "has no column="),
        ("column=infer_ratio", "has no file="),
        ("file=results/bench_x.md column=infer_ratio stat=mean", "stat='mean': expected one of cell, min, max"),
        ("file=results/bench_x.md column=infer_ratio part=digits", "part='digits': expected one of text, number"),
        ("file=results/bench_x.md column=infer_ratio variant", "bench option 'variant': expected key=value"),
        ("file=results/bench_y.md column=infer_ratio", "results/bench_y.md is not committed"),
        ("file=results/bench_x.md column=train_ratio", "its headers: infer_img/s_(median), infer_ratio, variant"),
        ("file=results/bench_x.md variant=bf16 column=infer_ratio", "no row of results/bench_x.md with infer_ratio"),
    ],
)
def test_bad_options_name_what_was_expected(tmp_path: Path, options: str, message: str) -> None:
    with pytest.raises(FindingsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        _bench(options, _root(tmp_path))


def test_a_stale_quoted_figure_fails_the_check_and_is_rewritten(tmp_path: Path, capsys) -> None:
    root = _root(tmp_path)
    page = root / "docs" / "page.md"
    page.parent.mkdir()
    sentence = (
        "Channels-last: <!-- bench: file=results/bench_x.md variant=channels_last\n"
        "  column=infer_ratio stat=min -->0.95x<!-- /bench --> at worst.\n"
    )
    page.write_text(sentence)
    assert main([str(page)]) == 1
    assert "(page says '0.95x', table '0.97x')" in capsys.readouterr().err
    assert main([str(page), "--write"]) == 0
    assert page.read_text() == sentence.replace("0.95x", "0.97x")
    assert main([str(page)]) == 0
    # a quoted figure whose table lost its row is a one-line usage error, not a traceback
    (root / "results" / "bench_x.md").write_text(TABLES.replace("channels_last", "cl"))
    assert main([str(page)]) == 2
    assert "no row of results/bench_x.md with infer_ratio" in capsys.readouterr().err
