"""The installed distribution: one version everywhere, the licence as an SPDX expression,
the typing files shipped, and a changelog entry for the version."""
from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

import moai_flow_fast

DIST = "moai-flow-fast"
PACKAGE = Path(moai_flow_fast.__file__).resolve().parent
CHANGELOG = Path(__file__).resolve().parent.parent / "CHANGELOG.md"


def test_distribution_version_is_the_package_version():
    assert metadata.version(DIST) == moai_flow_fast.__version__
    assert re.fullmatch(r"\d+\.\d+\.\d+", moai_flow_fast.__version__)


def test_licence_is_an_spdx_expression_with_its_file():
    meta = metadata.metadata(DIST)
    assert meta["License-Expression"] == "MIT"
    assert "LICENSE" in (meta.get_all("License-File") or [])


def test_typing_files_ship_with_the_package():
    assert (PACKAGE / "py.typed").is_file()
    for stub in ("core/_engine_c.pyi", "analytics/_stats_c.pyi"):
        assert (PACKAGE / stub).is_file(), stub


def test_changelog_has_a_dated_section_for_this_version():
    text = CHANGELOG.read_text(encoding="utf-8")
    assert "## [Unreleased]" in text
    version = re.escape(moai_flow_fast.__version__)
    assert re.search(rf"^## \[{version}\] - \d{{4}}-\d{{2}}-\d{{2}}$", text, re.M), \
        f"CHANGELOG.md has no '## [{moai_flow_fast.__version__}] - YYYY-MM-DD' section"
