"""JOBS_FILE: HTTP jobs listed in TOML, one `[[job]]` table each, checked at startup.

A deployment that only schedules calls to its services can list them here rather
than write Python. Each entry takes `http_job`'s options; a mistake anywhere (bad
TOML, an unknown field, a value of the wrong type, a name already taken) stops
startup with exit 2, one line per problem naming the file, the entry and the field.
The file's jobs run after JOBS_MODULE's, in the file's order. It holds no secret:
URLs and credentials come from the environment.
"""

from __future__ import annotations

import difflib
import tomllib
from collections.abc import Collection
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from app.core.job import Job
from app.errors import InvalidJob, JobsFileError, shown
from app.http_jobs.definition import http_job


class HttpJobEntry(BaseModel):
    """One `[[job]]` table: `http_job`'s options, by the same names."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: str
    url_env: str
    path: str
    method: str = "POST"
    schedule: str | None = None
    audience: str | None = None
    scopes: list[str] | None = None
    timeout_s: float = 30.0
    body: dict[str, Any] | list[Any] | None = None
    headers: dict[str, str] = {}
    max_attempts: int = 4
    attempt_backoff_s: float = 1.0
    run_after: list[str] = []
    retries: int = 0
    retry_backoff_s: float = 10.0
    misfire_grace_s: float | None = None
    run_at_start: bool = False
    description: str | None = None


def load_jobs_file(path: Path, taken: Collection[str] = ()) -> list[Job]:
    """The HTTP jobs `path` lists, in order; `taken`: names JOBS_MODULE registered."""
    where = f"JOBS_FILE={path}"
    entries = _entries(path, where)
    problems: list[str] = []
    jobs: list[Job] = []
    names = set(taken)
    for index, entry in enumerate(entries):
        label = f"job[{index}]"
        if isinstance(entry.get("name"), str):
            label += f" {entry['name']!r}"
        job, found = _job(entry, label, taken, names)
        problems += found
        if job is not None:
            jobs.append(job)
    if problems:
        raise JobsFileError("\n".join(f"{where}: {problem}" for problem in problems))
    return jobs


def _entries(path: Path, where: str) -> list[dict[str, Any]]:
    try:
        with path.open("rb") as file:
            data = tomllib.load(file)
    except FileNotFoundError:
        raise JobsFileError(f"{where}: no such file; give the path of a TOML file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise JobsFileError(f"{where} cannot be read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise JobsFileError(f"{where} is not valid TOML: {exc}") from None
    unknown = sorted(set(data) - {"job"})
    if unknown:
        raise JobsFileError(
            f"{where}: unknown top-level key {unknown[0]!r}; list the jobs as [[job]] tables"
        )
    entries = data.get("job", [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise JobsFileError(f"{where}: 'job' must be a list of tables; write each as [[job]]")
    return entries


def _job(
    entry: dict[str, Any], label: str, taken: Collection[str], names: set[str]
) -> tuple[Job | None, list[str]]:
    """The entry's job, or the problems that stop it, each naming the field."""
    try:
        options = HttpJobEntry.model_validate(entry)
    except ValidationError as exc:
        return None, [f"{label}: {_field_problem(error)}" for error in exc.errors()]
    if options.name in names:
        by = "JOBS_MODULE" if options.name in taken else "an earlier entry"
        return None, [f"{label}: field 'name': {options.name!r} is already registered by {by}"]
    names.add(options.name)
    given = options.model_dump(exclude_unset=True)
    try:
        return http_job(given.pop("name"), **given), []
    except InvalidJob as exc:
        message = exc.message.removeprefix(f"job {options.name!r}: ")
        return None, [f"{label}: {message}"]


def _field_problem(error: Any) -> str:
    """One pydantic error as a line: the field, what is wrong, the value given."""
    field = ".".join(str(part) for part in error["loc"])
    if error["type"] == "extra_forbidden":
        close = difflib.get_close_matches(str(error["loc"][0]), HttpJobEntry.model_fields, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"unknown field {field!r}{hint}"
    if error["type"] == "missing":
        return f"field {field!r} is required"
    return f"field {field!r}: {error['msg'].lower()}, not {shown(error['input'], 60)}"
