"""flujo-plugin-example: a ``deny_words`` governance policy and a ``flujo example-hello`` command.

This package is loaded by Flujo through the ``flujo.plugins`` entry point, which names
:mod:`flujo_plugin_example.plugin`. Keep this module empty of imports: it is imported whenever
Flujo starts.
"""
