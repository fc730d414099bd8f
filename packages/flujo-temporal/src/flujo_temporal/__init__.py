"""Run Flujo pipelines on Temporal."""
