"""Test helpers and fixtures (imported by conftest.py): corpus, generated packages, loopback API."""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from flujo_openapi.generator import GeneratedFiles, Options, generate, write_output

HERE = Path(__file__).resolve().parent
SPECS = Path(
    os.environ.get("FLUJO_OPENAPI_SPECS") or (HERE / "../../../../shared/openapi-specs")
).resolve()
"""The shared corpus: ``<repo>/../shared/openapi-specs`` (the same layout in CI), or
``$FLUJO_OPENAPI_SPECS`` (a git worktree elsewhere)."""


LOCAL_SPECS = sorted((HERE / "specs").glob("*.yaml"))
"""This package's own specs for constructs the shared corpus lacks (generated with it)."""


def corpus() -> list[Path]:
    """Every spec of the shared corpus (external-file specs by their root file), but the two
    archives (Stripe, DigitalOcean): ``tests/integration/test_openapi_real.py`` runs those."""
    if not SPECS.is_dir():
        return []
    found = sorted(SPECS.glob("*/*.json")) + sorted(SPECS.glob("*/*.yaml"))
    found += sorted(SPECS.glob("swagger2/petstore-separate/spec/swagger.json"))
    # openapi-python-client's documents with deliberate errors: each still generates.
    found += sorted(SPECS.glob("real/opc-documents-with-errors/*.yaml"))
    return found


def refs_root(spec: Path) -> str | None:
    """The folder ``spec``'s references may read (``--refs-root``): petstore-separate's root
    file, in ``spec/``, refers to ``../common/`` -- outside its own folder, the default."""
    if spec.parent.name == "spec" and spec.parent.parent.name == "petstore-separate":
        return str(spec.parent.parent)
    return None


def spec_id(path: Path) -> str:
    """A stable test id and package name for a corpus spec."""
    if path in LOCAL_SPECS:
        return "local_" + re.sub(r"[^a-z0-9]+", "_", path.stem.lower())
    rel = path.relative_to(SPECS).as_posix()
    return re.sub(r"[^a-z0-9]+", "_", rel.removesuffix(".json").lower()).strip("_")


def require_corpus() -> None:
    """Skip when the shared corpus is missing -- but fail in CI, where it must be present."""
    if corpus():
        return
    message = f"shared OpenAPI corpus not found at {SPECS}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message + " (CI=true: it must be copied beside the clone)")
    pytest.skip(message)


@dataclass
class Generated:
    """One corpus spec, generated into ``root`` as package ``package``."""

    spec: Path
    root: Path
    package: str
    result: GeneratedFiles

    def module(self) -> ModuleType:
        """Import the generated package."""
        if str(self.root) not in sys.path:
            sys.path.insert(0, str(self.root))
        return importlib.import_module(self.package)


@dataclass
class Corpus:
    """Every corpus spec generated once, and one mypy --strict run over all of them."""

    packages: dict[str, Generated]
    mypy_output: str
    mypy_status: int

    def mypy_errors_for(self, generated: Generated) -> list[str]:
        """mypy's error lines about files of ``generated``."""
        marker = f"{generated.package}/"
        return [
            line
            for line in self.mypy_output.splitlines()
            if marker in line.replace(os.sep, "/") and ": error:" in line
        ]


@pytest.fixture(scope="session")
def generated_corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    """Generate every corpus spec (package name = its id) and type-check all in one mypy run."""
    require_corpus()
    return generate_and_check(
        {spec_id(spec): spec for spec in [*corpus(), *LOCAL_SPECS]},
        tmp_path_factory.mktemp("corpus"),
    )


def generate_and_check(specs: dict[str, Path], base: Path) -> Corpus:
    """Generate each spec (package name -> spec) under ``base``; one mypy --strict run."""
    packages: dict[str, Generated] = {}
    for name, spec in specs.items():
        result = generate(str(spec), Options(package_name=name, refs_root=refs_root(spec)))
        root = base / name
        write_output(result, root)
        packages[name] = Generated(spec, root, name, result)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-incremental",
            "--cache-dir",
            str(base / ".mypy_cache"),
            *(str(g.root / g.package) for g in packages.values()),
        ],
        cwd=base,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "MYPYPATH": ""},
    )
    return Corpus(packages, proc.stdout + proc.stderr, proc.returncode)


# --------------------------------------------------------------------------- loopback API


@dataclass
class Recorded:
    """One request the loopback server received."""

    method: str
    path: str
    query: list[tuple[str, str]]
    headers: dict[str, str]
    body: bytes

    @property
    def form(self) -> dict[str, list[str]]:
        """The body parsed as ``application/x-www-form-urlencoded``."""
        out: dict[str, list[str]] = {}
        for key, value in parse_qsl(self.body.decode(), keep_blank_values=True):
            out.setdefault(key, []).append(value)
        return out

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)


Handler = Callable[[Recorded], tuple[int, Any]]


@dataclass
class LoopbackAPI:
    """A small HTTP server on 127.0.0.1; routes are ``(METHOD, path regex) -> handler``."""

    url: str
    routes: dict[tuple[str, str], Handler] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)

    def route(self, method: str, pattern: str) -> Callable[[Handler], Handler]:
        """Register a handler returning ``(status, json body or bytes or None)``."""

        def decorate(fn: Handler) -> Handler:
            self.routes[(method, pattern)] = fn
            return fn

        return decorate

    @property
    def last(self) -> Recorded:
        """The latest request."""
        return self.requests[-1]


PETS = {
    1: {"id": 1, "name": "Rex", "tag": "dog"},
    2: {"id": 2, "name": "Tom", "tag": "cat"},
}


def _install_default_routes(api: LoopbackAPI) -> None:
    @api.route("GET", r"/v1/pets")
    def list_pets(req: Recorded) -> tuple[int, Any]:
        limit = int(dict(req.query).get("limit", "100"))
        return 200, list(PETS.values())[:limit]

    @api.route("POST", r"/v1/pets")
    def create_pet(req: Recorded) -> tuple[int, Any]:
        return 201, None

    @api.route("GET", r"/v1/pets/(?P<id>[^/]+)")
    def show_pet(req: Recorded) -> tuple[int, Any]:
        pet_id = req.path.rsplit("/", 1)[-1]
        if pet_id.isdigit() and int(pet_id) in PETS:
            return 200, PETS[int(pet_id)]
        return 404, {"code": 404, "message": f"no pet {pet_id}"}

    @api.route("POST", r"/2010-04-01/Accounts/(?P<sid>AC\w+)/Messages\.json")
    def create_message(req: Recorded) -> tuple[int, Any]:
        form = req.form
        sid = req.path.split("/")[3]
        return 201, {
            "sid": "SM" + "b" * 32,
            "account_sid": sid,
            "to": form.get("To", [""])[0],
            "from": form.get("From", [""])[0],
            "body": form.get("Body", [""])[0],
            "status": "queued",
            "num_segments": "1",
        }


@pytest.fixture
def loopback_api() -> Iterator[LoopbackAPI]:
    """A loopback HTTP server with a petstore subset and a Twilio-style form endpoint."""
    holder: dict[str, LoopbackAPI] = {}

    class _Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _serve(self) -> None:
            api = holder["api"]
            split = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            req = Recorded(
                self.command,
                split.path,
                parse_qsl(split.query, keep_blank_values=True),
                {k.lower(): v for k, v in self.headers.items()},
                body,
            )
            api.requests.append(req)
            for (method, pattern), handler in api.routes.items():
                if method == self.command and re.fullmatch(pattern, split.path):
                    status, payload = handler(req)
                    break
            else:
                status, payload = 404, {"code": 404, "message": "no route"}
            data = (
                payload
                if isinstance(payload, bytes)
                else b""
                if payload is None
                else json.dumps(payload).encode()
            )
            self.send_response(status)
            if data:
                kind = (
                    "application/octet-stream" if isinstance(payload, bytes) else "application/json"
                )
                self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    api = LoopbackAPI(f"http://127.0.0.1:{server.server_address[1]}")
    holder["api"] = api
    _install_default_routes(api)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield api
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
