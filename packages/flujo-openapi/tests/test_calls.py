"""Generated operations reach a loopback server: via steps, via agents, with every auth kind."""

from __future__ import annotations

import base64
import importlib
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from openapi_testlib import Corpus, LoopbackAPI, Recorded
from pydantic import BaseModel

from flujo import Flujo, Pipeline
from flujo.domain.errors import ConfigError, PipelineDefinitionError
from flujo.testing.models import call_tool, scripted_model
from flujo_openapi.generator import Options, generate, write_output
from flujo_openapi.runtime import (
    ApiError,
    ApiErrorData,
    ApiKey,
    BasicAuth,
    BearerToken,
    ClientCredentials,
)

ACCOUNT = "AC" + "a" * 32


class Sent(BaseModel):
    """A structured agent output."""

    sid: str


GADGETS_YAML = """
openapi: 3.0.3
info:
  title: Gadgets
  version: "1.0"
  description: A made-up API exercising every parameter location and auth kind.
servers:
  - url: https://{region}.gadgets.example/api
    variables:
      region:
        default: eu
tags:
  - name: gadgets
  - name: admin
components:
  securitySchemes:
    headerKey: {type: apiKey, in: header, name: X-API-Key}
    queryKey: {type: apiKey, in: query, name: api_key}
    cookieKey: {type: apiKey, in: cookie, name: session}
    bearer: {type: http, scheme: bearer}
    basic: {type: http, scheme: basic}
    cc:
      type: oauth2
      flows:
        clientCredentials:
          tokenUrl: https://auth.gadgets.example/token
          scopes: {"gadgets:write": write}
  schemas:
    Gadget:
      type: object
      required: [id, name]
      properties:
        id: {type: integer}
        name: {type: string}
        parts:
          type: array
          items: {$ref: "#/components/schemas/Gadget"}
    NewGadget:
      type: object
      required: [name]
      properties:
        name: {type: string, description: The gadget's name.}
        color: {type: string, enum: [red, green]}
    Problem:
      type: object
      required: [title]
      properties:
        title: {type: string}
        detail: {type: string}
paths:
  /gadgets:
    get:
      operationId: searchGadgets
      summary: Search gadgets
      description: Find gadgets by tag and id.
      tags: [gadgets]
      security: [{headerKey: []}]
      parameters:
        - {name: tags, in: query, schema: {type: array, items: {type: string}}}
        - {name: ids, in: query, style: form, explode: false,
           schema: {type: array, items: {type: integer}}}
        - {name: X-Request-Id, in: header, schema: {type: string}}
        - {name: trace, in: cookie, schema: {type: string}}
        - {name: limit, in: query, schema: {type: integer, maximum: 50}}
      responses:
        "200":
          description: ok
          content:
            application/json:
              schema: {type: array, items: {$ref: "#/components/schemas/Gadget"}}
        "400":
          description: bad
          content:
            application/problem+json:
              schema: {$ref: "#/components/schemas/Problem"}
    post:
      operationId: createGadget
      summary: Create a gadget
      tags: [admin]
      security: [{bearer: []}]
      requestBody:
        required: true
        content:
          application/json:
            schema: {$ref: "#/components/schemas/NewGadget"}
      responses:
        "201":
          description: created
          content:
            application/json:
              schema: {$ref: "#/components/schemas/Gadget"}
  /gadgets/{gadgetId}:
    parameters:
      - {name: gadgetId, in: path, required: true, schema: {type: integer}}
    get:
      operationId: getGadget
      summary: Get one gadget
      tags: [gadgets]
      security: [{queryKey: []}]
      responses:
        "200":
          description: ok
          content:
            application/json:
              schema: {$ref: "#/components/schemas/Gadget"}
        "404":
          description: missing
          content:
            application/json:
              schema: {$ref: "#/components/schemas/Problem"}
    delete:
      operationId: deleteGadget
      tags: [admin]
      security: [{cc: ["gadgets:write"]}]
      responses:
        "204": {description: deleted}
  /gadgets/{gadgetId}/photo:
    post:
      operationId: uploadPhoto
      tags: [admin]
      security: [{basic: []}]
      parameters:
        - {name: gadgetId, in: path, required: true, schema: {type: integer}}
      requestBody:
        content:
          multipart/form-data:
            schema:
              type: object
              properties:
                file: {type: string, format: binary}
                caption: {type: string}
      responses:
        "204": {description: stored}
  /session:
    get:
      operationId: whoAmI
      security: [{cookieKey: []}]
      responses:
        "200":
          description: who
          content:
            text/plain:
              schema: {type: string}
  /legacy:
    post:
      operationId: legacyXml
      requestBody:
        content:
          application/xml:
            schema: {type: object}
      responses:
        "200": {description: ok}
  /a/very/long/path/for/an/operation/whose/identifier/is/much/too/long:
    get:
      operationId: thisOperationIdentifierIsFarTooLongToBeAToolNameForAnyModelProviderSoItIsCut
      responses:
        "200": {description: ok}
"""


@pytest.fixture(scope="module")
def gadgets(tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    """The Gadgets spec (YAML) generated and imported as package ``gadgets``."""
    root = tmp_path_factory.mktemp("gadgets")
    spec = root / "gadgets.yaml"
    spec.write_text(GADGETS_YAML)
    write_output(generate(str(spec), Options()), root / "out")
    sys.path.insert(0, str(root / "out"))
    return importlib.import_module("gadgets")


def _module(corpus: Corpus, name: str) -> Any:
    return corpus.packages[name].module()


async def _run_step(step: Any, data: Any, flujo_config: Any) -> Any:
    async with Flujo(Pipeline([step]), config=flujo_config) as runner:
        return await runner.run_async(data)


# --------------------------------------------------------------------------- petstore


@pytest.mark.parametrize("name", ["oas30_petstore", "swagger2_petstore"])
async def test_step_lists_pets(
    generated_corpus: Corpus, loopback_api: LoopbackAPI, flujo_config: Any, name: str
) -> None:
    petstore = _module(generated_corpus, name)
    step = petstore.make_operation_step("listPets", base_url=loopback_api.url + "/v1")
    assert step.output_type is petstore.OPERATIONS["listPets"].output_type
    result = await _run_step(step, {"limit": 1}, flujo_config)
    assert result.succeeded, result.steps[-1].error if result.steps else result
    req = loopback_api.last
    assert (req.method, req.path, req.query) == ("GET", "/v1/pets", [("limit", "1")])
    output = result.output
    pets = output.root if hasattr(output, "root") else output
    assert [p.name for p in pets] == ["Rex"]


async def test_step_with_bound_fields_and_typed_error(
    generated_corpus: Corpus, loopback_api: LoopbackAPI, flujo_config: Any
) -> None:
    petstore = _module(generated_corpus, "oas30_petstore")
    step = petstore.make_operation_step("showPetById", base_url=loopback_api.url + "/v1", petId="2")
    result = await _run_step(step, {}, flujo_config)
    assert result.succeeded
    assert result.output.name == "Tom"
    assert loopback_api.last.path == "/v1/pets/2"
    missing = petstore.make_operation_step("showPetById", base_url=loopback_api.url + "/v1")
    result = await _run_step(missing, {"petId": "99"}, flujo_config)
    assert not result.succeeded
    assert "HTTP 404" in (result.steps[-1].error or "")


async def test_function_raises_documented_error_as_typed_data(
    generated_corpus: Corpus, loopback_api: LoopbackAPI
) -> None:
    petstore = _module(generated_corpus, "oas30_petstore")
    op = petstore.OPERATIONS["showPetById"]
    client = petstore.make_client(base_url=loopback_api.url + "/v1")
    pet = await op.function(op.input_model(petId="1"), client=client)
    assert pet.name == "Rex"
    with pytest.raises(ApiError) as caught:
        await op.function(op.input_model(petId="99"), client=client)
    error = caught.value
    assert error.status == 404
    assert error.documented
    assert type(error.data).__name__ == "Error"
    assert error.data.message == "no pet 99"


async def test_agent_calls_petstore_and_sees_errors_as_data(
    generated_corpus: Corpus, loopback_api: LoopbackAPI
) -> None:
    petstore = _module(generated_corpus, "oas30_petstore")
    model = scripted_model(
        call_tool("showPetById", petId="2"),
        call_tool("showPetById", petId="99"),
        call_tool("createPets", body={"id": 3, "name": "Kit"}),
        "Tom is a cat; 99 does not exist; Kit was added.",
    )
    agent = petstore.make_agent(model, base_url=loopback_api.url + "/v1")
    answer = await agent.run("Tell me about pets 2 and 99, then add Kit.")
    assert answer.startswith("Tom is a cat")
    offered = model.requests[0].tool_names
    assert sorted(offered) == ["createPets", "listPets", "showPetById"]
    # Credentials and base URL are not tool arguments.
    for tool in model.requests[0].info.function_tools:
        assert "base_url" not in str(tool.parameters_json_schema)
    got, missing, created = loopback_api.requests
    assert missing.path == "/v1/pets/99"
    assert (got.method, got.path) == ("GET", "/v1/pets/2")
    assert model.requests[1].tool_returns["showPetById"].name == "Tom"
    error = model.requests[2].tool_returns["showPetById"]
    assert isinstance(error, ApiErrorData)
    assert error.status == 404
    assert error.documented is True
    assert error.body == {"code": 404, "message": "no pet 99"}
    assert (created.method, created.path) == ("POST", "/v1/pets")
    assert created.headers["content-type"] == "application/json"
    assert created.json() == {"id": 3, "name": "Kit"}


# --------------------------------------------------------------------------- twilio


async def test_twilio_form_encoded_step_with_basic_auth(
    generated_corpus: Corpus, loopback_api: LoopbackAPI, flujo_config: Any
) -> None:
    twilio = _module(generated_corpus, "twilio_twilio_api_v2010")
    step = twilio.make_operation_step(
        "CreateMessage",
        base_url=loopback_api.url,
        auth=BasicAuth(ACCOUNT, "secret-token"),
        AccountSid=ACCOUNT,
    )
    data = {"To": "+15551230000", "From": "+15559870000", "Body": "Hello & bye"}
    result = await _run_step(step, data, flujo_config)
    assert result.succeeded, result.steps[-1].error
    req = loopback_api.last
    assert req.method == "POST"
    assert req.path == f"/2010-04-01/Accounts/{ACCOUNT}/Messages.json"
    assert req.headers["content-type"] == "application/x-www-form-urlencoded"
    assert req.form == {"To": ["+15551230000"], "From": ["+15559870000"], "Body": ["Hello & bye"]}
    expected = base64.b64encode(f"{ACCOUNT}:secret-token".encode()).decode()
    assert req.headers["authorization"] == f"Basic {expected}"
    message = result.output
    assert message.sid == "SM" + "b" * 32
    assert message.body == "Hello & bye"


async def test_twilio_agent_with_credentials_from_env(
    generated_corpus: Corpus, loopback_api: LoopbackAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    twilio = _module(generated_corpus, "twilio_twilio_api_v2010")
    prefix = "TWILIO_TWILIO_API_V2010"
    monkeypatch.setenv(f"{prefix}_BASE_URL", loopback_api.url)
    monkeypatch.setenv(f"{prefix}_ACCOUNT_SID_AUTH_TOKEN_USERNAME", ACCOUNT)
    monkeypatch.setenv(f"{prefix}_ACCOUNT_SID_AUTH_TOKEN_PASSWORD", "env-token")
    model = scripted_model(
        call_tool("CreateMessage", AccountSid=ACCOUNT, To="+1555", From="+1666", Body="hi"),
        {"sid": "SM" + "b" * 32},
    )
    tag_agent = next(n for n in twilio.__all__ if n.endswith("_message_agent"))
    agent = getattr(twilio, tag_agent)(model, output_type=Sent)
    output = await agent.run("Text +1555 'hi'.")
    assert output == Sent(sid="SM" + "b" * 32)
    assert model.requests[1].tool_returns["CreateMessage"].sid == "SM" + "b" * 32
    assert all("Message" in n for n in model.requests[0].tool_names)
    req = loopback_api.last
    assert req.form["Body"] == ["hi"]
    assert req.headers["authorization"].startswith("Basic ")
    assert base64.b64decode(req.headers["authorization"][6:]).decode() == f"{ACCOUNT}:env-token"


# --------------------------------------------------------------------------- every auth kind


def test_gadgets_generation_facts(gadgets: ModuleType) -> None:
    assert gadgets.DEFAULT_BASE_URL == "https://eu.gadgets.example/api"
    names = set(gadgets.OPERATIONS)
    # An XML-only body is sent as the text given (issue #24), not skipped.
    assert gadgets.OPERATIONS["legacyXml"].endpoint.media_type == "application/xml"
    long_name = next(n for n in names if n.startswith("thisOperation"))
    assert len(long_name) <= 64
    manifest_skips = gadgets.OPERATIONS  # the manifest is checked in test_cli
    assert "searchGadgets" in manifest_skips
    assert set(gadgets.TAGS) == {"gadgets", "admin"}
    assert callable(gadgets.make_gadgets_agent)
    assert callable(gadgets.make_admin_agent)


async def test_header_key_query_arrays_header_and_cookie(
    gadgets: ModuleType, loopback_api: LoopbackAPI
) -> None:
    @loopback_api.route("GET", r"/api/gadgets")
    def search(req: Recorded) -> tuple[int, Any]:
        return 200, [{"id": 1, "name": "A", "parts": [{"id": 2, "name": "B"}]}]

    op = gadgets.OPERATIONS["searchGadgets"]
    client = gadgets.make_client(base_url=loopback_api.url + "/api", auth={"headerKey": "k-1"})
    found = await op.function(
        op.input_model.model_validate(
            {"tags": ["x", "y"], "ids": [1, 2], "X-Request-Id": "r-9", "trace": "t-1", "limit": 5}
        ),
        client=client,
    )
    assert found[0].parts[0].name == "B"  # circular schema: Gadget.parts -> Gadget
    req = loopback_api.last
    assert req.query == [("tags", "x"), ("tags", "y"), ("ids", "1,2"), ("limit", "5")]
    assert req.headers["x-api-key"] == "k-1"
    assert req.headers["x-request-id"] == "r-9"
    assert req.headers["cookie"] == "trace=t-1"


async def test_query_key_and_problem_json_error(
    gadgets: ModuleType, loopback_api: LoopbackAPI
) -> None:
    @loopback_api.route("GET", r"/api/gadgets/\d+")
    def get_one(req: Recorded) -> tuple[int, Any]:
        return 404, {"title": "Not found", "detail": req.path}

    op = gadgets.OPERATIONS["getGadget"]
    client = gadgets.make_client(base_url=loopback_api.url + "/api", auth=ApiKey("q-1"))
    with pytest.raises(ApiError) as caught:
        await op.function(op.input_model(gadgetId=7), client=client)
    assert caught.value.data.title == "Not found"
    assert loopback_api.last.query == [("api_key", "q-1")]
    assert loopback_api.last.path == "/api/gadgets/7"


async def test_bearer_json_body(gadgets: ModuleType, loopback_api: LoopbackAPI) -> None:
    @loopback_api.route("POST", r"/api/gadgets")
    def create(req: Recorded) -> tuple[int, Any]:
        return 201, {"id": 9, **req.json()}

    step = gadgets.make_operation_step(
        "createGadget", base_url=loopback_api.url + "/api", auth=BearerToken("tok")
    )
    gadget = await step.agent.run({"body": {"name": "Lamp", "color": "red"}})
    assert gadget.id == 9
    req = loopback_api.last
    assert req.headers["authorization"] == "Bearer tok"
    assert req.json() == {"name": "Lamp", "color": "red"}


async def test_basic_multipart_upload(gadgets: ModuleType, loopback_api: LoopbackAPI) -> None:
    @loopback_api.route("POST", r"/api/gadgets/\d+/photo")
    def upload(req: Recorded) -> tuple[int, Any]:
        return 204, None

    op = gadgets.OPERATIONS["uploadPhoto"]
    client = gadgets.make_client(
        base_url=loopback_api.url + "/api", auth={"basic": BasicAuth("ann", "pw")}
    )
    result = await op.function(
        op.input_model(gadgetId=3, file=b"\x89PNG\x00", caption="front"), client=client
    )
    assert result is None
    req = loopback_api.last
    assert req.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert b'name="caption"' in req.body
    assert b"front" in req.body
    assert b'name="file"' in req.body
    assert b"\x89PNG\x00" in req.body
    assert req.headers["authorization"] == "Basic " + base64.b64encode(b"ann:pw").decode()


async def test_oauth2_client_credentials_token_is_fetched_once(
    gadgets: ModuleType, loopback_api: LoopbackAPI
) -> None:
    tokens: list[Recorded] = []

    @loopback_api.route("POST", r"/token")
    def token(req: Recorded) -> tuple[int, Any]:
        tokens.append(req)
        return 200, {"access_token": "at-1", "token_type": "bearer", "expires_in": 3600}

    @loopback_api.route("DELETE", r"/api/gadgets/\d+")
    def delete(req: Recorded) -> tuple[int, Any]:
        return 204, None

    client = gadgets.make_client(
        base_url=loopback_api.url + "/api",
        auth={"cc": ClientCredentials("cid", "csecret", token_url=loopback_api.url + "/token")},
    )
    op = gadgets.OPERATIONS["deleteGadget"]
    await op.function(op.input_model(gadgetId=1), client=client)
    await op.function(op.input_model(gadgetId=2), client=client)
    assert len(tokens) == 1
    assert tokens[0].form == {"grant_type": ["client_credentials"], "scope": ["gadgets:write"]}
    assert (
        tokens[0].headers["authorization"] == "Basic " + base64.b64encode(b"cid:csecret").decode()
    )
    assert loopback_api.last.headers["authorization"] == "Bearer at-1"


async def test_cookie_key_and_text_output(gadgets: ModuleType, loopback_api: LoopbackAPI) -> None:
    @loopback_api.route("GET", r"/api/session")
    def session(req: Recorded) -> tuple[int, Any]:
        return 200, b"ann"

    op = gadgets.OPERATIONS["whoAmI"]
    client = gadgets.make_client(base_url=loopback_api.url + "/api", auth={"cookieKey": "s-1"})
    assert await op.function(op.input_model(), client=client) == "ann"
    assert loopback_api.last.headers["cookie"] == "session=s-1"


async def test_agent_tool_input_is_validated_and_include_selects(
    gadgets: ModuleType, loopback_api: LoopbackAPI
) -> None:
    model = scripted_model(
        call_tool("getGadget", gadgetId="not-a-number"),
        "gave up",
    )
    agent = gadgets.make_agent(
        model, base_url=loopback_api.url + "/api", include=["getGadget"], auth="q"
    )
    assert await agent.run("get gadget") == "gave up"
    assert model.requests[0].tool_names == ["getGadget"]
    assert loopback_api.requests == []  # invalid arguments never reach the API
    with pytest.raises(ConfigError, match="unknown operation"):
        gadgets.make_agent(model, base_url="http://x", include=["nope"])


def test_base_url_and_step_errors(gadgets: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GADGETS_BASE_URL", "http://127.0.0.1:9/api")
    assert gadgets.make_client().base_url == "http://127.0.0.1:9/api"
    monkeypatch.delenv("GADGETS_BASE_URL")
    assert gadgets.make_client().base_url == "https://eu.gadgets.example/api"
    with pytest.raises(PipelineDefinitionError, match="not an operation"):
        gadgets.make_operation_step("nope")
    with pytest.raises(ConfigError, match="no field"):
        gadgets.make_operation_step("getGadget", gadgetIdx=1)
    with pytest.raises(ConfigError, match="unknown security scheme"):
        gadgets.make_client(auth={"nope": "x"})


async def test_unreachable_api_is_reported(gadgets: ModuleType, tmp_path: Path) -> None:
    from flujo_openapi.runtime import ApiConnectionError

    op = gadgets.OPERATIONS["getGadget"]
    client = gadgets.make_client(base_url="http://127.0.0.1:9/api")
    with pytest.raises(ApiConnectionError):
        await op.function(op.input_model(gadgetId=1), client=client)


async def test_calls_carry_the_steps_trace_context(
    gadgets: ModuleType, loopback_api: LoopbackAPI
) -> None:
    """A tracing plugin's W3C trace context (the core's ``outgoing_headers()``) reaches the
    service; the client's own headers still win."""
    from flujo.plugin import providing_headers

    @loopback_api.route("GET", r"/api/gadgets")
    def search(req: Recorded) -> tuple[int, Any]:
        return 200, []

    op = gadgets.OPERATIONS["searchGadgets"]
    client = gadgets.make_client(base_url=loopback_api.url + "/api", auth={"headerKey": "k-1"})
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    with providing_headers(lambda: {"traceparent": parent, "x-api-key": "forged"}):
        await op.function(op.input_model.model_validate({}), client=client)
    assert loopback_api.last.headers["traceparent"] == parent
    assert loopback_api.last.headers["x-api-key"] == "k-1"
    await op.function(op.input_model.model_validate({}), client=client)
    assert "traceparent" not in loopback_api.last.headers
