"""Words for an error the windows did not expect: what happened, and that it was logged."""

from __future__ import annotations

import logging


def unexpected_error(exc: BaseException, doing: str, outcome: str,
                     log: logging.Logger) -> tuple[str, str]:
    """``(title, text)`` of a dialog for ``exc`` raised while ``doing``; the traceback goes to
    ``log``. ``outcome`` says what the user keeps, e.g. "The plan is unchanged"."""
    log.error("Unexpected error while %s", doing, exc_info=exc)
    short = str(exc).splitlines()[0][:200] if str(exc) else ""
    return "Unexpected error", (f"Unexpected error while {doing} ({type(exc).__name__}"
                                f"{': ' + short if short else ''}). {outcome}")
