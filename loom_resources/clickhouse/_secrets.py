"""ClickHouse credentials: the password policy, Dagster ``EnvVar`` detection and scrubbing.

A password may come only from the environment: the variable named by ``password_env``, or a URL
that itself came from the environment (``$LOOM_CLICKHOUSE_URL`` or ``url=dagster.EnvVar(...)``).
A password written literally into a URL in code is refused: Dagster would store it in clear in
its run storage. :class:`Scrubber` removes every form of a secret from error text and logs.
"""

from __future__ import annotations

import base64
import json
import os
import sys
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, quote_plus, unquote

from loom_resources.clickhouse._url import (
    SCHEME_RE,
    ClickHouseURL,
    LiteralPasswordError,
    has_literal_password,
    parse_clickhouse_url,
    redact_url,
    split_userinfo,
)
from loom_resources.errors import BackendUnavailableError

__all__ = [
    "Scrubber", "guard_url_field", "is_env_var", "locate_url", "resolve_credentials", "select_url", "url_field_from_env",
]


def _refusal(display: str) -> LiteralPasswordError:
    return LiteralPasswordError(
        f"the ClickHouse URL {display} is configured (in code or run config) with a password in it; Loom refuses it "
        "because Dagster stores resource config in clear in its run storage. Remove the password from "
        'the URL and set password_env="CLICKHOUSE_PASSWORD" (the name of an environment variable that '
        'holds it), or pass the whole URL from the environment: url=dagster.EnvVar("LOOM_CLICKHOUSE_URL") '
        "(or leave url empty to read $LOOM_CLICKHOUSE_URL)."
    )


def select_url(url_field: str, env_url: str | None, environ: Mapping[str, str]) -> str:
    """The raw URL text in use: ``url_field``, else ``$LOOM_CLICKHOUSE_URL``, else
    ``chdb://$LOOM_HOME/clickhouse``. May contain a password: never show it; parse it."""
    if is_env_var(url_field):
        url_field = url_field.get_value() or ""  # type: ignore[attr-defined]
    if url_field:
        return url_field
    if env_url:
        return env_url
    return f"chdb://{os.path.join(environ.get('LOOM_HOME', '.loom'), 'clickhouse')}"


def locate_url(url_field: str, env_url: str | None, environ: Mapping[str, str], *, cwd: str | None = None) -> ClickHouseURL:
    """The parsed URL in use, without the password policy and without reading ``password_env``:
    for ``store()``/``is_embedded()``/messages, which must work even when the credentials are
    wrong. Use :func:`resolve_credentials` to connect."""
    return parse_clickhouse_url(select_url(url_field, env_url, environ), cwd=cwd)


def resolve_credentials(
    url_field: str,
    env_url: str | None,
    password_env: str | None,
    environ: Mapping[str, str],
    *,
    url_from_env: bool = False,
    cwd: str | None = None,
) -> ClickHouseURL:
    """The URL to connect with, its password taken only from the environment.

    Args:
        url_field: The resource's ``url`` field ("" when unset).
        env_url: ``$LOOM_CLICKHOUSE_URL`` (used when ``url_field`` is empty; trusted: it is the environment).
        password_env: Name of the environment variable holding the password, or None.
        environ: The environment (``os.environ``) to read ``password_env`` and ``LOOM_HOME`` from.
        url_from_env: Whether ``url_field`` came from the environment (``dagster.EnvVar``); see
            :func:`url_field_from_env`. When False, a password in ``url_field`` is refused.
            An unresolved ``EnvVar`` object passed as ``url_field`` is read and trusted.

    The default is ``chdb://$LOOM_HOME/clickhouse`` (``LOOM_HOME`` defaulting to ``.loom``).
    ``password_env``, when set, wins over a password in an environment-provided URL.

    Raises:
        LiteralPasswordError: a password written in a URL configured in code.
        InvalidClickHouseURLError: the URL cannot be parsed.
        BackendUnavailableError: ``password_env`` names a variable that is not set.
    """
    if is_env_var(url_field):
        # a resource used outside a run still holds the EnvVar object (its str() raises, and its
        # underlying text is the variable's name): read the variable
        url_field, url_from_env = url_field.get_value() or "", True  # type: ignore[attr-defined]
    if url_field:
        raw, trusted = url_field, url_from_env
    elif env_url:
        raw, trusted = env_url, True
    else:
        home = environ.get("LOOM_HOME", ".loom")
        raw, trusted = f"chdb://{os.path.join(home, 'clickhouse')}", True
    if not trusted and has_literal_password(raw):
        raise _refusal(redact_url(raw))
    url = parse_clickhouse_url(raw, cwd=cwd)
    if url.is_embedded:
        return url
    if password_env:
        pw = environ.get(password_env)
        if pw is None:
            raise BackendUnavailableError(
                f"ClickHouse password variable {password_env!r} is not set in the environment "
                f"(needed for {url.display()})"
            )
        return url.with_password(pw)
    return url


# -- scrubbing ------------------------------------------------------------------------------


class Scrubber:
    """Replaces known secrets in text with ``***``.

    For a password it holds every form that may show up in client errors, logs or echoed
    requests: the plain text, its percent-encoded forms, its ``repr``/JSON-escaped forms, the
    raw userinfo as written in the URL, the ``user:password`` pair and its base64 (HTTP basic
    auth). Longer secrets are replaced first. Every secret is replaced however short it is.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: set[str] = set()
        for s in secrets:
            self.add(s)

    @classmethod
    def for_url(cls, url: ClickHouseURL, raw_url: str | None = None) -> Scrubber:
        """A scrubber for a resolved URL (and the raw URL text it came from, if any)."""
        sc = cls()
        if url.password:
            sc.add_password(url.password, users=[url.username or "", url.user_or_default])
        if raw_url and not url.is_embedded:
            m = SCHEME_RE.match(raw_url.strip())
            if m:
                userinfo, _ = split_userinfo(raw_url.strip()[m.end():])
                raw_pw = userinfo.partition(":")[2] if userinfo else ""
                if raw_pw:
                    sc.add(userinfo or "")
                    sc.add(raw_pw)
                    sc.add_password(unquote(raw_pw), users=[url.username or "", url.user_or_default])
        return sc

    def add(self, secret: str) -> None:
        if secret:
            self._secrets.add(secret)

    def add_password(self, password: str, users: Iterable[str] = ("default",)) -> None:
        """Add a password with its encoded forms and, per user name, its basic-auth forms."""
        if not password:
            return
        forms = {
            password,
            quote(password, safe=""),
            quote(password),
            quote_plus(password),
            repr(password)[1:-1],
            json.dumps(password)[1:-1],
            json.dumps(password, ensure_ascii=False)[1:-1],
        }
        for user in set(users):
            pair = f"{user}:{password}"
            forms.add(pair)
            b64 = base64.b64encode(pair.encode()).decode()
            forms.update({b64, b64.rstrip("=")})
        for f in forms:
            self.add(f)

    @property
    def secrets(self) -> frozenset[str]:
        return frozenset(self._secrets)

    def __bool__(self) -> bool:
        return bool(self._secrets)

    def __repr__(self) -> str:
        return f"Scrubber({len(self._secrets)} secrets)"

    def scrub(self, text: str) -> str:
        """``text`` with every known secret replaced by ``***``."""
        for s in sorted(self._secrets, key=len, reverse=True):
            if s in text:
                text = text.replace(s, "***")
        return text

    def scrub_exception(self, exc: BaseException, *, chain: bool = True) -> str:
        """``"Type: message"`` of ``exc`` (and of its causes, when ``chain``), scrubbed."""
        parts: list[str] = []
        seen: set[int] = set()
        cur: BaseException | None = exc
        while cur is not None and id(cur) not in seen and len(parts) < 8:
            seen.add(id(cur))
            try:
                msg = str(cur)
            except Exception:  # noqa: BLE001 - a broken __str__ must not hide the error
                msg = "<unprintable>"
            parts.append(f"{type(cur).__name__}: {msg}" if msg else type(cur).__name__)
            if not chain:
                break
            cur = cur.__cause__ or (None if cur.__suppress_context__ else cur.__context__)
        return self.scrub(" (caused by ".join(parts) + ")" * (len(parts) - 1))


# -- Dagster: where the url field came from -------------------------------------------------


def is_env_var(value: Any) -> bool:
    """Whether ``value`` is a ``dagster.EnvVar`` (as a field holds it before run-time resolution)."""
    from dagster import EnvVar

    return isinstance(value, EnvVar)


def _dagster_rebuilding_resource() -> bool:
    """Whether we are inside Dagster rebuilding a resource from its resolved config at run time
    (``ConfigurableResourceFactory._with_updated_values``), where an ``EnvVar`` field arrives as
    its plain value. Fails closed: if Dagster renames the function, EnvVar URLs with a password
    are refused at run time (and the tests say so), never accepted silently."""
    f = sys._getframe(1)
    for _ in range(40):
        if f is None:
            return False
        if f.f_code.co_name == "_with_updated_values" and str(f.f_globals.get("__name__", "")).startswith("dagster."):
            return True
        f = f.f_back  # type: ignore[assignment]
    return False


def guard_url_field(value: Any) -> Any:
    """Pydantic ``mode="before"`` validator body for a resource's ``url`` field: refuses a URL
    with a literal password unless it is a ``dagster.EnvVar``. Raises
    :class:`LiteralPasswordError` (not a ``ValueError``, so pydantic does not wrap it into a
    ValidationError, whose text would echo the input URL)::

        @pydantic.field_validator("url", mode="before")
        @classmethod
        def _no_literal_password(cls, v): return guard_url_field(v)
    """
    if not isinstance(value, str) or is_env_var(value) or not has_literal_password(value):
        return value
    if _dagster_rebuilding_resource():
        # the resolved value of an EnvVar (or of run config, which url_field_from_env checks at run time)
        return value
    raise _refusal(redact_url(value))


def _config_source(context: Any, field: str) -> Any:
    """The unresolved config value of ``field`` for the resource being initialized: the run
    config's value if the run sets it, else the definition's default (``{"env": NAME}`` for an EnvVar)."""
    key = next((k for k, d in (context.all_resource_defs or {}).items() if d is context.resource_def), None)
    run = context.run
    if key is not None and run is not None:
        cfg = ((run.run_config or {}).get("resources") or {}).get(key) or {}
        cfg = cfg.get("config") if isinstance(cfg, Mapping) else None
        if isinstance(cfg, Mapping) and field in cfg:
            return cfg[field]
    try:
        default = context.resource_def.config_schema.as_field().default_value
    except Exception:  # noqa: BLE001 - no default provided
        return None
    return default.get(field) if isinstance(default, Mapping) else None


def _nested_definitions(resource_def: Any, depth: int = 0) -> Iterable[Any]:
    """The definition-time resource objects nested (at any depth) in a resource definition."""
    nested = getattr(resource_def, "nested_resources", None) or {}
    for obj in nested.values():
        yield obj
        if depth < 8:
            inner = getattr(obj, "nested_resources", None)
            if inner:
                yield from _nested_definitions(obj, depth + 1)


def url_field_from_env(resource: Any, field: str = "url") -> bool:
    """Whether a ConfigurableResource's ``field`` came from the environment (``dagster.EnvVar``).

    - Outside a run (the resource used directly): the field still holds the ``EnvVar`` object.
    - In a run, Dagster rebuilds the resource with the resolved value. For a top-level resource
      the source is read from the run config (if the run sets the field) or the definition's
      config default, where an EnvVar appears as ``{"env": "NAME"}``. For a resource nested in
      another (e.g. in an IO manager), the parent's definition holds the nested definition-time
      object, whose field is the ``EnvVar`` itself; it counts if its current value is this value.
    Anything else (a literal, an unexpected context) is False: not provably from the environment.
    """
    raw = resource.__dict__.get(field)
    if is_env_var(raw):
        return True
    try:
        context = resource.get_resource_context()
    except Exception:  # noqa: BLE001 - not initialized by Dagster
        return False
    from dagster import EnvVar

    try:
        rdef = context.resource_def
        if getattr(rdef, "configurable_resource_cls", None) is type(resource):
            src = _config_source(context, field)
            return isinstance(src, Mapping) and "env" in src
        for obj in _nested_definitions(rdef):
            value = getattr(obj, "__dict__", {}).get(field)
            if type(obj) is type(resource) and isinstance(value, EnvVar) and value.get_value() == raw:
                return True
    except Exception:  # noqa: BLE001 - unexpected context shape: not provably from the environment
        return False
    return False
