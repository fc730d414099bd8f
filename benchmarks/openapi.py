"""Generation time of ``flujo dev import-openapi`` on big specs (flujo-openapi, issue #5).

Two figures, each the median of N runs of the whole generator (read, bundle, plan,
datamodel-code-generator, operations, ruff formatting), in memory:

- Twilio's api v2010 from the shared corpus (``<repo>/../shared/openapi-specs``; ~200
  operations, dotted schema names, form bodies). Target: under 10 s.
- A synthetic spec with 1,000 operations (100 resources x list/create/get/update/delete x
  2 API versions, JSON bodies, path/query/header parameters, typed errors). Target: under 60 s.

Prints figures and asserts nothing. Needs flujo-openapi installed (skips otherwise).

    python benchmarks/openapi.py [--opc PATH] [--only NAME] [--repeat N] [--timing [--runs 3]]
        [--corpus DIR ...] [--corpus-only]

By default it prints the shared-corpus table (``openapi_shared.py``: every spec of
``<repo>/../shared/openapi-specs``, with openapi-python-client side by side when installed);
``--timing`` adds the two medians below.

``--corpus DIR`` also runs every public description in DIR (see ``openapi_corpus.py`` and
``openapi_corpus.md``): generated / imported / skipped per spec, and the totals.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TWILIO = ROOT.parent / "shared" / "openapi-specs" / "twilio" / "twilio_api_v2010.json"


def synthetic_spec(resources: int = 100, versions: int = 2) -> dict[str, Any]:
    """An OpenAPI 3.0 spec with ``resources * versions * 5`` operations."""
    schemas: dict[str, Any] = {
        "Problem": {
            "type": "object",
            "required": ["title"],
            "properties": {"title": {"type": "string"}, "status": {"type": "integer"}},
        }
    }
    paths: dict[str, Any] = {}
    error = {
        "description": "error",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }
    for v in range(1, versions + 1):
        for r in range(resources):
            name = f"Resource{r}V{v}"
            schemas[name] = {
                "type": "object",
                "required": ["id", "name"],
                "properties": {
                    "id": {"type": "string", "format": "uuid"},
                    "name": {"type": "string", "maxLength": 100},
                    "status": {"type": "string", "enum": ["active", "archived"]},
                    "count": {"type": "integer", "minimum": 0},
                    "created": {"type": "string", "format": "date-time"},
                    "tags": {"type": "array", "items": {"type": "string"}},
                    "parent": {"$ref": f"#/components/schemas/{name}"},
                },
            }
            ref = {"$ref": f"#/components/schemas/{name}"}
            ok = {"description": "ok", "content": {"application/json": {"schema": ref}}}
            body = {"required": True, "content": {"application/json": {"schema": ref}}}
            item_id = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
            tag = f"resource{r}"
            paths[f"/v{v}/resources{r}"] = {
                "get": {
                    "operationId": f"list{name}",
                    "summary": f"List resource {r} (v{v})",
                    "tags": [tag],
                    "parameters": [
                        {"name": "limit", "in": "query", "schema": {"type": "integer"}},
                        {"name": "X-Trace", "in": "header", "schema": {"type": "string"}},
                    ],
                    "responses": {
                        "200": {
                            "description": "ok",
                            "content": {
                                "application/json": {"schema": {"type": "array", "items": ref}}
                            },
                        },
                        "default": error,
                    },
                },
                "post": {
                    "operationId": f"create{name}",
                    "tags": [tag],
                    "requestBody": body,
                    "responses": {"201": ok, "400": error},
                },
            }
            paths[f"/v{v}/resources{r}/{{id}}"] = {
                "parameters": [item_id],
                "get": {
                    "operationId": f"get{name}",
                    "tags": [tag],
                    "responses": {"200": ok, "404": error},
                },
                "put": {
                    "operationId": f"update{name}",
                    "tags": [tag],
                    "requestBody": body,
                    "responses": {"200": ok, "404": error},
                },
                "delete": {
                    "operationId": f"delete{name}",
                    "tags": [tag],
                    "responses": {"204": {"description": "gone"}, "404": error},
                },
            }
    return {
        "openapi": "3.0.3",
        "info": {"title": "Synthetic", "version": "1.0"},
        "servers": [{"url": "https://synthetic.example"}],
        "paths": paths,
        "components": {"schemas": schemas},
    }


def _time(spec: Path, runs: int) -> tuple[float, int, int, dict[str, float]]:
    from flujo_openapi.generator import Options, generate

    times = []
    result = None
    for _ in range(runs):
        started = time.perf_counter()
        result = generate(str(spec), Options(package_name="bench"))
        times.append(time.perf_counter() - started)
    assert result is not None
    return (
        statistics.median(times),
        len(result.plan.operations),
        len(result.files),
        result.timings,
    )


def _report(label: str, target: float, figures: tuple[float, int, int, dict[str, float]]) -> None:
    seconds, operations, files, phases = figures
    parts = ", ".join(f"{k} {v:.2f}s" for k, v in phases.items() if k != "total")
    verdict = "ok" if seconds < target else "OVER TARGET"
    print(
        f"{label:<28} {operations:>5} operations {files:>4} files  {seconds:6.2f} s "
        f"(target < {target:g} s: {verdict}; last run: {parts})"
    )


def main() -> None:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--corpus", type=Path, action="append", default=[], metavar="DIR")
    parser.add_argument("--corpus-only", action="store_true", help="skip the timing table")
    parser.add_argument("--corpus-timeout", type=float, default=900, metavar="SECONDS")
    parser.add_argument("--timing", action="store_true", help="the Twilio/synthetic medians too")
    parser.add_argument("--opc", default=None, help="openapi-python-client executable to compare")
    parser.add_argument("--only", default=None, help="only shared specs whose path contains this")
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs per tool and spec, alternating the tools"
    )
    args = parser.parse_args()
    try:
        import flujo_openapi  # noqa: F401
    except ImportError:
        print("openapi benchmark skipped: flujo-openapi is not installed")
        return
    if args.corpus:
        from openapi_corpus import run_corpus  # beside this file

        if args.corpus_only:
            for directory in args.corpus:
                run_corpus(directory, args.corpus_timeout)
            return
    from openapi_shared import main as shared_table  # beside this file

    shared_table(args.opc, only=args.only, repeat=args.repeat)
    if not args.timing:
        for directory in args.corpus:
            run_corpus(directory, args.corpus_timeout)
        return
    print(f"flujo dev import-openapi generation time (median of {args.runs} runs)")
    if TWILIO.is_file():
        _report("twilio api v2010", 10, _time(TWILIO, args.runs))
    else:
        print(f"twilio api v2010: skipped, {TWILIO} not found")
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "synthetic.json"
        spec.write_text(json.dumps(synthetic_spec()))
        _report("synthetic 1,000 operations", 60, _time(spec, args.runs))
    for directory in args.corpus:
        run_corpus(directory, args.corpus_timeout)


if __name__ == "__main__":
    main()
