"""The vendored front-end files are the ones VENDORED.md records, and ship in the package."""

from __future__ import annotations

import hashlib
import re
from importlib.resources import files
from pathlib import Path

import pytest

TABLE = Path(__file__).resolve().parents[1] / "VENDORED.md"


def test_vendored_files_match_their_recorded_sha256() -> None:
    if not TABLE.is_file():
        pytest.skip("VENDORED.md is beside the sources, not in the wheel")
    text = TABLE.read_text()
    recorded = {
        "htmx.min.js": re.search(r"\| `(d6fd[0-9a-f]{60})` \|", text),
        "uPlot.iife.min.js": re.search(r"js `([0-9a-f]{64})`", text),
        "uPlot.min.css": re.search(r"css `([0-9a-f]{64})`", text),
    }
    static = files("flujo_ui") / "static"
    for name, found in recorded.items():
        assert found is not None, name
        digest = hashlib.sha256((static / name).read_bytes()).hexdigest()
        assert digest == found.group(1), f"{name} differs from VENDORED.md"
    for license_file in ("htmx.LICENSE", "uPlot.LICENSE"):
        assert (static / license_file).read_text().strip()
