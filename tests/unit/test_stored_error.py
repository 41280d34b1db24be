"""An error message as stored in job_execution.error_message: capped, and storable as text."""

import pytest

from app.store.runs import MAX_ERROR_LENGTH, stored_error


def test_no_error_stays_none():
    assert stored_error(None) is None


@pytest.mark.parametrize("error", ["", "ValueError: provider said 503", "café ✓ 😀"])
def test_a_storable_error_is_kept_as_it_is(error: str):
    assert stored_error(error) == error


def test_an_error_of_the_maximum_length_is_kept_whole():
    error = "e" * MAX_ERROR_LENGTH
    assert stored_error(error) == error


def test_a_longer_error_is_cut_to_the_maximum_with_an_ellipsis():
    error = "x" * 10 + "e" * MAX_ERROR_LENGTH
    stored = stored_error(error)
    assert stored is not None
    assert len(stored) == MAX_ERROR_LENGTH
    assert stored == error[: MAX_ERROR_LENGTH - 1] + "…"


def test_nul_is_escaped():
    assert stored_error("bad\x00byte\x00") == "bad\\x00byte\\x00"


def test_lone_surrogates_are_escaped_and_other_text_kept():
    undecodable = b"caf\xe9 \xff".decode("utf-8", "surrogateescape")
    assert stored_error(undecodable) == "caf\\udce9 \\udcff"
    assert stored_error("\ud83d alone, é kept") == "\\ud83d alone, é kept"


def test_the_stored_error_encodes_as_utf8_without_nul():
    stored = stored_error("a\x00b\udce9c" * 10)
    assert stored == "a\\x00b\\udce9c" * 10
    assert b"\x00" not in stored.encode("utf-8")  # raises if a surrogate were left


def test_escapes_count_towards_the_cap():
    """Escaping comes first: an error that grows past the cap is cut too."""
    error = "\x00" * MAX_ERROR_LENGTH  # 4 characters each once escaped
    stored = stored_error(error)
    assert stored is not None
    assert len(stored) == MAX_ERROR_LENGTH
    assert stored.endswith("…")
    assert stored[:8] == "\\x00\\x00"
