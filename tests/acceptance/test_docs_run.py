"""The README and docs/jobs.md run as written: every Python and shell block, executed next to a
`make run` in embedded mode (nothing configured, as a newcomer has it). A block is skipped only
when an HTML comment `<!-- docs-run: skip (why) -->` stands right before it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from shared.embedded import free_port
from tests.processes import wait_for

pytestmark = pytest.mark.acceptance
ROOT = Path(__file__).resolve().parents[2]
DOCS = ("README.md", "docs/jobs.md")
_FENCE = re.compile(r"(?P<skip><!-- docs-run: skip[^>]*-->\n)?```(?P<lang>\w*)\n(?P<code>.*?)```", re.DOTALL)


@dataclass(frozen=True)
class Block:
    doc: str
    line: int
    lang: str
    code: str
    skipped: bool


def blocks(doc: str) -> list[Block]:
    text = (ROOT / doc).read_text()
    return [
        Block(doc, text[: m.start("code")].count("\n") + 1, m.group("lang"), m.group("code"), m.group("skip") is not None)
        for m in _FENCE.finditer(text)
    ]


SHELL = ("sh", "bash")


def test_every_block_says_what_it_is():
    # An untagged block could be code nobody runs: each one is tagged (python, sh, text...).
    for doc in DOCS:
        for block in blocks(doc):
            assert block.lang, f"{doc}:{block.line}: a code block without a language"


@pytest.fixture(scope="module")
def newcomer_env() -> Iterator[dict[str, str]]:
    """`make run` with nothing configured, and the environment a newcomer's terminal has."""
    data_dir = Path(tempfile.mkdtemp(prefix="jobs-docs-run-"))
    data_dir.chmod(0o755)  # the embedded PostgreSQL runs as an unprivileged user
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBS_")}
    env.update(JOBS_DATA_DIR=str(data_dir), JOBS_FLOWER_PORT=str(free_port()), JOBS_CONSOLE_PORT=str(free_port()),
               JOBS_WORKER_METRICS_PORT="0", JOBS_SCHEDULER_METRICS_PORT="0")
    log = data_dir / "run.log"
    with open(log, "wb") as out:
        make = subprocess.Popen(["make", "run"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        wait_for(lambda: _ready(log, make), 150, f"make run prints ready\n{log.read_text(errors='replace')}")
        yield env
    finally:
        os.killpg(make.pid, signal.SIGINT)
        try:
            make.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(make.pid, signal.SIGKILL)


def _ready(log: Path, make: subprocess.Popen[bytes]) -> bool:
    if make.poll() is not None:
        raise AssertionError(f"make run exited with {make.returncode}:\n{log.read_text(errors='replace')}")
    return any(line.startswith("ready ") for line in log.read_text(errors="replace").splitlines())


@pytest.mark.parametrize("doc", DOCS)
def test_docs_run_as_written(newcomer_env: dict[str, str], doc: str, tmp_path: Path) -> None:
    runnable = [b for b in blocks(doc) if not b.skipped]
    assert runnable, f"{doc} has no code blocks to run"
    python = [b for b in runnable if b.lang == "python"]
    if python:
        # One interpreter per document, the blocks in order: a later block may use what an
        # earlier one declared, as a reader following the page would.
        script = tmp_path / "blocks.py"
        script.write_text("\n".join(
            f"print('--- {doc}:{b.line}', flush=True)\nexec(compile({b.code!r}, '{doc}:{b.line}', 'exec'))" for b in python
        ))
        result = subprocess.run([sys.executable, str(script)], cwd=ROOT, env=newcomer_env, capture_output=True,
                                text=True, timeout=120)
        assert result.returncode == 0, f"{doc}'s Python blocks failed:\n{result.stdout}\n{result.stderr}"
    for block in (b for b in runnable if b.lang in SHELL):
        result = subprocess.run(["bash", "-euo", "pipefail", "-c", block.code], cwd=ROOT, env=newcomer_env,
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, f"{doc}:{block.line} failed:\n{block.code}\n{result.stdout}\n{result.stderr}"
