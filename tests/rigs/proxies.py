"""Real proxies and check endpoints on 127.0.0.1 for the proxy checker's tests.

The proxies are pproxy (a dev dependency) in subprocesses, one per fixture:

    python -m pproxy -l http://127.0.0.1:PORT --auth 0
    python -m pproxy -l 'http://127.0.0.1:PORT#checker:S3cret-pw' --auth 0   (answers CONNECT too)
    python -m pproxy -l 'socks5://127.0.0.1:PORT#checker:S3cret-pw' --auth 0
    python -m pproxy -l 'socks4://127.0.0.1:PORT#checker' --auth 0       (user id "checker")

`--auth 0` matters: by default pproxy remembers for 30 days that an IP once authenticated and
then lets it in without credentials, which would make every wrong-password test pass vacuously.

The check endpoints are stdlib HTTP servers in threads. Any path answers `{"ip": "<client>"}`,
except `/text` (the bare address as text/plain) and `/status/NNN` (status NNN).
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from worker.proxies.checker import ProxyEndpoint, ProxyScheme

HOST = "127.0.0.1"
PROXY_USER = "checker"
PROXY_PASSWORD = "S3cret-pw"  # distinctive, so tests can search for leaks of it
_STARTUP_SECONDS = 10.0
# Strict verifiers (Python >= 3.13 sets VERIFY_X509_STRICT) want a CA to say what it signs.
_CA_KEY_USAGE = x509.KeyUsage(
    digital_signature=False, content_commitment=False, key_encipherment=False,
    data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
    encipher_only=False, decipher_only=False,
)  # fmt: skip


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.2):
            return True
    except OSError:
        return False


def _start_pproxy(listen: str, log_path: Path) -> tuple[subprocess.Popen[bytes], int]:
    """Start pproxy on a free port; retried because the port may be taken before pproxy binds."""
    for _attempt in range(3):
        port = free_port()
        log = log_path.open("ab")
        process = subprocess.Popen(
            [sys.executable, "-m", "pproxy", "-l", listen.format(port=port), "--auth", "0"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()  # the child holds its own copy
        give_up = time.monotonic() + _STARTUP_SECONDS
        while process.poll() is None and time.monotonic() < give_up:
            if _accepts(port):
                return process, port
            time.sleep(0.05)
        _stop(process)
    raise RuntimeError(f"pproxy {listen!r} did not start; see {log_path}:\n{log_path.read_text()}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _pproxy_fixture(
    tmp_path_factory: pytest.TempPathFactory,
    listen_scheme: str,
    endpoint_scheme: ProxyScheme,
    username: str | None = None,
    password: str | None = None,
) -> Iterator[ProxyEndpoint]:
    """pproxy accepting exactly `username[:password]` (as its "#user:pass" URI fragment)."""
    users = ":".join(part for part in (username, password) if part is not None)
    listen = f"{listen_scheme}://{HOST}:{{port}}" + (f"#{users}" if users else "")
    log_path = tmp_path_factory.mktemp("pproxy") / "pproxy.log"
    process, port = _start_pproxy(listen, log_path)
    try:
        yield ProxyEndpoint(endpoint_scheme, HOST, port, username, password)
    finally:
        _stop(process)


@pytest.fixture(scope="session")
def http_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyEndpoint]:
    yield from _pproxy_fixture(tmp_path_factory, "http", "http")


@pytest.fixture(scope="session")
def http_proxy_auth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyEndpoint]:
    """An HTTP proxy wanting Basic credentials; as scheme "https" it is used through CONNECT."""
    yield from _pproxy_fixture(tmp_path_factory, "http", "https", PROXY_USER, PROXY_PASSWORD)


@pytest.fixture(scope="session")
def socks5_proxy_auth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyEndpoint]:
    yield from _pproxy_fixture(tmp_path_factory, "socks5", "socks5", PROXY_USER, PROXY_PASSWORD)


@pytest.fixture(scope="session")
def socks4_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyEndpoint]:
    """SOCKS4 accepting only the user id "checker" (pproxy compares the whole id)."""
    yield from _pproxy_fixture(tmp_path_factory, "socks4", "socks4", PROXY_USER)


class _CheckHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (the stdlib's naming)
        client_ip = self.client_address[0]
        status, body, kind = 200, json.dumps({"ip": client_ip}).encode(), "application/json"
        if self.path == "/text":
            body, kind = client_ip.encode(), "text/plain"
        elif self.path.startswith("/status/"):
            status = int(self.path.removeprefix("/status/"))
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass  # keep test output clean


def _serve(server: ThreadingHTTPServer) -> Iterator[int]:
    # A short poll interval so shutdown() returns at once instead of after up to 0.5 s.
    thread = threading.Thread(target=lambda: server.serve_forever(poll_interval=0.05), daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(scope="session")
def check_endpoint() -> Iterator[str]:
    """Base URL, "http://127.0.0.1:PORT/"."""
    for port in _serve(ThreadingHTTPServer((HOST, 0), _CheckHandler)):
        yield f"http://{HOST}:{port}/"


@pytest.fixture(scope="session")
def tls_check_endpoint(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, ssl.SSLContext]]:
    """Base https URL under a throwaway CA, and a client context that trusts that CA."""
    ca_pem, cert_pem, key_pem = _throwaway_certificates()
    directory = tmp_path_factory.mktemp("tls-check")
    (directory / "cert.pem").write_bytes(cert_pem)
    (directory / "key.pem").write_bytes(key_pem)
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(directory / "cert.pem", directory / "key.pem")
    client_context = ssl.create_default_context(cadata=ca_pem.decode())
    server = ThreadingHTTPServer((HOST, 0), _CheckHandler)
    server.socket = server_context.wrap_socket(server.socket, server_side=True)
    for port in _serve(server):
        yield f"https://{HOST}:{port}/", client_context


def _throwaway_certificates() -> tuple[bytes, bytes, bytes]:
    """A CA and a 127.0.0.1 server certificate it signed: (ca_pem, cert_pem, key_pem)."""
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "proxy-check test CA")])
    ca = _certificate(ca_name, ca_name, ca_key.public_key(), ca_key, [
        (x509.BasicConstraints(ca=True, path_length=0), True),
        (_CA_KEY_USAGE, True),
        (x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False),
    ])  # fmt: skip
    server_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)])
    cert = _certificate(server_name, ca_name, key.public_key(), ca_key, [
        (x509.BasicConstraints(ca=False, path_length=None), True),
        (x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(HOST))]), False),
        (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False),
        (x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False),
    ])  # fmt: skip
    pem = serialization.Encoding.PEM
    key_pem = key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return ca.public_bytes(pem), cert.public_bytes(pem), key_pem


def _certificate(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    signer: ec.EllipticCurvePrivateKey,
    extensions: list[tuple[x509.ExtensionType, bool]],
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
    )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    return builder.sign(signer, hashes.SHA256())


@pytest.fixture(scope="session")
def closed_port() -> Iterator[int]:
    """A port where nothing listens; held bound (never listening) so nobody else can take it."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        yield int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def stalling_proxy() -> Iterator[int]:
    """Port of a TCP server that accepts every connection and never sends a byte."""
    yield from _hold_connections(lambda conn, stop: None)


@pytest.fixture(scope="session")
def trickling_proxy() -> Iterator[int]:
    """Port of a TCP server that starts an HTTP answer, then sends one byte every 0.2 s.

    Every single read succeeds quickly, so only a deadline over the whole exchange ends it.
    """

    def trickle(conn: socket.socket, stop: threading.Event) -> None:
        try:
            conn.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
            while not stop.wait(0.2):
                conn.sendall(b"z")
        except OSError:
            pass  # the client gave up, as it should

    yield from _hold_connections(trickle)


NON_ASCII_PASSWORD = "Pässwört-€-Geheim-42"  # sent by the checker, echoed back by `echoing_proxy`


def _answer(reply: Callable[[bytes], bytes]) -> Callable[[socket.socket, threading.Event], None]:
    """A connection handler: read the request head, send `reply(head)`, hang up."""

    def serve(conn: socket.socket, stop: threading.Event) -> None:
        conn.settimeout(5)
        head = b""
        try:
            while b"\r\n\r\n" not in head and len(head) < 65536:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                head += chunk
            conn.sendall(reply(head))
            conn.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    return serve


def _echo_credentials(head: bytes) -> bytes:
    # Like a careless proxy (or the gateway behind it): the refusal quotes what was sent, the
    # decoded user:password and the Basic token, in its reason phrase.
    token = b""
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"proxy-authorization":
            token = value.strip().removeprefix(b"Basic ").strip()
    credentials = base64.b64decode(token) if token else b"(none)"
    reason = b"Forbidden for " + credentials + b" (Basic " + token + b")"
    if head.startswith(b"CONNECT"):
        return b"HTTP/1.1 403 " + reason + b"\r\n\r\n"
    # To a plain request, a status line http.client cannot parse: its error quotes the line,
    # decoded as latin-1 (mojibake of a non-ASCII password).
    return b"HTTP/1.1 4O3 " + reason + b"\r\n\r\n"


def _answer_with_nul(head: bytes) -> bytes:
    if head.startswith(b"CONNECT"):
        return b"HTTP/1.1 403 \x00Forbid\x00den\x00\r\n\r\n"
    return b"HTTP/1.1 2\x000 \x00\x00OK\r\n\r\n"


@pytest.fixture(scope="session")
def echoing_proxy() -> Iterator[int]:
    """Port of a proxy that refuses every request, quoting the credentials it got (decoded, and
    as the Basic token) in the reason phrase; a malformed status line to plain requests."""
    yield from _hold_connections(_answer(_echo_credentials))


@pytest.fixture(scope="session")
def nul_proxy() -> Iterator[int]:
    """Port of a proxy whose answers (to CONNECT and to plain requests) hold NUL bytes."""
    yield from _hold_connections(_answer(_answer_with_nul))


def _hold_connections(
    serve: Callable[[socket.socket, threading.Event], None],
) -> Iterator[int]:
    """Accept connections on a free port, hand each to `serve` in a thread, close all at the end."""
    listener = socket.socket()
    listener.bind((HOST, 0))
    listener.listen(16)
    listener.settimeout(0.1)  # so the accept loop notices the stop flag
    stop, held = threading.Event(), list[socket.socket]()

    def accept_forever() -> None:
        while not stop.is_set():
            try:
                conn = listener.accept()[0]  # kept open until the end, never read
            except TimeoutError:
                continue
            except OSError:
                return
            held.append(conn)
            threading.Thread(target=serve, args=(conn, stop), daemon=True).start()

    thread = threading.Thread(target=accept_forever, name="held-connections", daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stop.set()
        thread.join(timeout=5)
        for conn in held:
            conn.close()
        listener.close()
