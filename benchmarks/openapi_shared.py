"""Every spec of the shared corpus (``<repo>/../shared/openapi-specs``, issue #16), one table.

For each spec (the gzip and tar archives in ``real/`` are unpacked into a temporary folder):
operations in the spec, generated, skipped with their reasons, silent drops (operations in
the spec neither generated nor listed as skipped: must be 0), warnings, whether the package
imports, ``mypy --strict`` and a default ``ruff check`` on it, and the seconds the generator
took (a real ``flujo dev import-openapi`` process). When openapi-python-client is installed
(on PATH, or ``--opc PATH``), its exit status and seconds on the same spec, in the same run,
with its ``literal_enums`` option (Stripe fails without it).

    python benchmarks/openapi.py --shared [--opc /path/to/openapi-python-client]
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("FLUJO_OPENAPI_SPECS") or ROOT.parent / "shared" / "openapi-specs")
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


@dataclass
class Row:
    name: str
    spec_operations: int = 0
    generated: int = 0
    skipped: list[str] = field(default_factory=list)
    silent: int = 0
    warnings: int = 0
    exit_code: int = 0
    error: str = ""
    imports: str = "-"
    mypy: str = "-"
    ruff: str = "-"
    seconds: float = 0.0
    opc: str = ""
    runs: list[str] = field(default_factory=list)
    """Each timed run, in order: ``flujo 28.1 s (load 1.2)``, ``opc 39.0 s (load 1.3)``."""


def specs(unpack_to: Path) -> list[tuple[str, Path]]:
    """Every spec of the shared corpus, archives unpacked into ``unpack_to``."""
    found: list[tuple[str, Path]] = []
    for path in sorted(SHARED.rglob("*")):
        rel = path.relative_to(SHARED).as_posix()
        if path.suffix in (".json", ".yaml", ".yml") and path.is_file():
            if rel.startswith("swagger2/petstore-separate/") and not rel.endswith(
                "spec/swagger.json"
            ):
                continue  # the files it references, not specs
            found.append((rel, path))
        elif rel.endswith(".json.gz"):
            target = unpack_to / path.name.removesuffix(".gz")
            target.write_bytes(gzip.decompress(path.read_bytes()))
            found.append((rel, target))
        elif rel.endswith(".tar.gz"):
            folder = unpack_to / path.name.removesuffix(".tar.gz")
            with tarfile.open(path) as archive:
                archive.extractall(folder, filter="data")
            roots = sorted(folder.rglob("*-public.v2.yaml")) or sorted(folder.rglob("*.yaml"))[:1]
            found.extend((rel, root) for root in roots)
    return found


def refs_root(spec: Path) -> list[str]:
    """``--refs-root`` for a spec whose references leave its own folder (petstore-separate's
    root file, in ``spec/``, refers to ``../common/``); none for the others."""
    if spec.parent.name == "spec" and spec.parent.parent.name == "petstore-separate":
        return ["--refs-root", str(spec.parent.parent)]
    return []


def spec_operations(spec: Path) -> int:
    """Operations under ``paths`` (references to other files followed)."""
    from flujo_openapi.errors import OpenAPIImportError
    from flujo_openapi.loader import load_spec

    try:
        document = load_spec(str(spec), refs_root=(refs_root(spec) or [None, None])[1]).document
    except OpenAPIImportError:
        return 0
    count = 0
    for item in (document.get("paths") or {}).values():
        if isinstance(item, dict):
            count += sum(1 for m in METHODS if isinstance(item.get(m), dict))
    return count


def _run(args: list[str], cwd: Path, timeout: float) -> tuple[int, str, float]:
    started = time.perf_counter()
    try:
        proc = subprocess.run(
            args, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        return -1, f"timed out after {timeout:.0f} s", time.perf_counter() - started
    return proc.returncode, proc.stdout + proc.stderr, time.perf_counter() - started


def _load() -> str:
    return f"{os.getloadavg()[0]:.1f}"


def _ours(
    spec: Path, out: Path, package: str, work: Path, timeout: float
) -> tuple[int, str, float]:
    shutil.rmtree(out, ignore_errors=True)
    return _run(
        [
            sys.executable, "-m", "flujo", "dev", "import-openapi", str(spec),
            "--output-dir", str(out), "--package-name", package, "-q", *refs_root(spec),
        ],
        work,
        timeout,
    )  # fmt: skip


def _theirs(opc: str, spec: Path, out: Path, work: Path, timeout: float) -> tuple[bool, float]:
    config = work / "opc.yaml"
    config.write_text("literal_enums: true\n")
    code, output, seconds = _run(
        [
            opc, "generate", "--path", str(spec), "--output-path", str(out),
            "--meta", "none", "--config", str(config), "--overwrite",
        ],
        work,
        timeout,
    )  # fmt: skip
    return code == 0 and "Unable to" not in output and "Error" not in output, seconds


def measure(
    name: str, spec: Path, work: Path, opc: str | None, timeout: float, repeat: int = 1
) -> Row:
    row = Row(name, spec_operations=spec_operations(spec))
    package = "p_" + "".join(c if c.isalnum() else "_" for c in name.lower())[:50]
    out = work / package
    ours: list[float] = []
    theirs: list[float] = []
    opc_ok = True
    for _ in range(max(1, repeat)):
        load = _load()
        code, output, seconds = _ours(spec, out, package, work, timeout)
        ours.append(seconds)
        row.runs.append(f"flujo {seconds:.1f} s (load {load})")
        if opc:
            load = _load()
            ok, seconds = _theirs(opc, spec, work / f"opc_{package}", work, timeout)
            opc_ok = opc_ok and ok
            theirs.append(seconds)
            row.runs.append(f"openapi-python-client {seconds:.1f} s (load {load})")
    row.seconds = min(ours)
    if opc:
        row.opc = f"{'ok' if opc_ok else 'errors'} {min(theirs):.1f} s"
    row.exit_code = code
    manifest_path = out / "flujo-openapi.json"
    if code != 0 or not manifest_path.is_file():
        row.error = output.strip().splitlines()[-1][:120] if output.strip() else f"exit {code}"
        return row
    manifest = json.loads(manifest_path.read_text())
    row.generated = len(manifest["operations"])
    operations_skipped = 0
    for skipped in manifest["skipped"]:
        row.skipped.append(f"{skipped['method']} {skipped['path']}: {skipped['reason']}")
        if skipped["method"] != "CALLBACK" and not skipped["path"].startswith("webhook:"):
            operations_skipped += 1 if skipped["method"] != "*" else 0
    row.silent = row.spec_operations - row.generated - operations_skipped
    row.warnings = len(manifest.get("warnings", []))
    code, output, _ = _run(
        [sys.executable, "-c", f"import {package}, {package}.models"], out, timeout
    )
    row.imports = "yes" if code == 0 else "NO"
    code, output, _ = _run(
        [
            sys.executable, "-m", "mypy", "--strict",
            "--cache-dir", str(work / ".mypy_cache"), package,
        ],
        out,
        timeout,
    )  # fmt: skip
    row.mypy = "clean" if code == 0 else output.strip().splitlines()[-1][:60]
    code, output, _ = _run(
        [sys.executable, "-m", "ruff", "check", "--isolated", "--quiet", package],
        out,
        timeout,
    )
    row.ruff = "clean" if code == 0 else f"{output.count(chr(10))} lines"
    return row


def table(rows: list[Row], with_opc: bool) -> str:
    head = (
        "| spec | ops in spec | generated | skipped | silent | warnings | exit | imports "
        "| mypy --strict | ruff check | seconds |"
        + (" openapi-python-client |" if with_opc else "")
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        cells = [
            r.name, str(r.spec_operations), str(r.generated), str(len(r.skipped)), str(r.silent),
            str(r.warnings), str(r.exit_code), r.imports, r.mypy, r.ruff, f"{r.seconds:.1f}",
        ]  # fmt: skip
        if with_opc:
            cells.append(r.opc)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(
    opc: str | None = None, timeout: float = 1200, only: str | None = None, repeat: int = 1
) -> None:
    if not SHARED.is_dir():
        print(f"shared corpus not found at {SHARED}")
        return
    opc = opc or os.environ.get("FLUJO_OPENAPI_OPC") or shutil.which("openapi-python-client")
    with tempfile.TemporaryDirectory(prefix="openapi-shared-") as tmp:
        work = Path(tmp)
        unpacked = work / "unpacked"
        unpacked.mkdir()
        rows = []
        for name, spec in specs(unpacked):
            if only and only not in name:
                continue
            print(f"... {name}", file=sys.stderr, flush=True)
            rows.append(measure(name, spec, work, opc, timeout, repeat))
            print(table(rows[-1:], bool(opc)).splitlines()[-1], file=sys.stderr, flush=True)
    print(table(rows, bool(opc)))
    print()
    for r in rows:
        if len(r.runs) > 1:
            print(f"{r.name}: runs in order: {'; '.join(r.runs)}")
    for r in rows:
        if r.error:
            print(f"{r.name}: FAILED: {r.error}")
        for reason in r.skipped:
            print(f"{r.name}: skipped {reason}")
    print(
        f"\n{len(rows)} specs; {sum(r.exit_code == 0 for r in rows)} generated; "
        f"{sum(r.silent for r in rows)} silent drops; "
        f"{sum(r.mypy == 'clean' for r in rows)} mypy-clean; "
        f"{sum(r.ruff == 'clean' for r in rows)} ruff-clean"
        + (f"; openapi-python-client: {opc}" if opc else "; openapi-python-client not installed")
    )


if __name__ == "__main__":
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    main()
