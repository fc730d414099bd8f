"""The ``tool_allowlist`` policy: which tools an agent may call, and when."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flujo import PolicyDecision, PolicyViolation, ToolApprovalRequired, ToolCallRefused
from flujo.domain.scope import tool_names, tool_names_to_deny
from flujo.plugin import decision_detail
from flujo_governance._scope import StepInfo, step_info
from flujo_governance.settings import Condition, OnDeny, ToolRule, ToolsSettings

if TYPE_CHECKING:
    from flujo import PipelineContext

__all__ = ["ToolAllowlistPolicy", "ToolVerdict"]

_MISSING = object()


@dataclass(frozen=True, slots=True)
class ToolVerdict:
    """The outcome for one call: allowed or not, which rule decided, why and how to deny."""

    allowed: bool
    rule: str | None = None
    reason: str = ""
    on_deny: OnDeny = "refuse"
    approve: bool = False
    """Allowed, once a person approves it (an ``approve`` rule holds)."""
    expires_in_s: float | None = None


def _glob_any(value: str, globs: Iterable[str]) -> str | None:
    return next((g for g in globs if fnmatch.fnmatchcase(value, g)), None)


def _name_glob(names: tuple[str, ...], globs: Iterable[str]) -> str | None:
    """The first glob matching any name of the tool (its model-visible name, its registered
    id): a rule written with either name holds."""
    globs = list(globs)
    return next((g for name in names if (g := _glob_any(name, globs)) is not None), None)


def _lookup(context: Any, dotted: str) -> Any:
    value = context
    for part in dotted.split("."):
        if isinstance(value, Mapping):
            value = value.get(part, _MISSING)
        else:
            value = getattr(value, part, _MISSING)
        if value is _MISSING:
            return _MISSING
    return value


def _equal(actual: Any, expected: Any) -> bool:
    if isinstance(expected, bool) or isinstance(actual, bool):
        return actual is expected
    return bool(actual == expected)


def _arg_matches(actual: Any, globs: list[str], *, case_sensitive: bool = False) -> bool:
    """Whether ``actual`` (every item, for a list) matches one of ``globs``; compared
    case-insensitively (``casefold``) unless ``case_sensitive``: ``PROD_users`` is a
    ``prod_*`` table to a rule about production."""
    values = actual if isinstance(actual, list | tuple) else [actual]
    if not values:
        return False
    if not case_sensitive:
        globs = [g.casefold() for g in globs]
    for value in values:
        if isinstance(value, dict | list | tuple) or value is None:
            return False
        text = str(value).lower() if isinstance(value, bool) else str(value)
        if not case_sensitive:
            text = text.casefold()
        if _glob_any(text, globs) is None:
            return False
    return True


def _above(actual: Any, bound: float, strict_holds: bool) -> bool:
    if isinstance(actual, bool) or not isinstance(actual, int | float):
        return strict_holds  # cannot be compared: the strict reading (see Condition.above)
    return bool(actual > bound)


def condition_holds(
    when: Condition,
    context: Any,
    step: StepInfo,
    args: Mapping[str, Any],
    *,
    strict_holds: bool = False,
) -> bool:
    """Whether every part of ``when`` holds for this call (``strict_holds``: for a deny or
    approve rule, an argument ``above`` cannot compare holds)."""
    for key, expected in when.context.items():
        actual = _lookup(context, key)
        if actual is _MISSING:
            return False
        options = expected if isinstance(expected, list) else [expected]
        if not any(_equal(actual, option) for option in options):
            return False
    if when.tags and not all(tag in step.tags for tag in when.tags):
        return False
    if when.steps and (step.name is None or _glob_any(step.name, when.steps) is None):
        return False
    for name, bound in when.above.items():
        actual = args.get(name, _MISSING)
        if actual is _MISSING or not _above(actual, bound, strict_holds):
            return False
    for name, glob in when.args.items():
        actual = args.get(name, _MISSING)
        if actual is _MISSING or not _arg_matches(
            actual, [glob] if isinstance(glob, str) else glob, case_sensitive=when.case_sensitive
        ):
            return False
    return True


class ToolAllowlistPolicy:
    """Allows or denies each tool call by name (globs), lists and conditional rules.

    Order of evaluation for a call: the ``deny`` list; ``deny`` rules whose condition holds;
    ``allow`` rules for the tool (when a tool has any, it is allowed only when one of them
    holds); the ``allow`` list (when set, anything not on it is denied). Per-step overrides
    replace the lists for the steps they name or tag. A denied call is refused (the model is
    told, the step goes on) or fails the step, per rule or ``on_deny``.
    """

    name = "tool_allowlist"

    def __init__(self, settings: ToolsSettings | None = None) -> None:
        self.settings = settings or ToolsSettings()

    def _lists(self, step: StepInfo) -> tuple[list[str] | None, list[str]]:
        allow, deny = self.settings.allow, self.settings.deny
        for override in self.settings.overrides:
            named = step.name is not None and _glob_any(step.name, override.steps) is not None
            if named or any(tag in step.tags for tag in override.tags):
                allow = override.allow if override.allow is not None else allow
                deny = override.deny if override.deny is not None else deny
        return allow, deny

    def _deny(self, rule: ToolRule | None, label: str, reason: str) -> ToolVerdict:
        on_deny = (rule.on_deny if rule is not None else None) or self.settings.on_deny
        if rule is not None and rule.reason:
            reason = rule.reason
        return ToolVerdict(False, label, reason, on_deny)

    def verdict(
        self, context: Any, tool_name: str, args: Mapping[str, Any], step: StepInfo
    ) -> ToolVerdict:
        """The decision for one call, without raising: :meth:`_lists_and_rules`, then, for an
        allowed call, the first ``approve`` rule that holds (matched like a deny rule: by the
        tool's names and aliases) makes it wait for a person."""
        verdict = self._lists_and_rules(context, tool_name, args, step)
        if not verdict.allowed:
            return verdict
        deny_names = tool_names_to_deny(tool_name)
        for rule in self.settings.rules:
            if rule.effect != "approve" or _name_glob(deny_names, [rule.tool]) is None:
                continue
            if condition_holds(rule.when, context, step, args, strict_holds=True):
                reason = rule.reason or f"rule {rule.label!r} wants a person to approve it"
                return ToolVerdict(
                    True, rule.label, reason, approve=True, expires_in_s=rule.expires_in_s
                )
        return verdict

    def _lists_and_rules(
        self, context: Any, tool_name: str, args: Mapping[str, Any], step: StepInfo
    ) -> ToolVerdict:
        """The decision for one call, without raising.

        Allow lists and allow rules match the tool's names (``tool_name.ids``: a registered
        tool's id); deny lists and deny rules also match its aliases (the model's form of the
        id, the function's name), so a deny written with either still denies (fail closed),
        while ``allow = ["sql"]`` never allows every plugin's ``sql``."""
        names = tool_names(tool_name)
        deny_names = tool_names_to_deny(tool_name)
        allow, deny = self._lists(step)
        denied_by = _name_glob(deny_names, deny)
        if denied_by is not None:
            return self._deny(None, f"deny:{denied_by}", f"tool {tool_name!r} is denied")
        for rule in self.settings.rules:
            if rule.effect != "deny" or _name_glob(deny_names, [rule.tool]) is None:
                continue
            if condition_holds(rule.when, context, step, args, strict_holds=True):
                return self._deny(rule, rule.label, f"rule {rule.label!r} denies {tool_name!r}")
        allow_rules = [
            r
            for r in self.settings.rules
            if r.effect == "allow" and _name_glob(names, [r.tool]) is not None
        ]
        if allow_rules:
            for rule in allow_rules:
                if condition_holds(rule.when, context, step, args):
                    return ToolVerdict(True, rule.label)
            first = allow_rules[0]
            return self._deny(
                first,
                first.label,
                f"the conditions for calling {tool_name!r} do not hold",
            )
        if allow is not None:
            allowed_by = _name_glob(names, allow)
            if allowed_by is None:
                return self._deny(None, "allow-list", f"tool {tool_name!r} is not allowed")
            return ToolVerdict(True, f"allow:{allowed_by}")
        return ToolVerdict(True)

    def inspect_input(self, context: PipelineContext, data: Any) -> tuple[PolicyDecision, Any]:
        """Inputs are not this policy's concern: always ALLOW, unchanged."""
        return PolicyDecision.ALLOW, data

    def inspect_tool_call(
        self, context: PipelineContext, tool_name: str, args: dict[str, Any]
    ) -> PolicyDecision:
        """ALLOW, or raise :class:`~flujo.ToolCallRefused` (``refuse``) /
        :class:`~flujo.PolicyViolation` (``fail``) / :class:`~flujo.ToolApprovalRequired`
        (an ``approve`` rule holds)."""
        verdict = self.verdict(context, tool_name, args, step_info())
        if verdict.approve:
            decision_detail(verdict.rule)
            raise ToolApprovalRequired(self.name, verdict.reason, expires_in_s=verdict.expires_in_s)
        if verdict.allowed:
            decision_detail(verdict.rule)
            return PolicyDecision.ALLOW
        decision_detail(verdict.rule)
        if verdict.on_deny == "refuse":
            raise ToolCallRefused(self.name, verdict.reason)
        raise PolicyViolation(self.name, verdict.reason, where="tool_call")

    def __repr__(self) -> str:
        return f"ToolAllowlistPolicy({self.settings!r})"
