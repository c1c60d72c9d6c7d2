"""gunicorn's access log without portal link secrets (``gunicorn.conf.py`` names this logger class).

A sign-in link (``/portal/login/<token>/``) and a deep link (``/portal/link/<token>/``) carry their secret in the
path, and the confirmation POST carries it again in its ``Referer``. gunicorn writes the request line, the path,
the query and the referer of every request to its access log; this logger passes every text atom through
``core.links.redact_link_tokens`` first, whatever ``access_log_format`` the deployment uses.
"""

from __future__ import annotations

from typing import Any

from gunicorn.glogging import Logger

from core.links import redact_link_tokens


class RedactingLogger(Logger):  # type: ignore[misc]  # gunicorn ships no type hints
    def atoms(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> dict[str, Any]:
        atoms: dict[str, Any] = super().atoms(resp, req, environ, request_time)
        return {key: redact_link_tokens(value) if isinstance(value, str) else value for key, value in atoms.items()}
