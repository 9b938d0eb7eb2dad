"""The table printed at the end of a run, and `bench/results/latest.json`."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from sqlalchemy import text

from bench.context import Figure, Results
from bench.environment import Environment
from bench.processes import CONCURRENCY

RESULTS_DIR = Path(__file__).parent / "results"
PACKAGES = ("celery", "kombu", "billiard", "redis", "SQLAlchemy", "psycopg", "pydantic")

# What every contender runs with (shared.broker.make_celery and bench.processes).
WORKER_SETTINGS = {
    "pool": "prefork", "concurrency": CONCURRENCY, "prefetch_multiplier": 1, "acks_late": True,
    "serializer": "json", "broker": "redis", "mingle": False, "gossip": False,
}


def table(figures: list[Figure]) -> str:
    by_name = {f.name: f for f in figures}
    header = f"{'contender':<26} {'unit':<7} {'median':>10} {'min':>10} {'max':>10} {'vs baseline':>12} {'target':>10}  n"
    lines = [header, "-" * len(header)]
    for f in figures:
        base = by_name.get(f.baseline) if f.baseline else None
        ratio = f"{f.median / base.median:.2f}x" if base and base.median else "baseline" if _is_baseline(f, figures) else ""
        target = ""
        if f.target:
            op, value = f.target
            shown = f"{value:g}x" if f.baseline and f.unit == "jobs/s" else f"{value:g}"
            target = f"{op}{shown} " + ("ok" if _meets(f, base) else "MISS")
        lines.append(f"{f.name:<26} {f.unit:<7} {_num(f.median):>10} {_num(min(f.samples)):>10} "
                     f"{_num(max(f.samples)):>10} {ratio:>12} {target:>10}  {len(f.samples)}")
    return "\n".join(lines)


def _is_baseline(figure: Figure, figures: list[Figure]) -> bool:
    return any(f.baseline == figure.name for f in figures)


def _measured(figure: Figure, base: Figure | None) -> float:
    """A throughput target is a ratio to its baseline; the others are absolute."""
    return figure.median / base.median if base is not None and figure.unit == "jobs/s" else figure.median


def _meets(figure: Figure, base: Figure | None) -> bool:
    assert figure.target is not None
    op, value = figure.target
    measured = _measured(figure, base)
    return measured >= value if op == ">=" else measured <= value


def _num(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.2f}"


def machine(environment: Environment) -> dict[str, Any]:
    info: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "packages": {name: _version(name) for name in PACKAGES},
        "worker": WORKER_SETTINGS,
    }
    try:
        with environment.database().engine.connect() as connection:
            info["postgresql"] = connection.execute(text("SHOW server_version")).scalar()
            info["postgresql_synchronous_commit"] = connection.execute(text("SHOW synchronous_commit")).scalar()
        client = environment.redis()
        info["redis"] = client.info("server").get("redis_version")
        client.close()
    except Exception as exc:  # noqa: BLE001 - machine info is best effort
        info["service_versions_error"] = str(exc)
    return info


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, check=True, cwd=Path(__file__).parent)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def document(results: list[Results], options: dict[str, Any], info: dict[str, Any], seconds: float) -> dict[str, Any]:
    figures = [f for r in results for f in r.figures]
    doc: dict[str, Any] = {}
    for r in results:
        doc.update(r.summary)
    by_name = {f.name: f for f in figures}
    doc["targets"] = {}
    for f in figures:
        if f.target:
            base = by_name.get(f.baseline) if f.baseline else None
            doc["targets"][f.name] = {"target": f"{f.target[0]}{f.target[1]:g}", "measured": _measured(f, base),
                                      "met": _meets(f, base)}
    doc["figures"] = [
        {"name": f.name, "unit": f.unit, "median": f.median, "min": min(f.samples), "max": max(f.samples),
         "samples": f.samples, "baseline": f.baseline, "method": f.method}
        for f in figures
    ]
    doc["raw"] = {k: v for r in results for k, v in r.raw.items()}
    doc["options"] = options
    doc["machine"] = info
    doc["git_commit"] = _git("rev-parse", "HEAD")
    # Uncommitted changes to the platform code mean the figures are not those of git_commit.
    doc["git_platform_changes"] = (_git("status", "--porcelain", "--", "shared", "worker", "scheduler", "migrations") or "").splitlines()
    doc["finished_at"] = datetime.now(timezone.utc).isoformat()
    doc["run_seconds"] = seconds
    return doc


def write(doc: dict[str, Any], path: Path | None = None) -> Path:
    path = path or RESULTS_DIR / "latest.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    return path
