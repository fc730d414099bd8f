"""Collecting a run's view from the plugins (``flujo_run_view``), for ``flujo runs show``.

One place so the command line and a later web page show the same thing. A plugin whose
section fails (raises, hangs past the deadline, returns something that is not a valid
:class:`~flujo.domain.run_view.RunViewSection`) gets an error in its place; the other
sections and the run itself are still shown.
"""

from __future__ import annotations

import asyncio
import inspect
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flujo.domain.run_view import RunViewSection

if TYPE_CHECKING:
    from flujo.config import FlujoConfig
    from flujo.domain.interfaces import StateBackend
    from flujo.domain.models import RunRecord

SECTION_TIMEOUT_S = 30.0
"""How long one plugin's section may take before it is shown as an error."""


@dataclass(frozen=True, slots=True)
class PluginSection:
    """One plugin's part of a run's view: its section, or why it could not be shown."""

    plugin: str
    section: RunViewSection | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """What ``flujo runs show --json`` holds under the plugin's name."""
        if self.section is None:
            return {"error": self.error}
        return {**self.section.to_dict(), "error": None}


def _one_line(text: str, limit: int = 500) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


async def plugin_sections(
    run: RunRecord,
    state: StateBackend,
    config: FlujoConfig,
    *,
    timeout_s: float = SECTION_TIMEOUT_S,
) -> list[PluginSection]:
    """Every loaded plugin's section of ``run``'s view, in plugin load order (plugins that
    return ``None`` have nothing to show and are left out)."""
    manager = config.plugin_manager
    if manager is None:
        return []
    found: list[PluginSection] = []
    for impl in manager.implementations("flujo_run_view"):
        try:
            answer = manager.call(impl, run=run, state=state, config=config)
            if inspect.isawaitable(answer):
                answer = await asyncio.wait_for(_awaited(answer), timeout_s)
            if answer is None:
                continue
            if not isinstance(answer, RunViewSection):
                raise TypeError(f"returned {type(answer).__name__}, not a RunViewSection")
            answer.check()
        except TimeoutError:
            error = f"no answer within {timeout_s:g}s"
            found.append(PluginSection(impl.plugin_name, error=error))
        except asyncio.CancelledError as exc:
            # The view itself being cancelled (Ctrl-C, a closed request) goes to its caller;
            # only a section's own cancelled work is that section's error.
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
            found.append(PluginSection(impl.plugin_name, error=_describe(exc)))
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - one section never breaks the view
            # (KeyboardInterrupt and GeneratorExit are not caught: a real Ctrl-C stops it.)
            found.append(PluginSection(impl.plugin_name, error=_describe(exc)))
        else:
            found.append(PluginSection(impl.plugin_name, answer))
    return found


def _describe(exc: BaseException) -> str:
    return _one_line(f"{type(exc).__name__}: {exc}")


async def _awaited(awaitable: Any) -> Any:
    return await awaitable
