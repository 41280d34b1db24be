"""Several hosts in one database URL, rewritten into the form SQLAlchemy reads.

libpq takes a host list in the authority (`postgresql://a:5432,b:5433/db`) and
in the query (`?host=a:5432,b:5433`). SQLAlchemy parses neither: the first is not
a URL to it, and the second reaches libpq as one host named `a:5432,b:5433`.
It does read repeated parameters (`?host=a:5432&host=b:5433`), so both forms are
rewritten into that one. libpq's own `?host=a,b&port=5432,5433` already works
and is left alone.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

# scheme://[userinfo@]host[:port],host[:port]...[/db][?query]
_HOSTS_IN_AUTHORITY = re.compile(
    r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^/?#@]*@)?"
    r"(?P<hosts>[^/?#@]*,[^/?#@]*)(?P<rest>[/?#].*)?$",
    re.DOTALL,
)
_HOST_PARAMETER = re.compile(r"(?<=[?&])host=(?P<value>[^&#]*)")


def _host_parameters(hosts: list[str]) -> str:
    return "&".join(f"host={host}" for host in hosts if host)


def _split_host_parameter(match: re.Match[str]) -> str:
    hosts = unquote(match["value"]).split(",")
    if len(hosts) < 2 or not any(":" in host for host in hosts):
        return match[0]  # one host, or libpq's hosts with their ports apart
    return _host_parameters(hosts)


def spread_hosts(raw: str) -> str:
    """`raw` with each host of a host list in a `host` parameter of its own."""
    found = _HOSTS_IN_AUTHORITY.match(raw)
    if found is not None:
        rest = found["rest"] or "/"
        path, hash_mark, fragment = rest.partition("#")
        separator = "&" if "?" in path else ("?" if path.startswith("/") else "/?")
        hosts = _host_parameters(found["hosts"].split(","))
        raw = f"{found['scheme']}{found['user'] or ''}{path}{separator}{hosts}"
        raw += hash_mark + fragment
    return _HOST_PARAMETER.sub(_split_host_parameter, raw)
