"""ClickHouse URLs and their secrets: parsing, the password policy and scrubbing.

Standalone (no import of the ClickHouse resource) so the resource can wire it in.

URL forms::

    chdb:///abs/path            embedded engine (a relative ``chdb://rel/path`` resolves to absolute)
    http(s)://[user[:password]@]host[:port][/database][?query]

Parsing rule for the userinfo (deterministic, also for unencoded reserved characters):

- The userinfo is everything between ``://`` and the **last** ``@`` of the URL. So a raw
  password may contain ``/``, ``?``, ``#``, ``:`` and ``@``; the host, port and database may
  not contain ``@`` (write ``%40`` in a database name). Everything before the last ``@`` is
  treated as secret and never appears in :meth:`ClickHouseURL.display`, ``repr`` or errors.
- The user name ends at the **first** ``:`` of the userinfo; the rest is the password (so the
  user name cannot contain a raw ``:``; the password can).
- User name and password are percent-decoded (:func:`urllib.parse.unquote`). A raw ``%``
  followed by two hex digits is therefore decoded: write a literal ``%`` as ``%25``.
- The authority (``host[:port]``) ends at the first ``/``, ``?`` or ``#`` after the last ``@``.
- Percent-encoding reserved characters (``/``→``%2F``, ``?``→``%3F``, ``#``→``%23``,
  ``@``→``%40``, ``:``→``%3A``, ``%``→``%25``) is always safe and recommended; better still,
  keep the password out of the URL and name its variable in ``password_env``.

Password policy (:func:`loom_resources.clickhouse._secrets.resolve_credentials`): a password may come only from the environment,
either the variable named by ``password_env`` or a URL that itself came from the environment
(``$LOOM_CLICKHOUSE_URL`` or ``url=dagster.EnvVar(...)``). A password written literally into a
URL in code is refused (:class:`LiteralPasswordError`): Dagster would store it in clear in the
run storage (the resource config becomes a default of the job's config schema snapshot), while
an ``EnvVar`` is stored as ``{"env": "NAME"}``.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass
from urllib.parse import quote, unquote

from loom_resources.errors import BackendUnavailableError

__all__ = [
    "DEFAULT_PORTS", "ENV_URL", "ClickHouseURL", "InvalidClickHouseURLError", "LiteralPasswordError",
    "has_literal_password", "parse_clickhouse_url", "redact_url",
]

SCHEMES = ("chdb", "http", "https")
DEFAULT_PORTS = {"http": 8123, "https": 8443}
ENV_URL = "LOOM_CLICKHOUSE_URL"

_ENCODING_HINT = (
    "If the password contains reserved characters, percent-encode them in the URL "
    "(/ as %2F, ? as %3F, # as %23, @ as %40, : as %3A, % as %25), or better, keep the password out "
    'of the URL and set password_env="CLICKHOUSE_PASSWORD" (the name of an environment variable holding it).'
)
SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_HOST_RE = re.compile(r"^[A-Za-z0-9._~%-]+$")
_IPV6_RE = re.compile(r"^[0-9A-Fa-f:.]+(%[A-Za-z0-9._~-]+)?$")


class InvalidClickHouseURLError(BackendUnavailableError):
    """The ClickHouse URL cannot be parsed. The message never contains the userinfo or password."""


class LiteralPasswordError(BackendUnavailableError):
    """A password was written literally into a ClickHouse URL given in code."""


@dataclass(frozen=True, repr=False)
class ClickHouseURL:
    """A parsed ClickHouse URL. ``password`` is decoded and never shown by ``repr``/``str``/``display``.

    ``port`` is None when the URL names none (the client then uses 8123 for http, 8443 for
    https: see :attr:`effective_port`). ``path`` is the absolute data path for ``chdb``, else
    the raw path. ``query`` is the raw query string (not shown by ``display``/``repr``).
    """

    scheme: str
    host: str | None = None
    port: int | None = None
    username: str | None = None
    password: str | None = None
    database: str | None = None
    path: str = ""
    query: str = ""

    @property
    def is_embedded(self) -> bool:
        return self.scheme == "chdb"

    @property
    def effective_port(self) -> int | None:
        """The port the client connects to (the scheme's default when the URL names none)."""
        return self.port if self.port is not None else DEFAULT_PORTS.get(self.scheme)

    @property
    def user_or_default(self) -> str:
        """The user name to log in with (ClickHouse's ``default`` when the URL names none)."""
        return self.username or "default"

    @property
    def url_host(self) -> str:
        """The host as written in a URL (IPv6 addresses in brackets)."""
        host = self.host or "localhost"
        return f"[{host}]" if ":" in host else host

    def display(self) -> str:
        """The URL without credentials (no password, ever; the user name, which is not a secret
        and is part of the store's identity, is kept), for messages, metadata and markers.
        Same format as the resource's ``store()`` today.
        """
        if self.scheme == "chdb":
            return f"chdb://{self.path}"
        user = f"{quote(self.username, safe='')}@" if self.username else ""
        port = f":{self.port}" if self.port is not None else ""
        db = f"/{quote(self.database, safe='')}" if self.database else ""
        return f"{self.scheme}://{user}{self.url_host}{port}{db}"

    def with_password(self, password: str | None) -> ClickHouseURL:
        return dataclasses.replace(self, password=password)

    def __repr__(self) -> str:
        pw = None if self.password is None else "***"
        return (
            f"ClickHouseURL(scheme={self.scheme!r}, host={self.host!r}, port={self.port!r}, "
            f"username={self.username!r}, password={pw!r}, database={self.database!r}, path={self.path!r})"
        )

    def __str__(self) -> str:
        return self.display()


# -- parsing --------------------------------------------------------------------------------


def _split_scheme(url: str) -> tuple[str, str]:
    m = SCHEME_RE.match(url)
    if not m:
        raise InvalidClickHouseURLError(
            "invalid ClickHouse URL (expected chdb:///path or http(s)://user@host:port/db); "
            f"the URL is not shown because it may contain a password. {_ENCODING_HINT}"
        )
    return m.group(1).lower(), url[m.end():]


def split_userinfo(rest: str) -> tuple[str | None, str]:
    """(raw userinfo or None, remainder): the userinfo ends at the LAST '@'."""
    at = rest.rfind("@")
    if at < 0:
        return None, rest
    return rest[:at], rest[at + 1:]


def _split_authority(rest: str) -> tuple[str, str, str]:
    """(authority, path, query) of what follows the userinfo; the fragment is dropped."""
    m = re.search(r"[/?#]", rest)
    authority, tail = (rest, "") if m is None else (rest[: m.start()], rest[m.start():])
    tail = tail.split("#", 1)[0]
    path, _, query = tail.partition("?")
    return authority, path, query


def redact_url(url: str) -> str:
    """A rendering of ``url`` safe for messages, even when it cannot be parsed: the userinfo
    (everything before the last ``@``) becomes ``***``; a port that is not all digits becomes
    ``<port>`` (it may be the tail of a password written without ``@``)."""
    m = SCHEME_RE.match(url.strip())
    if not m:
        return "<unparseable ClickHouse URL>"
    scheme, rest = m.group(1).lower(), url.strip()[m.end():]
    if scheme == "chdb":
        path = rest.split("?", 1)[0]
        authority, slash, tail = path.partition("/")
        return f"chdb://***@{slash}{tail}" if "@" in authority else f"chdb://{path}"
    userinfo, rest = split_userinfo(rest)
    authority, path, _ = _split_authority(rest)
    cred = "***@" if userinfo is not None else ""
    host, port = _split_host_port_loose(authority)
    host_txt = host if (host and (_HOST_RE.match(host) or host.startswith("["))) else "<host>"
    port_txt = "" if port is None else (f":{port}" if port.isdigit() else ":<port>")
    db = path.strip("/")
    db_txt = f"/{db}" if db and re.fullmatch(r"[A-Za-z0-9_.%-]+", db) else ("/<database>" if db else "")
    return f"{scheme}://{cred}{host_txt}{port_txt}{db_txt}"


def _split_host_port_loose(authority: str) -> tuple[str, str | None]:
    if authority.startswith("["):
        end = authority.find("]")
        if end < 0:
            return "", None
        host, after = authority[: end + 1], authority[end + 1:]
        return host, (after[1:] if after.startswith(":") else (None if not after else after))
    host, sep, port = authority.partition(":")
    return host, (port if sep else None)


def _bad(what: str, url: str, hint: str = "") -> InvalidClickHouseURLError:
    return InvalidClickHouseURLError(f"{what} in ClickHouse URL {redact_url(url)}{'; ' + hint if hint else ''}")


def parse_clickhouse_url(url: str, *, cwd: str | None = None) -> ClickHouseURL:
    """Parse a ClickHouse URL (see the module docstring for the rules).

    Raises :class:`InvalidClickHouseURLError` (a :class:`BackendUnavailableError`) whose message
    never contains the userinfo, the password, nor a malformed port's text.
    """
    url = url.strip()
    scheme, rest = _split_scheme(url)
    if scheme not in SCHEMES:
        raise _bad(f"unsupported scheme {scheme!r}", url, "use chdb:///path, http:// or https://")
    if scheme == "chdb":
        raw_path, _, query = rest.partition("?")
        if not raw_path:
            raise _bad("missing data path", url, "use chdb:///absolute/path")
        if "@" in raw_path.partition("/")[0]:
            # user-info has no meaning for the embedded engine: never turn it into a directory name
            raise _bad("user name or password in an embedded-engine URL", url,
                       "chdb:// URLs take a data path only (chdb:///absolute/path), no user or password")
        path = os.path.abspath(os.path.join(cwd or os.getcwd(), raw_path))
        return ClickHouseURL(scheme="chdb", path=path, query=query)

    userinfo, rest = split_userinfo(rest)
    authority, path, query = _split_authority(rest)
    username: str | None = None
    password: str | None = None
    if userinfo is not None:
        raw_user, sep, raw_pw = userinfo.partition(":")
        username = unquote(raw_user) or None
        password = unquote(raw_pw) if sep else None

    if authority.startswith("["):
        end = authority.find("]")
        host = authority[1:end] if end > 0 else ""
        after = authority[end + 1:] if end > 0 else ""
        if end < 0 or not _IPV6_RE.match(host) or (after and not after.startswith(":")):
            raise _bad("invalid IPv6 host", url, "write it as [address]:port")
        port_txt: str | None = after[1:] if after else None
    else:
        host, sep, port_str = authority.partition(":")
        port_txt = port_str if sep else None
        if host and not _HOST_RE.match(host):
            raise _bad("invalid host", url, _ENCODING_HINT)
    port: int | None = None
    if port_txt:  # "host:" (empty port) means the default port, as in urllib
        if not port_txt.isascii() or not port_txt.isdigit() or not 0 < int(port_txt) < 65536:
            raise _bad("invalid port", url, "the port must be a number from 1 to 65535. " + _ENCODING_HINT)
        port = int(port_txt)

    db = unquote(path.strip("/"))
    if "/" in db:
        raise _bad("invalid database (the path must be one database name)", url, _ENCODING_HINT)
    return ClickHouseURL(
        scheme=scheme, host=unquote(host) or "localhost", port=port, username=username,
        password=password, database=db or None, path=path, query=query,
    )


_LOOSE_SCHEME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:(?=[/\\\\])")
#: Query-string keys that carry a password (ClickHouse's HTTP interface reads ``password``).
_PASSWORD_KEYS = frozenset({"password", "pass", "pwd", "passwd"})


def _query_has_password(query: str) -> bool:
    from urllib.parse import parse_qsl

    return any(k.strip().lower() in _PASSWORD_KEYS and v for k, v in parse_qsl(query, keep_blank_values=True))


def _userinfo_has_password(userinfo: str | None) -> bool:
    return userinfo is not None and bool(userinfo.partition(":")[2])


def has_literal_password(url: str) -> bool:
    """Whether ``url`` carries a non-empty password in any form, well-formed or not (cheap;
    does not validate the rest): in the user-info (``http://u:pw@h``, ``chdb://u:pw@/p``), in the
    query string (``?password=pw``), or in a malformed URL that still holds ``user:pw@``
    (``u:pw@h:8123``, ``http:/u:pw@h``, ``http:\\\\u:pw@h``). Conservative on purpose: a refusal
    of a URL that was not meant to hold a password costs one edit; a miss stores a secret."""
    text = url.strip()
    m = SCHEME_RE.match(text)
    if m:
        rest = text[m.end():]
        if m.group(1).lower() == "chdb":
            authority = rest.partition("/")[0]
            userinfo = authority.rpartition("@")[0] if "@" in authority else None
            return _userinfo_has_password(userinfo) or _query_has_password(rest.partition("?")[2])
        userinfo, rest = split_userinfo(rest)
        return _userinfo_has_password(userinfo) or _query_has_password(_split_authority(rest)[2])
    # not scheme://: strip what looks like a scheme and its slashes, then read it the same way
    loose = _LOOSE_SCHEME_RE.sub("", text).lstrip("/\\")
    userinfo, rest = split_userinfo(loose)
    return _userinfo_has_password(userinfo) or _query_has_password(loose.partition("?")[2])


# -- policy ---------------------------------------------------------------------------------
