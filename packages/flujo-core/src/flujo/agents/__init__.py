"""LLM agents for pipeline steps: :func:`make_agent_async` and :class:`AsyncAgentWrapper`.

Importing this package imports pydantic-ai; ``flujo`` itself imports it lazily, on first use of
``flujo.make_agent_async`` or ``flujo.AsyncAgentWrapper``.
"""

from flujo.agents.wrapper import AsyncAgentWrapper, make_agent_async

__all__ = ["AsyncAgentWrapper", "make_agent_async"]
