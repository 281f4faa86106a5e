"""Error types every layer shares, and the one place where failures become a user's message."""
from __future__ import annotations

import functools
from collections.abc import Callable


class NotFoundError(LookupError):
    """A referenced row or file does not exist; the message names what was looked for."""


class ValidationError(ValueError):
    """A value a user gave is refused; the message names the field and the reason."""


class AccessDenied(ValueError):
    """The signed-in user's role or project grants do not allow the action (a ValueError, so every page and
    command that reports refused input reports it the same way)."""


class FinetuneError(ValueError):
    """Settings or labels a model cannot be trained on; the message names the field or file."""


def user_message(exc: BaseException) -> str | None:
    """The one-line message a person sees for an expected failure, or None for a bug."""
    from sqlalchemy.exc import DatabaseError, IntegrityError

    if isinstance(exc, IntegrityError):  # a write that collided with one made at the same moment by another process
        return (f"the database refused a change ({str(exc.orig).splitlines()[0]}): another command may have made "
                "the same change at the same moment; run it again")
    if isinstance(exc, DatabaseError):
        return f"database error: {str(exc.orig).splitlines()[0]}"
    if isinstance(exc, OSError) and exc.strerror:  # the system's reason, without the path (a server's, in a job)
        return f"could not read or write a file: {exc.strerror[0].lower()}{exc.strerror[1:]}"
    if isinstance(exc, MemoryError) or _allocation_failed(exc):
        return "not enough memory for this operation: use smaller sizes or fewer items at once"
    if isinstance(exc, (ValueError, NotFoundError, FileNotFoundError)):
        text = str(exc).strip()
        return text.splitlines()[0] if text else "invalid input"
    return None


def _allocation_failed(exc: BaseException) -> bool:
    """Whether a tensor library could not allocate memory (torch reports it as a RuntimeError, not a MemoryError)."""
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("can't allocate memory" in text or "out of memory" in text)


def file_error_message(exc: BaseException) -> str | None:
    """'PATH: reason' for an operating-system error on a file the user named (a command-line message), else None."""
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        return f"{exc.filename}: {exc.strerror[0].lower()}{exc.strerror[1:]}"
    return None


def friendly_errors(func: Callable) -> Callable:
    """Turn expected failures (bad input, missing rows, unreachable DB, a file that cannot be written or read) into
    a click message and exit 1."""
    import click

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except click.ClickException:
            raise
        except Exception as exc:
            message = file_error_message(exc) or user_message(exc)
            if message is None:
                raise
            raise click.ClickException(message) from None

    return wrapper
