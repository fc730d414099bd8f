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


def _strict_and_ruff_clean(out: Path, package: str) -> None:
    """``mypy --strict`` on the generated ``package`` in ``out``, then :func:`_ruff_clean`."""
    mypy = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", package],
        cwd=out,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "MYPYPATH": ""},
    )
    assert mypy.returncode == 0, mypy.stdout[-3000:]
    _ruff_clean(out)


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
    _strict_and_ruff_clean(out, "typed")
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


_OVERRIDES = """\
openapi: 3.0.3
info: {title: Overrides, version: "1"}
paths:
  /actions:
    post:
      operationId: postAction
      requestBody:
        required: true
        content:
          application/json:
            schema:
              oneOf:
                - $ref: '#/components/schemas/Action'
                - $ref: '#/components/schemas/ActionRename'
              discriminator:
                propertyName: type
                mapping:
                  reboot: '#/components/schemas/Action'
                  rename: '#/components/schemas/ActionRename'
      responses:
        "200":
          description: ok
          content:
            application/json:
              schema: {$ref: '#/components/schemas/Event'}
  /scaling:
    get:
      operationId: getScaling
      responses:
        "200":
          description: ok
          content:
            application/json:
              schema: {$ref: '#/components/schemas/ScalingServiceTuned'}
  /complete:
    post:
      operationId: complete
      requestBody:
        content:
          application/json:
            schema: {$ref: '#/components/schemas/Completion'}
      responses:
        "204": {description: done}
components:
  schemas:
    Action:
      type: object
      required: [type]
      properties:
        type: {type: string, enum: [reboot, rename]}
    ActionRename:
      allOf:
        - $ref: '#/components/schemas/Action'
        - type: object
          properties:
            name: {type: string}
    Event:
      oneOf:
        - $ref: '#/components/schemas/EventBase'
        - $ref: '#/components/schemas/EventMoved'
      discriminator: {propertyName: kind}
    EventBase:
      type: object
      required: [kind]
      properties:
        kind: {type: string, enum: [created, EventMoved]}
    EventMoved:
      allOf:
        - $ref: '#/components/schemas/EventBase'
        - properties:
            to: {type: string}
    Scaling:
      type: object
      properties:
        metrics:
          type: object
          properties:
            cpu: {type: integer}
    ScalingService:
      allOf:
        - $ref: '#/components/schemas/Scaling'
        - type: object
          properties:
            metrics:
              type: object
              properties:
                rps: {type: integer}
    ScalingServiceTuned:
      allOf:
        - $ref: '#/components/schemas/ScalingService'
        - properties:
            tuned: {type: boolean}
    Completion:
      type: object
      properties:
        stop:
          default: null
          oneOf:
            - type: string
            - type: array
              maxItems: 4
              items: {type: string}
"""


def test_allof_overrides_discriminators_and_null_defaults_are_strict_clean(
    tmp_path: Path,
) -> None:
    # DigitalOcean's 26 mypy --strict errors, three classes: (1) a discriminator became a
    # Literal field on each allOf member, overriding the base's enum (and, where the
    # mapping did not name the member, the literal was the schema's name, rejecting the
    # values the API sends); (2) an allOf member redefining an inherited property with a
    # merged type (Metrics1 over Metrics); (3) `default: null` on a schema that is never
    # null, written as `root: list[str] = None`.
    (tmp_path / "api.yaml").write_text(_OVERRIDES)
    out = tmp_path / "out"
    write_output(generate(str(tmp_path / "api.yaml"), Options(package_name="over")), out)
    _strict_and_ruff_clean(out, "over")
    sys.path.insert(0, str(out))
    try:
        import over  # type: ignore[import-not-found]
        from over import models  # type: ignore[import-not-found]

        post = over.OPERATIONS["postAction"].input_model
        assert post.model_validate({"body": {"type": "reboot"}}).body.type == "reboot"
        renamed = post.model_validate({"body": {"type": "rename", "name": "n"}}).body
        assert (renamed.type, renamed.name) == ("rename", "n")
        event = models.Event.model_validate({"kind": "created"})
        assert event.root.kind == "created"
        tuned = models.ScalingServiceTuned.model_validate(
            {"metrics": {"cpu": 1, "rps": 2}, "tuned": True}
        )
        assert (tuned.metrics.cpu, tuned.metrics.rps, tuned.tuned) == (1, 2, True)
        assert models.Completion().stop is None
    finally:
        sys.path.remove(str(out))
        for name in [m for m in sys.modules if m == "over" or m.startswith("over.")]:
            del sys.modules[name]
