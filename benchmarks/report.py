"""Turn one run's figures into docs/benchmarks.md and its chart.

Everything printed comes from the results dict of the same run; the prose says how
each figure was taken and what it depends on, not what it happened to be.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks import http_job

SCALE_FIGURES = Path(__file__).resolve().parent.parent / "docs" / "scale.json"

TOOLS_SHOWN = {
    "cronlock": "cronlock",
    "procrastinate": "procrastinate",
    "pgqueuer": "PgQueuer",
    "apscheduler": "APScheduler 3",
}
IDLE_SHOWN = TOOLS_SHOWN | {"cronlock_console": "cronlock, serving the console"}
TARGETS = {
    "console_list_ms": 100.0,
    "console_timeline_ms": 100.0,
    "overhead_ratio": 1.3,
    "tick_speedup_4": 2.5,
    "delay_p99_ms": 20.0,
    "idle_transactions": 0,
    "rss_mib": 80.0,
    "history_ratio": 1.2,
}


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _met(ok: bool) -> str:
    return "met" if ok else "**missed**"


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def _spread(compared: dict[str, Any]) -> str:
    return f"{min(compared['ratio_chunks']):.2f}–{max(compared['ratio_chunks']):.2f}"


def _share(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def _us(summary: dict[str, Any], key: str) -> str:
    return f"{summary[key]:.0f}"


def own_figures(results: dict[str, Any]) -> list[str]:
    """The table of cronlock's own figures against their targets."""
    core, ticks = results["core"], results["ticks"]
    ours, floor = core["overhead"]["cronlock"], core["overhead"]["raw"]
    ratio = core["overhead"]["ratio_median"]
    history = core["history"]
    history_ratio = history["ratio_median"]
    one, four = ticks["1"]["tick_s"], ticks["4"]["tick_s"]
    delay, idle = results["start_delay"], results["idle"]["cronlock"]
    startup = results["startup"]
    trips = core["round_trips"]
    rows = [
        [
            "1. Per-run overhead, no-op job (claim + finish), median / p99 / min / max",
            f"{_us(ours, 'median_us')} / {_us(ours, 'p99_us')} / {_us(ours, 'min_us')}"
            f" / {_us(ours, 'max_us')} µs",
            "",
            "",
        ],
        [
            "   The same SQL by hand on raw psycopg 3 (the floor)",
            f"{_us(floor, 'median_us')} / {_us(floor, 'p99_us')} / {_us(floor, 'min_us')}"
            f" / {_us(floor, 'max_us')} µs",
            "",
            "",
        ],
        [
            "   cronlock / floor: median of chunk ratios (min–max of chunks; p99 / p99)",
            f"{ratio:.2f} ({_spread(core['overhead'])}; {core['overhead']['ratio_p99']:.2f})",
            f"≤ {TARGETS['overhead_ratio']}",
            _met(ratio <= TARGETS["overhead_ratio"]),
        ],
        [
            "   Round trips per run (statements among them): cronlock / floor",
            f"{trips['cronlock_wire']['round_trips']:g} ({trips['cronlock_wire']['statements']:g})"
            f" / {trips['raw_wire']['round_trips']:g} ({trips['raw_wire']['statements']:g})",
            "",
            "",
        ],
        [
            f"2. Tick of {ticks['1']['jobs']:,} no-op jobs, median of"
            f" {len(ticks['1']['rounds'])} rounds (min–max): 1 worker / 2 / 4 processes",
            " / ".join(
                f"{t['tick_s']:.2f} ({t['tick_min_s']:.2f}–{t['tick_max_s']:.2f})"
                for t in ticks.values()
            )
            + " s",
            "",
            "",
        ],
        [
            "   Machine CPU busy (stolen by the hypervisor) during the median tick, all cores:"
            " 1 worker / 2 / 4 processes",
            " / ".join(
                f"{_share(t.get('machine_busy'))} ({_share(t.get('machine_stolen'))})"
                for t in ticks.values()
            ),
            "",
            "",
        ],
        [
            "   Speed-up of 4 processes over 1 (medians)",
            f"{one / four:.2f}×",
            f"≥ {TARGETS['tick_speedup_4']}×",
            _met(one / four >= TARGETS["tick_speedup_4"]),
        ],
        [
            "   Exactly one SUCCESS per job, nothing else, in every round",
            ", ".join("yes" if t["exactly_once"] else "**no**" for t in ticks.values()),
            "yes",
            _met(all(t["exactly_once"] for t in ticks.values())),
        ],
        [
            f"3. Start delay, instant to the body's first line, p50 / p99 / max"
            f" ({delay['runs']} runs)",
            f"{_ms(delay['delay_p50_ms'])} / {_ms(delay['delay_p99_ms'])}"
            f" / {_ms(delay['delay_max_ms'])} ms",
            f"p99 < {TARGETS['delay_p99_ms']:.0f} ms",
            _met((delay["delay_p99_ms"] or 1e9) < TARGETS["delay_p99_ms"]),
        ],
        [
            "4. Idle: transactions per minute in its database (pg_stat_database)",
            f"{idle['transactions_per_minute']:.1f}",
            "",
            "",
        ],
        [
            "   Idle: its connections that sent a statement in the window",
            f"{idle['statements_seen']}",
            "0",
            _met(idle["statements_seen"] == TARGETS["idle_transactions"]),
        ],
        [
            "   Idle worker RSS",
            f"{idle['rss_mib']:.1f} MiB",
            f"< {TARGETS['rss_mib']:.0f} MiB",
            _met(idle["rss_mib"] < TARGETS["rss_mib"]),
        ],
        [
            f"5. Per-run overhead with {history['rows']:,} rows of history, median / p99",
            f"{_us(history['full'], 'median_us')} / {_us(history['full'], 'p99_us')} µs",
            "",
            "",
        ],
        [
            "   Against a table of a few thousand runs: median of chunk ratios (min–max)",
            f"{history_ratio:.2f}× ({_spread(history)})",
            f"≤ {TARGETS['history_ratio']}×",
            _met(history_ratio <= TARGETS["history_ratio"]),
        ],
        [
            "6. Start-up to READY=1 on an external database, median (min–max)",
            f"{startup['median_s']:.2f} s ({startup['min_s']:.2f}–{startup['max_s']:.2f})",
            "",
            "",
        ],
    ]
    return _table(["Figure", "Value", "Target", ""], rows)


def peer_figures(results: dict[str, Any]) -> list[str]:
    """One row per tool and scenario."""
    rows = []
    for item in results["peers"]:
        scenario = item["scenario"]
        name = TOOLS_SHOWN[scenario["tool"]]
        shape = f"{scenario['workers']}×{scenario['jobs']}"
        if "unsupported" in item:
            rows.append([shape, name, "cannot: " + item["unsupported"], *["–"] * 7])
            continue
        rows.append(
            [
                shape,
                name,
                f"{item['runs']:,} / {item['expected']:,}",
                f"{item['duplicates']:,}",
                f"{item['misses']:,}",
                f"{_ms(item['delay_p50_ms'])} / {_ms(item['delay_p99_ms'])}"
                f" / {_ms(item['delay_max_ms'])}",
                f"{item['transactions_per_run']:.2f}",
                f"{item['cpu_ms_per_run']:.2f}",
                f"{item['peak_rss_mib']:.0f}",
                ", ".join(item["instant_source"]),
            ]
        )
    header = [
        "W×J",
        "tool",
        "runs / expected",
        "duplicates",
        "misses",
        "start delay p50 / p99 / max (ms)",
        "transactions per run",
        "CPU ms per run",
        "peak RSS (MiB)",
        "instant from",
    ]
    return _table(header, rows)


def idle_figures(results: dict[str, Any]) -> list[str]:
    """Idle cost of each tool: one worker, 20 jobs due once a year."""
    rows = [
        [
            IDLE_SHOWN[tool],
            f"{item['transactions_per_minute']:.1f}",
            f"{item['statements_seen']}",
            f"{item['rss_mib']:.1f}",
        ]
        for tool, item in results["idle"].items()
    ]
    header = [
        "tool",
        "transactions per idle minute",
        "its connections that sent anything",
        "RSS (MiB)",
    ]
    return _table(header, rows)


def _timed(route: dict[str, Any]) -> str:
    return (
        f"{route['median_ms']:.1f} / {route['p95_ms']:.1f} ms"
        f" ({route['min_ms']:.1f}–{route['max_ms']:.1f})"
    )


def console_figures(results: dict[str, Any]) -> list[str]:
    """The console's routes on the long history, its idle cost and its trigger's."""
    console, idle = results["console"], results["idle"]
    data, routes, trigger = console["dataset"], console["routes"], console["trigger"]
    listing, overview, timeline = routes["api_jobs"], routes["overview"], routes["timeline"]
    served, alone = idle["cronlock_console"], idle["cronlock"]
    rows = [
        [
            f"GET /api/jobs: {listing['jobs']} jobs, {data['runs']:,} runs; median / p95 (min–max)",
            _timed(listing),
            f"median < {TARGETS['console_list_ms']:.0f} ms",
            _met(listing["median_ms"] < TARGETS["console_list_ms"]),
        ],
        [
            "   The first one, right after `cronlock serve` started",
            f"{listing['warmup_ms'][0]:.1f} ms",
            "",
            "",
        ],
        ["GET /: the overview page (HTML) of the same jobs", _timed(overview), "", ""],
        [
            f"GET /api/jobs/{timeline['job']}/instants for the last day"
            f" ({timeline['instants']:,} instants)",
            _timed(timeline),
            f"median < {TARGETS['console_timeline_ms']:.0f} ms",
            _met(timeline["median_ms"] < TARGETS["console_timeline_ms"]),
        ],
        [
            "   Machine CPU busy (stolen by the hypervisor) while the routes were timed, all cores",
            f"{_share(console.get('machine_busy'))} ({_share(console.get('machine_stolen'))})",
            "",
            "",
        ],
        [
            "Idle worker serving the console (METRICS_PORT): its connections that sent a"
            " statement in the window",
            f"{served['statements_seen']} (GET /healthz before the window:"
            f" {served.get('healthz', '–')})",
            "0",
            _met(served["statements_seen"] == 0),
        ],
        [
            "   Transactions per minute in its database: serving the console / not serving it",
            f"{served['transactions_per_minute']:.1f} / {alone['transactions_per_minute']:.1f}",
            "",
            "",
        ],
        [
            "A no-op run (claim + finish) with the day-counts trigger against without it:"
            " median of chunk ratios (min–max of chunks)",
            f"{trigger['ratio_median']:.2f} ({_spread(trigger)})",
            "",
            "",
        ],
        [
            "   Difference of medians, median over chunks (min–max of chunks)",
            f"{trigger['difference_median_us']:+.0f} µs"
            f" ({min(trigger['difference_chunks_us']):+.0f}"
            f" – {max(trigger['difference_chunks_us']):+.0f})",
            "",
            "",
        ],
        [
            "   Machine CPU busy (stolen by the hypervisor) meanwhile, all cores",
            f"{_share(trigger.get('machine_busy'))} ({_share(trigger.get('machine_stolen'))})",
            "",
            "",
        ],
    ]
    return _table(["Figure", "Value", "Target", ""], rows)


def console_method(results: dict[str, Any]) -> str:
    """How the console's figures were taken, with the dataset this run built."""
    data = results["console"]["dataset"]
    statuses = data["by_status"]
    if data["triggers"]:
        seeded = (
            f"The trigger counted each run into `job_day_counts` as the insert wrote it"
            f" ({data['insert_s']:.0f} s; {data['day_count_rows']:,} rows of counts)."
        )
    else:
        seeded = SEED_BACKFILL.format(**data)
    text = METHOD_CONSOLE.format(
        **data,
        **results["settings"],
        success=statuses.get("SUCCESS", 0),
        failure=statuses.get("FAILURE", 0),
        skipped=statuses.get("SKIPPED", 0),
        missed=statuses.get("MISSED", 0),
        seeded=" ".join(seeded.split()),
    ).strip()
    intro, *items = text.split("\n- ")
    return "\n".join(
        [intro, *(_wrapped("- " + " ".join(item.split()), indent="  ") for item in items)]
    )


def _wrapped(paragraph: str, *, indent: str) -> str:
    """A paragraph filled to the width of the rest of the file, figures put in."""
    return textwrap.fill(paragraph, width=84, subsequent_indent=indent, break_on_hyphens=False)


def environment_lines(results: dict[str, Any]) -> list[str]:
    """Versions of everything, and the machine."""
    env = results["environment"]
    versions = ", ".join(f"{name} {version}" for name, version in env["versions"].items())
    return [
        f"PostgreSQL {env['postgresql']} ({env['server']}); Python {env['python']} on"
        f" {env['platform']}, {env['cpus']} CPU cores; libpq {env['libpq']}; {versions}."
        f" The whole run took {results['elapsed_s'] / 60:.1f} minutes; the hypervisor gave"
        f" {_share(results.get('machine_stolen'))} of the cores' time to other guests"
        " meanwhile (steal, from `/proc/stat`), which slows and jitters every figure.",
    ]


def scale_figures(path: Path = SCALE_FIGURES) -> list[str]:
    """The scale benchmark's section: its own run (`make bench-scale`), kept in scale.json."""
    lines = [
        "## Scale",
        "",
        "10,000 per-minute jobs across 8 worker processes: `make bench-scale`",
        "(`benchmarks/scale.py`), a run of its own; its raw figures are in",
        "[scale.json](scale.json), and [Sizing](sizing.md) turns them into arithmetic for",
        "larger deployments.",
    ]
    if not path.exists():
        return lines
    scale = json.loads(path.read_text())
    growth = scale["growth_per_million_runs_mib"]
    settled = [instant["settled_s"] for instant in scale["instants"]]
    late = scale["start_late_ms"]
    rows = [
        (
            "Jobs × workers × whole minutes",
            f"{scale['jobs']:,} × {scale['workers']} × {scale['minutes']}",
        ),
        ("Runs; duplicate SUCCESS", f"{scale['runs_in_window']:,}; {scale['duplicate_success']}"),
        ("Each minute settled in (min–max)", f"{min(settled):.1f}–{max(settled):.1f} s"),
        ("Start lateness p50 / p99", f"{late['p50'] / 1000:.1f} / {late['p99'] / 1000:.1f} s"),
        ("Transactions per run", f"{scale['transactions_per_run']:.2f}"),
        ("Server CPU per 1,000 runs", f"{scale['server_cpu_ms_per_1000_runs']:.0f} ms"),
        ("WAL per run", f"{scale['wal_bytes_per_run'] / 1024:.1f} KiB"),
        (
            "job_execution per million runs (heap + indexes)",
            f"{growth['table_bytes']:.0f} MiB ({growth['heap_bytes']:.0f} + "
            f"{growth['index_bytes']:.0f})",
        ),
        ("Connections held, all workers (max)", f"{scale['connections']['max']}"),
        (
            "job_execution dead rows at the end; autovacuums",
            f"{scale['job_execution']['dead']}; {scale['job_execution']['autovacuums']}",
        ),
    ]
    return [*lines, "", "| Figure | Value |", "|---|---|", *(f"| {a} | {b} |" for a, b in rows)]


def markdown(results: dict[str, Any]) -> str:
    """docs/benchmarks.md."""
    settings = results["settings"]
    parts = [
        "# Benchmarks",
        "",
        "Written by `make bench` (`benchmarks/run.py`); the raw figures of the same run are in",
        "[benchmarks.json](benchmarks.json). Every figure below comes from one run, on one",
        "PostgreSQL server, one measure after another. Machines like this one are noisy:",
        "compare ratios and medians, read p99 and max as orders of magnitude.",
        "",
        *environment_lines(results),
        "",
        "## cronlock's own figures",
        "",
        *own_figures(results),
        "",
        METHOD_OWN.format(**settings).strip(),
        "",
        "## Console",
        "",
        *console_figures(results),
        "",
        console_method(results),
        "",
        "## Side by side with the alternatives",
        "",
        SCENARIO.format(**settings).strip(),
        "",
        "![Start delay and correctness per tool](benchmarks.png)",
        "",
        *peer_figures(results),
        "",
        "### Idle cost",
        "",
        *idle_figures(results),
        "",
        READING.format(
            floor_max_ms=results["core"]["overhead"]["raw"]["max_us"] / 1000,
            stolen=_share(results.get("machine_stolen")),
        ).strip(),
        "",
    ]
    if "http_job" in results:
        parts += [http_job.markdown(results["http_job"]), ""]
    parts += [*scale_figures(), ""]
    return "\n".join(parts)


def chart(results: dict[str, Any], path: Any) -> None:
    """One PNG: start delay p99 and wrong runs (duplicates + misses) per tool and scenario."""
    import matplotlib  # noqa: PLC0415 - an optional dependency, only for the report

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    peers = [p for p in results["peers"] if "unsupported" not in p]
    shapes = sorted(
        {(p["scenario"]["workers"], p["scenario"]["jobs"]) for p in peers},
        key=lambda s: (s[1], s[0]),
    )
    tools = list(TOOLS_SHOWN)
    figure, (delays, wrong) = plt.subplots(1, 2, figsize=(12, 4.5))
    width = 0.8 / len(tools)
    for index, tool in enumerate(tools):
        by_shape = {
            (p["scenario"]["workers"], p["scenario"]["jobs"]): p
            for p in peers
            if p["scenario"]["tool"] == tool
        }
        xs = [i + (index - (len(tools) - 1) / 2) * width for i in range(len(shapes))]
        p99 = [(by_shape.get(s) or {}).get("delay_p99_ms") or 0 for s in shapes]
        errors = [
            100 * (by_shape[s]["duplicates"] + by_shape[s]["misses"]) / by_shape[s]["expected"]
            if s in by_shape
            else 0
            for s in shapes
        ]
        delays.bar(xs, p99, width, label=TOOLS_SHOWN[tool])
        wrong.bar(xs, errors, width, label=TOOLS_SHOWN[tool])
    labels = [f"{w} worker{'s' if w > 1 else ''} × {j} jobs" for w, j in shapes]
    for axis in (delays, wrong):
        axis.set_xticks(range(len(shapes)), labels, fontsize=8)
        axis.grid(axis="y", alpha=0.3)
    delays.set_yscale("log")
    delays.set_ylabel("start delay p99 (ms, log scale)")
    delays.set_title("Scheduled instant to the body's first line")
    wrong.set_ylabel("% of (job, instant): duplicates + misses")
    wrong.set_title("Runs that should not have happened, or did not")
    wrong.legend(fontsize=8)
    figure.suptitle("Every job fires every second; same PostgreSQL, same run")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


METHOD_OWN = """
How each was taken:

1. `claim_run` + `finish_run` of a no-op run, each for its own instant:
   {timed_runs:,} timed runs after {warmup_runs} warm-up runs. The floor sends the
   same statements by hand on one raw psycopg 3 connection (`BEGIN`, lock, state,
   insert, `COMMIT`, then the finishing `UPDATE`), except that its lock reads only
   the job's name where cronlock's also reads the job's pause and alert state, and
   its state query reads no `pause --all`, so the floor is a little lower than
   cronlock's own SQL would be. The two alternate in {chunks} chunks,
   and the ratio is the median of the chunks' ratios of medians, so a slow
   spell of the machine moves both sides of a ratio. Round trips are counted in
   libpq's protocol trace (one `ReadyForQuery` each).
2. One worker calls `Worker.start()` and settles one tick of 1,000 `* * * * * *`
   jobs; then 2 and 4 worker processes, released by one barrier, settle the same
   tick the way `cronlock worker --once` does. Every worker's clock is pinned to
   the tick's instant (a real clock would expire the tail of a tick longer than a
   second). Exactly-once is checked in the table afterwards. The three shapes take
   turns, three rounds; the table shows each one's median round, and how busy
   the machine's cores were during it (`/proc/stat`: PostgreSQL, workers and
   harness together).
3. `cronlock worker` in its own process with one every-second job, over
   {delay_periods} instants; the body writes the time of its first line.
4. `cronlock worker` with 20 jobs due once a year, over {idle_window_s:.0f} s after
   an 11 s settle; transactions of its database from `pg_stat_database`, RSS from
   `/proc`. `pg_stat_database` also counts autovacuum's visits to the database
   (about one a minute here, for every tool alike), so the target is judged on the
   worker's own connections: how many changed state (`pg_stat_activity`) in the
   window, which only a statement the worker sends can do.
5. cronlock's runs of figure 1 on a second database, whose `job_execution` holds
   {history_rows:,} finished runs (100 jobs, the timed job among them, analysed;
   inserted without the day-counts trigger, then counted by revision 0006's
   backfill statement, as `benchmarks/day_counts.py` explains),
   alternating in {chunks} chunks with the same runs on the first database, whose
   table holds only figure 1's few thousand runs (analysed, as autovacuum would;
   an emptied table's stale statistics let PostgreSQL scan it as it grows, which
   would flatter the long history); the ratio is taken as in figure 1.
6. `cronlock worker` started five times against a migrated database, from the
   process start to the systemd `READY=1` it sends once the schema is checked and
   the jobs are registered.
"""

METHOD_CONSOLE = """
How these were taken:

- The dataset: {jobs} jobs (`benchmarks/console_jobs.py`: one every 30 s, 18 every
minute, 8 every 5 minutes, 12 every 15, 40 hourly, 16 every four hours, 85 daily,
15 weekly, and 5 daily ones with parameters) and {runs:,} runs over the last
{history_days} days, laid out on each job's own instants by one `INSERT ... SELECT`
over `generate_series` (`benchmarks/console.py`), oldest first: {success:,} SUCCESS
with durations spread around each job's typical one (10 ms to 10 s), {failure:,}
FAILURE, {second_attempts:,} second attempts after a failure, {skipped:,} SKIPPED,
{missed:,} MISSED, and {manual_runs} runs by hand with parameters. `job_execution`
takes {table_mib:.0f} MiB with its indexes.
- {seeded} Then `VACUUM ANALYZE` ({vacuum_analyze_s:.1f} s).
- The routes: `cronlock serve` serves that database on a loopback port (no token
set: reads are open), and one kept-alive HTTP connection asks the three routes in
turn, {console_warmup_requests} rounds of warm-up, then {console_requests} timed
rounds; a time runs from sending the request to the body's last byte. The
timeline asks for (now − 24 h, now] each time. The console, PostgreSQL and the
client take turns on one request at a time, so they keep about one core busy: a
busy share well above that of one core means other work shared the machine.
- Idle: in figure 4's window, a second `cronlock worker` with `METRICS_PORT` set
idles beside the first; it answers one GET /healthz (which reads nothing from the
database) before the window, and nothing asks it anything afterwards.
- The trigger: figure 1's cronlock runs on two fresh databases of the same server,
one with the user triggers of `job_execution` disabled, alternating in {chunks}
chunks. Figure 1's floor runs on a database with the trigger, as cronlock does, so
the overhead ratio there does not show what the trigger adds; this comparison does.
"""

SEED_BACKFILL = """
The runs were inserted with the user triggers of `job_execution` disabled ({insert_s:.0f} s),
then `job_day_counts` ({day_count_rows:,} rows) was filled by revision 0006's backfill
statement ({backfill_s:.1f} s), which gives the same rows as the trigger (checked on a
smaller seed). With the trigger firing per row, the one insert takes minutes: each
(job, day) row is updated once per run of that day (1,440 times for a per-minute
job) in one transaction, and none of its dead versions can be pruned before the
commit (`BENCH_CONSOLE_SEED=trigger` seeds that way; `benchmarks/day_counts.py`).
"""

SCENARIO = """
The scenario: W worker processes (1 and 4) of one tool × J jobs (20 and 200),
every job firing **every second** (all four tools can schedule per second), over
{peer_periods} instants. Each body appends one line (job, instant, start time, pid)
to a file; a run counts for the instant its tool says it belongs to, or, for tools
that do not tell the job (PgQueuer, APScheduler 3), the second it started in.
Each tool gets a fresh database on the same server and is configured as its docs
recommend for several processes (see `benchmarks/peers/peer_*.py`); nothing is
added where a tool has no cross-process lock. *Duplicates*: runs beyond the first
for a (job, instant); *misses*: (job, instant) pairs with no run. *Transactions
per run*: everything the tool's processes committed or rolled back, start-up and
shut-down included, over every run they made. *CPU per run*: user + system time of
the worker processes over the window. Peak RSS: the largest worker process.
"""

READING = """
## Reading the figures

- **Replicas sharing a tick.** Each claim offers the database the next eight
  pending instants; one statement drops those another replica has settled and
  locks the first free job row (`SKIP LOCKED`), so replicas step over each
  other's work instead of each asking for every lock. What is left is the price
  of the per-job row lock and the state read after it: a claim is still its own
  short transaction, where a queue that takes a batch of due rows in one statement
  (PgQueuer does) spends fewer transactions per run. On two cores the tick is
  bound by CPU, shared by PostgreSQL, the workers and the harness: one worker
  already keeps about one core busy between itself and the server, so four
  processes can at best use the second one.
- **Per-run overhead.** cronlock and the floor make the same six round trips.
  The four hot statements are SQLAlchemy Core compiled once and sent by psycopg
  on a connection from SQLAlchemy's pool, without SQLAlchemy's `Connection`; what
  remains above the floor is two pool checkouts, the pause reads,
  building the claim request and the run's bookkeeping in Python.
- **History.** The claim's state query reads a job's RUNNING run through a
  partial index, with `'RUNNING'` written into the statement: as a parameter, a
  prepared statement's generic plan could not use that index and read every run
  of the job, so the claim slowed down as history grew.
- **Start delay.** cronlock's first job of a tick starts within a few milliseconds
  of its instant on an idle machine; later jobs of the same tick wait for the ones
  before them, because one worker runs its jobs one after another by design. With
  several replicas, a job whose lock another replica holds is tried again after a
  short poll (50 ms at first). The tail follows the machine: in this run the
  floor's hand-written runs of figure 1 (no scheduling at all) took up to
  {floor_max_ms:.0f} ms, and the hypervisor took {stolen} of the cores' time.
- **Console.** The overview's eight statements read indexes or a few thousand
  rows of per-day counts: on a million runs they take tens of milliseconds of
  database time together (`EXPLAIN ANALYZE`), most of it the statistics, which
  add up each job's days of the retention window and merge their duration
  histograms bucket by bucket in the database. The rest of a request is Python:
  200 job views with their last runs and last 30 instants' outcomes, turned into
  JSON or HTML. Listing each job's instants through croniter costs tens of
  microseconds a step, more than all the queries for 200 jobs, so the console
  keeps them between requests and walks on only past the ones that have come;
  the first request after a start lists them all. The timeline's query reads the
  day's runs through the (job, instant, attempt) index in a few milliseconds;
  most of its time is croniter listing the day's instants, and the rows turned
  into the API's models.
- **Instants.** A run recorded for the second it started in (PgQueuer,
  APScheduler 3) can hide lateness: a run due at one second that starts in the
  next counts as that next second's run, and its own instant as missed.
- **Processes without a shared lock.** APScheduler 3 documents that several
  schedulers must not share a job store; with 4 processes each runs every job,
  which shows as duplicates.
- **Noise.** The machine runs PostgreSQL, the workers and the harness on the same
  cores; p99 and max move from run to run, ratios and medians much less.
"""
