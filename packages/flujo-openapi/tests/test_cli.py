"""``flujo dev import-openapi`` as a user runs it (a real subprocess), good and bad input."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from openapi_testlib import SPECS, require_corpus

from flujo.testing.cli import run_flujo

PETSTORE = SPECS / "oas30" / "petstore.json"


def flujo(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``flujo ARGS`` in this process (``flujo.cli.main``: the real entry point, exit codes
    and error printing) with no FLUJO_* variables from the outside."""
    from flujo.cli import main

    saved_env = dict(os.environ)
    saved_cwd = Path.cwd()
    out, err = io.StringIO(), io.StringIO()
    code = 0
    try:
        for key in [k for k in os.environ if k.startswith("FLUJO")]:
            del os.environ[key]
        os.environ.update(env or {})
        os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main(list(args))
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
    return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())


def flujo_process(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``python -m flujo ARGS`` as a real process."""
    return run_flujo(*args, cwd=cwd, timeout=180)


def write_spec(path: Path, spec: dict[str, Any]) -> Path:
    path.write_text(json.dumps(spec))
    return path


def minimal(**paths: Any) -> dict[str, Any]:
    return {"openapi": "3.0.3", "info": {"title": "T", "version": "1"}, "paths": paths}


def test_plugins_lists_flujo_openapi(tmp_path: Path) -> None:
    proc = flujo_process("plugins", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    entry = {e["name"]: e for e in json.loads(proc.stdout)}["flujo-openapi"]
    assert entry["status"] == "ok", entry["error"]
    assert entry["hooks"] == ["flujo_register_commands"]


def test_help_lists_dev_without_importing_the_generator(tmp_path: Path) -> None:
    code = (
        "import sys\nfrom flujo.cli import main\ntry:\n    main(['--help'])\n"
        "except SystemExit:\n    pass\n"
        "sys.stderr.write(str(any(m.startswith('flujo_openapi.') and m != 'flujo_openapi.plugin'"
        " for m in sys.modules)))\n"
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FLUJO")}
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=clean, capture_output=True, text=True
    )
    assert "dev" in proc.stdout
    assert proc.stderr.endswith("False"), proc.stderr
    proc = flujo_process("dev", "import-openapi", "--help", cwd=tmp_path)
    for option in (
        "--output-dir",
        "--package-name",
        "--include-tags",
        "--include-paths",
        "--exclude-operations",
        "--check",
        "--force",
        "--refs-root",
    ):
        assert option in proc.stdout


def test_generate_check_regenerate_and_refuse(tmp_path: Path) -> None:
    require_corpus()
    out = tmp_path / "gen"
    proc = flujo("dev", "import-openapi", str(PETSTORE), "--output-dir", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "3 operation(s)" in proc.stdout
    assert "generating models" in proc.stderr  # the progress display
    manifest = json.loads((out / "flujo-openapi.json").read_text())
    assert manifest["package"] == "swagger_petstore"
    assert [op["name"] for op in manifest["operations"]] == [
        "listPets",
        "createPets",
        "showPetById",
    ]
    assert manifest["options"]["include_tags"] == []
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    # Byte-identical regeneration; --check agrees.
    proc = flujo(
        "dev", "import-openapi", str(PETSTORE), "--output-dir", str(out), "-q", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert "0 file(s) changed" in proc.stdout
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    proc = flujo(
        "dev", "import-openapi", str(PETSTORE), "--output-dir", str(out), "--check", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    # A hand edit: --check fails with exit 1 naming the file.
    ops = out / "swagger_petstore" / "operations.py"
    ops.write_text(ops.read_text() + "\n# edited\n")
    proc = flujo(
        "dev", "import-openapi", str(PETSTORE), "--output-dir", str(out), "--check", cwd=tmp_path
    )
    assert proc.returncode == 1
    assert "operations.py" in proc.stderr
    # A file the generator did not make: refused (exit 2, one line), then --force.
    (out / "notes.txt").write_text("mine")
    proc = flujo("dev", "import-openapi", str(PETSTORE), "--output-dir", str(out), cwd=tmp_path)
    assert proc.returncode == 2
    assert "notes.txt" in proc.stderr
    assert "--force" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    proc = flujo(
        "dev",
        "import-openapi",
        str(PETSTORE),
        "--output-dir",
        str(out),
        "--force",
        "-q",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert ops.read_bytes() == before[ops]
    assert (out / "notes.txt").read_text() == "mine"


def test_options_filter_and_manifest_records_them(tmp_path: Path) -> None:
    require_corpus()
    spec = SPECS / "twilio" / "twilio_messaging_v1.json"
    out = tmp_path / "gen"
    proc = flujo(
        "dev",
        "import-openapi",
        str(spec),
        "--output-dir",
        str(out),
        "--package-name",
        "msg",
        "--include-paths",
        "/v1/Services*",
        "--exclude-operations",
        "DeleteService",
        "-q",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((out / "flujo-openapi.json").read_text())
    assert manifest["package"] == "msg"
    paths = {op["path"] for op in manifest["operations"]}
    assert paths
    assert all(p.startswith("/v1/Services") for p in paths)
    assert "DeleteService" not in {op["operation_id"] for op in manifest["operations"]}
    reasons = {e["reason"] for e in manifest["excluded"]}
    assert reasons == {"excluded by --include-paths", "excluded by --exclude-operations"}
    assert manifest["options"]["exclude_operations"] == ["DeleteService"]
    proc = flujo(
        "dev", "import-openapi", str(spec), "--output-dir", str(tmp_path / "t"),
        "--include-tags", "MessagingV1Service", "-q", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((tmp_path / "t" / "flujo-openapi.json").read_text())
    assert {tuple(op["tags"]) for op in manifest["operations"]} == {("MessagingV1Service",)}


def test_skipped_operation_is_listed_with_reason(tmp_path: Path) -> None:
    spec = write_spec(
        tmp_path / "s.json",
        minimal(
            **{
                "/ok": {"get": {"operationId": "ok", "responses": {"200": {"description": "x"}}}},
                "/empty": {
                    "post": {
                        "operationId": "emptyBody",
                        "requestBody": {"content": {}},
                        "responses": {"200": {"description": "x"}},
                    }
                },
                "/broken": {
                    "get": {
                        "operationId": "broken",
                        "parameters": [{"$ref": "#/components/parameters/missing"}],
                        "responses": {"200": {"description": "x"}},
                    }
                },
            }
        ),
    )
    proc = flujo(
        "dev", "import-openapi", str(spec), "--output-dir", str(tmp_path / "o"), cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert "skipped POST /empty (emptyBody): the request body has no content" in proc.stderr
    assert "skipped GET /broken (broken): unresolvable $ref" in proc.stderr
    manifest = json.loads((tmp_path / "o" / "flujo-openapi.json").read_text())
    assert [op["name"] for op in manifest["operations"]] == ["ok"]
    assert {s["operation_id"] for s in manifest["skipped"]} == {"emptyBody", "broken"}


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"openapi": "3.0.3", "paths": {}}, "invalid spec at /info: info must be an object"),
        (
            {"openapi": "3.0.3", "info": {"title": "T", "version": "1"}, "paths": {"/a": []}},
            "invalid spec at /paths/~1a: a path item must be an object",
        ),
        (
            minimal(
                **{"/a": {"get": {"parameters": [{"name": "x", "in": "body"}], "responses": {}}}}
            ),
            "invalid spec at /paths/~1a/get/parameters/0/in: 'in' must be one of",
        ),
        # A path parameter without required: true is a warning now (openapi-python-client's
        # optional-path-param.yaml generates): test_regressions.py.
        # A $ref to a missing component inside a component is a warning now: test_refs.py.
        (
            {**minimal(), "components": {"schemas": {"A": {"$ref": 3}}}},
            "invalid spec at /components/schemas/A/$ref: $ref must be a string",
        ),
        ({"openapi": "4.0.0", "info": {}}, "invalid spec at /openapi: unsupported OpenAPI version"),
        ({"hello": "world"}, "invalid spec at /: not an OpenAPI document"),
        (
            {
                "swagger": "2.0",
                "info": {"title": "T", "version": "1"},
                "paths": {},
                "definitions": {"A": {"$ref": 3}},
            },
            "invalid spec at /definitions/A/$ref: $ref must be a string",
        ),
        (
            {"swagger": "2.0", "info": {"title": "T", "version": "1"}, "paths": {"/a": 1}},
            "invalid spec at /paths/~1a: a path item must be an object",
        ),
    ],
)
def test_invalid_spec_names_pointer_exit_2(
    tmp_path: Path, spec: dict[str, Any], expected: str
) -> None:
    path = write_spec(tmp_path / "bad.json", spec)
    proc = flujo(
        "dev", "import-openapi", str(path), "--output-dir", str(tmp_path / "o"), "-q", cwd=tmp_path
    )
    assert proc.returncode == 2, proc.stderr
    assert expected in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "o").exists()


def test_debug_shows_traceback(tmp_path: Path) -> None:
    path = write_spec(tmp_path / "bad.json", {"openapi": "3.0.3", "paths": {}})
    proc = flujo(
        "--debug",
        "dev",
        "import-openapi",
        str(path),
        "--output-dir",
        str(tmp_path / "o"),
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert "Traceback" in proc.stderr


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda d: d / "missing.json", "no such file"),
        (lambda d: (d / "x.yaml").write_text("a: [b\n") and d / "x.yaml", "not valid JSON or YAML"),
        (lambda d: "http://127.0.0.1:9/spec.json", "cannot fetch http://127.0.0.1:9/spec.json"),
    ],
)
def test_unreadable_spec_exit_2(tmp_path: Path, make: Any, expected: str) -> None:
    proc = flujo(
        "dev", "import-openapi", str(make(tmp_path)), "--output-dir", str(tmp_path / "o"), "-q",
        cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert expected in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_external_and_circular_refs(tmp_path: Path) -> None:
    (tmp_path / "defs").mkdir()
    write_spec(
        tmp_path / "defs" / "node.json",
        {
            "Node": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "children": {"type": "array", "items": {"$ref": "#/Node"}},
                    "owner": {"$ref": "owner.json"},
                },
            }
        },
    )
    write_spec(
        tmp_path / "defs" / "owner.json",
        {
            "type": "object",
            "properties": {"nodes": {"type": "array", "items": {"$ref": "node.json#/Node"}}},
        },
    )
    spec = write_spec(
        tmp_path / "api.json",
        minimal(
            **{
                "/nodes": {
                    "get": {
                        "operationId": "listNodes",
                        "parameters": [{"$ref": "defs/params.json#/limit"}],
                        "responses": {
                            "200": {
                                "description": "ok",
                                "content": {
                                    "application/json": {"schema": {"$ref": "defs/node.json#/Node"}}
                                },
                            }
                        },
                    }
                }
            }
        ),
    )
    write_spec(
        tmp_path / "defs" / "params.json",
        {"limit": {"name": "limit", "in": "query", "schema": {"type": "integer"}}},
    )
    out = tmp_path / "o"
    proc = flujo(
        "dev",
        "import-openapi",
        str(spec),
        "--output-dir",
        str(out),
        "--package-name",
        "nodes",
        "-q",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    code = (
        "import nodes\n"
        "op = nodes.OPERATIONS['listNodes']\n"
        "print(op.output_type.__name__, sorted(op.input_model.model_fields))\n"
        "print(op.output_type.model_validate({'name': 'a', 'children': [{'name': 'b'}],"
        " 'owner': {'nodes': [{'name': 'c'}]}}).owner.nodes[0].name)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], cwd=out, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split("\n")[:2] == ["Node ['limit']", "c"]
    manifest = json.loads((out / "flujo-openapi.json").read_text())
    assert set(manifest["referenced_files"]) == {"node.json", "owner.json", "params.json"}
    # An unresolvable external reference is an error naming it.
    write_spec(tmp_path / "defs" / "params.json", {})
    proc = flujo(
        "dev", "import-openapi", str(spec), "--output-dir", str(tmp_path / "o2"), cwd=tmp_path
    )
    assert proc.returncode == 2
    assert "unresolvable $ref 'defs/params.json#/limit'" in proc.stderr


def test_swagger2_form_data_becomes_form_fields(tmp_path: Path) -> None:
    spec = write_spec(
        tmp_path / "s.json",
        {
            "swagger": "2.0",
            "info": {"title": "Forms", "version": "1"},
            "host": "forms.example",
            "basePath": "/v2",
            "schemes": ["https"],
            "securityDefinitions": {"key": {"type": "apiKey", "in": "header", "name": "api_key"}},
            "security": [{"key": []}],
            "paths": {
                "/pet/{petId}": {
                    "post": {
                        "operationId": "updatePetWithForm",
                        "consumes": ["application/x-www-form-urlencoded"],
                        "parameters": [
                            {"name": "petId", "in": "path", "required": True, "type": "integer"},
                            {"name": "name", "in": "formData", "type": "string"},
                            {
                                "name": "tags",
                                "in": "query",
                                "type": "array",
                                "items": {"type": "string"},
                                "collectionFormat": "pipes",
                            },
                        ],
                        "responses": {"405": {"description": "Invalid input"}},
                    }
                },
                "/pet/{petId}/image": {
                    "post": {
                        "operationId": "uploadFile",
                        "consumes": ["multipart/form-data"],
                        "parameters": [
                            {"name": "petId", "in": "path", "required": True, "type": "integer"},
                            {"name": "file", "in": "formData", "type": "file"},
                        ],
                        "responses": {"200": {"description": "ok", "schema": {"type": "object"}}},
                    }
                },
            },
        },
    )
    out = tmp_path / "o"
    proc = flujo("dev", "import-openapi", str(spec), "--output-dir", str(out), "-q", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    code = (
        "import forms\n"
        "e = forms.OPERATIONS['updatePetWithForm'].endpoint\n"
        "print(e.media_type, e.params['name'].location, e.params['tags'].style, e.security)\n"
        "u = forms.OPERATIONS['uploadFile']\n"
        "print(u.endpoint.media_type, u.input_model.model_fields['file'].annotation)\n"
        "print(forms.DEFAULT_BASE_URL, forms.SECURITY_SCHEMES['key'].env)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], cwd=out, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0] == "application/x-www-form-urlencoded form pipeDelimited (('key',),)"
    assert lines[1] == "multipart/form-data bytes | None"
    assert lines[2] == "https://forms.example/v2 ('FORMS_KEY',)"


def test_user_error_in_a_real_process(tmp_path: Path) -> None:
    path = write_spec(tmp_path / "bad.json", minimal(**{"/a": {"get": {"responses": []}}}))
    proc = flujo_process(
        "dev", "import-openapi", str(path), "--output-dir", "o", "-q", cwd=tmp_path
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "error: invalid spec at /paths/~1a/get/responses: responses must be an object, not an array"
    )
