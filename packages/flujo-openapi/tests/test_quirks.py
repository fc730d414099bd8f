"""The long tail of public API descriptions (issue #24): one minimal spec of our own per class.

The specs are ``tests/specs/quirks/*.yaml``, generated once per module (without the shared
corpus), type-checked in one ``mypy --strict`` run and linted like the corpus. These tests
check what each class must come out as, and call the generated operations against a loopback
HTTP server where the wire matters.
"""

from __future__ import annotations

import ast
import copy
import inspect
import random
import re
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, distribution, packages_distributions
from pathlib import Path
from typing import Any

import pytest
from openapi_testlib import HERE, Corpus, LoopbackAPI, Recorded, generate_and_check
from packaging.requirements import Requirement

from flujo_openapi.loader import _parse
from flujo_openapi.naming import tool_name
from flujo_openapi.normalize import normalize, status_key
from flujo_openapi.runtime import ApiError

TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
LONG_TEXT = HERE / "specs" / "quirks" / "quirks_long_text.yaml"
QUIRKS = sorted(p for p in (HERE / "specs" / "quirks").glob("*.yaml") if p != LONG_TEXT)


@pytest.fixture(scope="module")
def quirks(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    """Every quirks spec generated (package name = file stem), with one mypy --strict run."""
    return generate_and_check({p.stem: p for p in QUIRKS}, tmp_path_factory.mktemp("quirks"))


def _module(corpus: Corpus, name: str) -> Any:
    return corpus.packages[name].module()


@pytest.mark.parametrize("name", [p.stem for p in QUIRKS])
def test_quirks_spec_generates_everything_cleanly(quirks: Corpus, name: str) -> None:
    generated = quirks.packages[name]
    assert generated.result.plan.skipped == []
    assert len(generated.module().OPERATIONS) == len(generated.result.plan.operations)
    assert not quirks.mypy_errors_for(generated), "\n".join(quirks.mypy_errors_for(generated))


def test_quirks_mypy_and_ruff_clean(quirks: Corpus) -> None:
    assert quirks.mypy_status == 0, quirks.mypy_output[-3000:]
    roots = [str(g.root) for g in quirks.packages.values()]
    cwd = next(iter(quirks.packages.values())).root.parent
    rules = "E,F,W,I,B,UP,RUF,SIM,BLE,PT"
    for args in (["check", "--select", rules], ["format", "--check"]):
        proc = subprocess.run(
            [sys.executable, "-m", "ruff", args[0], "--isolated", *args[1:], *roots],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=cwd,
        )
        assert proc.returncode == 0, proc.stdout[-3000:]


def _spec_enum(spec: Path, *keys: str) -> list[Any]:
    node: Any = _parse(spec.read_bytes(), str(spec))
    for key in keys:
        node = node[key]
    assert isinstance(node, list)
    return node


# --------------------------------------------------------------------------- 1, 2


def test_status_codes_as_integers_ranges_and_default(quirks: Corpus) -> None:
    module = _module(quirks, "quirks_responses_media")
    ops = module.OPERATIONS
    assert set(ops["intCodes"].endpoint.errors) == {"404"}
    assert ops["intCodes"].endpoint.output_kind == "json"
    assert set(ops["ranges"].endpoint.errors) == {"4XX"}
    assert ops["ranges"].output_type == list[int]
    # Only `default`: it describes the success too.
    assert ops["onlyDefault"].endpoint.output_kind == "json"
    assert "value" in ops["onlyDefault"].output_type.model_fields


def test_status_key() -> None:
    assert [status_key(c) for c in (200, "2xx", "4XX", "Default", " 404 ")] == [
        "200",
        "2XX",
        "4XX",
        "default",
        "404",
    ]


async def test_media_types_with_parameters_vendor_json_and_non_json(
    quirks: Corpus, loopback_api: LoopbackAPI
) -> None:
    module = _module(quirks, "quirks_responses_media")
    ops = module.OPERATIONS
    client = module.make_client(base_url=loopback_api.url)

    @loopback_api.route("GET", r"/int-codes")
    def int_codes(req: Recorded) -> tuple[int, Any]:
        return 404, {"detail": "gone"}

    with pytest.raises(ApiError) as caught:
        await ops["intCodes"].function(ops["intCodes"].input_model(), client=client)
    assert caught.value.documented
    assert caught.value.data.detail == "gone"

    @loopback_api.route("POST", r"/vendor")
    def vendor(req: Recorded) -> tuple[int, Any]:
        return 201, {"id": req.json()["name"]}

    vendor_op = ops["vendorJson"]
    assert vendor_op.endpoint.media_type == "application/vnd.example.v2+json"
    created = await vendor_op.function(
        vendor_op.input_model.model_validate({"body": {"name": "n1"}}), client=client
    )
    assert created.id == "n1"
    assert loopback_api.last.headers["content-type"] == "application/vnd.example.v2+json"

    @loopback_api.route("PUT", r"/xml-only")
    def xml_only(req: Recorded) -> tuple[int, Any]:
        return 200, b"a,b\n1,2\n"

    xml = ops["xmlOnly"]
    assert (xml.endpoint.media_type, xml.endpoint.output_kind) == ("application/xml", "text")
    text = await xml.function(xml.input_model(body="<a>x</a>"), client=client)
    assert text == "a,b\n1,2\n"
    assert loopback_api.last.body == b"<a>x</a>"
    assert loopback_api.last.headers["content-type"] == "application/xml"

    form = ops["formCharset"]
    assert form.endpoint.media_type == "application/x-www-form-urlencoded"
    assert form.endpoint.output_kind == "bytes"

    @loopback_api.route("POST", r"/form-charset")
    def form_charset(req: Recorded) -> tuple[int, Any]:
        return 200, b"%PDF-1.4"

    assert await form.function(form.input_model(q="x", n=2), client=client) == b"%PDF-1.4"
    assert loopback_api.last.form == {"q": ["x"], "n": ["2"]}
    assert {p.location for p in ops["contentParam"].endpoint.params.values()} == {"query"}


# --------------------------------------------------------------------------- 3


def _import_roots(package_dir: Path) -> set[str]:
    roots: set[str] = set()
    for file in package_dir.rglob("*.py"):
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                roots.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                roots.add(node.module.split(".")[0])
    return roots


def _dependency_closure(dist_name: str) -> set[str]:
    """``dist_name`` and every distribution it requires (without extras), normalized."""
    seen: set[str] = set()
    todo = [dist_name]
    while todo:
        name = re.sub(r"[-_.]+", "-", todo.pop()).lower()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = distribution(name).requires or []
        except PackageNotFoundError:
            continue  # an optional dependency that is not installed
        for line in requires:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return seen


_WORKSPACE = {"flujo": ["flujo-core"], "flujo_openapi": ["flujo-openapi"]}


def test_generated_imports_are_installed_with_flujo_openapi(quirks: Corpus) -> None:
    """Every module the generated code imports comes from the standard library or from a
    distribution flujo-openapi depends on (not one a developer happens to have installed)."""
    closure = _dependency_closure("flujo-openapi")
    providers = packages_distributions()
    for name, generated in quirks.packages.items():
        roots = _import_roots(generated.root / generated.package) - {generated.package}
        for root in sorted(roots):
            if root in sys.stdlib_module_names or root == "__future__":
                continue
            # Editable installs of this workspace's packages record no top-level names.
            found = providers.get(root) or _WORKSPACE.get(root, [])
            dists = {re.sub(r"[-_.]+", "-", d).lower() for d in found}
            assert dists & closure, f"{name} imports {root!r}, which flujo-openapi does not install"


def test_formats_that_need_other_packages_or_change_what_is_sent(
    quirks: Corpus,
) -> None:
    module = _module(quirks, "quirks_enums_formats")
    account = module.OPERATIONS["createAccount"].output_type
    fields = account.model_fields
    for name in ("email", "contact", "password", "ulid", "size", "token", "rfc"):
        assert fields[name].annotation in (str, str | None), (name, fields[name].annotation)
    for name in ("big", "at"):
        assert fields[name].annotation == int | None
    value = account(email="not-validated@example", password="s3cret")
    # format: password would be SecretStr, which serializes as '**********'.
    assert value.model_dump(mode="json", exclude_unset=True) == {
        "email": "not-validated@example",
        "password": "s3cret",
    }
    # An invalid pattern is dropped; a lookaround pattern is kept and enforced.
    account(email="a", password="b", code="[a-")
    with pytest.raises(ValueError, match="strong"):
        account(email="a", password="b", strong="weak")
    account(email="a", password="b", strong="Strong123")


# --------------------------------------------------------------------------- 4, 5, 7, 8


def test_swagger2_not_quite_valid(quirks: Corpus) -> None:
    module = _module(quirks, "quirks_swagger2")
    record = module.OPERATIONS["getRecord"].output_type
    spec = quirks.packages["quirks_swagger2"].spec
    fields = record.model_fields
    assert fields["id"].is_required()
    assert fields["id"].annotation is str
    assert fields["maybe"].annotation == str | None
    yes_no = [m.value for m in fields["yes_no"].annotation.__args__[0]]
    # YAML 1.2: yes/no are strings; the booleans of a string enum become their text.
    assert yes_no == ["yes", "no", "true", "false"]
    assert [m.value for m in fields["level"].annotation.__args__[0]] == ["1", "2", "10"]
    assert [m.value for m in fields["nullable_enum"].annotation.__args__[0]] == ["a", "b"]
    parsed = record.model_validate(
        {"id": "r1", "tuple": ["a", 1], "count": 5, "only_true": True, "object_enum": {"a": 1}}
    )
    assert parsed.count == 5
    state = _spec_enum(spec, "paths", "/records/{id}", "get", "parameters", 0, "enum")
    assert state == ["on", "off", True, 1]
    get_record = module.OPERATIONS["getRecord"]
    assert get_record.endpoint.path == "/records/{id}"
    assert get_record.input_model.model_json_schema()["required"] == ["id"]


def test_openapi31_with_30_habits(quirks: Corpus) -> None:
    module = _module(quirks, "quirks_openapi31")
    pet = module.OPERATIONS["createPet"].output_type
    pet.model_validate({"kind": "pet", "name": None, "age": 1, "owner": "acme", "tags": []})
    with pytest.raises(ValueError, match="age"):
        pet.model_validate({"kind": "pet", "age": 0})  # exclusiveMinimum: true with minimum 0
    with pytest.raises(ValueError, match="kind"):
        pet.model_validate({"kind": "cat"})
    assert module.make_pets_agent


def test_odd_enum_values_round_trip(quirks: Corpus) -> None:
    module = _module(quirks, "quirks_enums_formats")
    spec = quirks.packages["quirks_enums_formats"].spec
    account = module.OPERATIONS["createAccount"].output_type
    plan_values = _spec_enum(spec, "components", "schemas", "Account", "properties", "plan", "enum")
    members = list(account.model_fields["plan"].annotation.__args__[0])
    assert [m.value for m in members] == plan_values
    for value in plan_values:
        dumped = account(email="a", password="b", plan=value).model_dump(mode="json")
        assert dumped["plan"] == value
    assert all(m.name.isidentifier() for m in members)


def test_very_long_descriptions_and_non_ascii_names(tmp_path: Path) -> None:
    corpus = generate_and_check({"long_text": LONG_TEXT}, tmp_path)
    generated = corpus.packages["long_text"]
    assert corpus.mypy_status == 0, corpus.mypy_output[-3000:]
    module = generated.module()
    op = module.OPERATIONS["lireResume"]
    assert op.endpoint.path == "/r\u00e9sum\u00e9/{cl\u00e9}"
    assert set(op.endpoint.params) == {"cl\u00e9", "X-\u00dcber-Header"}
    assert "make_resumes_agent" in module.__all__
    assert set(op.output_type.model_fields) == {"titre", "\u540d\u524d"}
    long = _parse(LONG_TEXT.read_bytes(), str(LONG_TEXT))["info"]["description"]
    assert len(long) > 12_800
    assert " ".join(inspect.getdoc(op.output_type).split()) == " ".join(long.split())
    assert op.output_type.model_fields["titre"].description == long
    assert len(op.description) <= 1024


def test_non_ascii_titles_tags_and_summaries(quirks: Corpus) -> None:
    module = _module(quirks, "quirks_enums_formats")
    op = module.OPERATIONS["createAccount"]
    assert op.description.startswith("Cr\u00e9er un compte")
    assert len(op.description) <= 1024
    assert module.TITLE == "Quirks: enums and formats"
    assert sorted(module.TAGS) == ["\u00c4rger & \u00dcnfug", "\u65e5\u672c"]
    agents = [n for n in module.__all__ if n.startswith("make_") and n.endswith("_agent")]
    assert len(agents) == 3  # make_agent and one per tag, each a valid distinct name
    assert all(n.isidentifier() and n.isascii() for n in agents)


# --------------------------------------------------------------------------- 6


def test_odd_paths_and_names(quirks: Corpus) -> None:
    module = _module(quirks, "quirks_paths_names")
    ops = module.OPERATIONS
    by_path = {(op.endpoint.method, op.endpoint.path): name for name, op in ops.items()}
    assert by_path == {
        ("GET", "/things"): "get__things_list",
        ("GET", "/things?kind=a"): "get__things_kind_a",
        ("GET", "/things?kind=b"): "get__things_kind_b",
        ("POST", "/v4/spreadsheets/{spreadsheetId}:append"): "spreadsheets_values_append",
        ("GET", "/users/{id}"): "postV3ProjectsId_refRef_triggerBuilds",
        ("GET", "/orgs/{org}/repos/{repo}"): "repos_list",
        ("GET", "/unicode"): "get__unicode",
        ("POST", "/unicode"): "cafe-creer",
        ("GET", "/dup1"): "getItem",
        ("GET", "/dup2"): "getItem_2",
        ("GET", "/case"): "GetItem",
        ("DELETE", "/kebab/{item-id}"): "delete-the-item",
        ("PATCH", "/x/{a}/{b}"): "patch__x_a_b",
    }
    functions = [op.function.__name__ for op in ops.values()]
    assert len(set(functions)) == len(functions)
    for name, op in ops.items():
        assert TOOL_NAME.match(name), name
        assert op.function.__name__.isidentifier()
        assert op.function.__name__.isascii()
        assert op.input_model.__name__.isidentifier()
    # Undeclared or unrequired path variables are required inputs.
    for name, required in (("patch__x_a_b", ["a", "b"]), ("delete-the-item", ["item-id"])):
        assert ops[name].input_model.model_json_schema()["required"] == required


async def test_odd_paths_on_the_wire(quirks: Corpus, loopback_api: LoopbackAPI) -> None:
    module = _module(quirks, "quirks_paths_names")
    ops = module.OPERATIONS
    client = module.make_client(base_url=loopback_api.url)
    for pattern, method in (
        (r"/things", "GET"),
        (r"/v4/spreadsheets/[^/]+", "POST"),
        (r"/users/\d+", "GET"),
        (r"/kebab/.+", "DELETE"),
    ):
        loopback_api.route(method, pattern)(lambda req: (200, None))
    await ops["get__things_kind_a"].function(ops["get__things_kind_a"].input_model(), client=client)
    assert (loopback_api.last.path, loopback_api.last.query) == ("/things", [("kind", "a")])
    await ops["get__things_list"].function(ops["get__things_list"].input_model(), client=client)
    assert (loopback_api.last.path, loopback_api.last.query) == ("/things", [])
    append = ops["spreadsheets_values_append"]
    await append.function(append.input_model(spreadsheetId="s 1"), client=client)
    assert loopback_api.last.path == "/v4/spreadsheets/s%201:append"
    users = ops["postV3ProjectsId_refRef_triggerBuilds"]
    await users.function(users.input_model(id=7), client=client)
    assert loopback_api.last.path == "/users/7"
    kebab = ops["delete-the-item"]
    await kebab.function(kebab.input_model.model_validate({"item-id": "k"}), client=client)
    assert loopback_api.last.path == "/kebab/k"


@pytest.mark.parametrize(
    ("operation_id", "expected"),
    [
        ("postV3ProjectsId(refRef)triggerBuilds", "postV3ProjectsId_refRef_triggerBuilds"),
        ("repos#list", "repos_list"),
        ("caf\u00e9-cr\u00e9er", "cafe-creer"),
        ("\u83b7\u53d6\u7528\u6237", "get__u"),
        ("###", "get__u"),
        (None, "get__u"),
    ],
)
def test_tool_name(operation_id: str | None, expected: str) -> None:
    assert tool_name(operation_id, "get", "/u") == expected


# --------------------------------------------------------------------------- normalize


def test_normalize_does_not_touch_examples_or_the_input() -> None:
    document: dict[str, Any] = {
        "openapi": "3.0.3",
        "paths": {
            "/a": {
                "get": {
                    "responses": {200: {"description": "ok"}},
                    "x-example": {"type": "String", "enum": [True]},
                }
            }
        },
        "components": {
            "schemas": {
                "A": {
                    "type": "string",
                    "enum": [True, None],
                    "example": {"type": "int", "items": [1]},
                }
            }
        },
    }
    out = normalize(document)
    assert document["paths"]["/a"]["get"]["responses"] == {200: {"description": "ok"}}
    assert out["paths"]["/a"]["get"]["responses"] == {"200": {"description": "ok"}}
    assert out["paths"]["/a"]["get"]["x-example"] == {"type": "String", "enum": [True]}
    schema = out["components"]["schemas"]["A"]
    assert (schema["enum"], schema["nullable"]) == (["true"], True)
    assert schema["example"] == {"type": "int", "items": [1]}


def test_yaml_booleans_and_dates_are_yaml_12() -> None:
    parsed = _parse(b"v: [yes, no, on, off, NO, y, n, true, False]\n", "s.yaml")
    assert parsed == {"v": ["yes", "no", "on", "off", "NO", "y", "n", True, False]}
    # An impossible date (held-out mollie spec: internal error ValueError) and real ones.
    parsed = _parse(b"a: 2023-02-30\nb: 2020-07-28T18:00:00Z\nc: 2001-12-14 21:59:43.10 -5\n", "s")
    assert parsed == {
        "a": "2023-02-30",
        "b": "2020-07-28T18:00:00Z",
        "c": "2001-12-14 21:59:43.10 -5",
    }


# --------------------------------------------------------------------------- internal errors


_WRONG_VALUES: list[Any] = [None, 0, -1, 1.5, True, "", "x", "2XX", [], ["a"], {}, {"a": 1}]


def _mutations(document: Any, rng: random.Random, count: int) -> Iterator[tuple[Any, str]]:
    """``count`` copies of ``document``, each with one value replaced by a wrongly typed one."""
    places: list[tuple[Any, ...]] = []

    def walk(node: Any, path: tuple[Any, ...]) -> None:
        if path:
            places.append(path)
        if isinstance(node, dict | list):
            for key, value in node.items() if isinstance(node, dict) else enumerate(node):
                walk(value, (*path, key))

    walk(document, ())
    for _ in range(count):
        path = rng.choice(places)
        mutated = copy.deepcopy(document)
        parent = mutated
        for key in path[:-1]:
            parent = parent[key]
        value = rng.choice(_WRONG_VALUES)
        parent[path[-1]] = copy.deepcopy(value)
        yield mutated, f"{'/'.join(map(str, path))} = {value!r}"


@pytest.mark.parametrize("spec", [*QUIRKS, LONG_TEXT], ids=lambda p: p.stem)
def test_wrongly_typed_values_are_user_errors_never_internal(spec: Path) -> None:
    """Any value of the wrong type anywhere: a user error (exit 2) or a generated plan, never
    another exception (the CLI's ``internal error``). Up to planning, where the document's
    structure is read; seeded, so a failure is reproducible."""
    from flujo.domain.errors import UserError
    from flujo_openapi.spec import plan, validate
    from flujo_openapi.swagger2 import convert_swagger2

    document = _parse(spec.read_bytes(), str(spec))
    for mutated, where in _mutations(document, random.Random(spec.stem), 150):
        try:
            converted = convert_swagger2(mutated) if "swagger" in mutated else mutated
            normalized = normalize(converted)
            validate(normalized)
            plan(normalized, source=str(spec), env_prefix="FUZZ")
        except UserError:
            pass
        except Exception as exc:  # noqa: BLE001 -- exactly what the test looks for
            pytest.fail(f"{spec.name}: {where}: internal error {type(exc).__name__}: {exc}")


def test_schemas_named_like_the_runtime_names_the_module_uses(quirks: Corpus) -> None:
    module = _module(quirks, "quirks_model_names")
    from flujo_openapi.runtime import Endpoint, Operation

    assert set(module.OPERATIONS) == {"getEndpoints", "putOperation", "listPages"}
    for op in module.OPERATIONS.values():
        assert isinstance(op, Operation)
        assert isinstance(op.endpoint, Endpoint)
    output = module.OPERATIONS["getEndpoints"].output_type
    assert output.model_validate({"methods": ["GET"]}).methods == ["GET"]
    assert module.OPERATIONS["putOperation"].output_type.__name__ == "ApiClient"
    page = module.OPERATIONS["listPages"].output_type.model_validate(
        {"count": 1, "data": [{"word": "w"}]}
    )
    assert page.count == 1
    assert page.data[0].word == "w"


def test_schemas_named_like_what_the_generated_modules_import(quirks: Corpus) -> None:
    """Schemas named Any, BaseModel, Field, Literal, Optional, ConfigDict, OPERATIONS, list,
    type, str, datetime...: each is a model of its own (renamed where a generated module
    imports or defines that name), and the names the code means still mean it. mypy --strict
    over the package is in test_quirks_spec_generates_everything_cleanly."""
    generated = quirks.packages["quirks_shadowing_names"]
    module = generated.module()
    from pydantic import BaseModel

    from flujo_openapi.runtime import Operation

    ops = module.OPERATIONS
    assert set(ops) == {"postThing", "getLists", "getMisc", "putConfig"}
    assert all(isinstance(op, Operation) for op in ops.values())
    # The body model (the `ConfigDict` schema) validates as a model; its input model's own
    # pydantic config still forbids unknown fields.
    put = ops["putConfig"]
    body = put.input_model.model_fields["body"].annotation
    assert "ConfigDict" in str(body)
    with pytest.raises(ValueError, match="extra"):
        put.input_model.model_validate({"nope": 1})
    made = put.input_model.model_validate({"body": {"c": "x"}, "mode": "a"})
    assert isinstance(made, BaseModel)
    # The `OPERATIONS` schema is an error model, not the operations mapping.
    models = __import__(f"{generated.package}.models", fromlist=["*"])
    assert isinstance(module.OPERATIONS, dict)
    assert issubclass(models.OPERATIONSModel, BaseModel)
    assert models.OPERATIONSModel.model_validate({"ops": "o"}).ops == "o"
    assert issubclass(models.ConfigDictModel, BaseModel)
