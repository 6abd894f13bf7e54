"""Calling the CLI in-process from tests: the exit code and what it printed."""

from components.cli import main as cli_main


def run(capsys, *argv: str) -> tuple[int, str, str]:
    """``loopline ARGV...``: (exit code, stdout, stderr)."""
    code = cli_main.main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def failed_with(result: tuple[int, str, str], *needles: str) -> str:
    """Exit 1, exactly one line on stderr, holding every needle; returns that line."""
    code, out, err = result
    assert code == 1, result
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("loopline: error: "), err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]
