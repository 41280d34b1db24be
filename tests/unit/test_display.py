"""Ledger text printed to a terminal or a text log cannot move the cursor or forge a line."""

import logging

from app.core.display import cut, printable
from app.ops.logs import MAX_MESSAGE_CHARS, TEXT_FORMAT, Redactor, TextFormatter


def test_control_characters_are_escaped():
    assert printable("clear\x1b[2J now") == "clear\\x1b[2J now"
    assert printable("one\r\nforged line") == "one\\r\\nforged line"
    assert printable("tab\there") == "tab\\there"
    assert printable("right\u202eleft") == "right\\u202eleft"


def test_ordinary_text_is_kept_as_it_is():
    assert printable("café: 3 rows, 100 % done ✓") == "café: 3 rows, 100 % done ✓"


def test_cut_says_how_much_was_left_out():
    assert cut("abcdef", 10) == "abcdef"
    assert cut("abcdef", 4) == "abcd… (2 more characters)"


def _line(message: str, *args: object) -> str:
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, message, args, None)
    Redactor().filter(record)
    return TextFormatter(TEXT_FORMAT).format(record)


def test_the_text_log_escapes_a_forged_line():
    line = _line("run 7 failed: %s", "boom\n2026-01-01 INFO all is well")
    assert "\n" not in line
    assert "boom\\n2026-01-01 INFO all is well" in line


def test_a_huge_message_is_logged_cut():
    line = _line("run 7 failed: %s", "x" * 1_000_000)
    assert len(line) < MAX_MESSAGE_CHARS + 200
    assert "more characters)" in line
