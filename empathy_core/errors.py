"""The one error type whose message a person may see, and how every other error is reported.

``UserError`` (a ``ValueError``) says what to fix: bad input, a missing result file, a model
that cannot be loaded here. Its subclasses name where it came from (``store.StoreError``,
``core.models.ModelUnavailable``, ``cli.CLIError``). Anything else is a bug: it is logged
with its traceback under a short id, and people see only "internal error, logged as ID".
User errors are logged as one line, without a traceback.
"""

from __future__ import annotations

import logging
import uuid

log = logging.getLogger("empathy_core")


class UserError(ValueError):
    """Bad input or an unavailable resource; the message says what to do."""


def report(exc: BaseException, where: str = "") -> str:
    """Log ``exc`` and return the message a person may see.

    A ``UserError`` is logged as one line and its own message is returned. Anything else is
    logged with its traceback under a fresh id, and the returned message names only the id.
    """
    prefix = f"{where}: " if where else ""
    if isinstance(exc, UserError):
        log.info("%suser error: %s", prefix, exc)
        return str(exc)
    ref = uuid.uuid4().hex[:8]
    log.error("%sinternal error %s", prefix, ref, exc_info=(type(exc), exc, exc.__traceback__))
    return f"Internal error, logged as {ref}. The app is still running; try again."
