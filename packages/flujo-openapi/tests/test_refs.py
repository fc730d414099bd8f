"""Where a ``$ref`` may lead: a spec is untrusted input, so its references may only name files
inside the spec's own folder (or the ``--refs-root`` the user names), never a file elsewhere
on disk, another scheme, or a URL. Whatever a reference reads ends up in generated code."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

import pytest
from openapi_testlib import LoopbackAPI, Recorded

from flujo_openapi.errors import RefResolutionError
from flujo_openapi.loader import load_spec

SECRET = "TOPSECRET-do-not-embed"


def _spec(ref: str) -> dict[str, Any]:
    """A spec whose one response schema is ``ref``."""
    return {
        "openapi": "3.0.3",
        "info": {"title": "Refs", "version": "1"},
        "paths": {
            "/a": {
                "get": {
                    "operationId": "getA",
                    "responses": {
                        "200": {
                            "description": "ok",
                            "content": {"application/json": {"schema": {"$ref": ref}}},
                        }
                    },
                }
            }
        },
    }


@pytest.fixture
def layout(tmp_path: Path) -> Path:
    """``tmp_path/secret.yaml`` (outside the spec's folder) and ``tmp_path/api/`` (the spec's
    folder, with ``schemas/pet.yaml`` inside it). Returns the spec's folder."""
    (tmp_path / "secret.yaml").write_text(f"type: string\ndescription: {SECRET}\n")
    api = tmp_path / "api"
    (api / "schemas").mkdir(parents=True)
    (api / "schemas" / "pet.yaml").write_text(
        "type: object\nproperties:\n  owner: {$ref: '../common/owner.yaml'}\n"
    )
    (api / "common").mkdir()
    (api / "common" / "owner.yaml").write_text("type: object\nproperties:\n  n: {type: string}\n")
    return api


def _write(api: Path, ref: str) -> Path:
    spec = api / "spec.json"
    spec.write_text(json.dumps(_spec(ref)))
    return spec


def test_refs_inside_the_spec_folder_are_followed(layout: Path) -> None:
    # Nested files may use ../ as long as the target stays inside the spec's folder.
    loaded = load_spec(str(_write(layout, "schemas/./pet.yaml")))
    schemas = loaded.document["components"]["schemas"]
    assert set(schemas) == {"pet", "owner"}
    loaded = load_spec(str(_write(layout, "common/../schemas/pet.yaml#")))
    assert "pet" in loaded.document["components"]["schemas"]


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("../secret.yaml", "outside"),
        ("schemas/../../secret.yaml", "outside"),
        ("%2e%2e/secret.yaml", "outside"),
        ("%2E%2E%2Fsecret.yaml#/description", "outside"),
        ("{tmp}/secret.yaml", "absolute"),
        ("/etc/passwd", "absolute"),
        ("file://{tmp}/secret.yaml", "scheme 'file'"),
        ("file:../secret.yaml", "scheme 'file'"),
        ("FILE:///etc/passwd#/x", "scheme 'file'"),
        ("//localhost/etc/passwd", "host"),
        ("c:/secret.yaml", "scheme 'c'"),
        ("schemas/pet.yaml%00.json", "NUL"),
    ],
)
def test_refs_that_leave_the_spec_folder_are_refused(
    layout: Path, tmp_path: Path, ref: str, expected: str
) -> None:
    ref = ref.replace("{tmp}", str(tmp_path))
    spec = _write(layout, ref)
    with pytest.raises(RefResolutionError) as info:
        load_spec(str(spec))
    message = str(info.value)
    assert expected in message
    assert repr(ref) in message  # names the ref...
    assert str(spec) in message  # ...and the file it appears in
    assert SECRET not in message
    assert "\n" not in message


def test_a_nested_file_cannot_leave_either(layout: Path) -> None:
    nested = layout / "schemas" / "evil.yaml"
    nested.write_text("type: object\nproperties:\n  s: {$ref: '../../secret.yaml'}\n")
    with pytest.raises(RefResolutionError) as info:
        load_spec(str(_write(layout, "schemas/evil.yaml")))
    assert "'../../secret.yaml'" in str(info.value)
    assert str(nested) in str(info.value)


@pytest.mark.parametrize("kind", ["file", "folder"])
def test_symbolic_links_out_of_the_spec_folder_are_refused(
    layout: Path, tmp_path: Path, kind: str
) -> None:
    # Checked after resolving links: a link inside the folder to a file (or a folder) outside.
    if kind == "file":
        (layout / "link.yaml").symlink_to(tmp_path / "secret.yaml")
        ref = "link.yaml"
    else:
        (layout / "up").symlink_to(tmp_path, target_is_directory=True)
        ref = "up/secret.yaml"
    with pytest.raises(RefResolutionError) as info:
        load_spec(str(_write(layout, ref)))
    assert "outside" in str(info.value)
    assert SECRET not in str(info.value)


def test_a_link_inside_the_folder_to_a_file_inside_it_is_fine(layout: Path) -> None:
    (layout / "alias.yaml").symlink_to(layout / "schemas" / "pet.yaml")
    loaded = load_spec(str(_write(layout, "alias.yaml")))
    assert "owner" in loaded.document["components"]["schemas"]


def test_only_regular_files_are_read(layout: Path) -> None:
    # A FIFO would block the reader forever; a folder is no document.
    os.mkfifo(layout / "pipe.yaml")
    done: list[BaseException] = []

    def load() -> None:
        try:
            load_spec(str(_write(layout, "pipe.yaml")))
        except BaseException as exc:  # noqa: BLE001 -- handed to the test thread
            done.append(exc)

    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    worker.join(30)  # a bound on a hang, not a timing assertion
    assert done, "reading a FIFO blocked"
    assert isinstance(done[0], RefResolutionError)
    assert "not a regular file" in str(done[0])
    with pytest.raises(RefResolutionError, match="not a regular file"):
        load_spec(str(_write(layout, "schemas")))


def test_refs_root_widens_the_tree_the_user_names(layout: Path, tmp_path: Path) -> None:
    # SpaceTraders' root file refers to ../models/: the user may name the tree to allow.
    spec = _write(layout, "../secret.yaml")
    loaded = load_spec(str(spec), refs_root=str(tmp_path))
    assert loaded.document["components"]["schemas"]["secret"]["type"] == "string"
    # Still confined to that tree.
    spec = _write(layout, "../../outside.yaml")
    with pytest.raises(RefResolutionError, match="outside"):
        load_spec(str(spec), refs_root=str(tmp_path))


def test_remote_refs_are_never_fetched(layout: Path, loopback_api: LoopbackAPI) -> None:
    @loopback_api.route("GET", r"/api\.json")
    def api(req: Recorded) -> tuple[int, Any]:
        return 200, _spec("schemas/pet.json")

    @loopback_api.route("GET", r"/.*")
    def anything(req: Recorded) -> tuple[int, Any]:
        return 200, {"type": "string", "description": SECRET}

    absolute = loopback_api.url + "/schemas/pet.json"
    with pytest.raises(RefResolutionError) as info:
        load_spec(str(_write(layout, absolute)))
    assert "never fetched" in str(info.value)
    assert repr(absolute) in str(info.value)
    # A spec read from a URL: its relative references are URLs too.
    with pytest.raises(RefResolutionError, match="never fetched"):
        load_spec(loopback_api.url + "/api.json")
    assert [r.path for r in loopback_api.requests] == ["/api.json"]


def test_a_refused_ref_is_one_line_exit_2(layout: Path, tmp_path: Path) -> None:
    from flujo.testing.cli import run_flujo

    spec = _write(layout, "../secret.yaml")
    out = tmp_path / "out"
    proc = run_flujo(
        "dev", "import-openapi", str(spec), "--output-dir", str(out), "-q", cwd=tmp_path,
        timeout=180,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "'../secret.yaml'" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "Traceback" not in proc.stderr
    assert SECRET not in proc.stderr
    assert not out.exists() or SECRET not in "".join(
        p.read_text(errors="replace") for p in out.rglob("*") if p.is_file()
    )
    proc = run_flujo(
        "dev", "import-openapi", str(spec), "--output-dir", str(out), "-q",
        "--refs-root", str(tmp_path), cwd=tmp_path, timeout=180,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr


# --------------------------------------------------------------------------- dangling refs

DANGLING = """\
openapi: 3.0.3
info: {title: Dangling, version: "1"}
paths:
  /a:
    get:
      operationId: getA
      responses:
        "200":
          description: ok
          content:
            application/json:
              schema: {$ref: '#/components/schemas/A'}
  /b:
    get:
      operationId: getB
      responses:
        "200":
          description: ok
          content:
            application/json:
              schema: {$ref: '#/components/schemas/B'}
  /c:
    post:
      operationId: postC
      requestBody:
        content:
          application/json:
            schema: {$ref: '#/components/schemas/Missing'}
      responses:
        "204": {description: ok}
  /d:
    get:
      operationId: getD
      responses:
        "200": {$ref: '#/components/responses/Gone'}
components:
  schemas:
    A:
      type: object
      properties:
        x: {$ref: '#/components/schemas/Nope', description: a custom attribute}
        y: {type: string}
        z: {type: array, items: {$ref: '#/components/schemas/Nope'}}
    B:
      type: object
      properties:
        a: {$ref: '#/components/schemas/A'}
    Alias: {$ref: '#/components/schemas/NotThere'}
  responses:
    Gone: {$ref: '#/components/responses/Nothing'}
"""


@pytest.mark.parametrize("swagger2", [False, True], ids=["openapi3", "swagger2"])
def test_dangling_refs_in_components_warn_and_type_as_any(tmp_path: Path, swagger2: bool) -> None:
    """Public specs (Intercom, Square, DocuSign, Keycloak) refer to components that do not
    exist. A component's part that names one is typed as any value (warned); an operation
    that itself names one is skipped with the reason; everything else generates."""
    import subprocess
    import sys

    from flujo.testing.cli import run_flujo

    text = DANGLING
    if swagger2:
        text = (
            "swagger: '2.0'\ninfo: {title: Dangling, version: '1'}\nhost: x.example\n"
            "paths:\n  /a:\n    get:\n      operationId: getA\n      responses:\n"
            "        '200': {description: ok, schema: {$ref: '#/definitions/A'}}\n"
            "definitions:\n  A:\n    type: object\n    properties:\n"
            "      x: {$ref: '#/definitions/Nope'}\n      y: {type: string}\n"
        )
    spec = tmp_path / "dangling.yaml"
    spec.write_text(text)
    out = tmp_path / "out"
    proc = run_flujo(
        "dev", "import-openapi", str(spec), "--output-dir", str(out), "--package-name",
        "dangling", "-q", cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((out / "flujo-openapi.json").read_text())
    where = "/definitions/A/properties/x" if swagger2 else "/components/schemas/A/properties/x"
    nope = "#/definitions/Nope" if swagger2 else "#/components/schemas/Nope"
    warned = [w for w in manifest["warnings"] if where in w]
    assert warned, manifest["warnings"]
    assert repr(nope) in warned[0]
    assert "any value" in warned[0]
    assert f"warning: {warned[0]}" in proc.stderr
    names = [op["name"] for op in manifest["operations"]]
    check = (
        "import dangling\n"
        "A = dangling.OPERATIONS['getA'].output_type\n"
        "a = A.model_validate({'x': {'free': [1]}, 'y': 's'})\n"
        "print(a.x, a.y)\n"
    )
    if swagger2:
        assert names == ["getA"]
    else:
        assert names == ["getA", "getB"]
        skipped = {s["operation_id"]: s["reason"] for s in manifest["skipped"]}
        assert set(skipped) == {"postC", "getD"}
        assert "'#/components/schemas/Missing'" in skipped["postC"]
        assert "'#/components/responses/Nothing'" in skipped["getD"]
        assert "skipped POST /c (postC)" in proc.stderr
        joined = "\n".join(manifest["warnings"])
        assert "/components/schemas/Alias" in joined
        assert "/components/responses/Gone" in joined
        check += "print(A.model_validate({'z': [1, 'two']}).z)\n"
    run = subprocess.run(
        [sys.executable, "-c", check], cwd=out, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[0] == "{'free': [1]} s"


def test_a_components_section_given_as_a_ref_to_another_file(tmp_path: Path) -> None:
    """Lichess: ``components: {schemas: {$ref: ./schemas/_index.yaml}}``, an index file whose
    entries are themselves references relative to it; a name in the index may be the stem of
    another file's schema (no clash)."""
    from flujo_openapi.generator import Options, generate

    (tmp_path / "schemas" / "game").mkdir(parents=True)
    (tmp_path / "schemas" / "_index.yaml").write_text(
        "Game: {$ref: './game/Game.yaml'}\n"
        "Clock: {$ref: './Clock.yaml'}\n"
        "Title: {type: string, enum: [GM, IM]}\n"
    )
    (tmp_path / "schemas" / "game" / "Game.yaml").write_text(
        "type: object\nproperties:\n  clock: {$ref: '../Clock.yaml'}\n"
        "  title: {$ref: '../other/Title.yaml'}\n"
    )
    (tmp_path / "schemas" / "Clock.yaml").write_text(
        "type: object\nproperties:\n  t: {type: integer}\n"
    )
    (tmp_path / "schemas" / "other").mkdir()
    (tmp_path / "schemas" / "other" / "Title.yaml").write_text("type: integer\n")
    (tmp_path / "api.yaml").write_text(
        "openapi: 3.1.0\ninfo: {title: Index, version: '1'}\npaths:\n  /g:\n    get:\n"
        "      operationId: getGame\n      responses:\n        '200':\n          description: ok\n"
        "          content: {application/json: {schema: {$ref: '#/components/schemas/Game'}}}\n"
        "components:\n  schemas:\n    $ref: './schemas/_index.yaml'\n"
        "x-webhooks:\n  events:\n    post:\n      responses:\n"
        "        '200': {$ref: 'resources/events/responses/events.yml'}\n"
    )
    document = load_spec(str(tmp_path / "api.yaml")).document
    schemas = document["components"]["schemas"]
    assert schemas["Title"] == {"type": "string", "enum": ["GM", "IM"]}  # not the other file's
    assert schemas["Game"]["properties"]["clock"] == {"$ref": "#/components/schemas/Clock"}
    other = schemas["Game"]["properties"]["title"]["$ref"].rsplit("/", 1)[1]
    assert other != "Title"
    assert schemas[other] == {"type": "integer"}
    # Lob: a vendor extension holding references to files that are not there is data.
    result = generate(str(tmp_path / "api.yaml"), Options(package_name="index"))
    assert [op.name for op in result.plan.operations] == ["getGame"]


def test_a_huge_referenced_file_is_refused_before_it_is_read(layout: Path) -> None:
    # A sparse file in an archive costs nothing to ship and terabytes to read.
    with (layout / "huge.yaml").open("wb") as handle:
        handle.truncate(1 << 40)
    with pytest.raises(RefResolutionError, match="larger than"):
        load_spec(str(_write(layout, "huge.yaml")))
