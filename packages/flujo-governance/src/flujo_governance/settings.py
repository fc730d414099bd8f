"""The ``[governance]`` section of ``flujo.toml`` (every key is documented in the README)."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from flujo import ConfigError
from flujo_governance.engines.base import CustomPattern, resolve_entities

__all__ = [
    "Condition",
    "CustomPatternSettings",
    "GovernanceSettings",
    "PIIOverride",
    "PIISettings",
    "ToolRule",
    "ToolsOverride",
    "ToolsSettings",
]

SECTION = "governance"
POLICY_NAMES = ("pii", "tool_allowlist")

Mode = Literal["redact", "pseudonymize", "deny"]
OnDeny = Literal["refuse", "fail"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CustomPatternSettings(_Model):
    """``[[governance.pii.patterns]]``: a detector of your own."""

    name: str
    """The kind reported and used in placeholders (``<EMPLOYEE_ID>``): upper case, digits and
    ``_``."""
    regex: str
    """A Python regular expression."""
    group: int = Field(default=0, ge=0)
    """The group to replace; ``0`` is the whole match."""

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        if not re.fullmatch(r"[A-Z][A-Z0-9_]*", name):
            raise ValueError(f"pattern name {name!r} must match [A-Z][A-Z0-9_]*")
        return name

    @model_validator(mode="after")
    def _compiles(self) -> CustomPatternSettings:
        try:
            compiled = re.compile(self.regex)
        except re.error as exc:
            raise ValueError(f"pattern {self.name!r}: invalid regex: {exc}") from None
        if self.group > compiled.groups:
            raise ValueError(f"pattern {self.name!r}: the regex has no group {self.group}")
        if compiled.match(""):
            raise ValueError(f"pattern {self.name!r}: the regex matches the empty string")
        return self

    def to_pattern(self) -> CustomPattern:
        """As the engines take it."""
        return CustomPattern(self.name, self.regex, self.group)


class _Match(_Model):
    steps: list[str] = Field(default_factory=list)
    """Step names (globs) this override applies to."""
    tags: list[str] = Field(default_factory=list)
    """Step tags this override applies to (any of them)."""

    @model_validator(mode="after")
    def _targets(self) -> _Match:
        if not self.steps and not self.tags:
            raise ValueError("an override needs `steps` or `tags`")
        return self


class PIIOverride(_Match):
    """``[[governance.pii.overrides]]``: other PII settings for some steps."""

    enabled: bool | None = None
    """``false`` turns the inspections off for these steps (persisted data is still scrubbed)."""
    mode: Mode | None = None
    entities: list[str] | None = None
    """Checked against the engine's kinds by ``[governance.pii]``."""
    inspect_output: bool | None = None


class PIISettings(_Model):
    """``[governance.pii]``: the ``pii`` policy."""

    engine: Literal["regex", "presidio"] = "regex"
    mode: Mode = "redact"
    entities: list[str] | None = None
    """Kinds to detect (``None``: all); group names ``secrets`` and ``all`` are accepted, and
    with the presidio engine Presidio's own entity names (``PERSON``, ``LOCATION``...)."""
    patterns: list[CustomPatternSettings] = Field(default_factory=list)
    inspect_input: bool = True
    inspect_tool_args: Literal["refuse", "fail", "allow"] = "refuse"
    """PII in a tool call's arguments: refuse the call, fail the step, or let it through."""
    inspect_tool_results: bool = True
    inspect_output: bool = False
    scrub_logs: bool = True
    """Install the logging record factory that scrubs every log record of the process."""
    presidio_model: str | None = None
    """A spaCy model (installed package name) for the presidio engine; ``None``: a blank
    English pipeline (pattern recognizers only, no download)."""
    presidio_score_threshold: float = Field(default=0.5, ge=0.0, le=1.0)
    presidio_entity_thresholds: dict[str, Annotated[float, Field(ge=0.0, le=1.0)]] = Field(
        default_factory=dict
    )
    """Per-kind minimum scores of the presidio engine (this package's kind names or
    Presidio's), over its defaults ``PHONE = 0.4``, ``US_SSN = 0.4``; other kinds use
    ``presidio_score_threshold``."""
    overrides: list[PIIOverride] = Field(default_factory=list)

    @model_validator(mode="after")
    def _entities(self) -> PIISettings:
        presidio = self.engine == "presidio"
        for entities in [self.entities, *(o.entities for o in self.overrides)]:
            if entities is not None:
                resolve_entities(entities, allow_other=presidio)
        for name in self.presidio_entity_thresholds:
            # A kind name, this package's or Presidio's (PHONE_NUMBER), in any case.
            if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name):
                raise ConfigError(
                    f"[governance.pii] presidio_entity_thresholds: {name!r} is not an entity "
                    "name (PHONE, US_SSN, or a Presidio name such as PERSON)"
                )
        return self


class Condition(_Model):
    """``when`` of a tool rule: every given key must hold."""

    context: dict[str, str | int | float | bool | list[str | int | float | bool]] = Field(
        default_factory=dict
    )
    """``{field: value}`` the run's context must have (a list: any of the values);
    dotted names reach nested fields (``"user.role"``)."""
    tags: list[str] = Field(default_factory=list)
    """Tags the step must all have."""
    steps: list[str] = Field(default_factory=list)
    """Step names (globs); the step must match one."""
    args: dict[str, str | list[str]] = Field(default_factory=dict)
    """``{argument: glob}`` (or a list of globs, any of them) the call's arguments must match;
    a missing argument does not match. Compared ignoring case (``PROD_users`` matches
    ``prod_*``) unless ``case_sensitive``."""
    case_sensitive: bool = False
    """Compare ``args`` globs case-sensitively."""
    above: dict[str, float] = Field(default_factory=dict)
    """``{argument: number}`` the call's arguments must exceed (``amount = 100``: more than
    100); a missing argument does not hold. An argument that is not a number holds for
    ``deny`` and ``approve`` rules and not for ``allow`` rules: what cannot be compared is
    treated the strict way."""


class ToolRule(_Model):
    """``[[governance.tools.rules]]``: when a tool may be called, checked at call time."""

    tool: str
    """Tool name or glob: the name the model sees or the id a plugin registered the tool
    under (``flujo.builtins.code_interpreter``); an output function's name works too."""
    effect: Literal["allow", "deny", "approve"] = "allow"
    """``allow``: the tool is allowed only when ``when`` holds (denied otherwise).
    ``deny``: the tool is denied when ``when`` holds. ``approve``: when ``when`` holds, a call
    the lists and other rules allow waits for a person (the run pauses until
    ``flujo runs approve``/``reject``)."""
    expires_in_s: float | None = Field(default=None, gt=0)
    """``approve`` rules: seconds a person has to answer; unanswered by then, the run ends
    ``failed`` when it is answered or resumed (default: no expiry)."""
    when: Condition = Field(default_factory=Condition)
    on_deny: OnDeny | None = None
    """``refuse`` or ``fail`` for this rule; default ``[governance.tools] on_deny``."""
    name: str | None = None
    """Shown in refusals and audit rows; default ``<effect>:<tool>``."""
    reason: str | None = None

    @property
    def label(self) -> str:
        """The rule's name in audit rows."""
        return self.name or f"{self.effect}:{self.tool}"


class ToolsOverride(_Match):
    """``[[governance.tools.overrides]]``: other allow/deny lists for some steps."""

    allow: list[str] | None = None
    deny: list[str] | None = None


class ToolsSettings(_Model):
    """``[governance.tools]``: the ``tool_allowlist`` policy."""

    allow: list[str] | None = None
    """Tool names/globs allowed; when set, every other tool is denied."""
    deny: list[str] = Field(default_factory=list)
    """Tool names/globs denied (wins over ``allow``)."""
    on_deny: OnDeny = "refuse"
    rules: list[ToolRule] = Field(default_factory=list)
    overrides: list[ToolsOverride] = Field(default_factory=list)


class GovernanceSettings(_Model):
    """``[governance]``: settings of flujo-governance.

    ```toml
    [governance]
    policies = ["pii", "tool_allowlist"]
    ```
    """

    policies: list[Annotated[str, Field(min_length=1, pattern=r"^\S+$")]] = Field(
        default_factory=list
    )
    """Policies to run before every agent, in this order: ``pii``, ``tool_allowlist`` or any
    policy another plugin registers (an unknown name fails the runner's start, listing every
    registered policy and its plugin)."""
    audit: bool = True
    """Record every DENY and REDACT in the ``policy_decisions`` table."""
    audit_allow: bool = False
    """Record ALLOW decisions too."""
    pii: PIISettings = Field(default_factory=PIISettings)
    tools: ToolsSettings = Field(default_factory=ToolsSettings)
