"""Parameter values through Katib, which carries every value as text.

The Experiment lists a categorical value as ``str(value)``; Katib hands a trial its
parameters as that text on the command line, and reports the best trial's parameters
as text in ``status.currentOptimalTrial``. :func:`parse` turns the text back into a
value, in one way for the trial entrypoint (``trial.py``) and the launcher
(``katib_launcher.py``), so that the train step gets the values the best trial ran with.
``search_space.validate`` rejects a categorical value that would not come back as itself.
"""

from __future__ import annotations

_WORDS = {"true": True, "false": False, "none": None, "null": None}


def parse(text: str) -> bool | int | float | str | None:
    """``true`` / ``false`` / ``none`` / ``null`` in any case -> bool or None; an integer -> int;
    another number -> float; anything else stays text."""
    word = text.strip().lower()
    if word in _WORDS:
        return _WORDS[word]
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text
