"""Discovering, loading and listing plugins.

Plugins are found through the ``flujo.plugins`` entry-point group. Each one is loaded and
registered inside its own ``try``: a plugin that fails is recorded with its error and skipped,
and the host keeps working (unless ``FLUJO_STRICT_PLUGINS=1``). Allow and deny lists are
applied *before* a plugin is imported:

- ``FLUJO_LOAD_PLUGINS``: comma list of distribution names to load; set but empty loads none.
- ``FLUJO_DISABLE_PLUGINS``: comma list of distribution names not to load.
- ``[plugins] disable = [...]`` in ``flujo.toml``: the same, from config.

Isolation covers every exception a plugin can raise, ``BaseException`` included (a plugin
calling ``sys.exit()`` or raising ``KeyboardInterrupt`` itself is withdrawn and listed as
``error``), but not a real Ctrl-C, which still stops the program:

- each plugin is imported on its own daemon thread, which catches whatever the import raises,
  while the main thread waits at most ``[plugins] import_timeout_s`` (default 10 s; ``0``
  imports on the main thread with no limit). A plugin whose import hangs is listed as
  ``error: import timed out after 10s`` and the command goes on without it (its thread is
  abandoned). SIGINT is always delivered to the main thread, so Ctrl-C interrupts the wait;
- registration hooks and ``flujo_register_commands`` run on the main thread under a SIGINT
  watch: a ``KeyboardInterrupt`` is re-raised only if a SIGINT really arrived;
- observers (``flujo_step_completed``, ...) are isolated from everything but
  ``KeyboardInterrupt``: during a run a Ctrl-C cannot be told from a plugin's own, and
  stopping is the safe reading.
"""

from __future__ import annotations

import inspect
import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import pluggy

from flujo.domain.errors import FlujoError, PluginError
from flujo.plugins import hookspecs
from flujo.plugins.registry import KINDS, Kind, Registry

if TYPE_CHECKING:
    import click
    from pydantic import BaseModel

    from flujo.domain.interfaces import Migration

ENTRY_POINT_GROUP = "flujo.plugins"
CORE_SECTIONS = frozenset({"state", "plugins", "run", "engine"})
_log = logging.getLogger("flujo.plugins")

Status = Literal["ok", "error", "disabled"]


def normalize_name(name: str) -> str:
    """Distribution names compare case-insensitively, with ``-``, ``_`` and ``.`` alike."""
    return name.strip().lower().replace("_", "-").replace(".", "-")


def hook_names() -> frozenset[str]:
    """The name of every hook a plugin may implement (the specs in ``flujo.plugins.hookspecs``)."""
    marker = f"{hookspecs.PROJECT_NAME}_spec"  # the attribute pluggy's HookspecMarker sets
    return frozenset(
        name
        for name, value in vars(hookspecs).items()
        if name.startswith("flujo_") and hasattr(value, marker)
    )


def _env_list(environ: Mapping[str, str], key: str) -> list[str] | None:
    raw = environ.get(key)
    if raw is None:
        return None
    return [normalize_name(p) for p in raw.split(",") if p.strip()]


@dataclass(slots=True)
class PluginInfo:
    """One plugin as ``flujo plugins`` shows it."""

    name: str
    version: str | None
    entry_point: str
    status: Status = "ok"
    error: str | None = None
    hooks: list[str] = field(default_factory=list)
    registered: dict[str, list[str]] = field(default_factory=dict)
    sections: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of ``flujo plugins --json``."""
        return {
            "name": self.name,
            "version": self.version,
            "entry_point": self.entry_point,
            "hooks": self.hooks,
            "registered": self.registered,
            "sections": self.sections,
            "status": self.status,
            "error": self.error,
        }


def _unsupported(impl: pluggy.HookImpl) -> str | None:
    """Why flujo cannot call ``impl`` as written, or ``None`` when it can.

    Flujo calls every implementation the same way: a plain call, in plugin load order, its
    result used as returned. Anything that needs another calling convention would load and then
    silently do nothing (an ``async def`` registration hook registers nothing, a wrapper never
    runs), so it is refused at load time instead.
    """
    fn = impl.function
    if impl.hookwrapper or impl.wrapper:
        return (
            "wrapper=True/hookwrapper=True implementations are not supported (flujo calls each "
            "implementation once, in plugin load order); to wrap a step's execution implement "
            "flujo_wrap_step"
        )
    if impl.tryfirst or impl.trylast:
        return (
            "tryfirst/trylast are not supported: implementations are called in plugin load "
            "order (by distribution name)"
        )
    if inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn):
        return (
            "must be a plain function, not an async function: hooks are never awaited "
            "(schedule async work with runtime.tasks.schedule(...), or return an async context "
            "manager from flujo_wrap_step)"
        )
    if inspect.isgeneratorfunction(fn):
        return (
            "must be a plain function, not a generator: a generator's body would never run "
            "(decorate it with @contextlib.contextmanager where a context manager is expected)"
        )
    return None


def _reject_unsupported(plugin: object, callers: Sequence[Any]) -> None:
    for caller in callers:
        for impl in caller.get_hookimpls():
            if impl.plugin is plugin:
                reason = _unsupported(impl)
                if reason is not None:
                    raise PluginError(impl.plugin_name, f"{caller.name} {reason}")


DEFAULT_IMPORT_TIMEOUT_S = 10.0


class _SigintWatch:
    """Tells a real Ctrl-C from a ``KeyboardInterrupt`` a plugin raised itself.

    While active (main thread only; elsewhere a SIGINT cannot raise anyway) a SIGINT sets
    :attr:`seen` and then does what the previous handler would have done.
    """

    def __init__(self) -> None:
        self.seen = False
        self._previous: Any = None
        self._installed = False
        self._main = threading.current_thread() is threading.main_thread()

    def __enter__(self) -> _SigintWatch:
        if self._main:
            try:
                self._previous = signal.signal(signal.SIGINT, self._handle)
                self._installed = True
            except (ValueError, OSError):  # an embedding host that owns signals
                pass
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.seen = True
        previous = self._previous
        if callable(previous):
            previous(signum, frame)
        elif previous != signal.SIG_IGN:
            raise KeyboardInterrupt

    def __exit__(self, *exc: object) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)

    def is_real(self, exc: BaseException) -> bool:
        """Whether ``exc`` must propagate: a Ctrl-C that really happened."""
        # Off the main thread no signal can raise; unwatched on it, assume it was real.
        return isinstance(exc, KeyboardInterrupt) and (
            self.seen or (self._main and not self._installed)
        )


def _describe(exc: BaseException) -> str:
    return repr(exc) if str(exc) else type(exc).__name__ + "()"


def _import_on_thread(load: Callable[[], Any], timeout_s: float, name: str) -> tuple[Any, str]:
    """``(plugin, "")``, or ``(None, why)`` when ``load`` raised anything or did not return
    within ``timeout_s`` (``<= 0``: on this thread, no limit, a ``KeyboardInterrupt`` is taken
    for a real Ctrl-C)."""
    if timeout_s <= 0:
        try:
            return load(), ""
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # noqa: BLE001 - isolation: SystemExit too
            return None, f"failed to import: {_describe(exc)}"
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["plugin"] = load()
        except BaseException as exc:  # noqa: BLE001 - reported on the main thread
            box["error"] = exc

    thread = threading.Thread(target=target, name=f"flujo-import:{name}", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        return None, f"import timed out after {timeout_s:g}s"
    if "error" in box:
        return None, f"failed to import: {_describe(box['error'])}"
    return box["plugin"], ""


class _FlujoPluggy(pluggy.PluginManager):
    """Treats any callable named ``flujo_*`` as a hook implementation, marked or not.

    Like pytest with ``pytest_*``: a forgotten ``@hookimpl`` must not make a hook silently do
    nothing, and a misspelt hook name becomes a reported error instead of dead code.
    """

    def parse_hookimpl_opts(self, plugin: object, name: str) -> Any:
        opts = super().parse_hookimpl_opts(plugin, name)
        if opts is None and name.startswith("flujo_"):
            method = getattr(plugin, name, None)
            if callable(method) and not isinstance(method, type):
                return {}
        return opts


class PluginManager:
    """Flujo's plugin manager: pluggy plus the named-factory registry and load records."""

    def __init__(self, *, strict: bool = False) -> None:
        self.pm = _FlujoPluggy(hookspecs.PROJECT_NAME)
        self.pm.add_hookspecs(hookspecs)
        self.registry = Registry()
        self.strict = strict
        self._infos: dict[str, PluginInfo] = {}
        self._sections: dict[str, tuple[type[BaseModel], str]] = {}
        self._register_core()

    def _register_core(self) -> None:
        """flujo-core's own registrations (the ``sqlite`` and ``postgresql`` state backends),
        through the same hooks a plugin implements, before any plugin: their names are taken
        first. Not listed by ``flujo plugins`` (the core is not a plugin one can disable)."""
        from flujo.state import _builtin

        self.pm.register(_builtin, name=_builtin.OWNER)
        self._run_registrations(_builtin, _builtin.OWNER)

    # ------------------------------------------------------------------ loading

    def load_entry_points(
        self,
        *,
        disable: Sequence[str] = (),
        environ: Mapping[str, str] | None = None,
        hold: str | None = None,
        import_timeout_s: float = DEFAULT_IMPORT_TIMEOUT_S,
    ) -> None:
        """Load every installed plugin that the allow/deny lists let through.

        ``hold``: import none; list each one that would have loaded as disabled, with this
        reason (the CLI does so when flujo.toml, and so its disable list, cannot be read).
        ``import_timeout_s``: how long one plugin's import may take (``0``: no limit, on the
        calling thread); see the module's doc.
        """
        from importlib_metadata import entry_points

        env = os.environ if environ is None else environ
        allow = _env_list(env, "FLUJO_LOAD_PLUGINS")
        deny = set(_env_list(env, "FLUJO_DISABLE_PLUGINS") or ()) | {
            normalize_name(d) for d in disable
        }
        self.strict = self.strict or env.get("FLUJO_STRICT_PLUGINS", "") not in ("", "0")
        found = []
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            dist = ep.dist
            found.append((normalize_name(dist.name if dist is not None else ep.name), ep))
        # Load order is by distribution name, so "who registered a name first" is predictable.
        for name, ep in sorted(found, key=lambda item: (item[0], item[1].name)):
            dist = ep.dist
            version = dist.version if dist is not None else None
            if name in self._infos:  # a second entry point of one distribution
                name = f"{name}:{ep.name}"
            if (allow is not None and name not in allow) or name in deny:
                self._infos[name] = PluginInfo(name, version, ep.value, status="disabled")
                continue
            if hold is not None:
                self._infos[name] = PluginInfo(
                    name, version, ep.value, status="disabled", error=hold
                )
                continue
            plugin, failure = _import_on_thread(ep.load, import_timeout_s, name)
            if failure:
                self._fail(PluginInfo(name, version, ep.value), failure)
                continue
            self.register(plugin, name, version=version, entry_point=ep.value)

    def register(
        self,
        plugin: object,
        name: str,
        *,
        version: str | None = None,
        entry_point: str = "",
    ) -> PluginInfo:
        """Register ``plugin`` (a module or object with ``flujo_*`` hooks) under ``name``.

        Runs its registration hooks at once so what it registers, and any error, is attributed
        to it. On error the plugin is removed again and the error recorded (or raised when
        strict). Returns the plugin's record.
        """
        info = PluginInfo(name, version, entry_point or getattr(plugin, "__name__", repr(plugin)))
        with _SigintWatch() as watch:
            return self._register(plugin, name, info, watch)

    def _register(
        self, plugin: object, name: str, info: PluginInfo, watch: _SigintWatch
    ) -> PluginInfo:
        try:
            self.pm.register(plugin, name=name)
        except BaseException as exc:  # pluggy validation errors vary in type
            if watch.is_real(exc):
                raise
            return self._fail(info, f"invalid hook implementation: {exc}")
        try:
            unknown = sorted(
                hc.name for hc in self.pm.get_hookcallers(plugin) or () if hc.spec is None
            )
            if unknown:
                raise PluginError(name, f"implements unknown hook(s): {', '.join(unknown)}")
            _reject_unsupported(plugin, self.pm.get_hookcallers(plugin) or ())
            info.hooks = sorted(hc.name for hc in self.pm.get_hookcallers(plugin) or ())
            self._run_registrations(plugin, name)
            info.sections = self._collect_sections(plugin, name)
            info.registered = {k: v for k, v in self.registry.owned_by(name).items() if v}
        except BaseException as exc:  # isolation: SystemExit and the like too
            if watch.is_real(exc):
                self._withdraw(name)
                raise
            self._withdraw(name)
            message = (
                str(exc)
                if isinstance(exc, PluginError)
                else f"failed to register: {_describe(exc)}"
            )
            return self._fail(info, message.removeprefix(f"plugin {name!r}: "))
        self._infos[name] = info
        return info

    def unregister(self, name: str) -> None:
        """Remove plugin ``name`` and everything it registered (its record included)."""
        self._withdraw(name)
        self._infos.pop(name, None)

    def _withdraw(self, name: str) -> None:
        """Remove a failed plugin entirely: its hooks, its registrations, its sections."""
        plugin = self.pm.get_plugin(name)
        if plugin is not None:
            self.pm.unregister(plugin)
        self.registry.remove_owner(name)
        self._sections = {k: v for k, v in self._sections.items() if v[1] != name}

    def _fail(self, info: PluginInfo, message: str) -> PluginInfo:
        info.status = "error"
        info.error = message
        self._infos[info.name] = info
        _log.warning("plugin %s: %s", info.name, message)
        if self.strict:
            raise PluginError(info.name, message)
        return info

    def _impls(self, hook_name: str, plugin: object) -> list[pluggy.HookImpl]:
        caller = getattr(self.pm.hook, hook_name)
        return [impl for impl in caller.get_hookimpls() if impl.plugin is plugin]

    @staticmethod
    def call(impl: pluggy.HookImpl, **kwargs: Any) -> Any:
        """Call one implementation with the arguments it asks for (hooks only gain arguments)."""
        return impl.function(*[kwargs[a] for a in impl.argnames])

    def _run_registrations(self, plugin: object, owner: str) -> None:
        for kind in KINDS:
            for impl in self._impls(f"flujo_register_{kind}", plugin):
                self.call(impl, register=self._registrar(kind, owner))

    def _registrar(self, kind: Kind, owner: str) -> Callable[[str, Any], None]:
        def register(name: str, factory: Any) -> None:
            self.registry.add(kind, name, factory, owner)

        return register

    def _collect_sections(self, plugin: object, owner: str) -> list[str]:
        from pydantic import BaseModel

        owned: list[str] = []
        for impl in self._impls("flujo_config_sections", plugin):
            sections = self.call(impl) or {}
            for section, model in dict(sections).items():
                if not (isinstance(model, type) and issubclass(model, BaseModel)):
                    raise PluginError(owner, f"section [{section}] is not a pydantic model")
                if section in CORE_SECTIONS:
                    raise PluginError(owner, f"section [{section}] belongs to flujo-core")
                if section in self._sections:
                    raise PluginError(
                        owner,
                        f"section [{section}] is already owned by {self._sections[section][1]!r}",
                    )
                self._sections[section] = (model, owner)
                owned.append(section)
        return sorted(owned)

    # ------------------------------------------------------------------ queries

    @property
    def plugins(self) -> list[PluginInfo]:
        """Every plugin seen (loaded, broken or disabled), by name."""
        return sorted(self._infos.values(), key=lambda i: i.name)

    @property
    def disabled(self) -> list[str]:
        """Names of plugins that were not loaded because a list disabled them."""
        return [i.name for i in self.plugins if i.status == "disabled"]

    def config_sections(self) -> dict[str, tuple[type[BaseModel], str]]:
        """``{section: (model, owning plugin)}`` for every loaded plugin."""
        return dict(self._sections)

    def migrations(self, dialect: str) -> list[Migration]:
        """Every loaded plugin's storage migrations for ``dialect``."""
        found: list[Migration] = []
        for batch in self.call_each("flujo_storage_migrations", dialect=dialect):
            found.extend(batch)
        return found

    def implementations(self, hook_name: str) -> list[pluggy.HookImpl]:
        """The loaded implementations of ``hook_name`` in plugin load order (the order every
        hook is called in); empty when none, so the caller can skip the call."""
        # pluggy keeps implementations in registration order (its own ``hook.X()`` calls them
        # in reverse); registration order is load order because tryfirst/trylast and wrappers
        # are refused at load time.
        impls: list[pluggy.HookImpl] = getattr(self.pm.hook, hook_name).get_hookimpls()
        return impls

    def _answers(self, hook_name: str, kwargs: dict[str, Any]) -> Iterator[Any]:
        """Call the implementations of ``hook_name`` lazily, in plugin load order, yielding
        each non-``None`` result. An error names the plugin that raised it."""
        for impl in self.implementations(hook_name):
            try:
                result = self.call(impl, **kwargs)
            except FlujoError:
                raise
            except Exception as exc:
                raise PluginError(impl.plugin_name, f"{hook_name} failed: {exc!r}") from exc
            if result is not None:
                yield result

    def call_each(self, hook_name: str, **kwargs: Any) -> list[Any]:
        """Call every implementation of ``hook_name`` in plugin load order; return the
        non-``None`` results in that order. An error names the plugin that raised it."""
        return list(self._answers(hook_name, kwargs))

    def first_result(self, hook_name: str, **kwargs: Any) -> Any:
        """The first non-``None`` result of ``hook_name`` in plugin load order, or ``None``;
        later implementations are not called once one has answered."""
        return next(self._answers(hook_name, kwargs), None)

    def notify(self, impls: Sequence[pluggy.HookImpl], **kwargs: Any) -> list[str]:
        """Call each observer in ``impls`` on its own; return the errors instead of raising.

        One plugin's failing observer must neither stop the others nor reach the run.
        """
        errors: list[str] = []
        for impl in impls:
            try:
                self.call(impl, **kwargs)
            except KeyboardInterrupt:
                raise  # possibly a real Ctrl-C: stopping is the safe reading (module doc)
            except BaseException as exc:  # noqa: BLE001 - observers never raise into the run
                errors.append(f"{impl.plugin_name}.{impl.function.__name__}: {_describe(exc)}")
                _log.error(
                    "plugin %s observer failed", impl.plugin_name, exc_info=(type(exc), exc, None)
                )
        return errors

    def add_commands(self, cli: click.Group) -> None:
        """Let every loaded plugin add its commands to ``cli``; failures are recorded."""
        with _SigintWatch() as watch:
            for impl in self.pm.hook.flujo_register_commands.get_hookimpls():
                self._add_commands(impl, cli, watch)

    def _add_commands(self, impl: pluggy.HookImpl, cli: click.Group, watch: _SigintWatch) -> None:
        try:
            self.call(impl, cli=cli)
        except BaseException as exc:  # a broken plugin must not break the CLI
            if watch.is_real(exc):
                raise
            self._withdraw(impl.plugin_name)
            info = self._infos.get(impl.plugin_name)
            if info is not None:
                info.hooks, info.registered, info.sections = [], {}, []
                self._fail(info, f"failed to add commands: {_describe(exc)}")
