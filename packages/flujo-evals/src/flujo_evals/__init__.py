"""flujo-evals: shadow evaluations of finished Flujo runs.

Kept empty on purpose: Flujo imports ``flujo_evals.plugin`` (and so this package) at every
startup. The pieces live in submodules: :mod:`flujo_evals.settings` (``[eval]``),
:mod:`flujo_evals.evaluators`, :mod:`flujo_evals.engine`, :mod:`flujo_evals.storage`.
"""
