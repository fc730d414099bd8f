"""Public API descriptions through ``flujo dev import-openapi``: generated, imported, skipped.

Used by ``benchmarks/openapi.py --corpus DIR`` (flujo-openapi, issue #24). A corpus directory
holds specs directly (``*.json``, ``*.yaml``, ``*.yml``) or one folder per spec with a file
``ROOT`` naming the root file relative to that folder (multi-file specs keep their layout),
and optionally a file ``REFS_ROOT`` naming the folder (relative to it) passed as ``--refs-root``
for a spec whose references leave the root file's folder.
``benchmarks/openapi_corpus.md`` lists the public descriptions used and how to lay them out.

Each spec runs in its own process with a time limit: generate (in memory), write the package
to a temporary directory, import it in a fresh interpreter, and count the spec's operations
against those exposed, skipped (with reasons) and excluded. A spec "passes" when it generates,
imports, and every operation of the spec is accounted for. Prints figures; asserts nothing.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def corpus_specs(directory: Path) -> list[tuple[str, Path, Path | None]]:
    """(name, root file, refs root or None) of every spec in ``directory`` (see the module
    docs)."""
    found: list[tuple[str, Path, Path | None]] = []
    for entry in sorted(directory.iterdir()):
        if entry.is_file() and entry.suffix in (".json", ".yaml", ".yml"):
            found.append((entry.stem, entry, None))
        elif entry.is_dir() and (entry / "ROOT").is_file():
            root = (entry / "ROOT").read_text().strip()
            target = Path(root) if Path(root).is_absolute() else entry / root
            refs = entry / "REFS_ROOT"
            found.append(
                (entry.name, target, entry / refs.read_text().strip() if refs.is_file() else None)
            )
        elif entry.is_dir():
            found.extend((f"{entry.name}/{n}", p, r) for n, p, r in corpus_specs(entry))
    return found


def _count_operations(spec: Path, refs_root: str | None) -> tuple[str, int]:
    """The spec's version and its number of operations (path item x method, webhooks apart)."""
    from flujo_openapi.loader import load_spec

    document = load_spec(str(spec), refs_root=refs_root).document
    version = str(document.get("openapi") or document.get("swagger") or "?")
    count = 0
    for item in (document.get("paths") or {}).values():
        if isinstance(item, dict):
            count += sum(1 for m in METHODS if m in item)
    return version, count


def _child(spec: str, out: str, refs_root: str | None) -> None:
    """Runs in the child process: generate, write, import (in a grandchild), report JSON."""
    from flujo.domain.errors import UserError
    from flujo_openapi.generator import Options, generate, write_output

    report: dict[str, Any] = {}
    started = time.perf_counter()
    try:
        report["version"], report["operations"] = _count_operations(Path(spec), refs_root)
    except Exception as exc:  # noqa: BLE001 -- the generator reports the same problem below
        report["count_error"] = f"{type(exc).__name__}: {exc}"
    try:
        result = generate(spec, Options(package_name="corpus_api", refs_root=refs_root))
    except UserError as exc:
        report["error"] = f"error: {str(exc).splitlines()[0][:300]}"
    except Exception as exc:  # noqa: BLE001 -- anything else is an internal error: counted
        report["error"] = f"internal error: {type(exc).__name__}: {str(exc)[:300]}"
    else:
        report["generated"] = len(result.plan.operations)
        report["skipped"] = [s.to_dict() for s in result.plan.skipped]
        report["excluded"] = len(result.plan.excluded)
        write_output(result, Path(out))
        imported = subprocess.run(
            [
                sys.executable,
                "-c",
                "import corpus_api, sys; sys.stdout.write(str(len(corpus_api.OPERATIONS)))",
            ],
            cwd=out,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if imported.returncode == 0:
            report["imported"] = int(imported.stdout.strip() or 0)
        else:
            lines = imported.stderr.strip().splitlines()
            report["import_error"] = lines[-1][:300] if lines else str(imported.returncode)
    report["seconds"] = time.perf_counter() - started
    print(json.dumps(report))


def run_spec(spec: Path, timeout_s: float, refs_root: Path | None = None) -> dict[str, Any]:
    """One spec in a child process (bounded by ``timeout_s``): the child's JSON report."""
    with tempfile.TemporaryDirectory(prefix="oapi-corpus-") as out:
        started = time.perf_counter()
        try:
            proc = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--child",
                    str(spec),
                    out,
                    *([str(refs_root)] if refs_root else []),
                ],
                capture_output=True,
                text=True,
                timeout=timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return {"error": f"timeout after {timeout_s:g} s", "seconds": timeout_s}
        lines = proc.stdout.strip().splitlines()
        if proc.returncode != 0 or not lines:
            tail = proc.stderr.strip().splitlines()
            return {
                "error": f"crashed: {tail[-1][:300] if tail else proc.returncode}",
                "seconds": time.perf_counter() - started,
            }
        report: dict[str, Any] = json.loads(lines[-1])
        return report


def _verdict(report: dict[str, Any]) -> str:
    if "error" in report:
        return "internal error" if report["error"].startswith("internal") else "failed"
    if "import_error" in report:
        return "no import"
    accounted = report["generated"] + report["excluded"]
    accounted += sum(
        1
        for s in report["skipped"]
        if s["method"].upper() in _UPPER_METHODS and not s["path"].startswith("webhook:")
    )
    if "operations" in report and accounted != report["operations"]:
        return "unaccounted"
    return "ok"


_UPPER_METHODS = {m.upper() for m in METHODS}


def run_corpus(directory: Path, timeout_s: float = 900) -> list[tuple[str, dict[str, Any]]]:
    """Run every spec of ``directory``, printing one row each and the totals."""
    specs = corpus_specs(directory)
    print(f"\ncorpus {directory}: {len(specs)} spec(s), {timeout_s:g} s limit each")
    print(
        f"{'spec':<34} {'version':<8} {'ops':>5} {'gen':>5} {'skip':>5} "
        f"{'import':>6} {'secs':>6}  verdict / top skip reasons"
    )
    results = []
    for name, spec, refs_root in specs:
        report = run_spec(spec, timeout_s, refs_root)
        results.append((name, report))
        verdict = _verdict(report)
        skipped = report.get("skipped", [])
        reasons = Counter(_reason_class(s["reason"]) for s in skipped)
        detail = report.get("error") or report.get("import_error") or ""
        if not detail and reasons:
            detail = "; ".join(f"{n}x {r}" for r, n in reasons.most_common(3))
        print(
            f"{name[:34]:<34} {str(report.get('version', '?'))[:8]:<8} "
            f"{report.get('operations', '?'):>5} {report.get('generated', '-'):>5} "
            f"{len(skipped):>5} {report.get('imported', '-')!s:>6} "
            f"{report.get('seconds', 0):6.1f}  {verdict}{': ' + detail if detail else ''}"
        )
    ok = sum(1 for _, r in results if _verdict(r) == "ok")
    internal = sum(1 for _, r in results if _verdict(r) == "internal error")
    ops = sum(int(r.get("operations", 0)) for _, r in results)
    gen = sum(int(r.get("imported", 0)) for _, r in results if _verdict(r) == "ok")
    print(
        f"total: {ok}/{len(results)} specs generate and import with every operation accounted "
        f"for ({100 * ok / max(1, len(results)):.0f}%); {internal} internal error(s); "
        f"{gen}/{ops} operations exposed"
    )
    return results


def _reason_class(reason: str) -> str:
    """A reason without its specifics (names, pointers) so reasons group."""
    head = reason.split(":")[0] if not reason.startswith("cannot generate") else reason
    return head[:70]


if __name__ == "__main__":
    if len(sys.argv) in (4, 5) and sys.argv[1] == "--child":
        _child(sys.argv[2], sys.argv[3], sys.argv[4] if len(sys.argv) == 5 else None)
    else:
        for arg in sys.argv[1:] or ["/tmp/oapi-corpus"]:
            run_corpus(Path(arg))
