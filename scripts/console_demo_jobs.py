"""The jobs of the deployment shown in the console's screenshots (scripts/console_screenshots.py).

A plausible small deployment: the bodies only return what a real one would, since
the screenshots show a history seeded into the database, not runs of these bodies.
"""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel, Field

from app.job import PreCheckContext, RunContext, job


class ContactSync(BaseModel):
    """How much of the CRM a run copies."""

    limit: int = Field(500, ge=1, le=10_000, description="contacts per batch")
    full: bool = Field(False, description="copy every contact, not only the changed ones")


class InvoiceRange(BaseModel):
    """Which invoices a backfill rewrites."""

    since: date = Field(description="first invoice date to rewrite")
    until: date | None = Field(None, description="last invoice date (default: today)")
    limit: int = Field(1000, ge=1, description="invoices per transaction")


def _snapshot_ready(ctx: PreCheckContext) -> str | None:
    """Declines the instant while the nightly snapshot is missing (the history shows some)."""
    return None


@job("refresh-exchange-rates", schedule="*/15 * * * *", retries=2, retry_backoff_s=60)
def refresh_exchange_rates(ctx: RunContext) -> dict[str, int]:
    """Fetches the ECB reference rates into fx_rate."""
    return {"currencies": 31}


@job("sync-crm-contacts", schedule="*/10 * * * *", params=ContactSync, timeout_s=900)
def sync_crm_contacts(ctx: RunContext) -> dict[str, int]:
    """Copies the contacts changed in the CRM since the last run."""
    return {"copied": min(ctx.params.limit, 120)}


@job("charge-renewals", schedule="0 * * * *", retries=1, retry_backoff_s=300)
def charge_renewals(ctx: RunContext) -> dict[str, int]:
    """Charges the subscriptions that renew this hour."""
    return {"charged": 12}


@job("export-warehouse", schedule="5 */2 * * *", pre_check=_snapshot_ready, timeout_s=1800)
def export_warehouse(ctx: RunContext) -> dict[str, int]:
    """Exports yesterday's orders to the warehouse, once the nightly snapshot exists."""
    return {"rows": 48_210}


@job("reindex-search", schedule="*/20 * * * *")
def reindex_search(ctx: RunContext) -> dict[str, int]:
    """Reindexes the products changed since the last run."""
    return {"products": 340}


@job("backfill-invoices", params=InvoiceRange, transactional=True)
def backfill_invoices(ctx: RunContext) -> dict[str, int]:
    """Rewrites old invoices with the current tax rules (by hand, with a date range)."""
    return {"rewritten": 0}


JOBS = [
    refresh_exchange_rates,
    sync_crm_contacts,
    charge_renewals,
    export_warehouse,
    reindex_search,
    backfill_invoices,
]
