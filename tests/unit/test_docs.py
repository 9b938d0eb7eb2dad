"""The docs stay in step with the code they describe."""

from __future__ import annotations

from pathlib import Path

from shared.settings_doc import settings_markdown

ROOT = Path(__file__).resolve().parents[2]


def test_settings_reference_is_current():
    assert (ROOT / "docs/settings.md").read_text() == settings_markdown(), "run: jobctl settings > docs/settings.md"


def test_readme_gives_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    assert "make run" in readme and "make test" in readme


def test_readme_settings_table_is_current():
    readme = (ROOT / "README.md").read_text()
    table = readme.split("<!-- settings:start -->\n", 1)[1].split("<!-- settings:end -->", 1)[0]
    generated = "\n".join(line for line in settings_markdown().splitlines() if line.startswith("|")) + "\n"
    assert table == generated, "regenerate the README settings table from `jobctl settings`"
