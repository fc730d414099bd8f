"""Building the configured sandbox from ``flujo.toml``."""

from __future__ import annotations

from typing import TYPE_CHECKING, get_args

from flujo.domain.errors import ConfigError
from flujo_sandbox.errors import SandboxConfigError
from flujo_sandbox.settings import Backend, SandboxSettings

if TYPE_CHECKING:
    from flujo.config import FlujoConfig
    from flujo.domain.interfaces import SandboxProtocol

__all__ = [
    "AUTO",
    "SECTION",
    "auto_backend",
    "build_sandbox",
    "check_backend",
    "configured_sandbox",
    "sandbox_settings",
]

BUILT_IN: tuple[Backend, ...] = get_args(Backend)

SECTION = "sandbox"
"""The ``flujo.toml`` section this plugin owns."""

AUTO = "auto"
"""``[sandbox] backend = "auto"`` (the default): the sandbox configured or found here, see
:func:`auto_backend`."""


def sandbox_settings(config: FlujoConfig | None) -> SandboxSettings:
    """The validated ``[sandbox]`` section (defaults when absent or without a config)."""
    if config is None:
        return SandboxSettings()
    return config.section(SECTION, SandboxSettings)


def build_sandbox(settings: SandboxSettings, name: Backend) -> SandboxProtocol:
    """This package's sandbox ``name``, configured by ``settings``.

    Cheap: no backend probes its environment or connects anywhere until it runs code. To
    build whichever sandbox is configured (another plugin's included), use
    :func:`configured_sandbox`.
    """
    if name == "local":
        from flujo_sandbox.local import LocalSandbox

        return LocalSandbox(settings)
    if name == "remote":
        from flujo_sandbox.remote import RemoteSandbox

        return RemoteSandbox(settings)
    if name == "docker":
        from flujo_sandbox.docker_backend import DockerSandbox

        return DockerSandbox(settings)
    if name == "e2b":
        from flujo_sandbox.e2b_backend import E2BSandbox

        return E2BSandbox(settings)
    raise ConfigError(f"unknown sandbox {name!r}; built in: {', '.join(BUILT_IN)}")


def configured_sandbox(config: FlujoConfig | None, name: str | None = None) -> SandboxProtocol:
    """The sandbox registered as ``name`` (default ``[sandbox] backend``), from whichever
    plugin registered it.

    Goes through the plugin registry, so another plugin's sandbox is chosen the same way as
    this package's, and an unknown name is a :class:`ConfigError` listing every registered
    name and its plugin. Without a plugin manager only the built-in backends exist.
    """
    chosen = check_backend(config, name)
    manager = config.plugin_manager if config is not None else None
    if manager is None or config is None:
        return build_sandbox(sandbox_settings(config), chosen)  # type: ignore[arg-type]
    sandbox: SandboxProtocol = manager.registry.create("sandboxes", chosen, config)
    return sandbox


def check_backend(config: FlujoConfig | None, name: str | None = None) -> str:
    """``name`` (default ``[sandbox] backend``) if a sandbox is registered under it, else a
    :class:`ConfigError` saying where the name came from and listing the registered ones.

    ``auto`` is resolved first (:func:`auto_backend`); ``remote`` without an ``api_url`` is an
    error saying which backend this machine can run instead and how to choose it.
    """
    where = "--backend" if name else "[sandbox] backend"
    settings = sandbox_settings(config)
    chosen = name or settings.backend
    if chosen == AUTO:
        chosen = auto_backend(settings)
    elif chosen == "remote" and not settings.api_url:
        raise SandboxConfigError(
            f"{where} remote needs [sandbox] api_url (e.g. http://127.0.0.1:8787, served by "
            f"`flujo sandbox serve`){_local_hint(settings)}"
        )
    manager = config.plugin_manager if config is not None else None
    if manager is None:
        if chosen not in BUILT_IN:
            raise ConfigError(
                f"{where}: unknown sandbox {chosen!r}; built in: {', '.join(BUILT_IN)} (another "
                "plugin's sandbox needs a config with plugins loaded: flujo.load_config())"
            )
    elif chosen not in manager.registry.names("sandboxes"):
        raise ConfigError(f"{where}: {manager.registry.unknown('sandboxes', chosen)}")
    return chosen


def auto_backend(settings: SandboxSettings) -> Backend:
    """The backend ``auto`` stands for: ``remote`` when ``[sandbox] api_url`` names a
    service, else ``local`` when bubblewrap can run and contain code here (the check
    ``flujo sandbox doctor`` runs, cached per process).

    ``docker`` and ``e2b`` are never chosen for the user: one needs a daemon and an image they
    chose, the other sends the code to a cloud service. Nothing found is a
    :class:`SandboxConfigError` (exit 2) saying what was checked and how to choose; ``auto``
    never falls back to running code unsandboxed.
    """
    if settings.api_url:
        return "remote"
    from flujo_sandbox.local import probe

    report = probe(settings)
    if report.ok:
        return "local"
    raise SandboxConfigError(
        'no sandbox can run here ([sandbox] backend = "auto"): local: '
        + "; ".join(report.problems)
        + "; remote: [sandbox] api_url is not set. Install bubblewrap, or choose one with "
        '[sandbox] backend = "remote" (and api_url), "docker" or "e2b", or --backend NAME '
        "(`flujo sandbox doctor` says what this machine has)"
    )


def _local_hint(settings: SandboxSettings) -> str:
    """For an error about another backend: how to use ``local`` instead, when it can run."""
    from flujo_sandbox.local import probe

    if not probe(settings).ok:
        return ""
    return (
        "; `flujo sandbox doctor` finds local available here: pass --backend local or set "
        '[sandbox] backend = "local" (or "auto")'
    )
