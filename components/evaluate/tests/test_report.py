"""The reports: a self-contained HTML page (no script, nothing loaded, every value escaped)
and a Markdown scorecard whose data values cannot break out of their code spans."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from components.evaluate import executor, report
from components.evaluate.tests.conftest import NO_CHAMPION, fast_config

pytestmark = pytest.mark.unit

HOSTILE = "<img src=x onerror=alert(1)>|`x`"
# What an inline-SVG report needs, and nothing that runs or loads.
ALLOWED_TAGS = {
    "html", "head", "meta", "title", "style", "body", "h1", "h2", "h3", "div", "span", "b",
    "table", "tr", "th", "td", "svg", "rect", "line", "text", "circle", "polyline",
}  # fmt: skip


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: set[str] = set()
        self.attributes: set[str] = set()

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        self.attributes.update(name for name, _ in attrs)


def _evaluation(splits, models, tmp_path, task: str) -> dict:
    holdout = splits.frames["holdout"].copy()
    clear = holdout.index[holdout["weathersit"] == "clear"][:40]
    holdout.loc[clear, "weathersit"] = HOSTILE  # a hostile value in a slice column
    holdout.to_parquet(tmp_path / "holdout", index=False)
    if task == "regression":
        challenger, champion, config = models["good"], models["weak"], fast_config()
    else:
        challenger, champion = models["good_clf"], models["linear_clf"]
        config = fast_config("bikeshare_high_demand")
    return executor.run(
        challenger.path,
        challenger.meta,
        str(tmp_path / "holdout"),
        splits.path("eval"),
        champion.path,
        champion.as_champion(),
        config,
    )


@pytest.mark.parametrize("task", ["regression", "classification"])
def test_html_is_self_contained_and_escapes_every_value(task, splits, models, tmp_path):
    ev = _evaluation(splits, models, tmp_path, task)
    assert HOSTILE in ev["slices"]["columns"]["weathersit"]
    page = report.html(ev)
    parser = _Tags()
    parser.feed(page)
    assert parser.tags <= ALLOWED_TAGS, parser.tags - ALLOWED_TAGS
    assert not {
        a for a in parser.attributes if a.startswith("on") or a in ("src", "href", "xlink:href")
    }
    assert "url(" not in page and "@import" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    # The plots are there: slice bars, residuals or calibration and ROC, the bootstrap, importance.
    assert page.count("<svg") >= 8
    assert "Paired bootstrap of the improvement" in page
    assert ("Residuals" in page) == (task == "regression")
    assert ("Calibration and ROC" in page) == (task == "classification")
    assert "Feature importance" in page and "Champion vs challenger" in page


def test_markdown_keeps_data_values_in_code_spans(splits, models, tmp_path):
    ev = _evaluation(splits, models, tmp_path, "regression")
    text = report.markdown(ev)
    assert text.startswith(f"# Evaluation: **{ev['decision'].upper()}**")
    outside = re.sub(r"(`+)(?:.+?)\1", "", text)
    assert "<img" not in outside and "onerror" not in outside
    assert "\\|" in text  # the value's | is escaped inside table cells
    for reason in ev["checks"]:
        assert reason["name"] in text
    assert "## Scorecard" in text and "## Feature importance" in text


def test_reports_without_a_champion(splits, models):
    ev = executor.run(
        models["good"].path,
        models["good"].meta,
        splits.path("holdout"),
        splits.path("eval"),
        "",
        NO_CHAMPION,
        fast_config(),
    )
    assert "none (the thresholds alone decide)" in report.markdown(ev)
    page = report.html(ev)
    assert "no champion: the thresholds alone decide" in page
    assert "Champion vs challenger" not in page
