"""Regression tests for issue 16 (real-world specs), each from a minimal spec of our own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from flujo_openapi.errors import GenerationError
from flujo_openapi.generator import Options, _format_with_ruff, generate, write_output

WORDS = " ".join(f"word{i}" for i in range(140))


def _write(tmp_path: Path, spec: dict[str, Any], name: str = "api.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(spec))
    return path


def _ruff_clean(root: Path) -> None:
    for args in (["check", "--isolated"], ["format", "--isolated", "--check"]):
        proc = subprocess.run(
            [sys.executable, "-m", "ruff", *args, str(root)],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=root,
        )
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]


def test_long_descriptions_split_into_literals_stay_valid(tmp_path: Path) -> None:
    # Stripe: a long description is emitted as several literals; one piece holding a
    # non-ASCII character (or escapes that make its line long) was itself split and
    # parenthesized, giving ("..." "...") "..." -- not Python, and ruff format failed.
    curly = "It\u2019s " + WORDS[:400]
    quoted = 'Say "hi"\n' * 40
    spec = {
        "openapi": "3.0.3",
        "info": {"title": "F", "version": "1", "description": curly + quoted},
        "paths": {
            "/a": {
                "get": {
                    "operationId": "getA",
                    "summary": quoted,
                    "description": curly,
                    "parameters": [
                        {"name": "q", "in": "query", "description": curly, "schema": {}}
                    ],
                    "responses": {
                        "200": {
                            "description": "ok",
                            "content": {
                                "application/json": {"schema": {"$ref": "#/components/schemas/A"}}
                            },
                        }
                    },
                }
            }
        },
        "components": {
            "schemas": {
                "A": {
                    "type": "object",
                    "description": curly,
                    "properties": {
                        "x": {"type": "string", "description": WORDS[:830], "default": quoted},
                        "y": {"type": "string", "enum": [WORDS[:830], curly]},
                    },
                }
            }
        },
    }
    out = tmp_path / "out"
    result = generate(str(_write(tmp_path, spec)), Options(package_name="fmt"))
    write_output(result, out)
    _ruff_clean(out)
    sys.path.insert(0, str(out))
    try:
        import fmt  # type: ignore[import-not-found]

        assert fmt.OPERATIONS["getA"].description.startswith(quoted.strip())
    finally:
        sys.path.remove(str(out))


def test_ruff_failure_shows_ruffs_error_and_the_line() -> None:
    with pytest.raises(GenerationError) as caught:
        _format_with_ruff({"pkg/m.py": b"x = 1\ny = (1 +\n"})
    message = str(caught.value)
    assert message.startswith("ruff format failed on the generated code: ")
    assert "Failed to parse pkg/m.py:" in message, message  # ruff's own words
    assert message.endswith("line 2: 'y = (1 +'"), message


def _write_files(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


_REFS_SPEC = {
    "api.yaml": """\
openapi: 3.0.3
info: {title: Refs, version: '1'}
paths:
  /props:
    get:
      operationId: getProps
      responses:
        '200':
          description: ok
          content:
            application/json:
              schema: {$ref: '#/components/schemas/JSONSchemaProps'}
  /droplet:
    get:
      operationId: getDroplet
      responses:
        '200':
          description: ok
          content:
            application/json:
              schema: {$ref: 'common/droplet.yml'}
        default: {$ref: 'common/error.yml'}
components:
  schemas:
    JSONSchemaProps:
      type: object
      example: {$ref: 3}
      properties:
        $ref: {type: string, description: a property literally named $ref}
        $schema: {type: string}
        properties: {$ref: '#/components/schemas/JSONSchemaProps'}
    Local:
      type: object
      properties: {$ref: '#/components/x-maps/local'}
  x-maps:
    local:
      a: {type: integer}
""",
    # A whole properties map given as a $ref, resolved relative to its own file.
    "common/droplet.yml": "type: object\nproperties:\n  $ref: 'attributes.yml#/droplet'\n",
    "common/attributes.yml": """\
droplet:
  id: {type: integer, example: 3}
  region: {$ref: 'region.yml'}
""",
    "common/region.yml": "type: object\nproperties:\n  slug: {type: string}\n",
    # "default" here is a response, not a schema's default value (data).
    "common/error.yml": (
        "description: error\ncontent:\n  application/json:\n    schema:\n"
        "      type: object\n      properties: {message: {type: string}}\n"
    ),
}


def test_a_property_named_ref_and_a_properties_map_given_as_a_ref(tmp_path: Path) -> None:
    # Kubernetes' JSONSchemaProps has a property called $ref (its value a schema, not a
    # string); DigitalOcean gives whole properties maps as $refs to another file.
    _write_files(tmp_path, _REFS_SPEC)
    out = tmp_path / "out"
    result = generate(str(tmp_path / "api.yaml"), Options(package_name="refs"))
    write_output(result, out)
    assert [op.error_keys for op in result.plan.operations] == [[], ["default"]]
    sys.path.insert(0, str(out))
    try:
        from refs.models import (  # type: ignore[import-not-found]
            Droplet,
            JSONSchemaProps,
            Local,
        )

        props = JSONSchemaProps.model_validate(
            {"$ref": "#/x", "$schema": "s", "properties": {"$ref": "#/y"}}
        )
        assert props.model_dump(by_alias=True, exclude_none=True) == {
            "$ref": "#/x",
            "$schema": "s",
            "properties": {"$ref": "#/y"},
        }
        droplet = Droplet.model_validate({"id": 1, "region": {"slug": "nyc1"}})
        assert droplet.region is not None
        assert droplet.region.slug == "nyc1"
        assert Local.model_validate({"a": 2}).a == 2
    finally:
        sys.path.remove(str(out))
    _ruff_clean(out)


def test_a_properties_map_ref_that_does_not_resolve_names_it(tmp_path: Path) -> None:
    from flujo_openapi.errors import RefResolutionError

    files = dict(_REFS_SPEC)
    files["common/droplet.yml"] = "type: object\nproperties:\n  $ref: 'attributes.yml#/nope'\n"
    _write_files(tmp_path, files)
    with pytest.raises(RefResolutionError, match=r"'attributes\.yml#/nope'"):
        generate(str(tmp_path / "api.yaml"), Options(package_name="refs"))


_TYPED = """\
openapi: 3.0.3
info: {title: Typed, version: '1'}
paths:
  /tests/:
    get:
      operationId: test_list
      parameters:
        - {name: id, in: query, schema: {type: string, format: uuid, default: notauuid}}
        - {name: n, in: query, schema: {type: string, format: uuid, default: 3}}
        - {name: when, in: query, schema: {type: string, format: date, default: 2020-01-02}}
        - {name: kind, in: query, schema: {$ref: '#/components/schemas/Kind'}}
        - name: bad_kind
          in: query
          schema: {allOf: [{$ref: '#/components/schemas/Kind'}], default: nope}
      responses:
        '200':
          description: ok
          content:
            application/json:
              schema: {type: array, title: The List, items: {$ref: '#/components/schemas/A'}}
        'abcdef':
          description: not a status code
  /things/{thing}:
    get:
      operationId: getThing
      parameters:
        - {name: thing, in: path, schema: {type: string}}
      responses:
        '200':
          description: ok
          content:
            application/json:
              schema: {$ref: '#/components/schemas/Loop'}
components:
  schemas:
    Kind: {type: string, enum: [a, b], default: a}
    A:
      type: object
      properties:
        kind: {allOf: [{$ref: '#/components/schemas/Kind'}], default: b}
        extra: {type: object, additionalProperties: {$ref: '#/components/schemas/A'}}
        tags: {type: object, additionalProperties: {type: string}}
    Loop:
      type: array
      items:
        type: object
        additionalProperties: {$ref: '#/components/schemas/Loop'}
"""


def test_generated_code_is_strict_clean_and_invalid_defaults_are_reported(
    tmp_path: Path,
) -> None:
    # openapi-python-client's baselines: cast(Annotated[...]) targets, RootModel[list], str
    # defaults on enum fields, an unused typing.Dict, a uuid defaulting to "notauuid",
    # an operation called test_*; and its documents with errors: a status code "abcdef",
    # a path parameter without required: true (treated as required: it generates).
    from flujo.testing.cli import run_flujo

    (tmp_path / "api.yaml").write_text(_TYPED)
    out = tmp_path / "out"
    proc = run_flujo(
        "dev", "import-openapi", "api.yaml", "--output-dir", str(out), "-q",
        cwd=tmp_path,
        timeout=180,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning: ")]
    expected = [
        "'abcdef' is not an HTTP status code",
        "dropped the default 'notauuid' at input TestListInput/properties/id: not a valid uuid",
        "dropped the default 3 at input TestListInput/properties/n: not of type string",
        "dropped the default 'nope' at input TestListInput/properties/bad_kind: not one of",
    ]
    for text in expected:
        assert sum(text in w for w in warnings) == 1, (text, warnings)
    assert len(warnings) == len(expected), warnings
    manifest = json.loads((out / "flujo-openapi.json").read_text())
    assert len(manifest["warnings"]) == len(expected)
    mypy = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "typed"],
        cwd=out,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "MYPYPATH": ""},
    )
    assert mypy.returncode == 0, mypy.stdout[-3000:]
    _ruff_clean(out)
    check = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--isolated", "--select", "E,F,W,I,UP,PT", "."],
        cwd=out,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert check.returncode == 0, check.stdout[-3000:]
    sys.path.insert(0, str(out))
    try:
        import typed  # type: ignore[import-not-found]
        from typed.models import Kind  # type: ignore[import-not-found]

        fields = typed.OPERATIONS["test_list"].input_model.model_fields
        assert fields["id"].default is None
        assert fields["n"].default is None
        assert str(fields["when"].default) == "2020-01-02"
        assert fields["kind"].default is None or fields["kind"].default == Kind.A
    finally:
        sys.path.remove(str(out))
