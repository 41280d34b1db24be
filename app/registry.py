"""The ordered set of jobs a deployment runs: loading JOBS_MODULE, validating, configuring.

A jobs module exposes ``JOBS``, a list of `Job` in run order. Loading checks the
rules a registry needs (unique names, `run_after` naming earlier jobs, valid
schedules and flags) so a mistake stops startup instead of a tick.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType

from app.config import Settings, env_prefix
from app.core.job import ConfiguredJob, Job
from app.core.schedule import parse_schedule
from app.core.stops import describe
from app.errors import InvalidJob, JobsModuleError, UnknownJob, shown


class JobRegistry:
    """Jobs in run order, looked up by name."""

    def __init__(self, jobs: Sequence[Job]) -> None:
        self._jobs: dict[str, Job] = {}
        for index, job in enumerate(jobs):
            if not isinstance(job, Job):
                raise InvalidJob(
                    f"JOBS[{index}] is {type(job).__name__}, not a Job; "
                    "register the object returned by @job(...)"
                )
            if job.name in self._jobs:
                raise InvalidJob(f"job name {job.name!r} is registered twice; names must be unique")
            for upstream in job.run_after:
                if upstream not in self._jobs:
                    where = "later" if any(j.name == upstream for j in jobs) else "nowhere"
                    raise InvalidJob(
                        f"job {job.name!r} runs after {upstream!r}, which is registered {where}; "
                        "list it earlier in JOBS"
                    )
            self._jobs[job.name] = job

    def __iter__(self) -> Iterator[Job]:
        return iter(self._jobs.values())

    def __len__(self) -> int:
        return len(self._jobs)

    def __contains__(self, name: object) -> bool:
        return name in self._jobs

    @property
    def names(self) -> list[str]:
        """Job names in run order."""
        return list(self._jobs)

    def get(self, name: str) -> Job:
        """Return the job, or raise UnknownJob suggesting the closest names."""
        try:
            return self._jobs[name]
        except KeyError:
            raise UnknownJob(unknown_job_message(name, self.names)) from None


def unknown_job_message(name: str, known: Sequence[str]) -> str:
    """Say that `name` is not a job, suggesting the closest known names."""
    close = difflib.get_close_matches(name, known, n=3)
    hint = f"did you mean {', '.join(close)}?" if close else "run `cronlock jobs` to list them"
    return f"no job named {shown(name)} is registered; {hint}"


def _import(reference: str) -> ModuleType:
    if reference.endswith(".py") or "/" in reference:
        path = Path(reference)
        if not path.is_file():
            raise JobsModuleError(f"JOBS_MODULE={shown(reference)}: no such file")
        spec = importlib.util.spec_from_file_location(f"cronlock_jobs_{path.stem}", path)
        if spec is None or spec.loader is None:
            raise JobsModuleError(f"JOBS_MODULE={shown(reference)} cannot be imported as Python")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        return module
    return importlib.import_module(reference)


def _names_the_reference(missing: str, reference: str) -> bool:
    """True when the module not found is JOBS_MODULE itself or one of its packages."""
    return reference == missing or reference.startswith(missing + ".")


def load_registry(reference: str) -> JobRegistry:
    """Import JOBS_MODULE (a module name or a .py path) and build its registry."""
    try:
        module = _import(reference)
    except JobsModuleError:
        raise
    except InvalidJob as exc:
        raise InvalidJob(f"JOBS_MODULE={shown(reference)}: {exc.message}") from exc
    except ModuleNotFoundError as exc:
        if exc.name is not None and not _names_the_reference(exc.name, reference):
            # The jobs module was found; something it imports was not.
            raise JobsModuleError(
                f"JOBS_MODULE={shown(reference)} imports {exc.name!r}, which is not installed "
                "in this environment; install it, or fix the import"
            ) from exc
        raise JobsModuleError(
            f"JOBS_MODULE={shown(reference)} cannot be imported ({exc}); "
            "give a module on the Python path or a path to a .py file"
        ) from exc
    except KeyboardInterrupt:
        raise
    except BaseException as exc:
        raise JobsModuleError(
            f"JOBS_MODULE={shown(reference)} raised {_ended_by(exc)} while importing; "
            "a jobs module defines jobs and exits nothing"
        ) from exc
    jobs = getattr(module, "JOBS", None)
    if not isinstance(jobs, list | tuple):
        raise JobsModuleError(
            f"JOBS_MODULE={shown(reference)} has no JOBS list; define JOBS = [job_a, job_b, ...]"
        )
    return JobRegistry(jobs)


def configure(registry: JobRegistry, settings: Settings) -> list[ConfiguredJob]:
    """Apply `<NAME>_SCHEDULE`, `<NAME>_ENABLED` and CRON_SCHEDULE; raise on any bad value,
    and on anything an enabled job needs from the settings (`Job.check_settings`)."""
    parse_schedule(
        settings.default_schedule,
        zone=settings.cron_tz,
        source=f"CRON_SCHEDULE={shown(settings.default_schedule)}",
    )
    configured = []
    for job in registry:
        override = settings.job_schedule_override(job.name)
        if override is not None:
            source, expression = override
            source = f"{source}={shown(expression)}"
        elif job.schedule is not None:
            source, expression = f"job {job.name!r}", job.schedule
        else:
            source = f"CRON_SCHEDULE={shown(settings.default_schedule)} (default for {job.name!r})"
            expression = settings.default_schedule
        schedule = parse_schedule(expression, zone=settings.cron_tz, source=source)
        enabled = settings.job_enabled(job.name)
        if enabled and job.check_settings is not None:
            job.check_settings(settings)
        configured.append(ConfiguredJob(job, schedule, enabled))
    return configured


def unmatched_overrides(registry: JobRegistry, settings: Settings) -> list[str]:
    """Per-job variables that name no registered job: likely typos worth a warning."""
    prefixes = {env_prefix(name) for name in registry.names}
    return sorted(
        variable
        for variable in settings.job_overrides
        if variable.rsplit("_", 1)[0] not in prefixes
    )


def _ended_by(exc: BaseException) -> str:
    if isinstance(exc, SystemExit):
        return f"SystemExit({exc.code!r}) (sys.exit)"
    return describe(exc)
