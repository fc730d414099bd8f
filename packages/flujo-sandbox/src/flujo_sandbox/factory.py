"""Building the configured sandbox from ``flujo.toml``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flujo_sandbox.settings import Backend, SandboxSettings

if TYPE_CHECKING:
    from flujo.config import FlujoConfig

__all__ = ["SECTION", "build_sandbox", "sandbox_settings"]

SECTION = "sandbox"
"""The ``flujo.toml`` section this plugin owns."""


def sandbox_settings(config: FlujoConfig | None) -> SandboxSettings:
    """The validated ``[sandbox]`` section (defaults when absent or without a config)."""
    if config is None:
        return SandboxSettings()
    return config.section(SECTION, SandboxSettings)


def build_sandbox(settings: SandboxSettings, backend: Backend | None = None) -> Any:
    """The sandbox for ``backend`` (default ``settings.backend``), configured by ``settings``.

    Cheap: no backend probes its environment or connects anywhere until it runs code.
    """
    name = backend or settings.backend
    if name == "local":
        from flujo_sandbox.local import LocalSandbox

        return LocalSandbox(settings)
    if name == "remote":
        from flujo_sandbox.remote import RemoteSandbox

        return RemoteSandbox(settings)
    if name == "docker":
        from flujo_sandbox.docker_backend import DockerSandbox

        return DockerSandbox(settings)
    from flujo_sandbox.e2b_backend import E2BSandbox

    return E2BSandbox(settings)


def configured_sandbox(config: FlujoConfig) -> Any:
    """The sandbox ``[sandbox] backend`` names."""
    return build_sandbox(sandbox_settings(config))
