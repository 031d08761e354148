"""A real HTTP(S) control-plane server on loopback for tenant-source tests, with hostile modes.

Each test installs a ``handler(path, query, headers) -> (status, headers, body)``; requests are
recorded so tests can assert what the client sent (the bearer token, cursors).
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

Response = tuple[int, dict[str, str], bytes]
Handler = Callable[[str, dict[str, str], dict[str, str]], Response]


@dataclass
class ControlPlane:
    server: ThreadingHTTPServer
    scheme: str
    handler: Handler = lambda path, query, headers: (404, {}, b"")
    requests: list[tuple[str, dict[str, str], dict[str, str]]] = field(default_factory=list)
    ca_file: str | None = None
    trickle_s: float = 0.0  # > 0: send the whole response one byte at a time, this far apart

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.server.server_address[1]}"

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])


def tenants_body(ids: list[str], next_cursor: str | None) -> bytes:
    return json.dumps({"data": {"tenants": [{"id": i} for i in ids], "next_cursor": next_cursor}}).encode()


def paged(ids: list[str], *, server_cap: int = 100) -> Handler:
    """A well-behaved control plane: offset cursors, a server-side page cap like real APIs have."""

    def handle(path: str, query: dict[str, str], headers: dict[str, str]) -> Response:
        if path != "/api/tenants":
            return 404, {}, b'{"error": {"code": "NOT_FOUND", "message": "no such route"}}'
        start = int(query.get("cursor", "0"))
        limit = min(int(query["limit"]), server_cap)
        end = start + limit
        return (
            200,
            {"Content-Type": "application/json"},
            tenants_body(ids[start:end], str(end) if end < len(ids) else None),
        )

    return handle


def _self_signed(directory: Path) -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cp.crt", directory / "cp.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return str(cert_file), str(key_file)


@contextmanager
def control_plane(*, tls_dir: Path | None = None) -> Iterator[ControlPlane]:
    """Serve on a free loopback port (https with a fresh self-signed CA when ``tls_dir`` is given)."""
    holder: list[ControlPlane] = []

    class _Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            plane = holder[0]
            parsed = urllib.parse.urlsplit(self.path)
            query = dict(urllib.parse.parse_qsl(parsed.query))
            headers = {k.lower(): v for k, v in self.headers.items()}
            plane.requests.append((parsed.path, query, headers))
            status, extra, body = plane.handler(parsed.path, query, headers)
            if plane.trickle_s:
                self._trickle(status, extra, body, plane.trickle_s)
                return
            self.send_response(status)
            for k, v in extra.items():
                self.send_header(k, v)
            if "Content-Length" not in extra and "Transfer-Encoding" not in extra:
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if extra.get("Transfer-Encoding") == "chunked":
                for i in range(0, len(body), 65536):
                    chunk = body[i : i + 65536]
                    self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                self.wfile.write(b"0\r\n\r\n")
            else:
                self.wfile.write(body)

        def _trickle(self, status: int, extra: dict[str, str], body: bytes, pause_s: float) -> None:
            head = f"HTTP/1.1 {status} X\r\nContent-Length: {len(body)}\r\n"
            head += "".join(f"{k}: {v}\r\n" for k, v in extra.items()) + "\r\n"
            try:
                for byte in head.encode() + body:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(pause_s)
            except OSError:  # the client gave up: what this mode exists to make it do
                self.close_connection = True

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    scheme, ca = "http", None
    if tls_dir is not None:
        cert, key = _self_signed(tls_dir)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        scheme, ca = "https", cert
    plane = ControlPlane(server=server, scheme=scheme, ca_file=ca)
    holder.append(plane)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield plane
    finally:
        server.shutdown()
        server.server_close()
