"""Words the windows share: counts said right ("1 target", "2 targets"), and an error the
windows did not expect (what happened, and that it was logged)."""

from __future__ import annotations

import logging


def count(n: int, noun: str, plural: str | None = None) -> str:
    """``"1 target"``, ``"2 targets"``, ``"0 targets"`` (``plural`` for irregular nouns)."""
    return f"{n} {noun if n == 1 else (plural or noun + 's')}"


def unexpected_error(exc: BaseException, doing: str, outcome: str,
                     log: logging.Logger) -> tuple[str, str]:
    """``(title, text)`` of a dialog for ``exc`` raised while ``doing``; the traceback goes to
    ``log``. ``outcome`` says what the user keeps, e.g. "The plan is unchanged"."""
    log.error("Unexpected error while %s", doing, exc_info=exc)
    short = str(exc).splitlines()[0][:200] if str(exc) else ""
    return "Unexpected error", (f"Unexpected error while {doing} ({type(exc).__name__}"
                                f"{': ' + short if short else ''}). {outcome}")
