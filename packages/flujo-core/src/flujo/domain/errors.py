"""The Flujo error tree.

Every error Flujo raises on purpose derives from :class:`FlujoError`. Errors that come from
something the *user* got wrong (a config file, a CLI target, an input) derive from
:class:`UserError`; the CLI prints those as one line and exits with code 2.
"""

from __future__ import annotations

from typing import Any


class FlujoError(Exception):
    """Base class of every error Flujo raises on purpose."""


class UserError(FlujoError):
    """Something the user supplied is wrong; the message says what and where."""


class ConfigError(UserError):
    """``flujo.toml`` (or an environment override) is malformed or invalid."""


class TargetError(UserError):
    """A pipeline target (``file.py:name`` or ``module:name``) cannot be loaded."""


class PipelineDefinitionError(UserError):
    """A pipeline is built wrongly, e.g. one step's output type does not fit the next input."""


class InputValidationError(UserError):
    """The data given to a step does not validate against the step's input type."""


class RunNotFoundError(UserError):
    """No run with the given id exists in the state database."""


class ResumeError(UserError):
    """A run cannot be resumed (finished already, or its pipeline cannot be found)."""


class RunFinishedError(ResumeError):
    """The run already succeeded: there is nothing to resume."""


class RunLeasedError(ResumeError):
    """The run is being executed by another live worker (it holds the run's lease)."""


class MissingPluginError(UserError):
    """A feature needs a plugin that is not installed or not enabled."""

    def __init__(self, feature: str, package: str) -> None:
        super().__init__(f"{feature} needs the {package!r} plugin: pip install {package}")
        self.feature = feature
        self.package = package


class StepFailedError(FlujoError):
    """A step raised, timed out or produced invalid output after all its retries."""

    def __init__(self, step_name: str, message: str) -> None:
        super().__init__(f"step {step_name!r} failed: {message}")
        self.step_name = step_name


class InnerStepFailed(FlujoError):
    """A step inside a control-flow step did not succeed: the control-flow step ends with the
    same status (``status`` is a :class:`~flujo.domain.models.StepStatus` value) and error."""

    def __init__(self, status: str, error: str, output: Any = None) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.output = output
        """What the step stores as its output (a paused step: what it waits for)."""


class StepTimeoutError(FlujoError):
    """One attempt of a step ran longer than its ``timeout_s``."""

    def __init__(self, step_name: str, timeout_s: float) -> None:
        super().__init__(f"step {step_name!r} timed out after {timeout_s:g}s")
        self.step_name = step_name
        self.timeout_s = timeout_s


class PolicyViolation(FlujoError):
    """A governance policy denied an input, a tool call or an output.

    The run ends with status ``blocked``; the agent (or tool) is never called.
    """

    def __init__(self, policy: str, reason: str, *, where: str = "input") -> None:
        super().__init__(f"policy {policy!r} denied the {where}: {reason}")
        self.policy = policy
        self.reason = reason
        self.where = where


class ToolCallRefused(PolicyViolation):
    """A policy refused one tool call but lets the step go on.

    Raised from ``inspect_tool_call``: the tool does not run, the agent receives the refusal as
    the tool's result, and the model may choose another way. Raise a plain
    :class:`PolicyViolation` (or return ``DENY``) to block the whole step instead.
    """

    def __init__(self, policy: str, reason: str) -> None:
        super().__init__(policy, reason, where="tool_call")

    @property
    def tool_result(self) -> str:
        """What the agent is told instead of the tool's result."""
        return f"Tool call refused by policy {self.policy!r}: {self.reason}"


class ToolApprovalRequired(PolicyViolation):
    """A policy wants a person to approve one tool call before it runs.

    Raised from ``inspect_tool_call`` (or returned as ``PolicyDecision.APPROVE``, which is the
    same without a reason or an expiry): the tool does not run, the run pauses (holding no
    worker and no lease) until someone answers ``flujo runs approve``/``reject``, and any
    worker then resumes the agent where it stopped. Every other policy is still asked about the
    call first: a deny or a refusal wins over an approval.

    :param expires_in_s: seconds the person has to answer; unanswered by then, the run ends
        ``failed`` (``None``: no expiry).
    """

    def __init__(self, policy: str, reason: str, *, expires_in_s: float | None = None) -> None:
        super().__init__(policy, reason, where="tool_call")
        if expires_in_s is not None and not expires_in_s > 0:
            raise ValueError("ToolApprovalRequired: expires_in_s must be > 0")
        self.expires_in_s = expires_in_s


class UsageLimitExceededError(FlujoError):
    """A run crossed one of its :class:`~flujo.domain.models.UsageLimits`."""


class PluginError(FlujoError):
    """A plugin failed to load or register, or registered something invalid."""

    def __init__(self, plugin: str, message: str) -> None:
        super().__init__(f"plugin {plugin!r}: {message}")
        self.plugin = plugin


class StateError(FlujoError):
    """The state database cannot be opened, migrated or written."""


class LeaseLostError(StateError):
    """Another worker took over this run: this worker must stop, and its writes are refused.

    Raised before the next step once the heartbeat sees the lease gone, and by the state
    backend when a step or the run's end is committed under a lease that is no longer held
    (fencing): nothing of that write is stored.
    """


class UnstorableValueError(FlujoError):
    """A value (step output, context, run input) has no JSON form the state database can hold:
    a lone surrogate, NaN or infinity, bytes that are not UTF-8, an unknown type, a cycle."""


class StateOutdatedError(UserError, StateError):
    """The state database holds tables (the core's, or a plugin's) older than the installed
    code: some of their migrations are applied, newer ones are not. Read-only commands never
    migrate, and must not answer "nothing recorded" from tables they cannot read as they are
    now; the message names the database, the owner, the versions and ``flujo state upgrade``.
    """


class StateNotFoundError(UserError):
    """No state database where one must already exist: read-only commands (``runs list``,
    ``governance audit``, ...) and ``state migrate``'s source never create one."""
