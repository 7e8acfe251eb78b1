"""The words both windows show for an error they did not expect."""

from __future__ import annotations

import logging

from fluoroplan.app.messages import unexpected_error


def test_unexpected_error_names_it_and_logs_the_traceback(caplog):
    log = logging.getLogger("fluoroplan.test")
    try:
        raise KeyError("L9")
    except KeyError as exc:
        with caplog.at_level(logging.ERROR, logger="fluoroplan.test"):
            title, text = unexpected_error(exc, "proposing", "The plan is unchanged.", log)
    assert title == "Unexpected error"
    assert text == "Unexpected error while proposing (KeyError: 'L9'). The plan is unchanged."
    assert caplog.records and caplog.records[0].exc_info is not None


def test_an_empty_message_is_left_out():
    title, text = unexpected_error(RuntimeError(), "saving", "Nothing was lost.",
                                   logging.getLogger("fluoroplan.test"))
    assert text == "Unexpected error while saving (RuntimeError). Nothing was lost."
