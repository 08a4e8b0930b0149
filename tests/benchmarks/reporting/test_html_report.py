"""The HTML report: self-contained (images embedded), escaped, failed cells marked."""

from __future__ import annotations

import base64
import re

import pandas as pd
import pytest
from report_suite import make_suite

from tlbench.benchmarks.reporting.html_report import image_data_uri, table_html
from tlbench.benchmarks.reporting.report import write_report


@pytest.mark.slow  # draws every plot
def test_html_report_is_self_contained_with_every_plot_embedded(tmp_path):
    suite = make_suite(tmp_path / "suite")
    paths = write_report(suite)
    text = paths["html"].read_text()
    uris = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    pngs = sorted(p for k, p in paths.items() if k.startswith("png:"))
    assert len(uris) == len(pngs) == 7  # six suite plots and the reliability diagram
    assert sorted(base64.b64decode(u) for u in uris) == sorted(p.read_bytes() for p in pngs)
    assert "http://" not in text and "https://" not in text and "<script" not in text
    # the answer, paired comparisons, calibration, per-class recall, confusion matrix of the best; 3 pivots, which
    # framework (agreement, speed: 2 backends x 2 seeds), data checks, failed cells, all cells
    assert text.count("<table>") == 13
    assert (
        text.index('<h2 id="answer">The answer</h2>')
        < text.index("<h2>Paired comparisons")
        < text.index("<h2>Accuracy")
    )
    assert "Best by ROC-AUC (mean of 2 seed(s)): <strong>timm/linear_probe</strong>" in text
    assert '<td class="failed">failed</td>' in text
    assert "BackendError: keras model &#x27;m&#x27; needs weights" in text
    assert "0.908 ± 0.106 (n=2)" in text and "<code>mean ± h (n=k)</code>" in text


def test_table_html_escapes_and_marks_errors():
    frame = pd.DataFrame({"model": ["<b>x</b>"], "error": ["a & b"], "acc": ["0.5 (1 failed)"]})
    html = table_html(frame)
    assert "&lt;b&gt;x&lt;/b&gt;" in html and '<td class="error">a &amp; b</td>' in html
    assert '<td class="failed">0.5 (1 failed)</td>' in html


def test_image_data_uri_round_trips(tmp_path):
    path = tmp_path / "x.png"
    path.write_bytes(b"\x89PNG fake")
    assert base64.b64decode(image_data_uri(path).split(",", 1)[1]) == b"\x89PNG fake"
