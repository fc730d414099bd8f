"""Database connection strings in messages: never with their password."""

from __future__ import annotations

import re

# URI form: scheme://user:secret@host/... (a password cannot hold an unencoded @, / ? or #).
_URI_PASSWORD = re.compile(r"(//[^:/@?#]*):[^@/?#]*@")
# Query (?password=...) and libpq keyword form (password=secret or password = 'a b\' c').
_KEYWORD_PASSWORD = re.compile(r"(?i)(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|[^&\s]*)")


def redact_dsn(dsn: str) -> str:
    """``dsn`` without its password, in any of libpq's forms, for errors and listings."""
    return _KEYWORD_PASSWORD.sub(r"\1***", _URI_PASSWORD.sub(r"\1:***@", dsn))
