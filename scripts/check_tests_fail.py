"""Show that the tests guarding the suite's main promises can fail.

For each mutation below: copy the working tree to a temporary folder, break the behaviour a
named test guards (one exact text replacement in the copy's source, never in the checkout),
run that test against the copy (``PYTHONPATH`` puts the copy's ``src`` folders ahead of the
editable installs, subprocesses included) and require it to FAIL with the expected message.
A replacement whose text no longer occurs is reported as stale, not skipped: the table in
``docs/testing.md`` must not outlive the code it describes.

    python scripts/check_tests_fail.py                 # every mutation (about 8 minutes)
    python scripts/check_tests_fail.py --only race fence
    python scripts/check_tests_fail.py --list

Not part of CI's default sessions (it runs each test again, broken); ``nox -s mutations``
runs it. Needs the dev virtualenv (every package installed editable) and, for the
PostgreSQL rows, ``FLUJO_TEST_POSTGRES_DSN``. Exit status 1 if any test passed while broken.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutation:
    name: str
    test: str
    """The pytest node id (relative to the repository root)."""
    path: str
    old: str
    new: str
    expect: str
    """Text the failing run's output must contain (the failure the test reports)."""
    breaks: str
    """What the mutation breaks, in words (the table's middle column)."""
    timeout_s: float = 240


CORE = "packages/flujo-core/src/flujo"
MUTATIONS = [
    Mutation(
        "pipeline-types",
        "packages/flujo-core/tests/test_pipeline.py::test_compatible_and_unknown_types_are_accepted",
        f"{CORE}/domain/models.py",
        "    if out_cls is int and inp_cls is float:\n        return\n",
        "",
        "PipelineDefinitionError: step 'count' outputs int but step 'half' expects float",
        "an int output no longer feeds a float input",
    ),
    Mutation(
        "docker-constructor",
        "packages/flujo-sandbox/tests/test_sandbox_docker_e2b_wiring.py"
        "::test_docker_wiring_constructor_touches_nothing",
        "packages/flujo-sandbox/src/flujo_sandbox/docker_backend.py",
        "        self._client = client\n",
        "        self._client = client\n        try:\n            self._docker()\n"
        "        except SandboxUnavailableError:\n            pass\n",
        "assert ['docker'] == []",
        "the constructor imports the docker SDK (and would reach the daemon)",
    ),
    Mutation(
        "pseudonym-vaults",
        "packages/flujo-governance/tests/test_gov_pseudonymize.py::test_runs_do_not_share_pseudonyms",
        "packages/flujo-governance/src/flujo_governance/pii.py",
        'vault = self.vaults.get(context.run_id or "-")',
        'vault = self.vaults.get("-")',
        "At index 1 diff: '<EMAIL_2>' != '<EMAIL_1>'",
        "every run shares one pseudonym vault",
    ),
    Mutation(
        "core-logs-raw",
        "packages/flujo-core/tests/test_policy_contracts.py"
        "::test_scrub_keeps_secrets_out_of_the_database_and_plugins_and_restore_returns_them",
        f"{CORE}/application/execution_manager.py",
        "            usage.add(result.usage)\n",
        "            usage.add(result.usage)\n            __import__('logging').getLogger('flujo')"
        ".debug('step %s: %r', step.name, (data, result.output))\n",
        "assert '4111-1111-1111-1111' not in",
        "the core logs a step's raw input and output",
    ),
    Mutation(
        "config-unreadable",
        "packages/flujo-core/tests/test_config.py::test_an_unreadable_file_is_a_config_error",
        f"{CORE}/config.py",
        "    except OSError as exc:\n"
        '        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None\n'
        "    try:\n        info = os.fstat(fd)\n",
        "    except FileExistsError:\n        raise\n    try:\n        info = os.fstat(fd)\n",
        "PermissionError",
        "an unreadable config file raises a raw PermissionError (a traceback, not exit 2)",
    ),
    Mutation(
        "presidio-missing",
        "packages/flujo-governance/tests/test_gov_presidio_logs.py"
        "::test_presidio_without_the_extra_is_a_clear_error",
        "packages/flujo-governance/src/flujo_governance/engines/presidio.py",
        "        except ImportError as exc:\n            raise EngineUnavailableError(\n"
        "                \"[governance.pii] engine = 'presidio' needs the presidio extra: \"",
        "        except AttributeError as exc:\n            raise EngineUnavailableError(\n"
        "                \"[governance.pii] engine = 'presidio' needs the presidio extra: \"",
        "ModuleNotFoundError",
        "without the presidio extra, a raw ModuleNotFoundError instead of the one-line error",
    ),
    Mutation(
        "pii-negatives",
        "packages/flujo-governance/tests/test_gov_engine.py::test_negative_survives",
        "packages/flujo-governance/src/flujo_governance/engines/phones.py",
        "    groups = len(sizes)\n    keyword = PHONE_CONTEXT",
        "    return True\n    groups = len(sizes)\n    keyword = PHONE_CONTEXT",
        "AssertionError",
        "every phone-shaped run of digits is taken for a phone (ids, amounts scrubbed)",
    ),
    Mutation(
        "hooks-called",
        "packages/flujo-core/tests/test_hooks_called.py::test_the_core_calls_every_hookspec",
        f"{CORE}/application/execution_manager.py",
        "        if self._run_observers:\n",
        "        if False:\n",
        "flujo_run_finalized",
        "the core stops calling flujo_run_finalized",
    ),
    Mutation(
        "observer-context",
        "packages/flujo-governance/tests/test_gov_leaks.py::test_scripted_model_receives_no_pii",
        f"{CORE}/application/execution_manager.py",
        "        snapshot = type(context).model_construct(**fields)\n",
        "        snapshot = type(context).model_construct(**raw)\n",
        "leaked into another plugin's payloads",
        "observers get the context's raw values instead of the scrubbed snapshot",
    ),
    Mutation(
        "store-unscrubbed",
        "tests/integration/test_support_desk.py"
        "::test_the_memory_store_and_evaluations_hold_no_pii_read_through_the_store",
        "packages/flujo-governance/src/flujo_governance/scrubber.py",
        "        findings = self.find(text)\n        if not findings:",
        "        findings = []\n        if not findings:",
        "ana.garcia@example.com' in memory",
        "the pii policy detects nothing: the demo's PII reaches the model, the state and Qdrant",
        timeout_s=400,
    ),
    Mutation(
        "pii-at-rest-postgres",
        "packages/flujo-governance/tests/test_gov_values.py"
        "::test_non_string_values_are_scrubbed_in_every_sink[postgres-pseudonymize]",
        f"{CORE}/application/execution_manager.py",
        "        return raw, await self.scrub(context, raw)\n",
        "        return raw, raw\n",
        "leaked into the postgresql rows",
        "the context is stored unscrubbed (checked in PostgreSQL's rows)",
    ),
    Mutation(
        "pii-at-rest-pgvector",
        "tests/integration/test_pgvector_pii_at_rest.py"
        "::test_resumed_runs_leave_no_pii_in_the_pgvector_store_or_its_tables[postgres-pseudonymize]",
        f"{CORE}/application/scrubbing.py",
        "        for scrub in self._scrubbers:\n",
        "        for scrub in []:\n",
        "stored in memory learn",
        "the same, checked through the pgvector store and every table row",
    ),
    Mutation(
        "scope-fingerprint-pgvector",
        "tests/integration/test_pgvector_pii_at_rest.py"
        "::test_resumed_runs_leave_no_pii_in_the_pgvector_store_or_its_tables[sqlite-redact]",
        "packages/flujo-memory/src/flujo_memory/service.py",
        "            if isinstance(key, str) and key.startswith(FINGERPRINT_PREFIX):\n",
        "            if False:\n",
        "'scope.user': '<EMAIL>'",
        "a flagged scope value is stored as its placeholder, not its keyed fingerprint",
    ),
    Mutation(
        "scope-fingerprint",
        "packages/flujo-memory/tests/test_scope_privacy.py"
        "::test_flagged_scope_values_are_stored_as_fingerprints_and_still_match",
        "packages/flujo-memory/src/flujo_memory/service.py",
        "            if isinstance(key, str) and key.startswith(FINGERPRINT_PREFIX):\n",
        "            if False:\n",
        "assert [] == ['fact: ana likes ships']",
        "a flagged scope value is stored as its placeholder (<EMAIL>), which its owner's "
        "later runs (searching by the key) no longer match",
    ),
    Mutation(
        "attack-never-started",
        "packages/flujo-sandbox/tests/test_sandbox_attacks.py::test_no_process_survives_a_timeout",
        "packages/flujo-sandbox/src/flujo_sandbox/local.py",
        '            (layout.code / script).write_text(code, encoding="utf-8")\n',
        '            (layout.code / script).write_text("", encoding="utf-8")\n',
        "the sandboxed code never spawned its detached grandchildren",
        "the sandbox runs an empty script: the attack never starts",
    ),
    Mutation(
        "sandbox-network",
        "packages/flujo-sandbox/tests/test_sandbox_attacks.py::test_no_network_interface_but_loopback",
        "packages/flujo-sandbox/src/flujo_sandbox/local.py",
        '        "--unshare-pid",\n        "--unshare-net",\n',
        '        "--unshare-pid",\n',
        "assert {",
        "the sandbox shares the host's network namespace",
    ),
    Mutation(
        "resume-race",
        "packages/flujo-core/tests/test_state.py::test_leases_exclude_live_workers_and_expire[sqlite]",
        f"{CORE}/state/_sql.py",
        'f"{_TAKE} WHERE run_id = ? AND version = ? AND status != ? AND (status != ? OR "',
        'f"{_TAKE} WHERE run_id = ? AND ? >= 0 AND status != ? AND (status != ? OR "',
        "assert Lease(owner='other'",
        "taking a run no longer depends on the version the taker read (a separate read decides)",
    ),
    Mutation(
        "resume-race-any-status",
        "packages/flujo-core/tests/test_fencing.py"
        "::test_concurrent_resumes_of_one_run_commit_each_step_once[sqlite]",
        f"{CORE}/state/_sql.py",
        'f"{_TAKE} WHERE run_id = ? AND version = ? AND status != ? AND (status != ? OR "',
        "f\"{_TAKE} WHERE run_id = ? AND ? >= 0 AND ? != '' AND (status != ? OR \"",
        "AssertionError: assert 2 == 3",
        "the original bug: any run not running under a live lease is taken, a succeeded one too",
    ),
    Mutation(
        "fencing",
        "packages/flujo-core/tests/test_state.py"
        "::test_writes_under_a_lost_lease_are_refused_and_store_nothing[sqlite]",
        f"{CORE}/state/sqlite.py",
        "            if cur.rowcount != 1:\n                raise fenced_out(run_id)\n"
        "            cur.execute(\n"
        "                _SAVE_STEP,",
        "            cur.execute(\n                _SAVE_STEP,",
        "DID NOT RAISE",
        "a step commit under a lost lease is no longer refused",
    ),
    Mutation(
        "fencing-counted",
        "packages/flujo-core/tests/test_fencing.py"
        "::test_a_drain_goes_on_past_a_run_taken_from_it[sqlite]",
        f"{CORE}/state/sqlite.py",
        "            if cur.rowcount != 1:\n                raise fenced_out(run_id)\n"
        "            cur.execute(\n"
        "                _SAVE_STEP,",
        "            cur.execute(\n                _SAVE_STEP,",
        "] == []",
        "the same: a worker whose run was taken mid-step still commits its step",
    ),
    Mutation(
        "resume-race-postgres",
        "packages/flujo-core/tests/test_fencing.py"
        "::test_concurrent_resumes_of_one_run_commit_each_step_once[postgresql]",
        # The statement is the same text on both dialects (flujo.state._sql).
        f"{CORE}/state/_sql.py",
        'f"{_TAKE} WHERE run_id = ? AND version = ? AND status != ? AND (status != ? OR "',
        "f\"{_TAKE} WHERE run_id = ? AND ? >= 0 AND ? != '' AND (status != ? OR \"",
        "AssertionError: assert 2 == 3",
        "the original bug on PostgreSQL: a run that is not live is taken, a succeeded one too",
    ),
    Mutation(
        "fencing-postgres",
        "packages/flujo-core/tests/test_state.py"
        "::test_writes_under_a_lost_lease_are_refused_and_store_nothing[postgresql]",
        f"{CORE}/state/postgres.py",
        # The step writes' own fence (save_step's and save_inner_step's, in _fenced): the check
        # after the statement (and plugins' writes).
        "                        raise fenced_out(run_id)\n"
        "        if cur.rowcount != 1:\n            raise fenced_out(run_id)\n",
        "                        raise fenced_out(run_id)\n",
        "DID NOT RAISE",
        "on PostgreSQL, a step commit under a lost lease is silently dropped, not refused",
    ),
    Mutation(
        "observer-isolation",
        "packages/flujo-core/tests/test_plugin_isolation.py"
        "::test_a_failing_observer_does_not_stop_the_other_plugins_observers[system-exit]",
        f"{CORE}/plugins/manager.py",
        "            except BaseException as exc:  # noqa: BLE001 - observers never raise into",
        "            except Exception as exc:  # noqa: BLE001 - observers never raise into",
        "E       SystemExit: 3",
        "an observer's SystemExit is not isolated (only Exception is caught)",
    ),
    Mutation(
        "observer-stops-others",
        "packages/flujo-core/tests/test_plugin_isolation.py"
        "::test_a_failing_observer_does_not_stop_the_other_plugins_observers[exception]",
        f"{CORE}/plugins/manager.py",
        '                errors.append(f"{impl.plugin_name}.{impl.function.__name__}: '
        '{_describe(exc)}")\n',
        '                errors.append(f"{impl.plugin_name}.{impl.function.__name__}: '
        '{_describe(exc)}")\n                break\n',
        "AssertionError: ('decided'",
        "the first failing observer stops the others",
    ),
    Mutation(
        "import-base-exception",
        "packages/flujo-core/tests/test_plugin_isolation.py"
        "::test_base_exceptions_at_import_and_registration_are_isolated",
        f"{CORE}/plugins/manager.py",
        "        except BaseException as exc:  # noqa: BLE001 - reported on the main thread\n",
        "        except Exception as exc:  # noqa: BLE001 - reported on the main thread\n",
        "KeyError: 'plugin'",
        "a plugin's SystemExit at import escapes the isolation",
    ),
    Mutation(
        "import-hangs",
        "packages/flujo-core/tests/test_plugin_isolation.py"
        "::test_a_plugin_hanging_at_import_is_given_up_after_the_timeout",
        f"{CORE}/plugins/manager.py",
        "    thread.join(timeout_s)\n",
        "    thread.join()\n",
        "TimeoutExpired",
        "a plugin that hangs at import is waited for forever",
        timeout_s=300,
    ),
    Mutation(
        "outbox-after-commit",
        "packages/flujo-memory/tests/test_outbox_in_step_commit.py"
        "::test_a_killed_process_never_splits_a_step_from_its_outbox_row[postgresql-after]",
        "packages/flujo-memory/src/flujo_memory/service.py",
        "            commit.add(outbox.INSERT, params)\n",
        "            self.tasks.schedule(  # type: ignore[union-attr]\n"
        "                'outbox', lambda: self.state.execute(outbox.INSERT, params)\n"
        "            )\n",
        "AssertionError",
        "the outbox row is written after the step's commit, in a background task (the old "
        "PostgreSQL path): a kill in between leaves a committed step without its row",
    ),
]


def _copy_tree(dest: Path) -> None:
    """The working tree's files (tracked and untracked, not ignored) into ``dest``."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for raw in listed:
        if not raw:
            continue
        source = ROOT / os.fsdecode(raw)
        if not source.is_file():
            continue  # deleted in the working tree
        target = dest / os.fsdecode(raw)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)


def _sources(copy: Path) -> list[str]:
    paths = sorted(str(p) for p in (copy / "packages").glob("*/src"))
    return [*paths, str(copy / "examples" / "flujo-plugin-example" / "src")]


def _failure_line(output: str, expect: str) -> str:
    """The line of the output that shows the expected failure (for the table)."""
    for line in output.splitlines():
        if expect in line:
            return line.strip()[:160]
    return ""


def run(mutation: Mutation, copy: Path) -> tuple[bool, str, float]:
    """``(failed as expected, what was seen, seconds)`` for one mutation."""
    target = copy / mutation.path
    original = target.read_text(encoding="utf-8")
    if original.count(mutation.old) != 1:
        found = original.count(mutation.old)
        return False, f"STALE: the text to replace occurs {found} times in {mutation.path}", 0.0
    target.write_text(original.replace(mutation.old, mutation.new), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = os.pathsep.join(_sources(copy))
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    command = [
        sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--import-mode=importlib",
        "-c", "pyproject.toml", "--rootdir", str(copy), "-q", "-x", "--no-header", "-rfEX",
        "-p", "no:randomly", mutation.test,
    ]  # fmt: skip
    started = time.monotonic()
    try:
        done = subprocess.run(
            command,
            cwd=copy,
            env=env,
            capture_output=True,
            text=True,
            timeout=mutation.timeout_s,
        )
    except subprocess.TimeoutExpired:
        return False, f"the test did not finish within {mutation.timeout_s:g}s", mutation.timeout_s
    finally:
        target.write_text(original, encoding="utf-8")
    seconds = time.monotonic() - started
    output = done.stdout + done.stderr
    if done.returncode == 0:
        return False, "PASSED while broken", seconds
    if done.returncode not in (1,):
        tail = " / ".join(output.strip().splitlines()[-3:])
        return False, f"pytest exit {done.returncode}: {tail[-300:]}", seconds
    line = _failure_line(output, mutation.expect)
    if not line:
        errors = [line.strip() for line in output.splitlines() if line.startswith("E ")]
        shown = " / ".join(errors[:3]) or " / ".join(output.strip().splitlines()[-3:])
        return False, f"failed, but without {mutation.expect!r}: {shown[:400]}", seconds
    return True, line, seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run these mutations only")
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    args = parser.parse_args(argv)
    chosen = [m for m in MUTATIONS if not args.only or m.name in args.only]
    if args.list or not chosen:
        for m in MUTATIONS:
            print(f"{m.name:28} {m.test}")
        return 0 if args.list else 2
    bad = 0
    with tempfile.TemporaryDirectory(prefix="flujo-mutants-") as folder:
        copy = Path(folder)
        _copy_tree(copy)
        print("| mutation | test | broken | failure seen | s |")
        print("| --- | --- | --- | --- | --- |")
        for mutation in chosen:
            ok, seen, seconds = run(mutation, copy)
            bad += not ok
            mark = "" if ok else "**NOT SHOWN** "
            test = mutation.test.rsplit("/", 1)[-1]
            seen = seen.replace("|", "\\|")
            print(
                f"| {mutation.name} | `{test}` | {mutation.breaks} | {mark}`{seen}` "
                f"| {seconds:.0f} |",
                flush=True,
            )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
