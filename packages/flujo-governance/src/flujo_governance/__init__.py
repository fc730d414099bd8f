"""flujo-governance: policies that stop sensitive data and dangerous tool calls before an agent
acts.

Policies ``pii`` (:class:`flujo_governance.pii.PIIScrubbingPolicy`) and ``tool_allowlist``
(:class:`flujo_governance.tools.ToolAllowlistPolicy`), the ``policy_decisions`` audit table and
the ``flujo governance`` commands. Flujo loads :mod:`flujo_governance.plugin` through the
``flujo.plugins`` entry point; this module imports nothing so startup stays fast.
"""

__version__ = "0.1.0"
