"""`jobctl users | proxies | accounts | posts | messages`: drive the three workloads by hand.

Everything goes through `shared.workloads`, as a product would call it. Secrets (proxy
passwords, bot and OAuth tokens, webhook secrets) are never command-line arguments, which
shell history and `ps` would keep: they are prompted for without echo, or read from stdin
(`printf '%s\\n' "$TOKEN" | jobctl ...`).
"""

from __future__ import annotations

import sys
from datetime import datetime, timedelta
from typing import Any, Callable, Iterable

import click
from sqlalchemy import func, select

from shared.cli.operator import TIME, database, emit_json, json_option, refusals_as_errors, table
from shared.models.domain import ProxyHealthLog
from shared.models.states import ProxyType, SocialPlatform
from shared.workloads import messages as message_service
from shared.workloads import posts as post_service
from shared.workloads import proxies as proxy_service

PROXY_COLUMNS = ("id", "type", "host", "port", "username", "status", "health_score", "consecutive_failures",
                 "last_latency_ms", "last_checked_at")
LOG_COLUMNS = ("checked_at", "ok", "latency_ms", "http_status", "error_class", "exit_ip", "error_message")
POST_COLUMNS = ("id", "user_id", "state", "scheduled_at", "published_at", "content", "error_message")
PUBLICATION_COLUMNS = ("id", "social_account_id", "state", "platform_post_id", "published_at", "error_message")
SWEEP_COLUMNS = ("id", "started_at", "finished_at", "checked", "total", "healthy", "batches", "seconds")
MESSAGE_COLUMNS = ("id", "user_id", "state", "send_at", "sent_at", "text", "failure_reason")
WIDTHS = {"content": 40, "text": 40, "error_message": 60, "failure_reason": 60}


def _secret(label: str) -> str:
    # Hidden prompt on a terminal; a line of stdin otherwise. Never an argument, never echoed.
    stdin = sys.stdin
    value = str(click.prompt(label, hide_input=True)) if stdin.isatty() else stdin.readline()
    if not value.strip():
        raise click.UsageError(f"no {label} given (type it at the prompt, or pipe it to stdin)")
    return value.strip()


def _one_time(at: datetime | None, delay: float | None) -> None:
    if at is not None and delay is not None:
        raise click.BadParameter("give --at or --in, not both", param_hint="--in")


def _when(session: Any, at: datetime | None, delay: float | None) -> datetime | None:
    """--at as given; --in counted from the database's clock, the one the fan-outs compare due
    times with, never this host's."""
    if delay is None:
        return at
    now: datetime = session.scalar(select(func.now()))
    return now + timedelta(seconds=delay)


def _rows(objects: Iterable[Any], columns: Iterable[str]) -> list[dict[str, Any]]:
    return [{c: getattr(o, c) for c in columns} for o in objects]


def _show(rows: list[dict[str, Any]], columns: tuple[str, ...], as_json: bool) -> None:
    if as_json:
        emit_json(rows)
    else:
        click.echo(table(rows, columns, WIDTHS))


def _in_session(work: Callable[[Any], Any]) -> Any:
    with database().session() as session:
        return work(session)


# -- users and their Telegram connections --------------------------------------------------------

@click.group()
def users() -> None:
    """Users, and the Telegram connection their proactive messages go to."""


@users.command("add")
@click.argument("external_id")
@click.option("--name", help="Display name.")
@refusals_as_errors
def add_user(external_id: str, name: str | None) -> None:
    """Add a user (EXTERNAL_ID: the product's id for them)."""
    user_id = _in_session(lambda s: message_service.add_user(s, external_id=external_id, display_name=name).id)
    click.echo(f"user {user_id}")


@users.command("connect-telegram")
@click.argument("user_id", type=int)
@click.option("--chat-id", type=int, required=True, help="The chat with the user (their Telegram user id).")
@refusals_as_errors
def connect_telegram(user_id: int, chat_id: int) -> None:
    """Make the user's active Telegram connection; the bot token is prompted for (or read from stdin)."""
    token = _secret("bot token")
    connection_id = _in_session(lambda s: message_service.connect_telegram(
        s, user_id=user_id, chat_id=chat_id, bot_token=token).id)
    click.echo(f"telegram connection {connection_id} (active)")


# -- proxies -----------------------------------------------------------------------------------

@click.group()
def proxies() -> None:
    """Proxies and their health checks."""


@proxies.command("add")
@click.argument("type", type=click.Choice([t.value for t in ProxyType]))
@click.argument("host")
@click.argument("port", type=click.IntRange(1, 65535))
@click.option("--username", help="User name (SOCKS4: the user id).")
@click.option("--password", "with_password", is_flag=True, help="Prompt for the password (or read it from stdin).")
@refusals_as_errors
def add_proxy(type: str, host: str, port: int, username: str | None, with_password: bool) -> None:
    """Add a proxy: `unchecked`, no score, until its first check (at the next fan-out, or now:
    `jobctl proxies check ID`)."""
    password = _secret("proxy password") if with_password else None
    proxy_id = _in_session(lambda s: proxy_service.add_proxy(
        s, type=type, host=host, port=port, username=username, password=password).id)
    click.echo(f"proxy {proxy_id}")


@proxies.command("list")
@json_option
@refusals_as_errors
def list_proxies(as_json: bool) -> None:
    """Every proxy with its status, score (none while unchecked) and last check (never its password)."""
    _show(_in_session(lambda s: _rows(proxy_service.list_proxies(s), PROXY_COLUMNS)), PROXY_COLUMNS, as_json)


@proxies.command("logs")
@click.argument("proxy_id", type=int)
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@json_option
@refusals_as_errors
def proxy_logs(proxy_id: int, limit: int, as_json: bool) -> None:
    """A proxy's latest health checks, newest first."""
    query = (select(ProxyHealthLog).where(ProxyHealthLog.proxy_id == proxy_id)
             .order_by(ProxyHealthLog.id.desc()).limit(limit))
    _show(_in_session(lambda s: _rows(s.scalars(query), LOG_COLUMNS)), LOG_COLUMNS, as_json)


@proxies.command("check")
@click.argument("proxy_id", type=int)
@refusals_as_errors
def check_proxy(proxy_id: int) -> None:
    """Check one proxy now (a check already under way is not doubled)."""
    click.echo(f"job {_in_session(lambda s: proxy_service.enqueue_check(s, proxy_id))}")


@proxies.command("sweeps")
@click.option("--limit", type=click.IntRange(1, 1000), default=10, show_default=True)
@json_option
@refusals_as_errors
def proxy_sweeps(limit: int, as_json: bool) -> None:
    """The latest sweeps, newest first: started, finished (empty while running), proxies checked
    of the total, how many were healthy, check jobs, and seconds (to the finish, or so far)."""
    _show(_in_session(lambda s: _rows(proxy_service.list_sweeps(s, limit), SWEEP_COLUMNS)), SWEEP_COLUMNS, as_json)


@proxies.command("enable")
@click.argument("proxy_id", type=int)
@refusals_as_errors
def enable_proxy(proxy_id: int) -> None:
    """Enable a (disabled) proxy: active (unchecked if never checked), failure streak reset."""
    _in_session(lambda s: proxy_service.set_proxy_enabled(s, proxy_id, True))
    click.echo(f"proxy {proxy_id} enabled")


@proxies.command("disable")
@click.argument("proxy_id", type=int)
@refusals_as_errors
def disable_proxy(proxy_id: int) -> None:
    """Disable a proxy: no more checks until it is enabled."""
    _in_session(lambda s: proxy_service.set_proxy_enabled(s, proxy_id, False))
    click.echo(f"proxy {proxy_id} disabled")


# -- social accounts and posts -----------------------------------------------------------------

@click.group()
def accounts() -> None:
    """Social accounts posts are published to."""


@accounts.command("add")
@click.argument("user_id", type=int)
@click.argument("platform", type=click.Choice([p.value for p in SocialPlatform]))
@click.argument("external_id")
@click.option("--url", help="Webhook accounts: the endpoint posts are POSTed to.")
@refusals_as_errors
def add_account(user_id: int, platform: str, external_id: str, url: str | None) -> None:
    """Add an account. EXTERNAL_ID: the Telegram channel (@name or -100...), the Graph account id,
    or a name for a webhook. The token (bot token, OAuth token, webhook secret) is prompted for."""
    token = _secret("token")
    account_id = _in_session(lambda s: post_service.add_social_account(
        s, user_id=user_id, platform=platform, external_id=external_id, token=token, url=url).id)
    click.echo(f"social account {account_id}")


@accounts.command("set-token")
@click.argument("account_id", type=int)
@refusals_as_errors
def set_account_token(account_id: int) -> None:
    """Reconnect an (expired) account with a new token, prompted for."""
    token = _secret("token")
    _in_session(lambda s: post_service.set_account_token(s, account_id, token))
    click.echo(f"social account {account_id} active")


@click.group()
def posts() -> None:
    """Scheduled posts and their publications."""


@posts.command("add")
@click.argument("user_id", type=int)
@click.argument("content")
@click.option("--account", "account_ids", type=int, multiple=True, required=True, help="Target account id (repeatable).")
@click.option("--media-url", help="An image to publish with the text.")
@click.option("--at", type=TIME, help="When to publish: ISO 8601 (UTC unless an offset is given). Default: now.")
@click.option("--in", "delay", type=float, help="Publish in this many seconds.")
@refusals_as_errors
def add_post(user_id: int, content: str, account_ids: tuple[int, ...], media_url: str | None,
             at: datetime | None, delay: float | None) -> None:
    """Schedule a post to one or more accounts."""
    _one_time(at, delay)
    post_id = _in_session(lambda s: post_service.create_post(
        s, user_id=user_id, content=content, account_ids=account_ids, scheduled_at=_when(s, at, delay),
        media_url=media_url).id)
    click.echo(f"post {post_id} (scheduled)")


@posts.command("list")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@json_option
@refusals_as_errors
def list_posts(limit: int, as_json: bool) -> None:
    """The latest posts, newest first."""
    _show(_in_session(lambda s: _rows(post_service.list_posts(s, limit), POST_COLUMNS)), POST_COLUMNS, as_json)


@posts.command("show")
@click.argument("post_id", type=int)
@json_option
@refusals_as_errors
def show_post(post_id: int, as_json: bool) -> None:
    """A post's publications: state, platform post id, error."""
    rows = _in_session(lambda s: _rows(post_service.publications_of(s, post_id), PUBLICATION_COLUMNS))
    _show(rows, PUBLICATION_COLUMNS, as_json)


@posts.command("cancel")
@click.argument("post_id", type=int)
@refusals_as_errors
def cancel_post(post_id: int) -> None:
    """Cancel a post that has not started publishing."""
    _in_session(lambda s: post_service.cancel_post(s, post_id))
    click.echo(f"post {post_id} cancelled")


@posts.command("resolve")
@click.argument("publication_id", type=int)
@click.option("--published", "platform_post_id", help="It was published, under this platform post id.")
@click.option("--failed", "failed_reason", help="It was not published; why.")
@refusals_as_errors
def resolve_publication(publication_id: int, platform_post_id: str | None, failed_reason: str | None) -> None:
    """Settle a publication in needs_review (check the platform by hand first)."""
    state = _in_session(lambda s: post_service.resolve_publication(
        s, publication_id, platform_post_id=platform_post_id, failed_reason=failed_reason).state)
    click.echo(f"publication {publication_id} {state}")


# -- proactive messages ------------------------------------------------------------------------

@click.group()
def messages() -> None:
    """Proactive Telegram messages."""


@messages.command("add")
@click.argument("user_id", type=int)
@click.argument("text")
@click.option("--at", type=TIME, help="When to send: ISO 8601 (UTC unless an offset is given). Default: now.")
@click.option("--in", "delay", type=float, help="Send in this many seconds.")
@refusals_as_errors
def add_message(user_id: int, text: str, at: datetime | None, delay: float | None) -> None:
    """Queue a message to the user's active Telegram connection."""
    _one_time(at, delay)
    message_id = _in_session(lambda s: message_service.create_message(
        s, user_id=user_id, text=text, send_at=_when(s, at, delay)).id)
    click.echo(f"message {message_id} (pending)")


@messages.command("list")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@json_option
@refusals_as_errors
def list_messages(limit: int, as_json: bool) -> None:
    """The latest messages, newest first."""
    rows = _in_session(lambda s: _rows(message_service.list_messages(s, limit), MESSAGE_COLUMNS))
    _show(rows, MESSAGE_COLUMNS, as_json)


@messages.command("resolve")
@click.argument("message_id", type=int)
@click.argument("verdict", type=click.Choice(["sent", "failed", "resend"]))
@refusals_as_errors
def resolve_message(message_id: int, verdict: str) -> None:
    """Settle a message in needs_review: it was sent, it was not (failed), or send it again."""
    state = _in_session(lambda s: message_service.resolve_message(s, message_id, verdict).state)
    click.echo(f"message {message_id} {state}" + (" (sent again by the next fan-out)" if verdict == "resend" else ""))

