"""Vector stores of flujo-memory (import the submodules; this package imports nothing heavy)."""
