"""Policy methods may be sync or async; this awaits the result only when it is awaitable."""

from __future__ import annotations

import inspect
from typing import Any


async def maybe_await(value: Any) -> Any:
    """``await value`` if it is awaitable, else ``value``."""
    return await value if inspect.isawaitable(value) else value
