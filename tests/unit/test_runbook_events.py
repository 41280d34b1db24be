"""Every event the code logs is in the RUNBOOK's table, and the table names no event that is gone."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def events_in_code() -> set[str]:
    found: set[str] = set()
    for path in (ROOT / "app").rglob("*.py"):
        found |= set(re.findall(r'"event":\s*"([a-z_]+)"', path.read_text()))
    return found


def events_in_runbook() -> set[str]:
    text = (ROOT / "RUNBOOK.md").read_text()
    return set(re.findall(r"^\| `([a-z_]+)` \| (?:INFO|WARNING|ERROR|CRITICAL) \|", text, re.M))


def test_every_event_the_code_logs_is_documented():
    assert sorted(events_in_code() - events_in_runbook()) == []


def test_the_runbook_documents_no_event_the_code_no_longer_logs():
    assert sorted(events_in_runbook() - events_in_code()) == []
