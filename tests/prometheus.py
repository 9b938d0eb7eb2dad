"""Real Prometheus tools for the tests: `promtool check metrics` on what an endpoint serves, and a
Prometheus server that scrapes a running stack.

Both come from Debian's `prometheus` package, installed here when missing (as root with apt-get),
because a check that silently skips is a check that never runs.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from base64 import b64encode
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import pytest

from shared.embedded import free_port


def debian_tool(name: str) -> str:
    """Path of a binary of the `prometheus` Debian package, installing the package if needed."""
    found = shutil.which(name)
    if found:
        return found
    if os.name != "posix" or os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.fail(f"{name} is missing: `apt-get install -y --no-install-recommends prometheus` (Debian/Ubuntu)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "prometheus"]
    if subprocess.run(install, env=env, capture_output=True, timeout=600).returncode != 0:
        # The package lists may be missing or stale on a fresh machine.
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, timeout=600)
        result = subprocess.run(install, env=env, capture_output=True, text=True, timeout=600)
        if result.returncode != 0:
            pytest.fail(f"could not install prometheus with apt-get:\n{result.stderr}")
    found = shutil.which(name)
    if not found:
        pytest.fail(f"apt-get installed prometheus but {name} is not on PATH")
    return found


def promtool_check_metrics(exposition: str) -> None:
    """`promtool check metrics`: the exposition parses and follows the naming conventions."""
    result = subprocess.run(
        [debian_tool("promtool"), "check", "metrics"], input=exposition, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, f"promtool check metrics:\n{result.stdout}{result.stderr}\n---\n{exposition}"


def http_get(url: str, auth: str | None = None, timeout: float = 5.0) -> tuple[int, str]:
    """(status, body) of a GET; HTTP errors are answers too."""
    request = urllib.request.Request(url)
    if auth is not None:
        request.add_header("Authorization", "Basic " + b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")


@dataclass
class PrometheusServer:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def query(self, promql: str) -> list[dict[str, Any]]:
        """The instant vector a PromQL query returns (HTTP API /api/v1/query)."""
        status, body = http_get(f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql}))
        assert status == 200, body
        answer = json.loads(body)
        assert answer["status"] == "success", answer
        return list(answer["data"]["result"])

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def start_prometheus(targets: dict[str, Sequence[str]], workdir: Path, interval: str = "1s") -> PrometheusServer:
    """A Prometheus on a free loopback port, scraping `targets` (job name -> host:port list),
    with its storage in `workdir`; returns once it answers /-/ready."""
    binary = debian_tool("prometheus")
    workdir.mkdir(parents=True, exist_ok=True)
    config = {
        "global": {"scrape_interval": interval, "scrape_timeout": interval, "evaluation_interval": interval},
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": list(hosts)}]} for job, hosts in targets.items()
        ],
    }
    config_path = workdir / "prometheus.yml"
    config_path.write_text(json.dumps(config))  # JSON is YAML
    port = free_port()
    log_path = workdir / "prometheus.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [binary, f"--config.file={config_path}", f"--storage.tsdb.path={workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    server = PrometheusServer(process, port, log_path)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"prometheus exited with {process.returncode}:\n{log_path.read_text()}")
        try:
            if http_get(f"{server.url}/-/ready", timeout=1)[0] == 200:
                return server
        except OSError:
            pass
        time.sleep(0.1)
    server.stop()
    raise AssertionError(f"prometheus not ready after 30 s:\n{log_path.read_text()}")
