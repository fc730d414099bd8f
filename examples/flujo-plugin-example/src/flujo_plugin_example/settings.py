"""The ``[example]`` section of ``flujo.toml``."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator


class ExampleSettings(BaseModel):
    """``[example]``: settings of flujo-plugin-example.

    ```toml
    [example]
    words = ["password", "drop table"]
    ```

    Override from the environment with ``FLUJO__EXAMPLE__WORDS='["password"]'``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    words: list[str] = Field(default_factory=list)
    """Words (or phrases) the ``deny_words`` policy denies, matched case-insensitively as
    whole words."""

    spans: bool = False
    """Time every step with a step wrapper and show the spans in ``flujo runs show``."""

    dimension: int = Field(default=64, ge=2, le=4096)
    """Length of the vectors of the ``example_trigram`` embedder."""

    @field_validator("words")
    @classmethod
    def _no_blank_words(cls, words: list[str]) -> list[str]:
        cleaned = [w.strip() for w in words]
        if any(not w for w in cleaned):
            raise ValueError("words must not be empty strings")
        return cleaned
