"""Every spec of the shared corpus generates, imports, type-checks and lints cleanly."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from openapi_testlib import LOCAL_SPECS, Corpus, corpus, refs_root, require_corpus, spec_id

from flujo_openapi.runtime import Operation

SPEC_IDS = [spec_id(p) for p in [*corpus(), *LOCAL_SPECS]] if corpus() else ["missing-corpus"]
# Things that are not operations you call; anything else skipped is a failure.
EXPLAINED = ("webhook:", "callback ")
BROKEN_ON_PURPOSE = ("circular $ref ", "unresolvable $ref ")
"""Skips in openapi-python-client's documents with errors (a request body ``$ref`` that is
circular or missing), and only there."""


def test_corpus_is_present() -> None:
    require_corpus()
    assert len(corpus()) >= 19


@pytest.mark.parametrize("name", SPEC_IDS)
def test_spec_generates_and_imports(generated_corpus: Corpus, name: str) -> None:
    generated = generated_corpus.packages[name]
    manifest = json.loads((generated.root / "flujo-openapi.json").read_text())
    assert manifest["generator"] == "flujo-openapi"
    assert len(manifest["spec_sha256"]) == 64
    explained = EXPLAINED + (BROKEN_ON_PURPOSE if "documents_with_errors" in name else ())
    for skipped in manifest["skipped"]:
        assert skipped["reason"].startswith(explained) or skipped["path"].startswith("webhook:"), (
            f"unexplained skip in {name}: {skipped}"
        )
    module = generated.module()
    operations = module.OPERATIONS
    assert len(operations) == len(manifest["operations"])
    names = list(operations)
    assert len(set(names)) == len(names)
    for tool, op in operations.items():
        assert isinstance(op, Operation)
        assert len(tool) <= 64
        assert op.name == tool
        assert op.description
        assert op.method in {"GET", "PUT", "POST", "DELETE", "OPTIONS", "HEAD", "PATCH", "TRACE"}
        # The tool schema a model sees: no credentials, no base URL.
        schema = op.input_model.model_json_schema()
        props = set(schema.get("properties", {}))
        assert not props & {"base_url", "auth", "http_client"}, props
        api_keys = {s.param_name for s in module.SECURITY_SCHEMES.values() if s.param_name}
        assert not props & api_keys, (tool, props & api_keys)
    assert callable(module.make_agent)
    assert callable(module.make_operation_step)
    for tag in module.TAGS:
        assert any(n.startswith("make_") and n.endswith("_agent") for n in module.__all__), tag


@pytest.mark.parametrize("name", SPEC_IDS)
def test_spec_type_checks_strict(generated_corpus: Corpus, name: str) -> None:
    generated = generated_corpus.packages[name]
    errors = generated_corpus.mypy_errors_for(generated)
    assert not errors, "\n".join(errors[:20])
    assert "error:" not in generated_corpus.mypy_output or errors == [], (
        generated_corpus.mypy_output[-2000:]
    )


def test_mypy_ran_clean(generated_corpus: Corpus) -> None:
    assert generated_corpus.mypy_status == 0, generated_corpus.mypy_output[-3000:]
    assert "Success" in generated_corpus.mypy_output


def test_generated_code_is_ruff_clean(generated_corpus: Corpus) -> None:
    roots = [str(g.root) for g in generated_corpus.packages.values()]
    # From the output's folder, as a user's project would (in this repo, ruff would count
    # flujo_openapi as first-party and sort its imports differently).
    cwd = next(iter(generated_corpus.packages.values())).root.parent
    rules = "E,F,W,I,B,UP,RUF,SIM,BLE,PT"
    check = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--isolated", "--select", rules, *roots],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
    )
    assert check.returncode == 0, check.stdout[-3000:]
    fmt = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--isolated", "--check", *roots],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
    )
    assert fmt.returncode == 0, fmt.stdout[-3000:]


def test_twilio_expectations(generated_corpus: Corpus) -> None:
    require_corpus()
    generated = generated_corpus.packages["twilio_twilio_api_v2010"]
    module = generated.module()
    assert len(module.OPERATIONS) >= 190
    create = module.OPERATIONS["CreateMessage"]
    assert create.endpoint.media_type == "application/x-www-form-urlencoded"
    assert create.endpoint.params["To"].location == "form"
    assert create.endpoint.params["AccountSid"].location == "path"
    assert create.endpoint.security == (("accountSid_authToken",),)
    # Dotted schema names became modules: api.v2010.account -> models/api/v2010/account.
    assert (generated.root / generated.package / "models" / "api" / "v2010").is_dir()
    schema = create.input_model.model_json_schema()
    assert "From" in schema["properties"]
    assert schema["properties"]["To"]["description"]


def test_regeneration_is_byte_identical(generated_corpus: Corpus) -> None:
    from flujo_openapi.generator import Options, check_output, generate

    for name in ("twilio_twilio_messaging_v1", "swagger2_petstore_separate_spec_swagger"):
        generated = generated_corpus.packages[name]
        again = generate(
            str(generated.spec), Options(package_name=name, refs_root=refs_root(generated.spec))
        )
        assert again.files == generated.result.files
        assert check_output(again, generated.root) == []


def test_edge_cases(generated_corpus: Corpus) -> None:
    module = generated_corpus.packages["local_edge_cases"].module()
    ops = module.OPERATIONS
    assert set(ops) == {
        "listThings",
        "cast",
        "account",
        "put__things_id_account",
        "sharedItem",
        "make_client",
    }
    # Functions renamed where they would shadow what the module imports.
    assert ops["cast"].function.__name__ == "cast_op"
    assert ops["make_client"].function.__name__ == "make_client_2"
    listing = ops["listThings"].endpoint.params
    assert (listing["query_from"].location, listing["query_from"].wire_name) == ("query", "from")
    assert (listing["header_from"].location, listing["header_from"].wire_name) == ("header", "from")
    assert ops["account"].endpoint.output_kind == "bytes"
    assert ops["put__things_id_account"].endpoint.output_kind == "text"
    assert ops["put__things_id_account"].endpoint.media_type == "text/plain"
    assert module.DEFAULT_BASE_URL == "/relative"
    from flujo.domain.errors import ConfigError

    with pytest.raises(ConfigError, match="EDGE_CASES_BASE_URL"):
        module.make_client()
