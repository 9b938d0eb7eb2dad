"""A fake of the platforms the adapters talk to: Telegram Bot API, a Graph-style API, a webhook.

One stdlib HTTP server on 127.0.0.1 (random port, daemon thread) speaks the documented shapes,
keeps the state a platform would, records every request, and fails on command, for instance
`server.fail_next("graph.media_publish", "hang")`. `hang` and `reset` take `publish=` (does the
platform act before the answer is lost? by default a hang does, a reset does not); `hang` also
takes `seconds` (default: until the server stops). `raw` answers `body=` (bytes or str) as it
is, with `status=` (default 500) and `content_type=` (default text/html): a platform, or a
gateway before it, answering with something that is not its documented shape.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from worker.platforms.webhook import verify_signature

ROUTES = ("telegram.sendMessage", "telegram.sendPhoto", "graph.media", "graph.media_publish",
          "graph.media_list", "webhook")
KINDS = ("rate_limit", "server_error", "bad_request", "unauthorized", "blocked", "auth_expired",
         "hang", "reset", "raw")
Reply = tuple[int, dict[str, Any], dict[str, str]]


@dataclass(frozen=True)
class RecordedRequest:
    route: str
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: Any  # parsed JSON or form fields; None when neither
    raw: bytes
    # The server's own clock (time.monotonic()) when the request was whole: what rate tests measure.
    received_at: float = field(default_factory=time.monotonic)


@dataclass
class _Failure:
    kind: str
    remaining: int
    params: dict[str, Any]


def _telegram_error(status: int, description: str, **parameters: Any) -> Reply:
    body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
    return status, {**body, "parameters": parameters} if parameters else body, {}


def _graph_error(status: int, message: str, code: int, subcode: int | None = None, **extra: Any) -> Reply:
    error = {"message": message, "type": "OAuthException", "code": code, "fbtrace_id": "Fake", **extra}
    return status, {"error": {**error, "error_subcode": subcode} if subcode else error}, {}


def _failure_reply(family: str, kind: str, p: dict[str, Any]) -> Reply:
    """What each platform answers for each failure kind, in its own documented shape."""
    wait, desc, status = p.get("retry_after", 3), p.get("description"), p.get("status")
    if family == "telegram":  # Bot API: the HTTP status is also the error_code
        status, desc = {
            "rate_limit": (429, f"Too Many Requests: retry after {wait}"),
            "server_error": (status or 500, desc or "Internal Server Error"),
            "bad_request": (400, desc or "Bad Request: chat not found"),
            "unauthorized": (401, "Unauthorized"), "auth_expired": (401, "Unauthorized"),
            "blocked": (403, desc or "Forbidden: bot was blocked by the user"),
        }[kind]
        return _telegram_error(status, desc, **({"retry_after": wait} if kind == "rate_limit" else {}))
    if family == "graph":
        status, code, subcode, desc = {
            "rate_limit": (400, 4, None, "(#4) Application request limit reached"),
            "server_error": (status or 500, 2, None, desc or "An unexpected error has occurred."),
            "bad_request": (400, p.get("code", 100), None, desc or "(#100) Invalid parameter"),
            "unauthorized": (400, 190, None, "Invalid OAuth access token - Cannot parse access token"),
            "auth_expired": (400, 190, 463, "Error validating access token: Session has expired"),
            "blocked": (403, 10, None, desc or "(#10) Application does not have permission"),
        }[kind]
        status, body, _ = _graph_error(status, desc, code, subcode, is_transient=kind == "server_error")
        # Graph rarely sends Retry-After; its usage header estimates minutes until access returns.
        usage = {"1": [{"type": "instagram", "estimated_time_to_regain_access": p.get("minutes", 1)}]}
        throttle = ({"Retry-After": str(wait)} if "retry_after" in p
                    else {"X-Business-Use-Case-Usage": json.dumps(usage)})
        return status, body, throttle if kind == "rate_limit" else {}
    status = {"rate_limit": 429, "server_error": status or 503, "bad_request": 422,
              "blocked": 403}.get(kind, 401)
    throttle = {"Retry-After": str(wait)} if kind == "rate_limit" else {}
    return status, {"error": desc or f"fake webhook refused: {kind}"}, throttle


class PlatformServer:
    """The fake platforms; start() before use, stop() after (the fixture does both)."""

    telegram_token = "123456789:AAFakeBotTokenSecretPart_abcdefghij"
    graph_token = "EAAGfakeGraphAccessTokenSecret0123456789"
    graph_account_id = "17841400000000001"
    webhook_secret = "whsec-fake-shared-secret"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.closing = threading.Event()  # set by stop(): releases hung handlers
        self._failures: dict[str, deque[_Failure]] = defaultdict(deque)
        self._requests: list[RecordedRequest] = []
        self.messages: dict[int | str, list[dict[str, Any]]] = defaultdict(list)
        self.blocked_chats: set[int | str] = set()
        self.containers: dict[str, dict[str, Any]] = {}
        self.media: list[dict[str, Any]] = []  # published, newest last
        self.deliveries: dict[str, dict[str, Any]] = {}  # webhook, by idempotency key
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.platform = self  # type: ignore[attr-defined]
        # A short poll interval keeps stop(), and so every test's teardown, fast.
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.02,), daemon=True)
        origin = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self.telegram_base, self.graph_base = f"{origin}/telegram", f"{origin}/graph/v1.0"
        self.webhook_url = f"{origin}/webhook/publish"

    def start(self) -> PlatformServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.closing.set()
        self._httpd.shutdown()  # returns once serve_forever has, so the thread is done
        self._httpd.server_close()

    def fail_next(self, route: str, kind: str, count: int = 1, **params: Any) -> None:
        """Make the next `count` requests to `route` fail as `kind` (after failures already queued)."""
        if route not in ROUTES:
            raise ValueError(f"unknown route {route!r}; routes: {', '.join(ROUTES)}")
        if kind not in KINDS:
            raise ValueError(f"unknown failure kind {kind!r}; kinds: {', '.join(KINDS)}")
        with self._lock:
            self._failures[route].append(_Failure(kind, count, params))

    def requests(self, route: str | None = None) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self._requests if route is None or r.route == route]

    def record(self, request: RecordedRequest) -> _Failure | None:
        """Log the request; return the failure it must suffer, if one is queued."""
        with self._lock:
            self._requests.append(request)
            queue = self._failures.get(request.route)
            if not queue:
                return None
            failure = queue[0]
            failure.remaining -= 1
            if not failure.remaining:
                queue.popleft()
            return failure

    # What the platforms do.
    def telegram(self, method: str, token: str, params: dict[str, Any]) -> Reply:
        if token != self.telegram_token:
            return _telegram_error(401, "Unauthorized")
        chat_id, content = params.get("chat_id"), {"sendMessage": "text", "sendPhoto": "photo"}.get(method)
        if content is None:
            return _telegram_error(404, "Not Found")
        if chat_id in (None, "") or not params.get(content):
            missing = "chat_id" if chat_id in (None, "") else content
            return _telegram_error(400, f"Bad Request: {missing} is empty")
        with self._lock:
            if chat_id in self.blocked_chats:
                return _telegram_error(403, "Forbidden: bot was blocked by the user")
            sent = self.messages[chat_id]  # message ids count up per chat, as in private chats
            message: dict[str, Any] = {"message_id": len(sent) + 1, "date": 1767225600,
                       "chat": {"id": chat_id, "type": "private"},
                       **{k: params[k] for k in ("text", "caption") if k in params}}
            if method == "sendPhoto":
                message["photo"] = [{"file_id": f"photo-{len(sent) + 1}", "width": 90, "height": 90}]
            sent.append(message)
        return 200, {"ok": True, "result": message}, {}

    def graph(self, account: str, edge: str, params: dict[str, str]) -> Reply:
        if params.get("access_token") != self.graph_token:
            return _graph_error(400, "Invalid OAuth access token - Cannot parse access token", 190)
        if account != self.graph_account_id:
            return _graph_error(400, f"Object with ID '{account}' does not exist", 100, 33)
        with self._lock:
            edges = {"media": self._graph_create, "media_publish": self._graph_publish,
                     "media_list": self._graph_list}
            return edges[edge](params) if edge in edges else _graph_error(400, "Unknown path", 2500)

    def _graph_create(self, params: dict[str, str]) -> Reply:
        text, image_url = params.get("caption") or params.get("text"), params.get("image_url")
        if not text and not image_url:
            return _graph_error(400, "(#100) The parameter image_url is required", 100)
        creation_id = str(18000000000000000 + len(self.containers) + 1)
        self.containers[creation_id] = {"text": text, "image_url": image_url, "media_id": None}
        return 200, {"id": creation_id}, {}

    def _graph_publish(self, params: dict[str, str]) -> Reply:
        container = self.containers.get(params.get("creation_id", ""))
        if container is None:
            return _graph_error(400, "Media ID is not available", 9007, 2207027)
        if container["media_id"] is not None:
            return _graph_error(400, "(#100) The container has already been published", 100)
        container["media_id"] = media_id = str(17900000000000000 + len(self.media) + 1)
        self.media.append({"id": media_id, "caption": container["text"], "text": container["text"]})
        return 200, {"id": media_id}, {}

    def _graph_list(self, params: dict[str, str]) -> Reply:
        fields = params.get("fields", "id").split(",")
        items = [{k: m[k] for k in fields if k in m} for m in reversed(self.media)]  # newest first
        start = int(params.get("after") or 0)
        end = start + int(params.get("limit") or 25)
        body: dict[str, Any] = {"data": items[start:end]}
        if end < len(items):
            body["paging"] = {"cursors": {"after": str(end)}, "next": f"{self.graph_base}/?after={end}"}
        return 200, body, {}

    def webhook(self, headers: dict[str, str], raw: bytes, body: Any) -> Reply:
        if not verify_signature(self.webhook_secret, raw, headers.get("x-signature-256")):
            return 401, {"error": "invalid signature"}, {}
        key = headers.get("x-idempotency-key")
        if not key or not headers.get("x-timestamp"):
            return 400, {"error": "X-Idempotency-Key and X-Timestamp are required"}, {}
        with self._lock:  # a receiver that honours the key: a repeat gets the first delivery's id
            first = {"id": f"wh_{len(self.deliveries) + 1}", "payload": body}
            delivery = self.deliveries.setdefault(key, first)
        return 200, {"id": delivery["id"]}, {}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the real APIs do
    timeout = 10  # idle keep-alive connections do not hold threads forever
    disable_nagle_algorithm = True  # headers and body go out in separate writes

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet tests; the recorded requests are the log

    def _serve(self) -> None:
        platform: PlatformServer = self.server.platform  # type: ignore[attr-defined]
        url, headers = urlsplit(self.path), {k.lower(): v for k, v in self.headers.items()}
        query, raw = dict(parse_qsl(url.query)), self.rfile.read(int(headers.get("content-length") or 0))
        body = _parse(headers.get("content-type", ""), raw)
        route, act = self._route(platform, url.path, {**query, **(body if isinstance(body, dict) else {})},
                                 lambda: platform.webhook(headers, raw, body))
        failure = platform.record(RecordedRequest(route, self.command, url.path, query, headers, body, raw))
        if failure is None:
            return self._reply(*act())
        if failure.kind == "raw":
            return self._reply_raw(failure.params)
        if failure.kind not in ("hang", "reset"):
            return self._reply(*_failure_reply(route.split(".")[0], failure.kind, failure.params))
        if failure.params.get("publish", failure.kind == "hang"):
            act()  # the platform acted; only the answer gets lost
        if failure.kind == "reset":
            return self._reset()
        platform.closing.wait(failure.params.get("seconds"))
        self.close_connection = True  # by now the client gave up; it never sees an answer

    do_GET = do_POST = _serve

    def _route(
        self, platform: PlatformServer, path: str, params: dict[str, Any], webhook: Callable[[], Reply]
    ) -> tuple[str, Callable[[], Reply]]:
        parts = path.strip("/").split("/")
        if parts[0] == "telegram" and len(parts) == 3 and parts[1].startswith("bot"):
            return f"telegram.{parts[2]}", lambda: platform.telegram(parts[2], parts[1][3:], params)
        if parts[:2] == ["graph", "v1.0"] and len(parts) == 4:
            edge = "media_list" if self.command == "GET" and parts[3] == "media" else parts[3]
            return f"graph.{edge}", lambda: platform.graph(parts[2], edge, params)
        if path == "/webhook/publish":
            return "webhook", webhook
        return "unknown", lambda: (404, {"error": "no such route"}, {})

    def _reply(self, status: int, body: dict[str, Any], headers: dict[str, str]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        for name, value in {"Content-Type": "application/json", **headers}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _reply_raw(self, params: dict[str, Any]) -> None:
        body = params.get("body", b"")
        data = body.encode() if isinstance(body, str) else bytes(body)
        self.send_response(int(params.get("status", 500)))
        self.send_header("Content-Type", params.get("content_type", "text/html"))
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _reset(self) -> None:
        # SO_LINGER with a zero timeout makes close() send RST instead of FIN.
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()
        self.close_connection = True


def _parse(content_type: str, raw: bytes) -> Any:
    try:
        if content_type.startswith("application/json"):
            return json.loads(raw)
        return dict(parse_qsl(raw.decode())) if content_type.startswith("application/x-www-form") else None
    except ValueError:
        return None


@pytest.fixture
def platform_server() -> Iterator[PlatformServer]:
    server = PlatformServer().start()
    yield server  # pytest runs the teardown below even when the test fails
    server.stop()
