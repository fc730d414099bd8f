"""The ``pii`` policy: keeps personal data and secrets away from the model and every sink."""

from __future__ import annotations

import fnmatch
from collections import Counter
from collections.abc import Mapping
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from flujo import PolicyDecision, PolicyViolation, ToolCallRefused
from flujo.plugin import decision_detail
from flujo_governance._scope import StepInfo, step_info
from flujo_governance.engines import load_engine
from flujo_governance.engines.base import PIIEngine, resolve_entities
from flujo_governance.scrubber import (
    Replacer,
    Scrubber,
    VaultStore,
    map_strings,
    redact_placeholder,
)
from flujo_governance.settings import PIIOverride, PIISettings

if TYPE_CHECKING:
    from flujo import PipelineContext

__all__ = ["PIIScrubbingPolicy", "describe", "redact_text"]


@lru_cache(maxsize=1)
def _default_scrubber() -> Scrubber:
    from flujo_governance.engines.regex import RegexEngine

    return Scrubber(RegexEngine())


def redact_text(text: str) -> str:
    """``text`` with every PII kind of the regex engine redacted (``<EMAIL>``)."""
    return _default_scrubber().text(text, redact_placeholder)


def describe(counts: Mapping[str, int]) -> str:
    """``"EMAIL x2, PHONE x1"``: kinds and counts, never values."""
    return ", ".join(f"{kind} x{n}" for kind, n in sorted(counts.items()))


def _matches(override: PIIOverride, step: StepInfo) -> bool:
    if step.name is not None and any(fnmatch.fnmatchcase(step.name, g) for g in override.steps):
        return True
    return any(tag in step.tags for tag in override.tags)


class PIIScrubbingPolicy:
    """Finds PII (e-mail, phones, cards, IBANs, SSNs, IPs, secrets, custom patterns) and keeps
    it from the model, the database, the logs and other plugins.

    - ``inspect_input``: REDACT (``redact``/``pseudonymize`` modes) or deny (``deny`` mode)
      before the agent sees the step's input;
    - ``inspect_tool_call``: PII in a tool's arguments refuses the call or fails the step
      (``inspect_tool_args``);
    - ``inspect_tool_result``: REDACTs a tool's result before the model sees it;
    - ``inspect_output``: the step's output, when ``inspect_output`` is on;
    - ``scrub``: everything the runner persists or hands to other plugins (always all the
      configured entities, whatever the step overrides say);
    - ``restore``: swaps pseudonyms back in the final output for the caller, then forgets the
      run's vault.

    :param settings: ``[governance.pii]``.
    :param engine: an engine to use instead of the configured one (tests, benchmarks).
    :raises flujo_governance.engines.base.EngineUnavailableError: the engine cannot load.
    """

    name = "pii"

    def __init__(self, settings: PIISettings | None = None, *, engine: PIIEngine | None = None):
        self.settings = settings or PIISettings()
        patterns = [p.to_pattern() for p in self.settings.patterns]
        self.engine = engine or load_engine(
            self.settings.engine,
            None,
            patterns,
            presidio_model=self.settings.presidio_model,
            presidio_score_threshold=self.settings.presidio_score_threshold,
            presidio_entity_thresholds=self.settings.presidio_entity_thresholds,
        )
        self._base_kinds = self._kinds(self.settings.entities)
        self._scrubbers: dict[frozenset[str], Scrubber] = {}
        self.scrubber = self._scrubber(self._base_kinds)
        self.vaults = VaultStore()

    # ------------------------------------------------------------------ configuration

    def _kinds(self, entities: list[str] | None) -> frozenset[str]:
        custom = {p.name for p in self.settings.patterns}
        if entities is None:
            return frozenset(self.engine.kinds | custom)
        allow_other = self.engine.name != "regex"
        return frozenset(resolve_entities(entities, allow_other=allow_other) | custom)

    def _scrubber(self, kinds: frozenset[str]) -> Scrubber:
        found = self._scrubbers.get(kinds)
        if found is None:
            found = self._scrubbers[kinds] = Scrubber(self.engine, kinds)
        return found

    def _effective(self, step: StepInfo) -> tuple[bool, str, Scrubber, bool]:
        """``(enabled, mode, scrubber, inspect_output)`` for ``step``."""
        enabled, mode = True, self.settings.mode
        entities, inspect_output = self.settings.entities, self.settings.inspect_output
        for override in self.settings.overrides:
            if not _matches(override, step):
                continue
            enabled = override.enabled if override.enabled is not None else enabled
            mode = override.mode or mode
            entities = override.entities if override.entities is not None else entities
            if override.inspect_output is not None:
                inspect_output = override.inspect_output
        kinds = self._base_kinds if entities is self.settings.entities else self._kinds(entities)
        return enabled, mode, self._scrubber(kinds), inspect_output

    def _replacer(self, context: PipelineContext, mode: str, value: Any) -> Replacer:
        """How PII in ``value`` is replaced; in ``pseudonymize`` mode the run's vault first
        notes the pseudonyms ``value`` already carries (see :meth:`Vault.reserve`)."""
        if mode == "pseudonymize":
            # Outside a run (flujo-otel's exporter, `flujo memory add`) a vault of the call's
            # own: one kept for "no run" would hold every value ever scrubbed, raw, for the
            # life of the process, and link unrelated runs by shared pseudonyms.
            vault = self.vaults.get(context.run_id) if context.run_id else self.vaults.ephemeral()
            map_strings(value, vault.reserve)
            return vault.placeholder
        return redact_placeholder

    # ------------------------------------------------------------------ decisions

    def _inspect(
        self, context: PipelineContext, stage: str, data: Any
    ) -> tuple[PolicyDecision, Any]:
        step = step_info()
        enabled, mode, scrubber, inspect_output = self._effective(step)
        if not enabled or (stage == "output" and not inspect_output):
            return PolicyDecision.ALLOW, data
        counts: Counter[str] = Counter()
        if mode == "deny" and stage in ("input", "output"):
            counts = scrubber.contains(data)
            if counts:
                decision_detail("deny", counts)
                raise PolicyViolation(
                    self.name, f"the {stage} contains PII ({describe(counts)})", where=stage
                )
            return PolicyDecision.ALLOW, data
        redacted = scrubber.value(data, self._replacer(context, mode, data), counts)
        if not counts:
            return PolicyDecision.ALLOW, data
        decision_detail(mode, counts)
        return PolicyDecision.REDACT, redacted

    def inspect_input(self, context: PipelineContext, data: Any) -> tuple[PolicyDecision, Any]:
        """REDACT the PII in a step's input (or deny it, in ``deny`` mode)."""
        if not self.settings.inspect_input:
            return PolicyDecision.ALLOW, data
        return self._inspect(context, "input", data)

    def inspect_output(self, context: PipelineContext, output: Any) -> tuple[PolicyDecision, Any]:
        """REDACT (or deny) the PII in a step's output, when ``inspect_output`` is on."""
        return self._inspect(context, "output", output)

    def inspect_tool_call(
        self, context: PipelineContext, tool_name: str, args: dict[str, Any]
    ) -> PolicyDecision:
        """Refuse the call (or fail the step) when its arguments carry PII."""
        if self.settings.inspect_tool_args == "allow":
            return PolicyDecision.ALLOW
        enabled, _mode, scrubber, _ = self._effective(step_info())
        if not enabled:
            return PolicyDecision.ALLOW
        counts = scrubber.contains(args)
        if not counts:
            return PolicyDecision.ALLOW
        action = self.settings.inspect_tool_args
        decision_detail(action, counts)
        reason = f"the arguments of {tool_name!r} contain PII ({describe(counts)})"
        if action == "refuse":
            raise ToolCallRefused(self.name, reason)
        raise PolicyViolation(self.name, reason, where="tool_call")

    def inspect_tool_result(
        self, context: PipelineContext, tool_name: str, result: Any
    ) -> tuple[PolicyDecision, Any]:
        """REDACT the PII in a tool's result before the model sees it."""
        if not self.settings.inspect_tool_results:
            return PolicyDecision.ALLOW, result
        enabled, mode, scrubber, _ = self._effective(step_info())
        if not enabled:
            return PolicyDecision.ALLOW, result
        counts: Counter[str] = Counter()
        mode = "redact" if mode == "deny" else mode
        redacted = scrubber.value(result, self._replacer(context, mode, result), counts)
        if not counts:
            return PolicyDecision.ALLOW, result
        decision_detail(mode, counts)
        return PolicyDecision.REDACT, redacted

    # ------------------------------------------------------------------ sinks

    def scrub(self, context: PipelineContext, value: Any) -> Any:
        """``value`` as it may leave the process: every configured kind replaced (pseudonyms
        in ``pseudonymize`` mode, typed placeholders otherwise)."""
        mode = "pseudonymize" if self.settings.mode == "pseudonymize" else "redact"
        return self.scrubber.value(value, self._replacer(context, mode, value))

    def scrub_text(self, text: str, run_id: str | None = None) -> str:
        """``text`` scrubbed for a log record: the run's pseudonyms when the run has a vault,
        typed placeholders otherwise."""
        vault = self.vaults.peek(run_id) if run_id else None
        replace = vault.placeholder if vault is not None else redact_placeholder
        return self.scrubber.text(text, replace)

    def restore(self, context: PipelineContext, output: Any) -> Any:
        """The final output with pseudonyms swapped back for the original values; the run's
        vault is dropped afterwards (the caller has what it needs, nothing else may)."""
        vault = self.vaults.peek(context.run_id)
        if vault is None:
            return output
        try:
            return map_strings(output, vault.restore_text)
        finally:
            self.drop_run(context.run_id)

    def drop_run(self, run_id: str) -> None:
        """Forget the originals of ``run_id``. Idempotent."""
        self.vaults.drop(run_id)

    def __repr__(self) -> str:
        return f"PIIScrubbingPolicy(engine={self.engine.name!r}, mode={self.settings.mode!r})"
