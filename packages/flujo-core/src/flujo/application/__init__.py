"""Orchestration: the runner, the execution of steps and background work."""
