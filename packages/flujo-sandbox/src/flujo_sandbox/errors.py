"""The errors flujo-sandbox raises on purpose.

Failures of the *code* are never exceptions (they are :class:`ExecutionResult` values). These
are failures of the request or of the sandbox itself. Those a user can fix (a bad file name, a
limit a backend cannot enforce, a missing tool on this machine) also derive from
:class:`flujo.domain.errors.UserError`, so ``flujo sandbox ...`` prints them as one line and
exits with code 2.
"""

from __future__ import annotations

from flujo.domain.errors import ConfigError, FlujoError, UserError

__all__ = [
    "SandboxConfigError",
    "SandboxError",
    "SandboxFileError",
    "SandboxLimitError",
    "SandboxRemoteError",
    "SandboxRequestError",
    "SandboxUnavailableError",
    "UnsupportedLanguageError",
]


class SandboxError(FlujoError):
    """Base class of every error flujo-sandbox raises on purpose."""


class SandboxConfigError(SandboxError, ConfigError):
    """``[sandbox]`` is missing something the chosen backend needs (e.g. ``api_url``).

    A :class:`~flujo.domain.errors.ConfigError`, so Flujo reports it as a configuration
    problem rather than a broken plugin."""


class SandboxUnavailableError(SandboxError, UserError):
    """The backend cannot run here (bubblewrap, user namespaces, a client library or the
    service is missing). The message says what and how to fix it."""


class SandboxLimitError(SandboxError, UserError):
    """A limit was requested that this backend cannot enforce (fail closed), or a limit value
    is invalid."""


class SandboxFileError(SandboxError, UserError, ValueError):
    """An input file was rejected: absolute path, ``..``, symlink, or over a count/size cap."""


class UnsupportedLanguageError(SandboxError, UserError, ValueError):
    """The backend does not run this language; the message lists those it does."""


class SandboxRequestError(SandboxError, UserError, ValueError):
    """The request cannot be run as given: code, an argument or a variable that is not
    representable text (a NUL byte in an argument, a lone surrogate), or a field of the wrong
    type. The message names the field."""


class SandboxRemoteError(SandboxError):
    """The remote sandbox service answered with something that is not the contract."""
