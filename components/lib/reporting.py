"""Small helpers for the reports people read (Markdown and self-contained HTML): stdlib only,
so every image can import them.

Values that come from data or a config are escaped (HTML) or put in code spans that none of
their characters can end (Markdown); numbers are shown with a fixed number of significant
digits and ``n/a`` for missing or non-finite values.
"""

from __future__ import annotations

import html as html_lib
import math
import re


def esc(value) -> str:
    """``value`` as HTML text."""
    return html_lib.escape(str(value))


def num(value, digits: int = 4) -> str:
    """A number for a person: ``digits`` significant digits, thousands separators, ``n/a``."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if value == 0 or 1e-3 <= abs(value) < 1e6:
        return f"{value:,.{digits}g}"
    return f"{value:.{digits - 1}e}"


def md_code(value, in_table: bool = True) -> str:
    """``value`` as a Markdown code span (no newline, no cell-ending ``|``)."""
    text = re.sub(r"\s+", " ", str(value))
    if in_table:
        text = text.replace("|", "\\|")
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"
