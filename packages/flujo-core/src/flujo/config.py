"""``flujo.toml``: discovery, strict validation and the effective configuration.

Discovery: ``FLUJO_CONFIG`` if set, else ``flujo.toml`` in the working directory or the
nearest parent. No file is fine (every value has a default).

Sections: the core owns ``[state]``, ``[plugins]`` and ``[run]``; each plugin owns the sections
it declares through the ``flujo_config_sections`` hook. Validation is strict: an unknown key,
a wrong type or a section no installed plugin owns is a :class:`ConfigError` naming the file,
section and key.

Environment overrides, the one place they are defined:

==============================  ==========================================================
``FLUJO_CONFIG``                path of the config file to use
``FLUJO__<SECTION>__<KEY>``     one value, e.g. ``FLUJO__RUN__MAX_REQUESTS=5``;
                                parsed as JSON when it parses, else taken as a string
``FLUJO_STATE_URI``             the state database, the value deployments set most often
                                (same as ``FLUJO__STATE__URI``)
``FLUJO_LOAD_PLUGINS``          allow-list of plugin distributions (empty = none)
``FLUJO_DISABLE_PLUGINS``       plugin distributions not to load
``FLUJO_STRICT_PLUGINS=1``      a plugin that fails to load is an error, not a warning
==============================  ==========================================================
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from flujo.domain.errors import ConfigError
from flujo.domain.models import UsageLimits

if TYPE_CHECKING:
    from flujo.plugins.manager import PluginManager

CONFIG_FILENAME = "flujo.toml"
FIRST_PARTY_SECTIONS = {
    "governance": "flujo-governance",
    "memory": "flujo-memory",
    "sandbox": "flujo-sandbox",
    "eval": "flujo-evals",
}
"""Sections of first-party plugins, so a missing plugin is named in the error."""

M = TypeVar("M", bound=BaseModel)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StateSettings(_Section):
    """``[state]``: where execution state lives."""

    uri: str = "sqlite:///.flujo/flujo.db"
    """``sqlite:///relative/or/absolute.db`` (relative to the config file's folder)."""
    synchronous: Literal["normal", "full"] = "normal"
    """SQLite fsync policy. ``normal`` survives a killed process; ``full`` also a power cut."""
    lease_s: float = Field(default=30.0, gt=0)
    """How long a worker's lease on a running run lasts without a heartbeat (renewed every
    third of it). A run whose worker died can be resumed by another once it expires."""
    pool_size: int = Field(default=10, ge=1)
    """Connections per process (PostgreSQL)."""


class PluginsSettings(_Section):
    """``[plugins]``: which installed plugins not to load."""

    disable: list[str] = Field(default_factory=list)


class RunSettings(_Section):
    """``[run]``: defaults for every run."""

    policies: list[str] = Field(default_factory=list)
    """Registered governance policies to run before every agent, in this order (plugins may
    add theirs from their own sections, through ``flujo_active_policies``)."""
    max_total_tokens: int | None = Field(default=None, ge=0)
    max_requests: int | None = Field(default=None, ge=0)
    max_cost_usd: float | None = Field(default=None, ge=0)
    background_concurrency: int = Field(default=8, ge=1)
    """How many background tasks (indexing, evals, ...) may run at once."""
    drain_timeout_s: float = Field(default=10.0, ge=0)
    """How long closing the runner waits for background work before cancelling it."""

    def usage_limits(self) -> UsageLimits | None:
        """The limits as a :class:`UsageLimits`, or ``None`` when none is set."""
        if (
            self.max_total_tokens is None
            and self.max_requests is None
            and self.max_cost_usd is None
        ):
            return None
        return UsageLimits(self.max_total_tokens, self.max_requests, self.max_cost_usd)


_CORE_MODELS: dict[str, type[_Section]] = {
    "state": StateSettings,
    "plugins": PluginsSettings,
    "run": RunSettings,
}


@dataclass
class FlujoConfig:
    """The validated, effective configuration, with the plugins it was validated against."""

    path: Path | None = None
    state: StateSettings = field(default_factory=StateSettings)
    plugins: PluginsSettings = field(default_factory=PluginsSettings)
    run: RunSettings = field(default_factory=RunSettings)
    sections: dict[str, BaseModel] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    plugin_manager: PluginManager | None = None

    @property
    def root(self) -> Path:
        """The folder relative paths are resolved against: the config file's, else the cwd."""
        return self.path.parent if self.path is not None else Path.cwd()

    def section(self, name: str, model: type[M]) -> M:
        """The validated plugin section ``name`` as ``model`` (defaults when absent)."""
        value = self.sections.get(name)
        if value is None:
            return model()
        if not isinstance(value, model):
            raise ConfigError(f"section [{name}] is a {type(value).__name__}, not {model.__name__}")
        return value

    def to_dict(self) -> dict[str, Any]:
        """The effective configuration (``flujo config show --json``)."""
        data: dict[str, Any] = {
            "state": self.state.model_dump(mode="json"),
            "plugins": self.plugins.model_dump(mode="json"),
            "run": self.run.model_dump(mode="json"),
        }
        for name, section in sorted(self.sections.items()):
            data[name] = section.model_dump(mode="json")
        return data


def find_config_file(
    start: Path | None = None, environ: Mapping[str, str] | None = None
) -> Path | None:
    """``FLUJO_CONFIG``, else the nearest ``flujo.toml`` from ``start`` (the cwd) upwards."""
    env = os.environ if environ is None else environ
    explicit = env.get("FLUJO_CONFIG")
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(f"FLUJO_CONFIG={explicit}: no such file")
        return path.resolve()
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / CONFIG_FILENAME
        if candidate.is_file():
            return candidate
    return None


def read_config_file(path: Path | None) -> dict[str, Any]:
    """The raw TOML tables of ``path`` (``{}`` when ``path`` is ``None``)."""
    if path is None:
        return {}
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None


def _apply_env_overrides(raw: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    merged = {k: dict(v) if isinstance(v, dict) else v for k, v in raw.items()}
    environ = dict(environ)
    if "FLUJO_STATE_URI" in environ:
        environ.setdefault("FLUJO__STATE__URI", environ["FLUJO_STATE_URI"])
    for key, value in environ.items():
        if not key.startswith("FLUJO__"):
            continue
        parts = key[len("FLUJO__") :].lower().split("__")
        if len(parts) != 2 or not all(parts):
            raise ConfigError(f"environment variable {key}: expected FLUJO__<SECTION>__<KEY>")
        section, name = parts
        try:
            parsed: Any = json.loads(value)
        except ValueError:
            parsed = value
        table = merged.setdefault(section, {})
        if not isinstance(table, dict):
            raise ConfigError(f"environment variable {key}: [{section}] is not a table")
        table[name] = parsed
    return merged


def _validate_section(model: type[M], data: Any, where: str) -> M:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a table, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"]) or "?"
        if first["type"] == "extra_forbidden":
            allowed = ", ".join(model.model_fields) or "none"
            raise ConfigError(f"{where}: unknown key {key!r} (allowed: {allowed})") from None
        raise ConfigError(f"{where}: key {key!r}: {first['msg']}") from None


def load_config(
    path: Path | str | None = None,
    *,
    plugin_manager: PluginManager | None = None,
    environ: Mapping[str, str] | None = None,
) -> FlujoConfig:
    """Find, read and validate the configuration, loading plugins on the way.

    Plugins are loaded after ``[plugins]`` is read (so ``disable`` applies before import) and
    before the rest is validated (so their sections are known). Pass ``plugin_manager`` to
    validate against plugins you registered yourself (tests do).
    """
    env = os.environ if environ is None else environ
    file = Path(path).resolve() if path is not None else find_config_file(environ=env)
    if file is not None and path is not None and not file.is_file():
        raise ConfigError(f"{file}: no such config file")
    raw = _apply_env_overrides(read_config_file(file), env)
    label = str(file) if file is not None else "environment"

    plugins = _validate_section(PluginsSettings, raw.get("plugins", {}), f"{label}: [plugins]")
    if plugin_manager is None:
        from flujo.plugins.manager import PluginManager

        plugin_manager = PluginManager()
        plugin_manager.load_entry_points(disable=plugins.disable, environ=env)

    config = FlujoConfig(path=file, plugins=plugins, plugin_manager=plugin_manager)
    config.state = _validate_section(StateSettings, raw.get("state", {}), f"{label}: [state]")
    config.run = _validate_section(RunSettings, raw.get("run", {}), f"{label}: [run]")
    owned = plugin_manager.config_sections()
    disabled = plugin_manager.disabled
    for name, data in raw.items():
        if name in _CORE_MODELS:
            continue
        where = f"{label}: [{name}]"
        if name in owned:
            config.sections[name] = _validate_section(owned[name][0], data, where)
            continue
        package = FIRST_PARTY_SECTIONS.get(name)
        if package is not None and package in disabled:
            config.warnings.append(f"{where} is ignored: plugin {package!r} is disabled")
        elif package is not None:
            raise ConfigError(f"{where} needs the {package!r} plugin: pip install {package}")
        elif disabled:
            config.warnings.append(
                f"{where} is ignored: no loaded plugin owns it (disabled: {', '.join(disabled)})"
            )
        else:
            raise ConfigError(f"{where}: unknown section; no installed plugin owns it")
    return config
