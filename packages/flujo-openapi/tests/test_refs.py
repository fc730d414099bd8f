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
