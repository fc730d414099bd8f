"""The typed context a run carries from step to step."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, PrivateAttr

from flujo.domain.errors import MissingPluginError

if TYPE_CHECKING:
    from flujo.domain.interfaces import Retriever, ScoredMemory


class PipelineContext(BaseModel):
    """Shared, typed state of one run. Subclass it to add your own fields.

    Steps that accept a ``context`` argument receive the run's instance and may change its fields;
    the context is validated on assignment and persisted with every step, so a resumed run sees
    exactly what the last finished step left.
    """

    # NaN/infinity are written as such (not silently as null, which the field may not accept
    # on resume), so the strict state encoder refuses them and the step fails instead.
    model_config = ConfigDict(
        validate_assignment=True, extra="forbid", ser_json_inf_nan="constants"
    )

    run_id: str = ""
    """The id of the run this context belongs to (set by the runner)."""

    _retriever: Retriever | None = PrivateAttr(default=None)
    # The keys of flagged fields this context was resumed with ({field: (stored text, key)};
    # see flujo.application.scrubbing.STORED_KEYS_FIELD). Never serialized.
    _stored_keys: dict[str, tuple[str, str]] = PrivateAttr(default_factory=dict)

    async def retrieve(
        self, query: str, limit: int = 5, *, filter: dict[str, Any] | None = None
    ) -> list[ScoredMemory]:
        """Recall up to ``limit`` memories relevant to ``query`` from earlier runs.

        Needs the ``flujo-memory`` plugin; without it this raises :class:`MissingPluginError`.
        """
        if self._retriever is None:
            raise MissingPluginError("context.retrieve()", "flujo-memory")
        return await self._retriever.retrieve(self, query, limit, filter=filter)
