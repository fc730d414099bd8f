"""flujo-openapi: ``flujo dev import-openapi`` turns an OpenAPI description into typed tools.

The generated packages use :mod:`flujo_openapi.runtime` (HTTP calls, credentials, agents and
steps); the generator lives in :mod:`flujo_openapi.generator`. This module imports nothing:
Flujo imports the plugin at every start.
"""

__version__ = "0.1.0"
