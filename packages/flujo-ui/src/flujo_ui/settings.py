"""``[ui]`` in flujo.toml."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

SECTION = "ui"


class UiSettings(BaseModel):
    """How the web app links out.

    ``trace_url``: a link to a run's trace in the configured trace UI, with ``{trace_id}``
    where the id goes (e.g. ``"http://127.0.0.1:6006/projects/default/traces/{trace_id}"``).
    The trace id is read from a run-view section's field named ``trace id`` or ``trace_id``
    (flujo-otel's, when installed); without one no link is shown.
    """

    model_config = ConfigDict(extra="forbid")

    trace_url: str | None = Field(default=None)

    @field_validator("trace_url")
    @classmethod
    def _trace_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        if "{trace_id}" not in value:
            raise ValueError("must contain {trace_id} where the trace's id goes")
        return value
