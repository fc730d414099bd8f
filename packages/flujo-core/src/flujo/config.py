"""``flujo.toml``: discovery, strict validation and the effective configuration.

Discovery: ``FLUJO_CONFIG`` if set, else ``flujo.toml`` in the working directory or the
nearest parent. No file is fine (every value has a default).

Sections: the core owns ``[state]``, ``[plugins]`` and ``[run]``; each plugin owns the sections
it declares through the ``flujo_config_sections`` hook. Validation is strict: an unknown key,
a wrong type or a section no installed plugin owns is a :class:`ConfigError` naming the file,
section and key.

Whatever the file holds, a problem with it is one :class:`ConfigError` naming the file (and
the line, or the section and key): it must be a regular UTF-8 file of at most
:data:`MAX_CONFIG_BYTES`, valid TOML nested at most :data:`MAX_CONFIG_DEPTH` levels, with no NUL
in a string, and floats must be finite. A bad environment override names its variable.

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
import stat
import threading
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
    "temporal": "flujo-temporal",
}
"""Sections of first-party plugins, so a missing plugin is named in the error."""

M = TypeVar("M", bound=BaseModel)


class _Section(BaseModel):
    # inf and nan pass `gt=0`-style bounds (nan fails them, inf does not): a lease or a
    # timeout of inf is never what was meant.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class StateSettings(_Section):
    """``[state]``: where execution state lives."""

    uri: str = "sqlite:///.flujo/flujo.db"
    """Where state lives; its scheme picks the registered backend: ``sqlite:///relative.db``
    (relative to the config file's folder; ``sqlite:////absolute.db``), ``postgresql://...``,
    a plugin's ``scheme://...``; a plain path is SQLite."""
    synchronous: Literal["normal", "full"] = "normal"
    """SQLite fsync policy. ``normal`` survives a killed process; ``full`` also a power cut."""
    lease_s: float = Field(default=30.0, gt=0)
    """How long a worker's lease on a running run lasts without a heartbeat (renewed every
    third of it). A run whose worker died can be resumed by another once it expires."""
    pool_size: int = Field(default=10, ge=1)
    """Connections per process (PostgreSQL)."""


class PluginsSettings(_Section):
    """``[plugins]``: which installed plugins not to load, and how long one may take to."""

    disable: list[str] = Field(default_factory=list)
    import_timeout_s: float = Field(default=10.0, ge=0)
    """How long importing one plugin may take before it is listed as ``error: import timed
    out`` and every command goes on without it; ``0`` imports on the main thread, no limit."""


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


class EngineSettings(_Section):
    """``[engine]``: where runs execute."""

    kind: str = Field(default="local", min_length=1)
    """The registered engine that executes runs: ``local`` (this process, on the state
    database) or a plugin's (``temporal`` with flujo-temporal). ``flujo run --engine NAME``
    overrides it for one run."""


_CORE_MODELS: dict[str, type[_Section]] = {
    "state": StateSettings,
    "plugins": PluginsSettings,
    "run": RunSettings,
    "engine": EngineSettings,
}


@dataclass
class FlujoConfig:
    """The validated, effective configuration, with the plugins it was validated against."""

    path: Path | None = None
    state: StateSettings = field(default_factory=StateSettings)
    plugins: PluginsSettings = field(default_factory=PluginsSettings)
    run: RunSettings = field(default_factory=RunSettings)
    engine: EngineSettings = field(default_factory=EngineSettings)
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
            "engine": self.engine.model_dump(mode="json"),
        }
        # Every loaded plugin's section, with its defaults when the file does not have it.
        owned = self.plugin_manager.config_sections() if self.plugin_manager is not None else {}
        for name in sorted({*self.sections, *owned}):
            section = self.sections.get(name) or owned[name][0]()
            data[name] = section.model_dump(mode="json")
        return data


def find_config_file(
    start: Path | None = None, environ: Mapping[str, str] | None = None
) -> Path | None:
    """``FLUJO_CONFIG``, else the nearest ``flujo.toml`` from ``start`` (the cwd) upwards.

    Anything *named* ``flujo.toml`` counts, so a directory or a dangling link by that name is
    reported by :func:`read_config_file` instead of silently giving way to a parent's file.
    """
    env = os.environ if environ is None else environ
    explicit = env.get("FLUJO_CONFIG")
    if explicit:
        if not os.path.lexists(explicit):
            raise ConfigError(f"FLUJO_CONFIG={explicit}: no such file")
        return _resolve(Path(explicit), f"FLUJO_CONFIG={explicit}")
    try:
        here = (start or Path.cwd()).resolve()
    except OSError as exc:  # the working directory was removed under us
        raise ConfigError(f"cannot look for {CONFIG_FILENAME}: {exc.strerror}") from None
    for folder in (here, *here.parents):
        candidate = folder / CONFIG_FILENAME
        # lexists, not is_file: it never raises (an unreadable parent just stops nothing).
        if os.path.lexists(candidate):
            return candidate
    return None


def _resolve(path: Path, label: str) -> Path:
    try:
        resolved = path.resolve()
    except (OSError, RuntimeError) as exc:  # 3.11 raises RuntimeError on a symlink loop
        raise ConfigError(f"{label}: cannot resolve the path: {exc}") from None
    if resolved.is_symlink():  # 3.13 stops at a symlink loop without raising
        raise ConfigError(f"{label}: cannot resolve the path: a symlink loop at {resolved}")
    return resolved


MAX_CONFIG_BYTES = 1 << 20
"""A config file larger than this (1 MiB) is refused rather than read into memory."""
MAX_CONFIG_DEPTH = 32
"""Tables and arrays nested deeper than this are refused (no setting needs more)."""


def read_config_file(path: Path | None) -> dict[str, Any]:
    """The raw TOML tables of ``path`` (``{}`` when ``path`` is ``None``).

    Whatever the file holds, the only error is a one-line :class:`ConfigError` naming the
    file (and the line, when known): not a regular file, unreadable, too large, not UTF-8,
    not TOML, nested too deeply, or a string holding a NUL character.
    """
    if path is None:
        return {}
    data = _read_bounded(path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ConfigError(
            f"{path}: line {line}, column {column}: not valid UTF-8 "
            f"(byte 0x{data[exc.start]:02x}); save the file as UTF-8"
        ) from None
    try:
        # An editor's byte-order mark is not content.
        raw = tomllib.loads(text.removeprefix("\ufeff"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(
            f"{path}: not valid TOML: arrays or tables nested too deeply "
            f"(at most {MAX_CONFIG_DEPTH} levels)"
        ) from None
    _check_values(raw, str(path))
    return raw


def _read_bounded(path: Path) -> bytes:
    # O_NONBLOCK: a FIFO named flujo.toml must not block the command before fstat refuses it.
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file (a dangling link?)") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise ConfigError(f"{path}: is a directory, not a config file")
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"{path}: not a regular file")
        if info.st_size > MAX_CONFIG_BYTES:
            raise ConfigError(
                f"{path}: {info.st_size} bytes; a config file may be at most "
                f"{MAX_CONFIG_BYTES} bytes"
            )
        chunks: list[bytes] = []
        size = 0
        while size <= MAX_CONFIG_BYTES:  # the file may grow after fstat
            chunk = os.read(fd, MAX_CONFIG_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if size > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_CONFIG_BYTES} bytes")
    return b"".join(chunks)


def _check_values(value: Any, label: str) -> None:
    """Refuse nesting deeper than :data:`MAX_CONFIG_DEPTH` and strings holding a NUL.

    Iterative, so a hostile document cannot exhaust the stack here or (once accepted) in
    validation and ``config show`` further on; a NUL would reach paths and URIs, where it is
    an ``internal error`` instead of a config one.
    """
    stack: list[tuple[Any, tuple[str, ...]]] = [(value, ())]
    while stack:
        item, where = stack.pop()
        if len(where) > MAX_CONFIG_DEPTH:
            raise ConfigError(
                f"{label}: {_dotted(where[:4])}...: nested more than {MAX_CONFIG_DEPTH} levels"
            )
        if isinstance(item, dict):
            for key, sub in item.items():
                if "\0" in key:
                    raise ConfigError(f"{label}: key {_dotted((*where, key))!r}: contains NUL")
                stack.append((sub, (*where, key)))
        elif isinstance(item, list):
            stack.extend((sub, (*where, f"[{i}]")) for i, sub in enumerate(item))
        elif isinstance(item, str) and "\0" in item:
            raise ConfigError(f"{label}: key {_dotted(where)!r}: a string contains NUL")


def _dotted(where: tuple[str, ...]) -> str:
    return ".".join(where).replace(".[", "[")


def _apply_env_overrides(
    raw: dict[str, Any], environ: Mapping[str, str]
) -> tuple[dict[str, Any], dict[tuple[str, str], str]]:
    """``raw`` with the ``FLUJO__SECTION__KEY`` values merged in, and for each value set that
    way, ``{(section, key): variable}`` so an invalid one is reported by its variable."""
    merged = {k: dict(v) if isinstance(v, dict) else v for k, v in raw.items()}
    origins: dict[tuple[str, str], str] = {}
    environ = dict(environ)
    aliases: dict[str, str] = {}
    if "FLUJO_STATE_URI" in environ and "FLUJO__STATE__URI" not in environ:
        environ["FLUJO__STATE__URI"] = environ["FLUJO_STATE_URI"]
        aliases["FLUJO__STATE__URI"] = "FLUJO_STATE_URI"
    for key, value in sorted(environ.items()):
        if not key.startswith("FLUJO__"):
            continue
        parts = key[len("FLUJO__") :].lower().split("__")
        if len(parts) != 2 or not all(parts):
            raise ConfigError(f"environment variable {key}: expected FLUJO__<SECTION>__<KEY>")
        section, name = parts
        variable = aliases.get(key, key)
        try:
            value.encode("utf-8")  # undecodable bytes arrive as lone surrogates
        except UnicodeEncodeError:
            raise ConfigError(f"environment variable {variable}: not valid UTF-8") from None
        try:
            parsed: Any = json.loads(value)
        except ValueError:
            parsed = value
        except RecursionError:
            raise ConfigError(
                f"environment variable {variable}: JSON nested too deeply "
                f"(at most {MAX_CONFIG_DEPTH} levels)"
            ) from None
        _check_values(parsed, f"environment variable {variable}")
        table = merged.setdefault(section, {})
        if not isinstance(table, dict):
            raise ConfigError(f"environment variable {key}: [{section}] is not a table")
        table[name] = parsed
        origins[(section, name)] = variable
    return merged, origins


def _validate_section(
    model: type[M], data: Any, where: str, env: Mapping[str, str] | None = None
) -> M:
    """``data`` validated as ``model``; ``env`` maps keys set by environment variables to the
    variable, which the error then names instead of the file."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a table, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"]) or "?"
        variable = (env or {}).get(str(first["loc"][0])) if first["loc"] else None
        if variable is not None:
            where = f"environment variable {variable}: {where.rpartition(': ')[2]}"
        if first["type"] == "extra_forbidden":
            allowed = ", ".join(model.model_fields) or "none"
            raise ConfigError(f"{where}: unknown key {key!r} (allowed: {allowed})") from None
        raise ConfigError(f"{where}: key {key!r}: {first['msg']}") from None


def _env_keys(origins: Mapping[tuple[str, str], str], section: str) -> dict[str, str]:
    return {key: var for (sec, key), var in origins.items() if sec == section}


def read_plugins_settings(
    environ: Mapping[str, str] | None = None,
) -> tuple[Path | None, PluginsSettings]:
    """The config file found and its ``[plugins]`` table (environment overrides applied),
    what is needed before any plugin is imported (the CLI reads only this at startup)."""
    env = os.environ if environ is None else environ
    file = find_config_file(environ=env)
    raw, origins = _apply_env_overrides(read_config_file(file), env)
    label = str(file) if file is not None else "environment"
    settings = _validate_section(
        PluginsSettings,
        raw.get("plugins", {}),
        f"{label}: [plugins]",
        _env_keys(origins, "plugins"),
    )
    return file, settings


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
    if path is not None and not os.path.lexists(path):
        raise ConfigError(f"{Path(path).absolute()}: no such config file")
    file = _resolve(Path(path), str(path)) if path is not None else find_config_file(environ=env)
    from_file = read_config_file(file)
    raw, origins = _apply_env_overrides(from_file, env)
    label = str(file) if file is not None else "environment"

    def validate(model: type[M], name: str, data: Any) -> M:
        return _validate_section(model, data, f"{label}: [{name}]", _env_keys(origins, name))

    plugins = validate(PluginsSettings, "plugins", raw.get("plugins", {}))
    if plugin_manager is None:
        from flujo.plugins.manager import PluginManager

        plugin_manager = PluginManager()
        plugin_manager.load_entry_points(
            disable=plugins.disable, environ=env, import_timeout_s=plugins.import_timeout_s
        )

    config = FlujoConfig(path=file, plugins=plugins, plugin_manager=plugin_manager)
    config.state = validate(StateSettings, "state", raw.get("state", {}))
    config.run = validate(RunSettings, "run", raw.get("run", {}))
    config.engine = validate(EngineSettings, "engine", raw.get("engine", {}))
    owned = plugin_manager.config_sections()
    disabled = plugin_manager.disabled
    for name, data in raw.items():
        if name in _CORE_MODELS:
            continue
        where = f"{label}: [{name}]"
        if name not in from_file:  # the section exists only through environment variables
            variable = min(var for (sec, _), var in origins.items() if sec == name)
            where = f"environment variable {variable}: [{name}]"
        if name in owned:
            config.sections[name] = validate(owned[name][0], name, data)
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


# The configuration of this folder, as this process loaded it for code that was given none
# (an agent's tool ids, flujo.plugin.create, a runner) or as the running `flujo` command did:
# with the key it was loaded under, so a changed flujo.toml, folder or FLUJO variable is a
# new load.
_shared: tuple[tuple[object, ...], FlujoConfig] | None = None
_shared_lock = threading.Lock()


def _shared_key() -> tuple[object, ...]:
    file = find_config_file()
    version: tuple[int, ...] | None = None
    if file is not None:
        try:
            st = os.stat(file)
            version = (st.st_mtime_ns, st.st_size, st.st_ino)
        except OSError:
            version = None  # load_config reports it
    env = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("FLUJO")))
    # Without a file, relative paths are the cwd's (FlujoConfig.root).
    return (file, version, env, None if file is not None else os.getcwd())


def shared_config() -> FlujoConfig:
    """:func:`load_config` of the current folder, loaded once per process (and again when the
    file, the folder or a ``FLUJO*`` variable changes): what code given no configuration
    uses, so agents built at import and the runner started after them share one plugin
    manager instead of loading every plugin again."""
    global _shared
    key = _shared_key()
    with _shared_lock:
        if _shared is not None and _shared[0] == key:
            return _shared[1]
        config = load_config()
        _shared = (key, config)
        return config


def loaded_shared_config() -> FlujoConfig | None:
    """The :func:`shared_config` when one is loaded and still current, else ``None`` (nothing
    is loaded)."""
    key = _shared_key()
    with _shared_lock:
        return _shared[1] if _shared is not None and _shared[0] == key else None


def share_config(config: FlujoConfig) -> None:
    """Make ``config``, just loaded by :func:`load_config` for the current folder (the
    ``flujo`` command's), the :func:`shared_config`."""
    global _shared
    key = _shared_key()
    with _shared_lock:
        _shared = (key, config)
