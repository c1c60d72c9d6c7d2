"""One root for the errors a person can act on: ``ApplicationError``.

A service raises an ``ApplicationError`` (or a subclass) when it refuses to do what it was asked, with a message
written for the person who asked — staff in the admin, an operator at the command line, a customer in the
portal. The faces turn it into their own way of saying no, never into a traceback:

- the admin (``core.admin``): a red message on the page, naming the field if the error has one;
- management commands (``core.commands.BaseCommand``): ``CommandError`` with the message (exit status 1);
- the portal (``customers.portal.PortalView``): the message on an error page with ``http_status`` (400, 404,
  409, 503), not a 500.

The kind of refusal is a subclass, and decides the HTTP status:

================  ======  ==============================================================================
``InvalidInput``  400     what was given is wrong (a bad date, a malformed file, an amount with too many
                          decimals); ``field`` names the input if there is one
``NotFound``      404     what was named does not exist (or is not the caller's to see)
``NotAllowed``    409     the object's state does not allow it (a finalized invoice, a canceled
                          subscription, an invoice already paid)
``Conflict``      409     someone else changed it meanwhile, or it was already done (reload and retry)
``Unavailable``   503     a service we depend on failed (PDF renderer, payment gateway): try again later;
                          the faces log these with their traceback, they are not the user's fault
================  ======  ==============================================================================

Each app keeps its own exception names (``InvoiceStateError``, ``PaymentError``, …) and derives them from one of
these. Errors that were ``ValueError`` before this root existed still are (``class PaymentError(ApplicationError,
ValueError)``), so code that catches ``ValueError`` keeps working.

This module imports nothing from the project (it is the bottom layer).
"""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)


class ApplicationError(Exception):
    """A refusal with a user-facing ``message``; ``field`` names the input it is about (a form field, a command
    option such as ``--as-of``, a CSV column), ``code`` is a stable machine-readable name for API clients."""

    http_status = 400
    default_message = "The request could not be carried out."

    def __init__(self, message: str | None = None, *, field: str | None = None, code: str | None = None) -> None:
        self.message = str(message) if message is not None else self.default_message
        self.field = field
        self.code = code or _snake_case(type(self).__name__)
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message

    def for_display(self) -> str:
        """The message as a page or a terminal shows it: prefixed by the field it is about, if any."""
        if self.field and not self.message.startswith(self.field):
            return f"{self.field}: {self.message}"
        return self.message


class InvalidInput(ApplicationError):
    """What was given is wrong: a bad value, a malformed file."""

    http_status = 400


class NotFound(ApplicationError):
    """What was named does not exist, or is not the caller's to see."""

    http_status = 404
    default_message = "Not found."


class NotAllowed(ApplicationError):
    """The current state does not allow the operation (a finalized invoice cannot change)."""

    http_status = 409


class Conflict(ApplicationError):
    """Changed by someone else meanwhile, or already done: reload and retry."""

    http_status = 409


class Unavailable(ApplicationError):
    """A service we depend on failed; the operation may succeed later. Not the user's fault: logged with its
    traceback wherever it is shown."""

    http_status = 503
    default_message = "A service we depend on is not available; please try again later."


def log_application_error(exc: ApplicationError, *, where: str) -> None:
    """For the faces that show an error instead of raising it: a refusal is not a failure of ours (INFO); an
    ``Unavailable`` is (ERROR, with its traceback)."""
    if isinstance(exc, Unavailable):
        logger.error("%s: %s", where, exc.message, exc_info=exc)
    else:
        logger.info("%s: %s refused: %s", where, type(exc).__name__, exc.message)


def _snake_case(name: str) -> str:
    return "".join(f"_{char.lower()}" if char.isupper() and index else char.lower() for index, char in enumerate(name))
