"""How `jobctl` and the platform's processes end on an error.

One line on stderr, `error: ...`, naming the setting or argument, and an exit code that says
whose move it is: 2 when the command or its settings are wrong (fix them; trying again
changes nothing), 1 when something failed at run time (a service down, a refused operation).
A traceback is printed only when asked for, with `--debug` or `JOBS_LOG_LEVEL=DEBUG`: an
operator who mistyped a setting needs the setting's name, not twenty lines of stack.
"""

from __future__ import annotations

import os
import sys
import traceback
from contextlib import contextmanager
from typing import Iterator, NoReturn, Sequence

import click

from shared.errors import ConfigurationError, PlatformError, ValidationError

USAGE = 2
FAILURE = 1
INTERRUPTED = 130
DEBUG_FLAG = "--debug"


def debugging(argv: Sequence[str] | None = None) -> bool:
    argv = sys.argv[1:] if argv is None else argv
    return DEBUG_FLAG in argv or os.environ.get("JOBS_LOG_LEVEL", "").strip().upper() == "DEBUG"


def exit_code(exc: BaseException) -> int:
    if isinstance(exc, (ConfigurationError, ValidationError, click.UsageError)):
        return USAGE
    if isinstance(exc, click.ClickException):
        return exc.exit_code
    return FAILURE


def one_line(exc: BaseException) -> str:
    """The error as one line: click's own wording for usage errors, else the message."""
    if isinstance(exc, click.ClickException):
        text = exc.format_message()
    elif isinstance(exc, PlatformError):
        text = str(exc)
    else:
        text = f"unexpected {type(exc).__name__}: {exc} (run with {DEBUG_FLAG} for the traceback)"
    return " ".join(text.split()) or type(exc).__name__


def fail(exc: BaseException, argv: Sequence[str] | None = None) -> NoReturn:
    if debugging(argv):
        traceback.print_exception(exc)
    click.echo(f"error: {one_line(exc)}", err=True)
    sys.exit(exit_code(exc))


def as_click(exc: PlatformError) -> click.ClickException:
    """A platform error as click's exception, keeping the exit code this module gives it."""
    error = click.ClickException(str(exc))
    error.exit_code = exit_code(exc)
    return error


@contextmanager
def one_line_errors(argv: Sequence[str] | None = None) -> Iterator[None]:
    """Run a process's start-up (or a whole command) so that any error ends it as one line."""
    try:
        yield
    except SystemExit:
        raise
    except KeyboardInterrupt:
        sys.exit(INTERRUPTED)
    except click.Abort:
        click.echo("error: aborted", err=True)
        sys.exit(FAILURE)
    except BaseException as exc:  # noqa: BLE001 - the one place every error becomes one line
        fail(exc, argv)
