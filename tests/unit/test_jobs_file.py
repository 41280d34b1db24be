"""JOBS_FILE: HTTP jobs in TOML, each mistake one line naming the file, the entry and the field."""

import re
from pathlib import Path

import pytest

from app.errors import JobsFileError
from app.http_jobs import load_jobs_file

GOOD = """
[[job]]
name = "release-commission-locks"
schedule = "0 * * * *"
method = "POST"
url_env = "MEMBERSHIP_URL"
path = "/v1/admin/commission-locks/release-expired"
audience = "membership"
scopes = ["admin:membership"]
timeout_s = 30
body = { older_than_minutes = 60 }
headers = { "X-Team" = "payments" }
retries = 1

[[job]]
name = "expire-invitations"
url_env = "INVITATIONS_URL"
path = "/v1/admin/invitations/expire"
run_after = ["release-commission-locks"]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "jobs.toml"
    path.write_text(text)
    return path


def test_a_good_file_gives_its_jobs_in_order(tmp_path: Path):
    release, expire = load_jobs_file(write(tmp_path, GOOD))
    assert release.name == "release-commission-locks"
    assert release.schedule == "0 * * * *"
    assert release.timeout_s == 30
    assert release.retries == 1
    assert release.body.target.body == {"older_than_minutes": 60}
    assert release.body.target.headers == {"X-Team": "payments"}
    assert expire.run_after == ("release-commission-locks",)
    assert expire.body.target.method == "POST"
    assert expire.schedule is None


def test_an_empty_file_lists_no_job(tmp_path: Path):
    assert load_jobs_file(write(tmp_path, "")) == []


def entry(**fields: str) -> str:
    base = {"name": '"calls"', "url_env": '"MEMBERSHIP_URL"', "path": '"/v1/x"'}
    lines = [f"{k} = {v}" for k, v in {**base, **fields}.items() if v is not None]
    return "[[job]]\n" + "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            entry(timeout_s='"30"'),
            r"job\[0\] 'calls': field 'timeout_s': input should be a valid number, not '30'",
        ),
        (
            entry(schedul='"0 * * * *"'),
            r"job\[0\] 'calls': unknown field 'schedul'; did you mean 'schedule'\?",
        ),
        (entry(url_env=None), r"job\[0\] 'calls': field 'url_env' is required"),
        (entry(name="7"), r"job\[0\]: field 'name': input should be a valid string, not 7"),
        (
            entry(headers='{ "X-Team" = 5 }'),
            r"field 'headers.X-Team': input should be a valid string",
        ),
        (entry(method='"FETCH"'), r"job\[0\] 'calls': method='FETCH' is not one of GET, POST"),
        (entry(url_env='"https://membership.internal"'), r"job\[0\] 'calls': url_env='https:"),
        (entry(body="{ at = 2026-01-01T00:00:00Z }"), r"job\[0\] 'calls': body is not JSON"),
        (entry(retries="-1"), r"job\[0\] 'calls': retries=-1 must be between 0 and 100"),
        (
            entry() + entry(),
            r"job\[1\] 'calls': field 'name': 'calls' is already registered by an earlier entry",
        ),
        ("[[job]]\nname = \n", r"is not valid TOML: Invalid value \(at line 2, column 8\)"),
        ("[jobs]\n", r"unknown top-level key 'jobs'; list the jobs as \[\[job\]\] tables"),
        ("job = 5\n", r"'job' must be a list of tables; write each as \[\[job\]\]"),
    ],
)
def test_each_mistake_names_the_file_the_entry_and_the_field(
    tmp_path: Path, text: str, message: str
):
    path = write(tmp_path, text)
    with pytest.raises(JobsFileError, match=rf"^JOBS_FILE={re.escape(str(path))}:? .*{message}"):
        load_jobs_file(path)


def test_a_name_taken_by_the_jobs_module_is_refused(tmp_path: Path):
    with pytest.raises(JobsFileError, match="'calls' is already registered by JOBS_MODULE"):
        load_jobs_file(write(tmp_path, entry()), taken=["calls"])


def test_every_bad_entry_gets_its_own_line(tmp_path: Path):
    text = entry(timeout_s='"x"') + entry(name='"other"', path='"nope"') + entry(name='"ok"')
    with pytest.raises(JobsFileError) as raised:
        load_jobs_file(write(tmp_path, text))
    lines = raised.value.message.splitlines()
    assert len(lines) == 2
    assert "job[0] 'calls': field 'timeout_s'" in lines[0]
    assert "job[1] 'other': path='nope' must start with '/'" in lines[1]


def test_a_missing_file_says_so(tmp_path: Path):
    with pytest.raises(JobsFileError, match=r"JOBS_FILE=.*nowhere.toml: no such file"):
        load_jobs_file(tmp_path / "nowhere.toml")


def test_the_example_in_deploy_loads():
    example = Path(__file__).resolve().parents[2] / "deploy" / "jobs.example.toml"
    assert [job.name for job in load_jobs_file(example)] == [
        "release-commission-locks",
        "expire-invitations",
    ]
