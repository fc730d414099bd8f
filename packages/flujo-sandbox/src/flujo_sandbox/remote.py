"""The ``remote`` backend: HTTP to a sandbox service (``flujo sandbox serve`` or compatible).

Contract: ``POST {api_url}/execute`` with ``{code, language, files, environment, arguments,
timeout_s}`` (plus ``limits``) answering ``{stdout, stderr, exit_code, timed_out, error,
sandbox_id, artifacts}`` (plus ``truncated``, ``duration_ms``, ``limits``, ``backend``), with
an optional ``Authorization: Bearer`` token. This is the shape of flujo 0.6's remote sandbox,
so its sidecars keep working (see ``trust_remote_limits``).

Safety on the client side: a per-request deadline (the execution timeout plus a margin), retries
only when the connection could not be made (a request that reached the service may have run),
a cap on the response size read, and artifact URLs fetched only from the service's own origin.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import os
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

from flujo.domain.interfaces import ExecutionResult, SandboxLimits
from flujo.plugin import outgoing_headers
from flujo_sandbox._common import (
    Intake,
    clean_token,
    limits_to_json,
    reported,
    truncate_text,
)
from flujo_sandbox.errors import (
    SandboxConfigError,
    SandboxFileError,
    SandboxLimitError,
    SandboxRemoteError,
    SandboxRequestError,
    UnsupportedLanguageError,
)
from flujo_sandbox.settings import SandboxSettings

if TYPE_CHECKING:
    import httpx

__all__ = ["RemoteSandbox"]

RESPONSE_MARGIN_S = 10.0
"""How much longer than the execution timeout the client waits for the answer."""


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), port


class RemoteSandbox:
    """Runs code through a sandbox service over HTTP.

    :param settings: ``[sandbox]`` settings; ``api_url`` is required.
    :param api_url: overrides ``settings.api_url``.
    :param token: the bearer token; default: the variable named by ``settings.token_env``.
    :param transport: an ``httpx`` transport (tests pass a mock one).
    """

    name = "remote"
    stateful = False
    enforced_limits = frozenset({"memory_mb", "cpu_s", "pids", "network"})
    """The limits this backend enforces, or raises when the service does not
    confirm them (unless ``trust_remote_limits``; see ``SandboxConformance``)."""
    languages: tuple[str, ...] = ("python", "bash")

    def __init__(
        self,
        settings: SandboxSettings | None = None,
        *,
        api_url: str | None = None,
        token: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.settings = settings or SandboxSettings()
        url = api_url or self.settings.api_url
        if not url:
            raise SandboxConfigError(
                "the remote sandbox needs [sandbox] api_url (e.g. http://127.0.0.1:8787, "
                'served by `flujo sandbox serve`), or set [sandbox] backend = "local"'
            )
        if urlsplit(url).scheme not in ("http", "https"):
            raise SandboxConfigError(f"[sandbox] api_url {url!r} must be http(s)://...")
        self.api_url = url.rstrip("/") + "/"
        self._token = token
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._client_loop: asyncio.AbstractEventLoop | None = None

    def _headers(self) -> dict[str, str]:
        if self._token is not None:
            token = clean_token(self._token, "RemoteSandbox(token=...)")
        else:
            token = clean_token(
                os.environ.get(self.settings.token_env),
                f"{self.settings.token_env} ([sandbox] token_env)",
            )
        # The trace context of the step calling (flujo-otel provides it through the core), so
        # the sidecar's own spans join the run's trace; our headers win on a name.
        headers = {
            **outgoing_headers(),
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    def _http(self) -> httpx.AsyncClient:
        import httpx

        # An httpx client's pooled connections belong to the loop that opened them: make one
        # per event loop (tests and CLI calls each run their own loop).
        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop:
            self._client = httpx.AsyncClient(
                transport=self._transport,
                verify=self.settings.verify_tls,
                follow_redirects=False,
                trust_env=False,
            )
            self._client_loop = loop
        return self._client

    async def aclose(self) -> None:
        """Close the HTTP connections (optional; they are also dropped with the loop)."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _defaults(self) -> SandboxLimits:
        cfg = self.settings.limits
        return SandboxLimits(cfg.memory_mb, cfg.cpu_s, cfg.pids, cfg.output_bytes, cfg.network)

    @reported
    async def exec_code(
        self,
        code: str,
        lang: str = "python",
        *,
        files: Mapping[str, bytes] | None = None,
        timeout_s: float | None = None,
        limits: SandboxLimits | None = None,
    ) -> ExecutionResult:
        """Send ``code`` to the service and return its result (see the module docs).

        Transport failures after retries, HTTP errors and ``429`` come back as results with
        ``error`` set; a service that does not confirm the requested limits raises
        :class:`SandboxLimitError` unless ``trust_remote_limits`` is on.
        """
        intake = Intake(self.settings, "remote", self.languages, self._defaults())
        lang, wanted, clean, timeout = intake.check(lang, files, timeout_s, limits)
        payload_files: dict[str, Any] = {}
        for name, content in clean.items():
            try:
                payload_files[name] = content.decode("utf-8")
            except UnicodeDecodeError:
                payload_files[name] = {"base64": base64.b64encode(content).decode("ascii")}
        payload = {
            "code": code,
            "language": lang,
            "files": payload_files,
            "environment": {},
            "arguments": [],
            "timeout_s": timeout,
            "limits": limits_to_json(wanted),
        }
        started = time.perf_counter()
        status, data, error = await self._post(payload, timeout)
        duration = (time.perf_counter() - started) * 1000
        if data is None:
            return ExecutionResult(
                "", "", None, backend=self.name, duration_ms=duration, error=error
            )
        result = await self._result(data, status, wanted)
        result.duration_ms = duration
        return result

    async def _post(
        self, payload: dict[str, Any], timeout: float
    ) -> tuple[int, dict[str, Any] | None, str | None]:
        import httpx

        client = self._http()
        deadline = httpx.Timeout(
            timeout + RESPONSE_MARGIN_S, connect=self.settings.connect_timeout_s
        )
        body = json.dumps(payload).encode()
        attempt = 0
        while True:
            try:
                request = client.build_request(
                    "POST",
                    urljoin(self.api_url, "execute"),
                    content=body,
                    headers=self._headers(),
                    timeout=deadline,
                )
                response = await client.send(request, stream=True)
                try:
                    raw = await self._read_capped(response)
                finally:
                    await response.aclose()
                break
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                # Only a connection that was never made is safe to retry: the code did not run.
                if attempt >= self.settings.retries:
                    return 0, None, f"cannot reach the sandbox service at {self.api_url}: {exc}"
                attempt += 1
                await asyncio.sleep(min(0.1 * 2**attempt, 2.0))
            except httpx.TimeoutException:
                return (
                    0,
                    None,
                    (f"the sandbox service did not answer within {timeout + RESPONSE_MARGIN_S:g}s"),
                )
            except httpx.HTTPError as exc:
                return 0, None, f"sandbox service request failed: {exc}"
            except SandboxRemoteError as exc:
                return 0, None, str(exc)
        if response.status_code == 429:
            return 429, None, "the sandbox service is busy (HTTP 429); try again later"
        if response.status_code in (401, 403):
            # Refused for who we are, not for what we sent: a configuration problem the
            # caller must fix (wrong token, or a Host/Origin the service does not accept).
            try:
                reason = " ".join(str(json.loads(raw).get("error") or "refused").split())[:300]
            except (ValueError, AttributeError, RecursionError):
                reason = "refused"
            hint = (
                f"; set {self.settings.token_env} (the variable [sandbox] token_env names) "
                "to the token `flujo sandbox serve` printed or was given"
                if response.status_code == 401
                else ""
            )
            raise SandboxConfigError(
                f"the sandbox service at {self.api_url} refused the request "
                f"(HTTP {response.status_code}: {reason}){hint}"
            )
        try:
            data = json.loads(raw)
        except ValueError:
            return (
                response.status_code,
                None,
                (f"sandbox service answered HTTP {response.status_code} with a non-JSON body"),
            )
        if not isinstance(data, dict):
            return response.status_code, None, "sandbox service answered a non-object"
        if response.status_code >= 400:
            message = str(data.get("error") or f"Remote sandbox HTTP {response.status_code}")
            # The service refused the request itself: raise what a local backend would.
            error_type = {
                "file": SandboxFileError,
                "limit": SandboxLimitError,
                "request": SandboxRequestError,
                "language": UnsupportedLanguageError,
            }.get(str(data.get("error_type")))
            if response.status_code == 422 and error_type is not None:
                raise error_type(f"sandbox service: {message}")
            return response.status_code, None, message
        return response.status_code, data, None

    async def _read_capped(self, response: httpx.Response) -> bytes:
        cap = self.settings.max_response_bytes
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > cap:
                raise SandboxRemoteError(f"the sandbox service's response is over {cap} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    async def _result(
        self, data: dict[str, Any], status: int, wanted: SandboxLimits
    ) -> ExecutionResult:
        enforced = data.get("limits")
        if not isinstance(enforced, dict):
            enforced = {}
            if not self.settings.trust_remote_limits:
                raise SandboxLimitError(
                    "the sandbox service did not report the limits it enforced; set [sandbox] "
                    "trust_remote_limits = true to accept it (e.g. a flujo 0.6 sidecar)"
                )
        elif not self.settings.trust_remote_limits:
            self._check_enforced(enforced, wanted)
        exit_code = data.get("exit_code")
        if exit_code is not None and (
            isinstance(exit_code, bool) or not isinstance(exit_code, int)
        ):
            raise SandboxRemoteError(f"invalid exit_code {exit_code!r} from the sandbox service")
        out_limit = wanted.output_bytes or self.settings.limits.output_bytes
        # Cut again here: the service's own cap may be looser than ours.
        stdout, cut_out = truncate_text(str(data.get("stdout") or ""), out_limit)
        stderr, cut_err = truncate_text(str(data.get("stderr") or ""), out_limit)
        artifacts, notes = await self._artifacts(data.get("artifacts"))
        if notes:
            stderr += "".join(f"\n[sandbox] {n}" for n in notes)
        error = data.get("error")
        remote_backend = data.get("backend")
        return ExecutionResult(
            stdout=stdout,
            stderr=stderr,
            exit_code=exit_code,
            timed_out=bool(data.get("timed_out", False)),
            truncated=bool(data.get("truncated", False)) or cut_out or cut_err,
            artifacts=artifacts,
            limits=dict(enforced),
            backend=f"remote({remote_backend})" if isinstance(remote_backend, str) else "remote",
            error=str(error) if error else None,
        )

    @staticmethod
    def _check_enforced(enforced: Mapping[str, Any], wanted: SandboxLimits) -> None:
        for key in ("memory_mb", "cpu_s", "pids"):
            asked = getattr(wanted, key)
            if asked is None:
                continue
            got = enforced.get(key)
            if not isinstance(got, int | float) or got > asked:
                raise SandboxLimitError(
                    f"the sandbox service did not enforce {key}={asked} (it reports {got!r})"
                )
        if not wanted.network and enforced.get("network") is not False:
            raise SandboxLimitError("the sandbox service did not confirm network is off")

    async def _artifacts(self, raw: Any) -> tuple[dict[str, bytes], list[str]]:
        artifacts: dict[str, bytes] = {}
        notes: list[str] = []
        if not isinstance(raw, dict):
            return artifacts, notes
        total = 0
        for name, value in raw.items():
            data: bytes | None = None
            if isinstance(value, str):
                try:
                    data = base64.b64decode(value, validate=True)
                except binascii.Error:
                    data = value.encode("utf-8")
            elif isinstance(value, dict) and isinstance(value.get("base64"), str):
                try:
                    data = base64.b64decode(value["base64"], validate=True)
                except binascii.Error:
                    notes.append(f"artifact {name!r}: invalid base64; skipped")
            elif isinstance(value, dict) and isinstance(value.get("data"), str):
                data = value["data"].encode("utf-8")
            elif isinstance(value, dict) and isinstance(value.get("url"), str):
                data, note = await self._fetch_artifact(str(name), value["url"])
                if note:
                    notes.append(note)
            if data is None:
                continue
            if len(artifacts) >= self.settings.max_artifacts:
                notes.append(f"more than {self.settings.max_artifacts} artifacts; rest skipped")
                break
            if total + len(data) > self.settings.max_artifacts_bytes:
                notes.append(f"artifact {name!r} is over the artifact cap; skipped")
                continue
            total += len(data)
            artifacts[str(name)] = data
        return artifacts, notes

    async def _fetch_artifact(self, name: str, url: str) -> tuple[bytes | None, str | None]:
        import httpx

        absolute = urljoin(self.api_url, url)
        # Never follow an artifact link to another origin: that would let the service (or
        # code that fooled it) make this process fetch arbitrary URLs (SSRF).
        if _origin(absolute) != _origin(self.api_url):
            return None, f"artifact {name!r}: URL on another origin not fetched"
        try:
            request = self._http().build_request(
                "GET",
                absolute,
                headers=self._headers(),
                timeout=self.settings.connect_timeout_s * 6,
            )
            response = await self._http().send(request, stream=True)
            try:
                if response.status_code != 200:
                    return None, f"artifact {name!r}: HTTP {response.status_code}"
                return await self._read_capped(response), None
            finally:
                await response.aclose()
        except (httpx.HTTPError, SandboxRemoteError) as exc:
            return None, f"artifact {name!r}: {exc}"
