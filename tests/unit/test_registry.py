from pathlib import Path

import pytest

from app.config import Settings
from app.errors import ConfigError, InvalidJob, InvalidSchedule, JobsModuleError, UnknownJob
from app.job import Job, job
from app.registry import JobRegistry, configure, load_registry, unmatched_overrides


def body(ctx):
    return None


def make(name: str, **options) -> Job:
    return Job(name=name, body=body, **options)


def test_decorator_builds_a_job_with_its_docstring_as_description():
    @job("sync-invoices", schedule="every 5m", run_after=["a"])
    def sync(ctx):
        """Pull invoices from the provider."""

    assert sync.name == "sync-invoices"
    assert sync.schedule == "every 5m"
    assert sync.run_after == ("a",)
    assert sync.description == "Pull invoices from the provider."


@pytest.mark.parametrize("name", ["Sync", "sync_invoices", "-sync", "sync-", "9sync", "a" * 64])
def test_names_must_be_kebab_case(name: str):
    with pytest.raises(InvalidJob, match="kebab-case"):
        make(name)


def test_names_are_unique():
    with pytest.raises(InvalidJob, match="registered twice"):
        JobRegistry([make("a"), make("a")])


def test_run_after_must_name_an_earlier_job():
    with pytest.raises(InvalidJob, match="registered later"):
        JobRegistry([make("b", run_after=("a",)), make("a")])
    with pytest.raises(InvalidJob, match="registered nowhere"):
        JobRegistry([make("b", run_after=("zzz",))])
    with pytest.raises(InvalidJob, match="itself"):
        make("a", run_after=("a",))


def test_registry_keeps_order_and_suggests_close_names():
    registry = JobRegistry([make("sync-invoices"), make("prune")])
    assert registry.names == ["sync-invoices", "prune"]
    with pytest.raises(UnknownJob, match="did you mean sync-invoices"):
        registry.get("sync-invoice")


def test_configure_applies_overrides_and_default_schedule():
    registry = JobRegistry([make("a", schedule="*/5 * * * *"), make("b")])
    settings = Settings.from_env(
        {"A_SCHEDULE": "every 30s", "B_ENABLED": "no", "CRON_SCHEDULE": "@hourly"}
    )
    a, b = configure(registry, settings)
    assert a.schedule.expression == "every 30s"
    assert a.enabled is True
    assert b.schedule.expression == "0 * * * *"
    assert b.enabled is False


def test_configure_names_the_bad_override():
    registry = JobRegistry([make("a", schedule="* * * * *")])
    with pytest.raises(InvalidSchedule, match=r"A_SCHEDULE='nope'"):
        configure(registry, Settings.from_env({"A_SCHEDULE": "nope"}))


def test_configure_validates_cron_schedule_even_when_unused():
    registry = JobRegistry([make("a", schedule="* * * * *")])
    with pytest.raises(InvalidSchedule, match="CRON_SCHEDULE"):
        configure(registry, Settings.from_env({"CRON_SCHEDULE": "61 * * * *"}))


def test_configure_asks_enabled_jobs_what_they_need_from_the_settings():
    def needs_url(settings: Settings) -> None:
        settings.service_url("MEMBERSHIP_URL")

    def never(settings: Settings) -> None:
        raise AssertionError("a disabled job is not checked")

    registry = JobRegistry(
        [make("calls", check_settings=needs_url), make("off", check_settings=never)]
    )
    with pytest.raises(ConfigError, match="MEMBERSHIP_URL is not set"):
        configure(registry, Settings.from_env({"OFF_ENABLED": "false"}))
    env = {"OFF_ENABLED": "false", "MEMBERSHIP_URL": "https://membership.internal"}
    calls, off = configure(registry, Settings.from_env(env))
    assert (calls.enabled, off.enabled) == (True, False)
    with pytest.raises(InvalidJob, match="check_settings=1 is not callable"):
        make("bad", check_settings=1)


def test_unmatched_overrides_are_reported():
    registry = JobRegistry([make("sync-invoices")])
    settings = Settings.from_env({"SYNC_INVOCES_ENABLED": "false", "SYNC_INVOICES_ENABLED": "1"})
    assert unmatched_overrides(registry, settings) == ["SYNC_INVOCES_ENABLED"]


def test_load_registry_from_a_file(tmp_path: Path):
    module = tmp_path / "my_jobs.py"
    module.write_text(
        "from app.job import job\n"
        "@job('hello', schedule='every 1m')\n"
        "def hello(ctx):\n    return {'ok': 1}\n"
        "JOBS = [hello]\n"
    )
    assert load_registry(str(module)).names == ["hello"]


def test_load_registry_from_the_shipped_module():
    assert load_registry("instrumentation").names == [
        "prune-job-history",
        "report-database-stats",
        "redact-stored-secrets",
    ]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("X = 1\n", "has no JOBS list"),
        ("raise RuntimeError('boom')\n", "raised RuntimeError"),
        ("import sys\nsys.exit(0)\n", r"raised SystemExit\(0\) \(sys.exit\) while importing"),
        ("raise GeneratorExit\n", "raised GeneratorExit while importing"),
        ("JOBS = [1]\n", "not a Job"),
    ],
)
def test_load_registry_errors(tmp_path: Path, content: str, message: str):
    module = tmp_path / "bad_jobs.py"
    module.write_text(content)
    with pytest.raises((JobsModuleError, InvalidJob), match=message):
        load_registry(str(module))


def test_missing_jobs_module():
    with pytest.raises(JobsModuleError, match="cannot be imported"):
        load_registry("no_such_module_anywhere")
    with pytest.raises(JobsModuleError, match="cannot be imported"):
        load_registry("no_such_package_anywhere.jobs")


def test_a_jobs_module_whose_own_import_is_missing_says_so(tmp_path: Path):
    module = tmp_path / "needs_more.py"
    module.write_text("import no_such_dependency_anywhere\nJOBS = []\n")
    with pytest.raises(
        JobsModuleError, match="imports 'no_such_dependency_anywhere', which is not"
    ):
        load_registry(str(module))
    with pytest.raises(JobsModuleError, match="no such file"):
        load_registry("missing/jobs.py")
