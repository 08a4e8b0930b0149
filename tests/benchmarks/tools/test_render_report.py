"""report.html in a real headless Chromium (installed by .ci/run): screenshot, no console errors, the answer
section and every plot drawn; and the checks catch a page that is broken."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from report_suite import make_suite

from tlbench.benchmarks.reporting.report import write_report
from tlbench.benchmarks.tools.render_report import VIEWPORT, main, render_report

#: the report's answer: its first section (the headline pivot); a report whose answer section has another heading
#: names it here
ANSWER_SECTION = "The answer"


@pytest.mark.slow  # a real headless Chromium (seconds per page)
def test_the_report_renders_with_its_answer_and_plots_visible(tmp_path: Path) -> None:
    suite = make_suite(tmp_path / "suite")
    paths = write_report(suite)
    plots = [p for key, p in paths.items() if key.startswith("png:")]
    result = render_report(paths["html"], tmp_path / "report.png", [ANSWER_SECTION, "Plots", "Failed cells"])
    assert result.problems == []
    assert result.console_errors == []
    assert result.first_section.startswith(ANSWER_SECTION) and result.first_section_above_fold
    assert [s["text"] for s in result.sections if s["visible"] and s["content"]] == [
        ANSWER_SECTION,
        "Plots",
        "Failed cells",
    ]
    assert len(plots) == 7 and len(result.images) == len(plots)  # with the reliability diagram
    assert all(image["complete"] and image["naturalWidth"] > 0 and image["visible"] for image in result.images)
    with Image.open(result.screenshot) as shot:
        assert shot.format == "PNG" and shot.size == (result.width, result.height)
        assert shot.width >= VIEWPORT[0] and shot.height > VIEWPORT[1]  # the whole page, not one screen
        low, high = shot.convert("L").getextrema()
        assert (low, high) != (255, 255) and not result.blank


BROKEN = """<!DOCTYPE html><html><head><title>broken</title></head><body>
<p style="height: 2000px">a long introduction pushes every section below the first screen</p>
<h2>Answer</h2><p>shown</p>
<h2 style="display: none">Hidden</h2><p>never seen</p>
<img src="missing.png" alt="gone">
<script>console.error("boom"); throw new Error("bad script");</script>
</body></html>
"""


@pytest.mark.slow  # a real headless Chromium
def test_the_checks_catch_console_errors_failed_loads_and_hidden_sections(tmp_path: Path) -> None:
    page = tmp_path / "broken.html"
    page.write_text(BROKEN)
    result = render_report(page, tmp_path / "broken.png", ["Answer", "Hidden", "Nowhere"])
    errors = " | ".join(result.console_errors)
    assert "boom" in errors and "bad script" in errors and "missing.png" in errors
    assert "section 'Hidden' not rendered" in result.problems and "section 'Nowhere' not rendered" in result.problems
    assert "section 'Answer' not rendered" not in result.problems
    assert "image 'gone' not drawn" in result.problems
    assert "the first section ('Answer') is not on the first screen" in result.problems


@pytest.mark.slow  # a real headless Chromium, twice
def test_command_line_exit_codes_of_a_rendered_page(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    suite = make_suite(tmp_path / "suite")
    html = write_report(suite, plots=False)["html"]
    assert main([str(html), "--screenshot", str(tmp_path / "a.png"), "--section", ANSWER_SECTION]) == 0
    assert '"problems": []' in capsys.readouterr().out
    assert main([str(html), "--screenshot", str(tmp_path / "b.png"), "--section", "No such heading"]) == 1
    assert "section 'No such heading' not rendered" in capsys.readouterr().out


def test_command_line_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    html = tmp_path / "report.html"
    html.write_text("<html><body><h2>The answer</h2></body></html>")
    assert main([str(html), "--browser", str(tmp_path / "no-chromium")]) == 2
    assert capsys.readouterr().err.strip() == (
        f"render_report: error: browser {str(tmp_path / 'no-chromium')!r} is not an executable; expected a Chromium "
        "(Debian: apt-get install chromium)"
    )
    assert main([str(tmp_path / "missing.html")]) == 2
