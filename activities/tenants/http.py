"""The HTTP control-plane tenant source (go-bricks' contract), hardened.

``GET <base>/tenants?limit=N[&cursor=C]`` → ``{"data": {"tenants": [{"id": ...}], "next_cursor": C}}``
(``next_cursor`` is also accepted at the top level). An entry may carry ``"labels": {"tier":
"enterprise"}`` (optional: go-bricks' shape stays valid); labels are validated like ids.
Hardening, because the control plane is another team's service and its answers decide which
databases get migrated:

- https only; plain http only when explicitly allowed *and* the host is loopback;
- redirects followed by hand (≤ 10): never to another host or port (default ports made explicit,
  so ``https://h/`` and ``http://h/`` are different origins), never from https down to http
  (whatever ``allow_http_loopback`` says), so the bearer token never leaves the origin and never
  travels in clear except to a loopback URL configured as such;
- one deadline (``timeout_s``) for the whole request — connect, redirects, headers and body — so
  a server trickling a byte every few seconds cannot hold a listing open; a response size cap
  enforced while streaming, not after;
- JSON nested deeper than :data:`MAX_JSON_DEPTH` is refused by name (Python's parser would
  overflow its recursion limit);
- every id trimmed and validated; a bad, empty or blank id fails the page, naming every bad id
  escaped;
- one request per call: a timeout, connection error, 429 or 5xx is a retryable
  :class:`TenantSourceUnavailableError` carrying ``Retry-After`` (capped), and the caller retries
  (Temporal, by time, honouring that delay; a second loop here would multiply the requests and
  wait twice); anything else is a clear :class:`TenantSourceError` with the envelope's error code
  and message, escaped and truncated.

Cycle and page-cap detection across pages lives with the caller that walks the pages
(``list_all_tenants`` here, the workflow during a rollout). Must not: log or echo the token.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import ssl
from typing import Final

import httpx
from pydantic import SecretStr

from fleetway.activities.errors import ConfigurationError, TenantSourceError, TenantSourceUnavailableError
from fleetway.activities.secrets.providers import validate_tenant_ids
from fleetway.activities.tenants.labels import validate_labels
from fleetway.activities.tenants.static import TenantPage

__all__ = ["DEFAULT_MAX_RESPONSE_BYTES", "MAX_JSON_DEPTH", "HttpTenantLister", "parse_json_bounded"]

DEFAULT_MAX_RESPONSE_BYTES: Final = 4 * 1024 * 1024
MAX_JSON_DEPTH: Final = 64  # a page is {"data": {"tenants": [{"id": …}]}}: depth 4
_MAX_REDIRECTS: Final = 10
_TRANSIENT_STATUS: Final = frozenset({408, 425, 429, 500, 502, 503, 504})
_MAX_RETRY_AFTER_S: Final = 30.0


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _shown(value: object, limit: int = 200) -> str:
    return ascii(str(value)[:limit])


def _origin(url: httpx.URL) -> tuple[str, str, int]:
    """(scheme, host, port) with the default port made explicit: http://h/ and https://h/ differ."""
    default = 443 if url.scheme == "https" else 80
    return url.scheme, url.host, url.port or default


def parse_json_bounded(body: bytes, *, what: str) -> object:
    """``json.loads`` that refuses nesting deeper than :data:`MAX_JSON_DEPTH` by name.

    The depth is measured on the raw bytes before parsing (brackets outside strings), so a hostile
    ``[[[[…`` of any depth costs one linear scan, never a ``RecursionError``.

    Raises:
        TenantSourceError: invalid JSON, or nested deeper than the limit.
    """
    depth, deepest, in_string, escaped = 0, 0, False, False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            deepest = max(deepest, depth)
            if deepest > MAX_JSON_DEPTH:
                raise TenantSourceError(f"{what} is JSON nested deeper than {MAX_JSON_DEPTH} levels; refused")
        elif byte in (0x5D, 0x7D):
            depth -= 1
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise TenantSourceError(f"{what} is not valid JSON") from None


class HttpTenantLister:
    """Pages tenant ids from a control-plane HTTP API (see the module docstring for the contract)."""

    def __init__(
        self,
        base_url: str,
        *,
        token: SecretStr | None = None,
        allow_http_loopback: bool = False,
        timeout_s: float = 30.0,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        verify: bool | str = True,
    ) -> None:
        url = httpx.URL(base_url.strip())
        if not url.host:
            raise ConfigurationError(f"tenant source url {_shown(base_url)} has no host")
        if url.scheme == "http":
            if not allow_http_loopback:
                raise ConfigurationError(
                    f"tenant source url {_shown(base_url)} is plain http: https is required "
                    "(allow_http_loopback permits http to a loopback host only)"
                )
            if not _is_loopback(url.host):
                raise ConfigurationError(
                    f"tenant source url {_shown(base_url)}: http is allowed for loopback only"
                )
        elif url.scheme != "https":
            raise ConfigurationError(
                f"tenant source url {_shown(base_url)}: unsupported scheme {url.scheme!r}"
            )
        if max_response_bytes < 1 or timeout_s <= 0:
            raise ConfigurationError("tenant source limits must be positive")
        self._base = url
        self.description = f"http: {url.copy_with(username=None, password=None, query=None)}"
        """Where tenants are listed (no credentials, no query): shown before a rollout."""
        self._token = token
        self._allow_http = allow_http_loopback
        self._timeout = httpx.Timeout(timeout_s)
        self._deadline_s = timeout_s
        self._max_bytes = max_response_bytes
        # A CA bundle path becomes a context up front: a missing file fails at startup, not per page.
        self._verify: bool | ssl.SSLContext = (
            ssl.create_default_context(cafile=verify) if isinstance(verify, str) else verify
        )

    def page_url(self, cursor: str | None, limit: int) -> httpx.URL:
        """``<base>/tenants`` with the base's own query kept and ``limit``/``cursor`` set."""
        path = self._base.path.rstrip("/") + "/tenants"
        params = dict(self._base.params)
        params["limit"] = str(limit)
        if cursor:
            params["cursor"] = cursor
        return self._base.copy_with(path=path, params=params)

    async def list_page(self, cursor: str | None, limit: int) -> TenantPage:
        """Fetch one page; see :class:`TenantLister`.

        Raises:
            TenantSourceError: contract violation, refused redirect, oversize or non-2xx answer.
            TenantSourceUnavailableError: a transient failure (timeout, connection, 429, 5xx).
            InvalidTenantIdError: an id in the page breaks the tenant id pattern.
        """
        url = self.page_url(cursor, limit)
        try:
            async with asyncio.timeout(self._deadline_s):
                status, body, retry_after = await self._get(url)
        except TimeoutError:
            raise TenantSourceUnavailableError(
                f"tenant source unavailable (no complete answer within {self._deadline_s:g}s)"
            ) from None
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            raise TenantSourceUnavailableError(f"tenant source unavailable ({type(exc).__name__})") from None
        if 200 <= status < 300:
            return self._parse(body, cursor)
        if status not in _TRANSIENT_STATUS:
            raise TenantSourceError(self._describe_error(status, body))
        delay = min(retry_after, _MAX_RETRY_AFTER_S) if retry_after is not None else None
        raise TenantSourceUnavailableError(f"tenant source unavailable (HTTP {status})", retry_after_s=delay)

    async def _get(self, url: httpx.URL) -> tuple[int, bytes, float | None]:
        headers = {"Accept": "application/json"}
        if self._token is not None:
            headers["Authorization"] = f"Bearer {self._token.get_secret_value()}"
        async with httpx.AsyncClient(
            timeout=self._timeout, follow_redirects=False, verify=self._verify, trust_env=False
        ) as client:
            for _ in range(_MAX_REDIRECTS + 1):
                async with client.stream("GET", url, headers=headers) as response:
                    if response.is_redirect:
                        url = self._redirect_target(url, response.headers.get("location", ""))
                        continue
                    body = await self._read_capped(response)
                    return response.status_code, body, self._retry_after(response)
        raise TenantSourceError(f"tenant source stopped after {_MAX_REDIRECTS} redirects")

    def _redirect_target(self, current: httpx.URL, location: str) -> httpx.URL:
        """Where a redirect may go: the same host, never a downgrade, http only to a loopback host.

        Raises:
            TenantSourceError: no Location, another host or port, https → http, a non-http scheme,
                or plain http to a host that is not loopback or not allowed.
        """
        if not location:
            raise TenantSourceError("tenant source sent a redirect without a Location")
        target = current.join(location)
        if target.scheme not in {"http", "https"}:
            raise TenantSourceError(f"tenant source redirected to scheme {target.scheme!r}; refusing")
        if current.scheme == "https" and target.scheme == "http":
            raise TenantSourceError(
                f"tenant source redirected from https to {_shown(str(target))}; refusing to downgrade"
            )
        if target.scheme == "http" and not (self._allow_http and _is_loopback(target.host)):
            raise TenantSourceError(f"tenant source redirected to plain http {_shown(str(target))}; refusing")
        upgraded = current.scheme == "http" and target.scheme == "https" and target.host == current.host
        if _origin(target)[1:] != _origin(current)[1:] and not upgraded:
            raise TenantSourceError(
                f"tenant source redirected off-host to {_shown(str(target))}; refusing to follow"
            )
        return target

    async def _read_capped(self, response: httpx.Response) -> bytes:
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self._max_bytes:
            raise TenantSourceError(f"tenant source response of {declared} bytes exceeds {self._max_bytes}")
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_raw():
            size += len(chunk)
            if size > self._max_bytes:
                raise TenantSourceError(f"tenant source response exceeds {self._max_bytes} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    @staticmethod
    def _retry_after(response: httpx.Response) -> float | None:
        value = response.headers.get("retry-after", "")
        return float(value) if value.isdigit() else None

    @staticmethod
    def _describe_error(status: int, body: bytes) -> str:
        message = f"tenant source returned HTTP {status}"
        try:
            document = parse_json_bounded(body, what="the error body")
        except TenantSourceError:
            return message
        error = document.get("error") if isinstance(document, dict) else None
        if isinstance(error, dict):
            code, text = error.get("code"), error.get("message")
            if code or text:
                message += f": {_shown(code or '', 64)}: {_shown(text or '', 200)}"
        return message

    def _parse(self, body: bytes, cursor: str | None) -> TenantPage:
        document = parse_json_bounded(body, what="the tenant source's answer")
        if not isinstance(document, dict):
            raise TenantSourceError("tenant source envelope has no 'data' object")
        data = document.get("data")
        if not isinstance(data, dict):
            raise TenantSourceError("tenant source envelope has no 'data' object")
        tenants = data.get("tenants")
        if not isinstance(tenants, list):
            raise TenantSourceError("tenant source 'data.tenants' is not a list")
        raw_ids: list[str] = []
        raw_labels: list[object] = []
        for item in tenants:
            raw = item.get("id") if isinstance(item, dict) else None
            if not isinstance(raw, str):
                raise TenantSourceError(f"tenant source entry {_shown(item, 80)} has no string 'id'")
            raw_ids.append(raw)
            raw_labels.append(item.get("labels"))
        ids = validate_tenant_ids(raw_ids, where="in the tenant source's page")
        labels = {
            tenant: checked
            for tenant, raw in zip(ids, raw_labels, strict=True)
            if (checked := validate_labels(raw, tenant=tenant, where="in the tenant source's page"))
        }
        next_cursor = data.get("next_cursor", document.get("next_cursor"))
        if next_cursor is not None and not isinstance(next_cursor, str):
            raise TenantSourceError("tenant source 'next_cursor' is not a string")
        if next_cursor and next_cursor == cursor:
            raise TenantSourceError(
                f"tenant source repeated next_cursor {_shown(next_cursor, 80)} (cycle detected)"
            )
        return TenantPage(tenant_ids=ids, next_cursor=next_cursor or None, labels=labels)
