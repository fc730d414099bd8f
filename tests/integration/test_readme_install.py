"""The README's install section says what works today: every folder it names exists and is the
distribution it claims, the nox session it names exists, and no line promises the index."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"


def _install_section() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("## Install\n")
    return text[start : text.index("\n## ", start + 1)]


def test_every_folder_in_the_install_section_is_a_package_of_that_name() -> None:
    section = _install_section()
    folders = set(re.findall(r"\./packages/(flujo-[a-z]+)", section))
    assert folders >= {p.name for p in (ROOT / "packages").iterdir() if p.name.startswith("flujo")}
    for folder in folders:
        pyproject = ROOT / "packages" / folder / "pyproject.toml"
        assert pyproject.is_file(), f"README names ./packages/{folder}, which does not exist"
        name = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["name"]
        assert name == folder
    for extra in re.findall(r"\./packages/flujo-core\[([a-z]+)\]", section):
        core = tomllib.loads((ROOT / "packages/flujo-core/pyproject.toml").read_text())
        assert extra in core["project"]["optional-dependencies"], extra


def test_the_install_section_never_sends_users_to_the_index() -> None:
    section = _install_section()
    promises = re.findall(r"pip install flujo-[a-z]+(?!\S*\.whl)", section)
    # The only mention is the warning that it finds nothing.
    assert promises == ["pip install flujo-core"], promises
    assert "not on the package index" in section
    assert "def wheels(" in (ROOT / "noxfile.py").read_text(encoding="utf-8")
