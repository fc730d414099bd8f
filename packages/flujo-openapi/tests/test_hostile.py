"""Specs written to attack the generator: strings that try to become code, output paths that
try to leave ``--output-dir``, documents that try to exhaust memory or the stack."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tokenize
from pathlib import Path
from typing import Any

import pytest

from flujo_openapi.errors import GenerationError
from flujo_openapi.generator import Options, _tidy_strings, generate, write_output
from flujo_openapi.pysource import check_generated, py_docstring, py_lit, py_str


def _payloads(marker: Path) -> list[str]:
    """Strings that would create ``marker`` if any of them became code."""
    code = f"__import__('pathlib').Path({str(marker)!r}).write_text('pwned')"
    return [
        f'x"""\n{code}\n"""',
        f"x'''\n{code}\n'''",
        f'"\n{code}\n#',
        f"'\n{code}\n#",
        f"\\\n{code}\n",
        f"x\u2028{code}\u2029y",
        f"{{{code}}} {{0}} %s",
        f"\\N{{BULLET}} \\x00 \\u2028 \x00 \r\n{code} \ud800",
        "\u00e9\u2019\u00a0\ufeff\U0001f600 non-ASCII",
        "L" * 10_000,
        f"# {code}\n{code}",
    ]


def hostile_spec(marker: Path) -> dict[str, Any]:
    """An OpenAPI document whose every free-form string is a payload."""
    payloads = _payloads(marker)
    every = "".join(payloads)

    def schema_props() -> dict[str, Any]:
        props: dict[str, Any] = {}
        for index, payload in enumerate(payloads):
            props[payload] = {
                "type": "string",
                "title": payload,
                "description": payload,
                "default": payload,
                "example": payload,
                "examples": [payload],
                "pattern": "^.*$",
            }
            props[f"e{index}"] = {
                "type": "string",
                "enum": [payload, f"other{index}"],
                "description": payload,
            }
        props["n"] = {"type": "integer", "description": every}
        return props

    params: list[dict[str, Any]] = [
        {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}},
    ]
    for index, payload in enumerate(payloads):
        params.append(
            {
                "name": payload,
                "in": ("query", "header", "cookie")[index % 3],
                "description": payload,
                "schema": {"type": "string", "default": payload, "example": payload},
            }
        )
    schemas: dict[str, Any] = {
        "Thing": {
            "type": "object",
            "title": every,
            "description": every,
            "properties": schema_props(),
            "example": {p: p for p in payloads},
        },
        "Choice": {"type": "string", "enum": payloads, "description": every},
    }
    for index, payload in enumerate(payloads[:4]):
        schemas[f"Named{index}{payload}"] = {"type": "object", "description": payload}
    return {
        "openapi": "3.0.3",
        "info": {"title": every, "version": every, "description": every},
        "servers": [{"url": "https://api.example.com/" + every}],
        "tags": [{"name": p, "description": p} for p in payloads],
        "security": [{payloads[0]: []}],
        "paths": {
            "/things/{id}": {
                "summary": every,
                "description": every,
                "post": {
                    "operationId": payloads[0],
                    "summary": every,
                    "description": every,
                    "tags": payloads,
                    "parameters": params,
                    "requestBody": {
                        "description": every,
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/Thing"}}
                        },
                    },
                    "responses": {
                        "200": {
                            "description": every,
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/Thing"}
                                }
                            },
                        },
                        "404": {
                            "description": every,
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "description": every,
                                        "properties": {p: {"type": "string"} for p in payloads},
                                    }
                                }
                            },
                        },
                    },
                },
            },
            **{
                f"/p{index}": {
                    "get": {
                        "operationId": payload,
                        "summary": payload,
                        "tags": [payload],
                        "responses": {"204": {"description": payload}},
                    }
                }
                for index, payload in enumerate(payloads)
            },
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                payloads[0]: {
                    "type": "oauth2",
                    "flows": {
                        "clientCredentials": {
                            "tokenUrl": "https://auth.example.com/" + every,
                            "scopes": {p: p for p in payloads},
                        }
                    },
                },
                payloads[1]: {"type": "apiKey", "in": "header", "name": payloads[2]},
            },
        },
    }


def test_spec_strings_never_become_code(tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    spec = tmp_path / "hostile.json"
    spec.write_text(json.dumps(hostile_spec(marker)))
    out = tmp_path / "out"
    result = generate(str(spec), Options(package_name="hostile"))
    write_output(result, out)
    assert not marker.exists()
    py_files = sorted((out / "hostile").rglob("*.py"))
    assert len(py_files) >= 4
    for path in py_files:
        source = path.read_bytes()
        compile(source, str(path), "exec")  # valid Python, as written
        assert b"\x00" not in source
        # Literals and comments: printable ASCII only, nothing a reader or tool could
        # misread (identifiers datamodel-code-generator derives from names may be non-ASCII).
        tokens = tokenize.tokenize(io.BytesIO(source).readline)
        for tok in tokens:
            if tok.type in (tokenize.STRING, tokenize.COMMENT):
                assert all(32 <= ord(c) < 127 or c == "\n" for c in tok.string), (path, tok)
            elif tok.type != tokenize.NAME:
                assert tok.string.isascii(), (path, tok)
    # Importing (every module, and building the models) runs nothing from the spec.
    code = (
        "import importlib, pkgutil, hostile, hostile.models\n"
        "for m in pkgutil.walk_packages(hostile.models.__path__, 'hostile.models.'):\n"
        "    importlib.import_module(m.name)\n"
        "print(len(hostile.OPERATIONS), hostile.TITLE == " + repr(result.plan.title) + ")\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=out,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(out)},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not marker.exists()
    count, same_title = proc.stdout.split()
    assert int(count) == len(result.plan.operations) > 0
    assert same_title == "True"  # the title survives as data, byte for byte


@pytest.mark.parametrize(
    "value",
    ['"""', "'''", "\\", "\\N{BULLET}", "\x00", "\u2028\u2029", "\r\n", "\ud800", "{x}", "a\n#b"],
)
def test_literals_round_trip(value: str) -> None:
    for text in (value, value * 50, "x" + value + "y" * 200):
        assert eval(py_str(text)) == text
        assert eval(py_lit(text, 4)) == text
        doc = py_docstring(text, 4)
        assert doc.isascii()
        assert isinstance(eval(doc), str)


def test_tidy_strings_joins_adjacent_literals_and_counts_lines_by_newline() -> None:
    # A U+2028 inside an earlier literal must not shift the edits after it; a long literal
    # that is one piece of an implicit concatenation is rewritten with its neighbours.
    long = "word " * 40
    code = f'A = "x\u2028y"\nB = Field(description="{long}" "tail")\nC = ("{long}"\n    "{long}")\n'
    tidied = _tidy_strings(code)
    namespace: dict[str, Any] = {"Field": lambda description: description}
    exec(compile(tidied, "t", "exec"), namespace)
    assert namespace["A"] == "x\u2028y"
    assert namespace["B"] == long + "tail"
    assert namespace["C"] == long + long
    assert tidied.isascii()


@pytest.mark.parametrize(
    "code",
    [
        "import os\n",
        "from subprocess import run\n",
        "x = __import__('os')\n",
        "x = open('f')\n",
        "class A(BaseModel, metaclass=M):\n    pass\n",
        "@print\nclass A:\n    pass\n",
        "x = (lambda: 1)\n",
        "x = Field(default=().__class__)\n",
        "x = '''\n",
    ],
)
def test_check_generated_refuses_code_the_templates_never_emit(code: str) -> None:
    with pytest.raises(GenerationError, match=r"generated m\.py"):
        check_generated(code, "m.py")


# --------------------------------------------------------------------------- documents

_BOMB = "".join(
    f"{name}: &{name} [{', '.join([f'*{prev}' if prev else 'lol'] * 9)}]\n"
    for prev, name in zip(["", *"abcdefgh"], "abcdefghi", strict=True)
)
"""A 9-level YAML alias bomb: a few hundred bytes, 9**9 values once expanded."""


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("bomb.yaml", _BOMB + "openapi: 3.0.0\n", "an alias bomb?"),
        ("self.yaml", "openapi: 3.0.0\nx: &x [1, *x]\n", "refers to a value that contains it"),
        ("deep.json", "[" * 3000 + "]" * 3000, "nested too deeply"),
        ("deep.yaml", "a: " + "[" * 3000 + "]" * 3000 + "\n", "nesting depth"),
        ("deepish.json", '{"a":' * 150 + "1" + "}" * 150, "nested deeper than 100 levels"),
    ],
)
def test_hostile_documents_are_clear_user_errors(
    tmp_path: Path, name: str, text: str, expected: str
) -> None:
    from flujo.testing.cli import run_flujo

    spec = tmp_path / name
    spec.write_text(text)
    # The timeout bounds a hang (the bomb used to grow to gigabytes); it is not a benchmark.
    proc = run_flujo(
        "dev",
        "import-openapi",
        str(spec),
        "--output-dir",
        str(tmp_path / "out"),
        "-q",
        cwd=tmp_path,
        timeout=90,
    )
    assert proc.returncode == 2, proc.stderr
    assert expected in proc.stderr
    assert "Traceback" not in proc.stderr
    assert "internal error" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_yaml_only_scalars_become_json_values(tmp_path: Path) -> None:
    # Unquoted timestamps and dates (DigitalOcean has 59), binary, sets, integer and boolean
    # keys: YAML 1.1 values JSON has not. They become the JSON their text meant.
    from flujo_openapi.loader import load_spec

    spec = tmp_path / "api.yaml"
    spec.write_text(
        "openapi: 3.0.3\n"
        "info: {title: T, version: '1'}\n"
        "paths:\n"
        "  /e:\n"
        "    get:\n"
        "      responses:\n"
        "        200:\n"
        "          description: ok\n"
        "          content:\n"
        "            application/json:\n"
        "              schema: {$ref: '#/components/schemas/E'}\n"
        "components:\n"
        "  schemas:\n"
        "    E:\n"
        "      type: object\n"
        "      example: {when: 2020-07-28T18:00:00Z, day: 2021-01-02, blob: !!binary aGk=}\n"
        "      properties:\n"
        "        when: {type: string, format: date-time, example: 2020-07-28T18:00:00Z,\n"
        "               default: 2020-07-28T18:00:00+02:00}\n"
        "        day: {type: string, format: date, example: 2021-01-02, default: 2021-01-02}\n"
        "        tags: {type: array, items: {type: string}, example: !!set {a, b}}\n"
        "        flags: {type: object, example: {true: 1, 3: x, null: y}}\n"
        "        big: {type: number, example: .inf}\n"
    )
    document = load_spec(str(spec)).document
    props = document["components"]["schemas"]["E"]["properties"]
    assert props["when"]["example"] == "2020-07-28T18:00:00Z"
    assert props["when"]["default"] == "2020-07-28T18:00:00+02:00"
    assert props["day"]["example"] == props["day"]["default"] == "2021-01-02"
    assert props["tags"]["example"] == ["a", "b"]
    assert props["flags"]["example"] == {"true": 1, "3": "x", "null": "y"}
    assert props["big"]["example"] == "inf"
    assert document["components"]["schemas"]["E"]["example"]["blob"] == "aGk="
    assert "200" in document["paths"]["/e"]["get"]["responses"]
    json.dumps(document)  # plain JSON data now
    out = tmp_path / "out"
    write_output(generate(str(spec), Options(package_name="dated")), out)
    assert (out / "dated" / "operations.py").is_file()


# --------------------------------------------------------------------------- the output dir

_SMALL = {
    "openapi": "3.0.3",
    "info": {"title": "Small", "version": "1"},
    "paths": {"/a": {"get": {"operationId": "getA", "responses": {"204": {"description": "ok"}}}}},
}


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    from flujo.testing.cli import run_flujo

    return run_flujo("dev", "import-openapi", *args, "-q", cwd=cwd, timeout=180)


@pytest.mark.parametrize(
    "entry",
    ["../outside/victim.txt", "{outside}/victim.txt", "small/../../outside/victim.txt", "./x"],
)
def test_a_doctored_manifest_cannot_reach_outside(tmp_path: Path, entry: str) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "victim.txt"
    victim.write_text("keep me")
    spec = tmp_path / "api.json"
    spec.write_text(json.dumps(_SMALL))
    out = tmp_path / "out"
    assert _cli(str(spec), "--output-dir", str(out), cwd=tmp_path).returncode == 0
    manifest_path = out / "flujo-openapi.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["files"][entry.format(outside=outside)] = "0" * 64
    manifest_path.write_text(json.dumps(manifest))
    for extra in ((), ("--force",), ("--check",)):
        proc = _cli(str(spec), "--output-dir", str(out), *extra, cwd=tmp_path)
        assert proc.returncode == 2, (extra, proc.stderr)
        assert "not a path inside" in proc.stderr
        assert victim.read_text() == "keep me"


@pytest.mark.parametrize("link", ["small/operations.py", "small", "flujo-openapi.json"])
def test_links_inside_the_output_dir_are_not_followed(tmp_path: Path, link: str) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "operations.py").write_text("keep me")
    (outside / "victim.txt").write_text("keep me")
    spec = tmp_path / "api.json"
    spec.write_text(json.dumps(_SMALL))
    out = tmp_path / "out"
    assert _cli(str(spec), "--output-dir", str(out), cwd=tmp_path).returncode == 0
    manifest = json.loads((out / "flujo-openapi.json").read_text())
    (out / link).unlink() if (out / link).is_file() else _rmtree(out / link)
    target = outside if link == "small" else outside / "victim.txt"
    (out / link).symlink_to(target)
    before = {p.name: p.read_text() for p in outside.iterdir()}
    for extra in ((), ("--force",)):
        proc = _cli(str(spec), "--output-dir", str(out), *extra, cwd=tmp_path)
        assert proc.returncode == 2, (extra, proc.stderr)
        # A linked folder is first refused as foreign; with --force, as a link.
        assert "symbolic link" in proc.stderr or (not extra and "--force" in proc.stderr)
        assert {p.name: p.read_text() for p in outside.iterdir()} == before
    assert manifest["package"] == "small"


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path)


def test_stale_files_are_removed_inside_only(tmp_path: Path) -> None:
    # The legitimate case still works: a file the previous manifest lists, no longer made.
    spec = tmp_path / "api.json"
    spec.write_text(json.dumps(_SMALL))
    out = tmp_path / "out"
    result = generate(str(spec), Options())
    write_output(result, out)
    manifest_path = out / "flujo-openapi.json"
    manifest = json.loads(manifest_path.read_text())
    (out / "small" / "old.py").write_text("# old\n")
    manifest["files"]["small/old.py"] = "0" * 64
    manifest_path.write_text(json.dumps(manifest))
    changed = write_output(result, out)
    assert "small/old.py" in changed
    assert not (out / "small" / "old.py").exists()
