"""The ``[sandbox]`` section of ``flujo.toml``."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Backend", "LimitsSettings", "SandboxSettings"]

Backend = Literal["local", "remote", "docker", "e2b"]
"""The backends this package builds itself. ``[sandbox] backend`` takes any registered sandbox
name, these or another plugin's."""


class LimitsSettings(BaseModel):
    """``[sandbox.limits]``: default resource ceilings for every execution.

    ``None`` means "the backend's own default" (``local``: 512 MB, 30 CPU-seconds, 64
    processes). A backend that cannot enforce a value that is set raises instead of ignoring it.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    memory_mb: int | None = Field(default=None, ge=16)
    """Address-space ceiling per process, in MiB."""
    cpu_s: float | None = Field(default=None, gt=0)
    """CPU seconds per process."""
    pids: int | None = Field(default=None, ge=1, le=4096)
    """Processes (and threads) the code may have at once."""
    output_bytes: int = Field(default=1_000_000, ge=256)
    """Bytes kept per stream (stdout, stderr); the head and the tail are kept."""
    network: bool = False
    """Whether the code may reach the network. Only ``false`` is supported by ``local``."""


class SandboxSettings(BaseModel):
    """``[sandbox]``: which backend runs code and how.

    ```toml
    [sandbox]
    backend = "local"
    timeout_s = 30

    [sandbox.limits]
    memory_mb = 256
    pids = 32
    ```

    Override one value from the environment: ``FLUJO__SANDBOX__BACKEND=local``,
    ``FLUJO__SANDBOX__LIMITS='{"pids": 32}'``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: str = Field(default="auto", min_length=1)
    """Any registered sandbox name (``flujo plugins`` lists them): ``local`` (bubblewrap on
    this machine), ``remote`` (a sandbox service at ``api_url``), ``docker``, ``e2b``, or one
    another plugin registered; or ``auto`` (the default): ``remote`` when ``api_url`` is set,
    else ``local`` when it can run here, else an error saying how to choose (never
    ``docker``/``e2b``, never unsandboxed). An unknown name is an error listing the
    registered names and the plugin of each."""
    timeout_s: float = Field(default=30.0, gt=0, le=3600)
    """Wall-clock limit of one execution when the caller gives none."""
    max_timeout_s: float = Field(default=300.0, gt=0, le=86400)
    """The largest ``timeout_s`` a caller (or a sidecar client) may ask for."""
    limits: LimitsSettings = Field(default_factory=LimitsSettings)

    # files and artifacts
    max_files: int = Field(default=100, ge=0)
    """How many input files one execution may receive."""
    max_files_bytes: int = Field(default=10_000_000, ge=0)
    """Total size of the input files of one execution."""
    max_artifacts: int = Field(default=20, ge=0)
    """How many files of ``out/`` are returned as artifacts."""
    max_artifacts_bytes: int = Field(default=10_000_000, ge=0)
    """Total size of the artifacts returned; files past the cap are left out."""
    max_write_bytes: int = Field(default=64_000_000, ge=0)
    """Largest file the code may write (``local``: ``RLIMIT_FSIZE``)."""

    # remote
    api_url: str | None = None
    """Base URL of the sandbox service (``remote``), e.g. ``http://127.0.0.1:8787``."""
    token_env: str = "FLUJO_SANDBOX_TOKEN"
    """Environment variable holding the bearer token (client and ``serve``); unset = none."""
    connect_timeout_s: float = Field(default=5.0, gt=0)
    """``remote``: how long to wait for a connection."""
    retries: int = Field(default=2, ge=0, le=10)
    """``remote``: retries on connection errors only (never once a request was sent)."""
    max_response_bytes: int = Field(default=64_000_000, ge=1024)
    """``remote``: larger responses are refused."""
    verify_tls: bool = True
    """``remote``: verify the service's TLS certificate."""
    trust_remote_limits: bool = False
    """``remote``: accept a service that does not report the limits it enforced (sidecars
    from flujo 0.6 do not). Off by default: unconfirmed limits fail closed."""

    # local
    python: str | None = None
    """``local``: the interpreter to run inside the sandbox (default ``/usr/bin/python3``,
    else the running interpreter's installation)."""
    run_as_uid: int = Field(default=65534, ge=1, lt=2**31)
    """``local`` on a root host: the unprivileged uid (and gid) bubblewrap is started as, so
    the process limit binds. Default 65534 (``nobody``)."""
    work_root: str | None = None
    """``local``: where per-execution work folders are created (default: the temp folder)."""
    cgroups: Literal["auto", "require", "off"] = "auto"
    """``local``: also cap each execution's *total* memory and processes with a cgroup (v1
    ``memory`` + ``pids`` controllers, writable when the host runs as root in most
    containers). ``auto`` uses them when writable, ``require`` refuses to run without them,
    ``off`` relies on per-process rlimits only."""

    # docker
    docker_image: str = "python:3.12-slim"
    """``docker``: the image (must contain ``python3``); never pulled implicitly."""

    # e2b
    e2b_api_key_env: str = "E2B_API_KEY"
    """``e2b``: environment variable holding the E2B API key."""
    e2b_template: str | None = None
    """``e2b``: sandbox template (default: E2B's code-interpreter template)."""
    e2b_stateful: bool = False
    """``e2b``: keep one sandbox for every execution (files and variables persist)."""
