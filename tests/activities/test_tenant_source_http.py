"""The HTTP control-plane source against a real HTTP(S) server on loopback, hostile variants included."""

from __future__ import annotations

import json
import re
import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from fleetway.activities.errors import (
    ConfigurationError,
    InvalidTenantIdError,
    TenantSourceError,
    TenantSourceUnavailableError,
    to_application_error,
)
from fleetway.activities.tenants.http import HttpTenantLister
from fleetway.activities.tenants.walk import list_all_tenants
from tests.control_plane import Response, control_plane, paged, tenants_body
from tests.fleet import fleetway

TOKEN = "cp-token-7f3a9c2e1b"


def lister(url: str, **kw: object) -> HttpTenantLister:
    options: dict[str, object] = {"allow_http_loopback": True}
    options.update(kw)
    return HttpTenantLister(url, **options)  # type: ignore[arg-type]


async def test_pages_through_the_fleet_with_the_bearer_token_and_server_cap() -> None:
    ids = [f"tenant_{i:04d}" for i in range(250)]
    with control_plane() as plane:
        plane.handler = paged(ids, server_cap=100)
        listing = await list_all_tenants(
            lister(plane.url + "/api/?region=eu", token=SecretStr(TOKEN)), page_size=500
        )
    assert listing.tenant_ids == ids
    assert listing.pages == 3
    assert [q.get("cursor") for _, q, _ in plane.requests] == [None, "100", "200"]
    assert all(h["authorization"] == f"Bearer {TOKEN}" for _, _, h in plane.requests)
    assert all(q["region"] == "eu" and q["limit"] == "500" for _, q, _ in plane.requests)  # base query kept


async def test_no_token_means_no_authorization_header() -> None:
    with control_plane() as plane:
        plane.handler = paged(["a"])
        await lister(plane.url + "/api").list_page(None, 10)
    assert "authorization" not in plane.requests[0][2]


async def test_cycle_is_detected_across_pages_and_on_a_self_loop() -> None:
    cursors = {None: "a", "a": "b", "b": "a"}
    with control_plane() as plane:
        plane.handler = lambda path, q, h: (
            200,
            {},
            tenants_body([f"t_{q.get('cursor')}"], cursors[q.get("cursor")]),
        )
        with pytest.raises(TenantSourceError, match="repeated next_cursor 'a' \\(cycle detected\\)"):
            await list_all_tenants(lister(plane.url))
        plane.handler = lambda path, q, h: (200, {}, tenants_body(["x"], "same"))
        with pytest.raises(TenantSourceError, match="cycle detected"):
            await lister(plane.url).list_page("same", 10)


async def test_page_cap_stops_an_endless_source() -> None:
    with control_plane() as plane:
        plane.handler = lambda path, q, h: (200, {}, tenants_body([], str(int(q.get("cursor", "0")) + 1)))
        with pytest.raises(TenantSourceError, match="exceeded 5 pages"):
            await list_all_tenants(lister(plane.url), max_pages=5)


async def test_duplicates_are_reported_and_listed_once() -> None:
    pages = {None: (["a", "b"], "1"), "1": (["b", "c", "a"], None)}
    with control_plane() as plane:
        plane.handler = lambda path, q, h: (200, {}, tenants_body(*pages[q.get("cursor")]))
        listing = await list_all_tenants(lister(plane.url))
    assert listing.tenant_ids == ["a", "b", "c"]
    assert listing.duplicates == ["b", "a"]


@pytest.mark.parametrize("chunked", [False, True])
async def test_oversize_page_is_refused_while_streaming(chunked: bool) -> None:
    body = tenants_body([f"t{i:06d}" for i in range(5000)], None)  # ~100 KB
    headers = {"Transfer-Encoding": "chunked"} if chunked else {}
    with control_plane() as plane:
        plane.handler = lambda path, q, h: (200, headers, body)
        with pytest.raises(TenantSourceError, match="exceeds 16384"):
            await lister(plane.url, max_response_bytes=16384).list_page(None, 10)
        assert len((await lister(plane.url).list_page(None, 10)).tenant_ids) == 5000


async def test_redirects_same_host_followed_off_host_refused() -> None:
    with control_plane() as plane:

        def handle(path: str, q: dict[str, str], h: dict[str, str]) -> Response:
            if path == "/old/tenants":
                return 301, {"Location": "/new/tenants?limit=5"}, b""
            if path == "/away/tenants":
                return 302, {"Location": f"http://localhost:{plane.port}/new/tenants"}, b""
            return 200, {}, tenants_body(["moved"], None)

        plane.handler = handle
        page = await lister(plane.url + "/old", token=SecretStr(TOKEN)).list_page(None, 5)
        assert page.tenant_ids == ["moved"]
        assert plane.requests[-1][2]["authorization"] == f"Bearer {TOKEN}"
        before = len(plane.requests)
        with pytest.raises(TenantSourceError, match="redirected off-host to 'http://localhost:") as err:
            await lister(plane.url + "/away", token=SecretStr(TOKEN)).list_page(None, 5)
        assert TOKEN not in str(err.value)
        assert len(plane.requests) == before + 1  # localhost was never contacted


async def test_redirect_loop_stops() -> None:
    with control_plane() as plane:
        plane.handler = lambda path, q, h: (302, {"Location": "/loop/tenants"}, b"")
        with pytest.raises(TenantSourceError, match="stopped after 10 redirects"):
            await lister(plane.url + "/loop").list_page(None, 5)


async def test_https_with_a_private_ca_and_no_downgrade_redirect(tmp_path: Path) -> None:
    with control_plane(tls_dir=tmp_path) as plane:

        def handle(path: str, q: dict[str, str], h: dict[str, str]) -> Response:
            if path == "/down/tenants":
                return 302, {"Location": f"http://127.0.0.1:{plane.port}/ok/tenants"}, b""
            return 200, {}, tenants_body(["secure"], None)

        plane.handler = handle
        assert plane.ca_file is not None
        ok = HttpTenantLister(plane.url + "/ok", verify=plane.ca_file, token=SecretStr(TOKEN))
        assert (await ok.list_page(None, 5)).tenant_ids == ["secure"]
        down = HttpTenantLister(plane.url + "/down", verify=plane.ca_file, token=SecretStr(TOKEN))
        with pytest.raises(TenantSourceError, match="refusing to downgrade"):
            await down.list_page(None, 5)
        untrusted = HttpTenantLister(plane.url + "/ok")  # the system CAs do not know it
        with pytest.raises(TenantSourceUnavailableError, match="ConnectError"):
            await untrusted.list_page(None, 5)


def test_plain_http_is_refused_unless_allowed_and_loopback() -> None:
    with pytest.raises(ConfigurationError, match="plain http: https is required"):
        HttpTenantLister("http://127.0.0.1:1/api")
    with pytest.raises(ConfigurationError, match="http is allowed for loopback only"):
        HttpTenantLister("http://control-plane.internal/api", allow_http_loopback=True)
    with pytest.raises(ConfigurationError, match="unsupported scheme 'ftp'"):
        HttpTenantLister("ftp://127.0.0.1/api")
    HttpTenantLister("http://[::1]:8080/api", allow_http_loopback=True)
    HttpTenantLister("https://control-plane.internal/api")


async def test_invalid_ids_fail_the_page_naming_the_id_escaped() -> None:
    with control_plane() as plane:
        plane.handler = lambda path, q, h: (200, {}, tenants_body(["ok_1", "../etc\npasswd"], None))
        with pytest.raises(InvalidTenantIdError, match=r"'../etc\\npasswd'"):
            await lister(plane.url).list_page(None, 5)
        plane.handler = lambda path, q, h: (200, {}, tenants_body(["  padded  "], None))
        assert (await lister(plane.url).list_page(None, 5)).tenant_ids == ["padded"]  # trimmed
        plane.handler = lambda path, q, h: (200, {}, tenants_body(["ok_2", "", "   ", "a b", "ok_3"], None))
        with pytest.raises(InvalidTenantIdError) as blanks:
            await lister(plane.url).list_page(None, 5)
        assert str(blanks.value) == (
            "3 tenant ids in the tenant source's page are invalid: '', '   ', 'a b'; "
            "each must match ^[A-Za-z0-9_-]{1,128}$"
        )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"<html>not json</html>", "the tenant source's answer is not valid JSON"),
        (b"[" * 200_000, "the tenant source's answer is JSON nested deeper than 64 levels; refused"),
        (b'{"data": {"tenants": [' + b'{"x": ' * 70 + b"1" + b"}" * 70 + b"]}}", "nested deeper than 64"),
        (b'{"tenants": []}', "no 'data' object"),
        (b'{"data": {"tenants": {"id": "a"}}}', "is not a list"),
        (b'{"data": {"tenants": [{"name": "a"}]}}', "has no string 'id'"),
        (b'{"data": {"tenants": [], "next_cursor": 7}}', "'next_cursor' is not a string"),
    ],
)
async def test_contract_violations_are_named(body: bytes, message: str) -> None:
    with control_plane() as plane:
        plane.handler = lambda path, q, h: (200, {}, body)
        with pytest.raises(TenantSourceError, match=re.escape(message)):
            await lister(plane.url).list_page(None, 5)


def test_cli_list_tenants_names_a_deeply_nested_page_in_one_line(tmp_path: Path) -> None:
    with control_plane() as plane:
        plane.handler = lambda path, q, h: (200, {}, b"[" * 200_000)
        env = {"PATH": "/usr/bin:/bin", "FLEETWAY_TENANTS__KIND": "http",
               "FLEETWAY_TENANTS__HTTP__URL": plane.url, "FLEETWAY_TENANTS__HTTP__ALLOW_HTTP_LOOPBACK": "true"}  # fmt: skip
        done = fleetway("list-tenants", "--local", env=env)
    assert done.returncode == 1  # the source broke its contract: a failure, not the user's input
    assert done.stderr == (
        "tenant_source_error: the tenant source's answer is JSON nested deeper than 64 levels; refused\n"
    )


async def test_a_trickling_server_is_cut_off_by_the_whole_request_deadline() -> None:
    """Headers arrive a byte every 0.4 s: each read is quick, the request as a whole is not."""
    with control_plane() as plane:
        plane.trickle_s = 0.4
        plane.handler = lambda path, q, h: (200, {}, tenants_body(["slow"], None))
        slow = HttpTenantLister(plane.url, allow_http_loopback=True, timeout_s=1.5)
        started = time.monotonic()
        with pytest.raises(TenantSourceUnavailableError) as err:
            await slow.list_page(None, 5)
        elapsed = time.monotonic() - started
    assert str(err.value) == "tenant source unavailable (no complete answer within 1.5s)"
    assert elapsed < 1.5 + 1  # cut at its deadline, not after the whole trickle


async def test_https_never_redirects_down_to_http_even_with_loopback_http_allowed(tmp_path: Path) -> None:
    with control_plane(tls_dir=tmp_path) as plane:
        plane.handler = lambda path, q, h: (
            (302, {"Location": f"http://127.0.0.1:{plane.port}/x/tenants"}, b"")
            if path == "/down/tenants"
            else (200, {}, tenants_body(["a"], None))
        )
        assert plane.ca_file is not None
        down = HttpTenantLister(
            plane.url + "/down", verify=plane.ca_file, token=SecretStr(TOKEN), allow_http_loopback=True
        )
        with pytest.raises(
            TenantSourceError, match=r"redirected from https to .http://127.0.0.1:.*refusing to downgrade"
        ):
            await down.list_page(None, 5)
    assert [p for p, _, _ in plane.requests] == ["/down/tenants"]  # the http URL was never contacted


@pytest.mark.parametrize(
    ("base", "location", "refusal"),
    [
        ("https://cp.example/api", "http://cp.example/api/tenants", "refusing to downgrade"),  # default ports
        ("https://cp.example/api", "https://cp.example:8443/t", "off-host"),
        ("https://cp.example/api", "https://other.example/t", "off-host"),
        ("http://127.0.0.1:8080/api", "http://localhost:8080/t", "off-host"),
        ("http://127.0.0.1:8080/api", "http://cp.example:8080/t", "plain http"),
        ("https://cp.example/api", "ftp://cp.example/t", "scheme 'ftp'"),
    ],
)
def test_redirect_rules(base: str, location: str, refusal: str) -> None:
    source = HttpTenantLister(base, allow_http_loopback=True)
    with pytest.raises(TenantSourceError, match=refusal):
        source._redirect_target(httpx.URL(base), location)


def test_redirect_rules_allow_same_origin_and_an_upgrade() -> None:
    source = HttpTenantLister("http://127.0.0.1:8080/api", allow_http_loopback=True)
    assert str(source._redirect_target(httpx.URL("http://127.0.0.1:8080/api"), "/v2/tenants")).endswith(
        "127.0.0.1:8080/v2/tenants"
    )
    upgraded = source._redirect_target(httpx.URL("http://127.0.0.1/api"), "https://127.0.0.1/api")
    assert upgraded.scheme == "https"


async def test_a_transient_error_is_one_request_and_retryable_with_the_servers_delay() -> None:
    """The caller (Temporal, by time) retries; a loop here too would multiply requests and waits."""
    with control_plane() as plane:
        answers = [(503, {}, b""), (429, {"Retry-After": "7"}, b""), (429, {"Retry-After": "9999"}, b"")]
        plane.handler = lambda path, q, h: answers.pop(0)
        errors = []
        for _ in range(3):
            with pytest.raises(TenantSourceUnavailableError) as err:
                await lister(plane.url).list_page(None, 5)
            errors.append(err.value)
        assert len(plane.requests) == 3  # one request per call
    assert [str(e) for e in errors] == [f"tenant source unavailable (HTTP {c})" for c in (503, 429, 429)]
    assert [e.retry_after_s for e in errors] == [None, 7, 30]  # Retry-After honoured, capped at 30 s
    assert all(to_application_error(e).non_retryable is False for e in errors)
    assert to_application_error(errors[1]).next_retry_delay == timedelta(seconds=7)
    with pytest.raises(TenantSourceUnavailableError, match=r"unavailable \(ConnectError\)"):
        await lister(plane.url).list_page(None, 5)  # the server is gone


async def test_a_permanent_error_is_not_retried_and_carries_the_envelope() -> None:
    with control_plane() as plane:
        envelope = {"error": {"code": "FORBIDDEN", "message": "token lacks tenants:read"}}
        plane.handler = lambda path, q, h: (403, {}, json.dumps(envelope).encode())
        with pytest.raises(
            TenantSourceError, match="HTTP 403: 'FORBIDDEN': 'token lacks tenants:read'"
        ) as err:
            await lister(plane.url, token=SecretStr(TOKEN)).list_page(None, 5)
    assert len(plane.requests) == 1
    assert type(err.value) is TenantSourceError and TOKEN not in str(err.value)


def test_cli_list_tenants_reads_the_http_source_with_a_token_file(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    ids = [f"cli_{i:03d}" for i in range(120)]
    with control_plane() as plane:
        plane.handler = paged([*ids, "cli_001"], server_cap=50)
        env = {
            "PATH": "/usr/bin:/bin",
            "FLEETWAY_TENANTS__KIND": "http",
            "FLEETWAY_TENANTS__HTTP__URL": plane.url + "/api",
            "FLEETWAY_TENANTS__HTTP__TOKEN_FILE": str(token_file),
            "FLEETWAY_TENANTS__HTTP__ALLOW_HTTP_LOOPBACK": "true",
        }
        done = fleetway("list-tenants", "--local", "-o", "json", env=env)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == {"tenants": ids, "duplicates": ["cli_001"], "pages": 3}
        assert "duplicate tenant ids (listed once): cli_001" in done.stderr
        assert plane.requests[0][2]["authorization"] == f"Bearer {TOKEN}"
        env["FLEETWAY_TENANTS__HTTP__ALLOW_HTTP_LOOPBACK"] = "false"
        refused = fleetway("list-tenants", "--local", env=env)
        assert refused.returncode == 2
        assert "configuration_error: tenant source url" in refused.stderr and TOKEN not in refused.stderr


def test_cli_list_tenants_rides_out_a_failing_source_as_a_rollout_does() -> None:
    """An HTTP 500, then a 429 with Retry-After: the preview retries, honours the wait, and lists."""
    ids = [f"blip_{i:02d}" for i in range(7)]
    answers: list[tuple[int, dict[str, str], bytes]] = [
        (500, {}, b'{"error": {"code": "INTERNAL", "message": "try later"}}'),
        (429, {"Retry-After": "2"}, b'{"error": {"code": "RATE_LIMITED", "message": "slow down"}}'),
    ]
    seen: list[float] = []
    healthy = paged(ids, server_cap=5)

    def flaky(path: str, query: dict[str, str], headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        seen.append(time.monotonic())
        return answers.pop(0) if answers else healthy(path, query, headers)

    with control_plane() as plane:
        plane.handler = flaky
        env = {"PATH": "/usr/bin:/bin", "FLEETWAY_TENANTS__KIND": "http",
               "FLEETWAY_TENANTS__HTTP__URL": plane.url + "/api",
               "FLEETWAY_TENANTS__HTTP__ALLOW_HTTP_LOOPBACK": "true"}  # fmt: skip
        done = fleetway("list-tenants", "--local", "-o", "json", env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["tenants"] == ids
    assert len(seen) == 4 and seen[2] - seen[1] >= 2.0  # 500, 429, then the two pages; Retry-After kept
    assert "(HTTP 429); asking again in 2s" in done.stderr
