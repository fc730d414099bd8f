"""``flujo dev import-openapi``: imported only when ``flujo dev`` runs (see ``plugin.py``)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from flujo_openapi.generator import (
    Options,
    check_output,
    ensure_writable,
    generate,
    write_output,
)


def _split(value: str | None) -> tuple[str, ...]:
    if not value:
        return ()
    return tuple(dict.fromkeys(v.strip() for v in value.split(",") if v.strip()))


@click.group("dev")
def dev() -> None:
    """Developer tools (from flujo-openapi)."""


@dev.command("import-openapi")
@click.argument("spec")
@click.option(
    "--output-dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory to generate into (holds the package and its manifest).",
)
@click.option("--package-name", default=None, help="Python package name (default: from the title).")
@click.option("--include-tags", default=None, help="Only operations with one of these tags (T,..).")
@click.option(
    "--include-paths", default=None, help="Only operations whose path matches a glob (GLOB,..)."
)
@click.option(
    "--exclude-operations", default=None, help="Leave out these operationIds or tool names (ID,..)."
)
@click.option(
    "--check",
    is_flag=True,
    help="Write nothing; exit 1 when regenerating would change the output directory.",
)
@click.option("--force", is_flag=True, help="Write even if the directory holds other files.")
@click.option(
    "--refs-root",
    default=None,
    help="Folder $refs may read files from (default: the spec's folder; URLs never).",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress display.")
def import_openapi(
    spec: str,
    output_dir: Path,
    package_name: str | None,
    include_tags: str | None,
    include_paths: str | None,
    exclude_operations: str | None,
    check: bool,
    force: bool,
    refs_root: str | None,
    quiet: bool,
) -> None:
    """Generate typed tools, agents and steps from the OpenAPI/Swagger spec SPEC.

    SPEC is a file path or an http(s) URL, JSON or YAML: Swagger 2.0, OpenAPI 3.0 or 3.1.
    """
    options = Options(
        package_name=package_name,
        include_tags=_split(include_tags),
        include_paths=_split(include_paths),
        exclude_operations=_split(exclude_operations),
        refs_root=refs_root,
    )
    started = time.perf_counter()

    def say(message: str) -> None:
        if not quiet:
            click.echo(f"[{time.perf_counter() - started:5.1f}s] {message}", err=True)

    if not check:
        ensure_writable(output_dir, force=force)  # fail before the (slow) generation
    shown_steps: set[int] = set()

    def operation_progress(done: int, total: int) -> None:
        step = (done * 4) // total if total else 4
        if quiet or total < 20 or step in shown_steps:
            return
        shown_steps.add(step)
        say(f"operations {done}/{total}")

    result = generate(spec, options, progress=say, operation_progress=operation_progress)
    for warning in result.plan.warnings:
        click.echo(f"warning: {warning}", err=True)
    for skipped in result.plan.skipped:
        click.echo(
            f"skipped {skipped.method} {skipped.path}"
            f"{f' ({skipped.operation_id})' if skipped.operation_id else ''}: {skipped.reason}",
            err=True,
        )
    if check:
        differ = check_output(result, output_dir)
        if differ:
            shown = ", ".join(differ[:5]) + (
                f" and {len(differ) - 5} more" if len(differ) > 5 else ""
            )
            click.echo(f"{output_dir} is out of date: {shown}", err=True)
            # Not click's Exit: flujo's main runs click with standalone_mode=False, which
            # turns Exit into a return value that is then ignored (exit status 0).
            sys.exit(1)
        click.echo(f"{output_dir} is up to date ({len(result.plan.operations)} operations)")
        return
    changed = write_output(result, output_dir, force=force)
    click.echo(
        f"generated package {result.package!r} in {output_dir}: "
        f"{len(result.plan.operations)} operation(s), {len(result.plan.skipped)} skipped, "
        f"{len(result.plan.excluded)} excluded; {len(changed)} file(s) changed "
        f"({time.perf_counter() - started:.1f}s)"
    )
