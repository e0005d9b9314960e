"""ClickHouse URL parsing, the env-only password policy, scrubbing, and proof that a password
passed through ``dagster.EnvVar`` never reaches Dagster's run storage."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from pydantic import field_validator

from loom_resources.clickhouse._secrets import (
    Scrubber,
    guard_url_field,
    locate_url,
    resolve_credentials,
    select_url,
    url_field_from_env,
)
from loom_resources.clickhouse._url import (
    ClickHouseURL,
    InvalidClickHouseURLError,
    LiteralPasswordError,
    has_literal_password,
    parse_clickhouse_url,
    redact_url,
)
from loom_resources.errors import BackendUnavailableError, LoomError

# -- parsing --------------------------------------------------------------------------------

# (url, scheme, host, port, username, password, database)
PARSE_CASES: list[tuple[str, str, str, int | None, str | None, str | None, str | None]] = [
    ("http://loom@ch.internal:8123/default", "http", "ch.internal", 8123, "loom", None, "default"),
    ("http://u:pw@h:8123/db", "http", "h", 8123, "u", "pw", "db"),
    ("https://u:pw@h/db", "https", "h", None, "u", "pw", "db"),
    ("HTTPS://u:pw@H.example.com:9443", "https", "H.example.com", 9443, "u", "pw", None),
    ("http://h:8123", "http", "h", 8123, None, None, None),
    ("http://h", "http", "h", None, None, None, None),
    ("http://h:/db", "http", "h", None, None, None, "db"),  # empty port: the default, as urllib
    ("http://h:8123/", "http", "h", 8123, None, None, None),
    ("http://h:8123/db/", "http", "h", 8123, None, None, "db"),
    # raw reserved characters in the password: the userinfo ends at the LAST '@'
    ("http://u:pa/ss@h:8123/db", "http", "h", 8123, "u", "pa/ss", "db"),
    ("http://u:pa#ss@h:8123/db", "http", "h", 8123, "u", "pa#ss", "db"),
    ("http://u:pa?ss@h:8123/db", "http", "h", 8123, "u", "pa?ss", "db"),
    ("http://u:p@ss@h:8123/db", "http", "h", 8123, "u", "p@ss", "db"),
    ("http://u:p:a:ss@h:8123/db", "http", "h", 8123, "u", "p:a:ss", "db"),
    ("http://u:/#?@:@h:8123/db", "http", "h", 8123, "u", "/#?@:", "db"),
    ("http://u:123/x@h:8123/db", "http", "h", 8123, "u", "123/x", "db"),  # was parsed as a port
    # percent-encoded forms are decoded
    ("http://u:pa%2Fss@h:8123/db", "http", "h", 8123, "u", "pa/ss", "db"),
    ("http://u:p%40ss%23%3F%3A%25@h:8123/db", "http", "h", 8123, "u", "p@ss#?:%", "db"),
    ("http://us%3Aer:pw@h:8123/db", "http", "h", 8123, "us:er", "pw", "db"),
    ("http://u:%C3%A9t%C3%A9@h/db", "http", "h", None, "u", "été", "db"),
    ("http://u:100%@h/db", "http", "h", None, "u", "100%", "db"),  # a lone % is kept
    # unicode, empty password, IPv6
    ("http://ünï:пароль🔑@h:8123/db", "http", "h", 8123, "ünï", "пароль🔑", "db"),
    ("http://u:@h:8123/db", "http", "h", 8123, "u", "", "db"),
    ("http://[::1]:8123/db", "http", "::1", 8123, None, None, "db"),
    ("http://u:p/w@[::1]/db", "http", "::1", None, "u", "p/w", "db"),
    ("https://u:pw@[2001:db8::1]:8443", "https", "2001:db8::1", 8443, "u", "pw", None),
    # query and fragment after the authority
    ("http://u:pw@h:8123/db?x=1", "http", "h", 8123, "u", "pw", "db"),
    ("http://h:8123/db#frag", "http", "h", 8123, None, None, "db"),
    ("http://h:8123?x=1", "http", "h", 8123, None, None, None),
    ("  http://h:8123/db\n", "http", "h", 8123, None, None, "db"),
]


@pytest.mark.parametrize(("url", "scheme", "host", "port", "user", "password", "db"), PARSE_CASES)
def test_parse(url: str, scheme: str, host: str, port: int | None, user: str | None, password: str | None,
               db: str | None) -> None:
    p = parse_clickhouse_url(url)
    assert (p.scheme, p.host, p.port, p.username, p.password, p.database) == (scheme, host, port, user, password, db)
    for text in (p.display(), repr(p), str(p)):
        if password:
            assert password not in text
    if password is not None:
        assert "password='***'" in repr(p)


def test_parse_query_is_kept_but_not_shown() -> None:
    p = parse_clickhouse_url("http://u:pw@h:8123/db?password=qsecret")
    assert p.query == "password=qsecret"
    assert "qsecret" not in p.display() + repr(p)


def test_defaults_and_display() -> None:
    assert parse_clickhouse_url("https://h/db").effective_port == 8443
    assert parse_clickhouse_url("http://h/db").effective_port == 8123
    assert parse_clickhouse_url("http://h:9000/db").effective_port == 9000
    assert parse_clickhouse_url("http://h/db").user_or_default == "default"
    # display matches the resource's store() format today
    assert parse_clickhouse_url("http://u:pw@h:8123/db").display() == "http://u@h:8123/db"
    assert parse_clickhouse_url("http://h").display() == "http://h"
    assert parse_clickhouse_url("http://[::1]:8123/db").display() == "http://[::1]:8123/db"
    assert parse_clickhouse_url("http://:8123/db").host == "localhost"  # as the resource did
    # display is itself parseable and round-trips
    p = parse_clickhouse_url("http://us%3Aer:pw@h:8123/d%20b")
    q = parse_clickhouse_url(p.display())
    assert (q.username, q.database, q.password) == ("us:er", "d b", None)
    assert p.with_password("x").password == "x" and p.password == "pw"


def test_chdb_paths(tmp_path: Path) -> None:
    assert parse_clickhouse_url("chdb:///abs/path").path == "/abs/path"
    assert parse_clickhouse_url("chdb:///abs/path").display() == "chdb:///abs/path"
    rel = parse_clickhouse_url("chdb://rel/x", cwd=str(tmp_path))
    assert rel.path == str(tmp_path / "rel" / "x") and rel.is_embedded
    assert parse_clickhouse_url("chdb://rel").path == os.path.abspath("rel")
    assert parse_clickhouse_url("CHDB:///a/../b").path == "/b"
    assert parse_clickhouse_url("chdb:///a?mode=ro").path == "/a"
    with pytest.raises(InvalidClickHouseURLError, match="missing data path"):
        parse_clickhouse_url("chdb://")


SECRET = "Zq9-s3cr3t"

BAD_URLS = [
    f"http://u:{SECRET}@h:80a/db",  # non-numeric port
    f"http://u:{SECRET}@h:99999/db",  # out of range
    f"http://u:{SECRET}@h:0/db",
    f"http://u:{SECRET}@h:８１２３/db",  # non-ASCII digits
    f"http://user:{SECRET}:8123/db",  # '@' forgotten: the password lands where the port is
    f"http://user:{SECRET}/x:8123/db",
    f"http://u:{SECRET}@[::1/db",  # unclosed IPv6
    f"http://u:{SECRET}@[::1]x/db",
    f"http://u:{SECRET}@h o/db",  # invalid host
    f"http://u:{SECRET}@h/a/b",  # database path with two segments
    f"ftp://u:{SECRET}@h/db",  # unsupported scheme
    f"u:{SECRET}@h:8123",  # no scheme
    f"{SECRET}",
]


@pytest.mark.parametrize("url", BAD_URLS)
def test_invalid_url_errors_never_echo_the_password(url: str) -> None:
    with pytest.raises(InvalidClickHouseURLError) as info:
        parse_clickhouse_url(url)
    err = info.value
    assert isinstance(err, BackendUnavailableError) and isinstance(err, LoomError)
    text = str(err) + repr(err)
    for fragment in (SECRET, SECRET[:4], SECRET[-4:]):
        assert fragment not in text
    assert err.__cause__ is None and err.__context__ is None
    assert SECRET not in redact_url(url)


def test_bad_port_error_is_helpful() -> None:
    with pytest.raises(InvalidClickHouseURLError) as info:
        parse_clickhouse_url(f"http://loom:{SECRET}@ch.internal:80a/db")
    msg = str(info.value)
    assert "invalid port in ClickHouse URL http://***@ch.internal:<port>/db" in msg
    assert "%2F" in msg and "password_env" in msg
    # the defect this replaces: urllib's "Port could not be cast to integer value as '…'"
    assert "could not be cast" not in msg


def test_redact_url() -> None:
    assert redact_url(f"http://u:{SECRET}@h:8123/db") == "http://***@h:8123/db"
    assert redact_url("http://h:8123/db") == "http://h:8123/db"
    assert redact_url(f"http://user:{SECRET}:8123/db") == "http://user:<port>/db"
    assert redact_url("chdb:///x") == "chdb:///x"
    assert redact_url(SECRET) == "<unparseable ClickHouse URL>"


def test_has_literal_password() -> None:
    assert has_literal_password("http://u:p@h")
    assert has_literal_password("http://u:p/w#x@h:1/db")
    assert not has_literal_password("http://u@h")
    assert not has_literal_password("http://u:@h")
    assert not has_literal_password("http://h:8123/db")
    assert not has_literal_password("chdb:///a:b@c")


# -- policy ---------------------------------------------------------------------------------


def test_default_is_embedded_under_loom_home(tmp_path: Path) -> None:
    u = resolve_credentials("", None, None, {"LOOM_HOME": str(tmp_path)})
    assert u == ClickHouseURL(scheme="chdb", path=str(tmp_path / "clickhouse"))
    assert resolve_credentials("", None, None, {}).path == os.path.abspath(".loom/clickhouse")


def test_select_and_locate_url(tmp_path: Path) -> None:
    env = {"LOOM_HOME": str(tmp_path)}
    assert select_url("http://a/x", "http://b/y", env) == "http://a/x"
    assert select_url("", "http://b/y", env) == "http://b/y"
    assert select_url("", None, env) == f"chdb://{tmp_path / 'clickhouse'}"
    # locate_url never applies the policy nor reads password_env: store() works with any credentials
    u = locate_url(f"http://loom:{SECRET}@h:8123/db", None, env)
    assert u.display() == "http://loom@h:8123/db"
    assert locate_url("", None, env).display() == f"chdb://{tmp_path / 'clickhouse'}"


def test_password_from_password_env() -> None:
    env = {"CH_PW": "pa/ss#1"}
    u = resolve_credentials("http://loom@h:8123/db", None, "CH_PW", env)
    assert (u.username, u.password, u.host, u.port) == ("loom", "pa/ss#1", "h", 8123)
    with pytest.raises(BackendUnavailableError, match="'CH_PW' is not set") as info:
        resolve_credentials("http://loom@h:8123/db", None, "CH_PW", {})
    assert not isinstance(info.value, LiteralPasswordError)


def test_password_from_env_url() -> None:
    # $LOOM_CLICKHOUSE_URL is the environment: its password is accepted (and decoded)
    u = resolve_credentials("", "http://loom:pa%2Fss@h:8123/db", None, {})
    assert u.password == "pa/ss"
    # password_env wins over a password in an environment URL
    u = resolve_credentials("", "http://loom:old@h:8123/db", "CH_PW", {"CH_PW": "new"})
    assert u.password == "new"
    # a url field that came from dagster.EnvVar
    u = resolve_credentials("http://loom:p@w@h/db", None, None, {}, url_from_env=True)
    assert u.password == "p@w"


@pytest.mark.parametrize("password_env", [None, "CH_PW"])
def test_literal_password_in_code_is_refused(password_env: str | None) -> None:
    with pytest.raises(LiteralPasswordError) as info:
        resolve_credentials(f"http://loom:{SECRET}@h:8123/db", "http://x@y/z", password_env, {"CH_PW": "x"})
    msg = str(info.value)
    assert SECRET not in msg
    assert 'password_env="CLICKHOUSE_PASSWORD"' in msg and 'dagster.EnvVar("LOOM_CLICKHOUSE_URL")' in msg
    assert "http://***@h:8123/db" in msg
    assert isinstance(info.value, BackendUnavailableError)


def test_literal_password_refused_even_if_url_is_malformed() -> None:
    with pytest.raises(LiteralPasswordError) as info:
        resolve_credentials(f"http://loom:{SECRET}@h:bad/db", None, None, {})
    assert SECRET not in str(info.value)


def test_url_without_password_in_code_is_accepted() -> None:
    u = resolve_credentials("http://loom@h:8123/db", "http://other@x/y", None, {})
    assert (u.host, u.password) == ("h", None)
    assert resolve_credentials("http://loom:@h/db", None, None, {}).password == ""


# -- scrubbing ------------------------------------------------------------------------------


def test_scrubber_covers_every_form_of_the_password() -> None:
    pw = "p/ss#wörd@1"
    raw = "http://loom:p%2Fss%23w%C3%B6rd%401@h:8123/db"
    u = parse_clickhouse_url(raw)
    assert u.password == pw
    sc = Scrubber.for_url(u, raw)
    forms = [
        pw,
        "p%2Fss%23w%C3%B6rd%401",
        "loom:p%2Fss%23w%C3%B6rd%401",
        base64.b64encode(f"loom:{pw}".encode()).decode(),
        "p/ss#w\\u00f6rd@1",  # JSON-escaped, as in a serialized event
    ]
    for form in forms:
        out = sc.scrub(f"error: [{form}] end")
        assert out == "error: [***] end", (form, out)
    assert sc.scrub("nothing secret here") == "nothing secret here"
    assert "***" in repr(u) and pw not in repr(sc)


def test_scrubber_env_password_and_exceptions() -> None:
    u = resolve_credentials("http://loom@h/db", None, "CH_PW", {"CH_PW": SECRET})
    sc = Scrubber.for_url(u)
    try:
        try:
            raise ValueError(f"Authorization: Basic {base64.b64encode(f'loom:{SECRET}'.encode()).decode()}")
        except ValueError as inner:
            raise ConnectionError(f"could not log in as loom:{SECRET}") from inner
    except ConnectionError as exc:
        text = sc.scrub_exception(exc)
    assert SECRET not in text and "Basic ***" in text
    assert text.startswith("ConnectionError: could not log in as ***")
    assert "caused by ValueError" in text
    assert sc.scrub_exception(RuntimeError(SECRET), chain=False) == "RuntimeError: ***"
    assert not Scrubber() and Scrubber([SECRET]).scrub(SECRET * 2) == "******"
    # without a user name in the URL the client logs in as "default": that pair is covered too
    anon = Scrubber.for_url(resolve_credentials("http://h/db", None, "CH_PW", {"CH_PW": SECRET}))
    assert anon.scrub(base64.b64encode(f"default:{SECRET}".encode()).decode()) == "***"


def test_scrubber_replaces_longest_first() -> None:
    sc = Scrubber(["ab", "xaby"])
    assert sc.scrub("xaby ab") == "*** ***"


# -- Dagster: where the url came from, and what the run storage holds -----------------------

SENTINEL = "Sentinel-9f/3#k@Q"  # reserved characters raw in the password, percent-encoded in the URL
SENTINEL_URL_FORM = "Sentinel-9f%2F3%23k%40Q"


class _GuardedResource(dg.ConfigurableResource):
    """Stands for the ClickHouse resource wired with ch_url."""

    url: str = ""
    password_env: str | None = None

    @field_validator("url", mode="before")
    @classmethod
    def _no_literal_password(cls, v: Any) -> Any:
        return guard_url_field(v)

    def resolved(self) -> ClickHouseURL:
        return resolve_credentials(
            self.url, os.environ.get("LOOM_CLICKHOUSE_URL"), self.password_env, os.environ,
            url_from_env=url_field_from_env(self),
        )


class _UnguardedResource(dg.ConfigurableResource):
    url: str = ""


class _NestingIOManager(dg.ConfigurableIOManager):
    """Like LoomIOManager, which nests the ClickHouse resource."""

    ch: _GuardedResource

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        assert self.ch.resolved().password == SENTINEL

    def load_input(self, context: dg.InputContext) -> Any:
        return None


def _stored_text(instance: dg.DagsterInstance, run_id: str) -> str:
    """Everything Dagster stored about a run, serialized, plus the raw bytes of every file under
    the instance's directory (sqlite run/event/schedule storage, compute logs)."""
    from dagster._serdes import serialize_value

    run = instance.get_run_by_id(run_id)
    assert run is not None
    parts = [serialize_value(run), repr(run.run_config), repr(run.tags)]
    if run.job_snapshot_id:
        parts.append(serialize_value(instance.get_job_snapshot(run.job_snapshot_id)))
    if run.execution_plan_snapshot_id:
        parts.append(serialize_value(instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id)))
    for rec in instance.get_records_for_run(run_id, limit=10_000).records:
        parts.append(serialize_value(rec.event_log_entry))
    for f in Path(instance.root_directory).rglob("*"):
        if f.is_file():
            parts.append(f.read_bytes().decode("utf-8", "replace"))
    return "\n".join(parts)


def _assert_absent(text: str) -> None:
    for form in (SENTINEL, SENTINEL_URL_FORM, "Sentinel-9f", base64.b64encode(f"loom:{SENTINEL}".encode()).decode()):
        assert form not in text, form


@pytest.fixture
def instance(tmp_path: Path) -> Any:
    home = tmp_path / "dagster_home"
    home.mkdir()
    with dg.instance_for_test(temp_dir=str(home)) as inst:
        yield inst


@dg.asset
def _uses_clickhouse(ch: _GuardedResource) -> int:
    url = ch.resolved()
    assert url.password == SENTINEL  # decoded and available at run time
    return 1


def test_envvar_url_password_never_reaches_run_storage(monkeypatch: pytest.MonkeyPatch, instance: Any) -> None:
    monkeypatch.setenv("LOOM_TEST_CH_URL", f"http://loom:{SENTINEL_URL_FORM}@ch.internal:8123/db")
    res = _GuardedResource(url=dg.EnvVar("LOOM_TEST_CH_URL"))
    assert url_field_from_env(res)  # outside a run the field still holds the EnvVar
    result = dg.materialize(
        [_uses_clickhouse], resources={"ch": res, "io_manager": _NestingIOManager(ch=res)}, instance=instance,
    )
    assert result.success
    stored = _stored_text(instance, result.run_id)
    assert "LOOM_TEST_CH_URL" in stored  # the job snapshot records the variable's name ...
    _assert_absent(stored)  # ... and never its value


def test_password_env_never_reaches_run_storage(monkeypatch: pytest.MonkeyPatch, instance: Any) -> None:
    monkeypatch.setenv("LOOM_TEST_CH_PW", SENTINEL)
    res = _GuardedResource(url="http://loom@ch.internal:8123/db", password_env="LOOM_TEST_CH_PW")
    assert not url_field_from_env(res)
    result = dg.materialize([_uses_clickhouse], resources={"ch": res}, instance=instance)
    assert result.success
    _assert_absent(_stored_text(instance, result.run_id))


def test_literal_password_in_code_is_refused_at_construction() -> None:
    with pytest.raises(LiteralPasswordError) as info:
        _GuardedResource(url=f"http://loom:{SENTINEL_URL_FORM}@ch.internal:8123/db")
    _assert_absent(str(info.value) + repr(info.value))
    assert 'dagster.EnvVar("LOOM_CLICKHOUSE_URL")' in str(info.value)
    # nothing is refused without a password
    assert _GuardedResource(url="http://loom@ch.internal:8123/db").url == "http://loom@ch.internal:8123/db"


def test_literal_password_in_code_would_be_stored(instance: Any) -> None:
    """Counter-proof that the scan above finds a leak: an unguarded resource with a literal
    password lands in the job snapshot (the config schema's default) in clear."""

    @dg.asset
    def plain(ch: _UnguardedResource) -> int:
        return 1

    res = _UnguardedResource(url=f"http://loom:{SENTINEL_URL_FORM}@ch.internal:8123/db")
    result = dg.materialize([plain], resources={"ch": res}, instance=instance)
    assert result.success
    assert SENTINEL_URL_FORM in _stored_text(instance, result.run_id)


def test_literal_password_in_run_config_is_refused_at_run_time(monkeypatch: pytest.MonkeyPatch, instance: Any) -> None:
    monkeypatch.setenv("LOOM_TEST_CH_URL", "http://loom@ch.internal:8123/db")
    res = _GuardedResource(url=dg.EnvVar("LOOM_TEST_CH_URL"))
    result = dg.materialize(
        [_uses_clickhouse], resources={"ch": res}, instance=instance, raise_on_error=False,
        run_config={"resources": {"ch": {"config": {"url": "http://loom:lit@ch.internal:8123/db"}}}},
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    error = failure.step_failure_data.error
    assert error is not None
    assert "LiteralPasswordError" in error.to_string()


def test_unresolved_envvar_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """Outside a run the field holds the EnvVar object, whose text is the variable's NAME."""
    monkeypatch.setenv("LOOM_TEST_CH_URL", f"http://loom:{SENTINEL_URL_FORM}@ch.internal:8123/db")
    res = _GuardedResource(url=dg.EnvVar("LOOM_TEST_CH_URL"))
    u = res.resolved()
    assert (u.host, u.password) == ("ch.internal", SENTINEL)


def test_url_field_from_env_outside_dagster() -> None:
    assert not url_field_from_env(_GuardedResource(url="http://loom@h/db"))
    assert not url_field_from_env(_GuardedResource())
    assert url_field_from_env(_GuardedResource(url=dg.EnvVar("ANY_NAME")))


def test_runtime_rebuild_detection_fails_closed(monkeypatch: pytest.MonkeyPatch, instance: Any) -> None:
    """guard_url_field lets Dagster's run-time rebuild (EnvVar already resolved) through by
    spotting Dagster's private ``_with_updated_values`` on the stack. Should Dagster rename it,
    EnvVar URLs with a password are refused (loudly), never literal ones accepted."""
    import loom_resources.clickhouse._secrets as ch_url

    monkeypatch.setenv("LOOM_TEST_CH_URL", f"http://loom:{SENTINEL_URL_FORM}@ch.internal:8123/db")
    res = _GuardedResource(url=dg.EnvVar("LOOM_TEST_CH_URL"))
    monkeypatch.setattr(ch_url, "_dagster_rebuilding_resource", lambda: False)
    result = dg.materialize([_uses_clickhouse], resources={"ch": res}, instance=instance, raise_on_error=False)
    assert not result.success
    _assert_absent(_stored_text(instance, result.run_id))


# -- issue 24: every URL form that carries a literal password -----------------------------

LITERAL_PASSWORD_FORMS = [
    f"http://loom@host/db?password={SECRET}",  # password in the query string
    f"http://host/?user=loom&password={SECRET}",
    f"https://host:8443/db?x=1&PASSWORD={SECRET}",
    f"chdb://loom:{SECRET}@/data/ch",  # chdb user-info
    f"chdb:///data/ch?password={SECRET}",
    f"loom:{SECRET}@host:8123",  # malformed: no scheme
    f"http:/loom:{SECRET}@host",  # malformed: one slash
    f"http:\\\\loom:{SECRET}@host",  # malformed: backslashes
    f"//loom:{SECRET}@host:8123/db",
]


@pytest.mark.parametrize("url", LITERAL_PASSWORD_FORMS)
def test_every_literal_password_form_is_refused_at_construction(url: str, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from loom_resources.clickhouse import ClickHouseResource

    monkeypatch.chdir(tmp_path)
    assert has_literal_password(url)
    with pytest.raises(LiteralPasswordError) as info:
        ClickHouseResource(url=url)
    assert SECRET not in str(info.value) + repr(info.value)
    with pytest.raises(LiteralPasswordError):
        resolve_credentials(url, None, None, {})
    assert not any(SECRET in p.name for p in tmp_path.rglob("*"))  # no directory named after it


def test_chdb_user_info_never_becomes_a_path(tmp_path: Path) -> None:
    for url in ("chdb://loom@/data/ch", "chdb://loom:@/data/ch", f"chdb://loom@{tmp_path}/x"):
        with pytest.raises(InvalidClickHouseURLError, match="no user or password") as info:
            parse_clickhouse_url(url, cwd=str(tmp_path))
        assert "loom" not in str(info.value)
    assert redact_url(f"chdb://loom:{SECRET}@/data/ch") == "chdb://***@/data/ch"
    assert not list(tmp_path.iterdir())
    assert parse_clickhouse_url("chdb:///a:b@c").path == "/a:b@c"  # an '@' inside the path is a path


def test_urls_without_a_password_are_still_accepted() -> None:
    from loom_resources.clickhouse import ClickHouseResource

    for url in ("http://loom@h:8123/db", "http://h/db?user=loom", "http://loom:@h/db", "chdb:///x/y", "http://h/db?password="):
        assert not has_literal_password(url)
        assert ClickHouseResource(url=url).url == url
