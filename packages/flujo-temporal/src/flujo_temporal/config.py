"""``[temporal]`` in flujo.toml: where the Temporal server is and how steps run on it."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class TemporalSettings(BaseModel):
    """``[temporal]``: the server, the namespace and the task queue runs are submitted to."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    address: str = Field(default="127.0.0.1:7233", min_length=1)
    """The Temporal frontend, ``host:port``."""
    namespace: str = Field(default="default", min_length=1)
    task_queue: str = Field(default="flujo", min_length=1)
    """Where runs are submitted and where ``flujo temporal worker`` polls (``--task-queue``
    overrides it for the worker)."""
    heartbeat_timeout_s: float = Field(default=30.0, gt=0)
    """A step's activity heartbeats every third of this; a worker silent this long is taken
    for dead and the step is retried on another worker."""
    step_timeout_s: float = Field(default=3600.0, gt=0)
    """The activity timeout of a step that sets no ``timeout_s`` of its own (a step with one
    gets ``timeout_s`` times its attempts, plus a margin)."""
    max_attempts: int = Field(default=10, ge=1)
    """Attempts of one step's activity when its worker dies or the state database fails (a
    step's own ``max_retries`` run inside one attempt, as on the local engine)."""
    retry_initial_s: float = Field(default=1.0, gt=0)
    retry_max_s: float = Field(default=30.0, gt=0)
    max_parts_per_step: int = Field(default=1000, ge=0)
    """Activities one branch, loop, map or parallel step may take for its parts (one per
    branch, item, iteration); past that, the rest runs in the step's last activity (a map
    longer than what is left runs whole there). Bounds the workflow's history."""
    max_concurrent_activities: int = Field(default=32, ge=1)
    """Steps one worker executes at once."""
    embedded_worker: bool = False
    """Also execute this process's own runs in it, on a task queue of its own (for a demo, a
    script, a single machine): the runner's pipeline object is used as is, so it needs no
    reference a separate worker could load. Such a run continues only while the process
    lives; ``flujo temporal worker`` processes are what survive a crash."""
    connect_timeout_s: float = Field(default=10.0, gt=0)
    """How long submitting or starting a worker waits to reach the server."""
