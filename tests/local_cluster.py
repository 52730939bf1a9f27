"""The real Slurm and Prometheus of cluster/local/ for the integration tests, and ways to ask them."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from launcher.paths import PROJECT_ROOT

LOCAL = PROJECT_ROOT / "cluster" / "local"


def script(name: str, action: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(LOCAL / name), action],
        cwd=PROJECT_ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=600,
    )


def install_or_skip(name: str, **env: str) -> None:
    """Install with Debian's packages; only a machine that cannot install them skips, saying why."""
    result = script(name, "install", **env)
    if result.returncode != 0:
        pytest.skip(f"cluster/local/{name} install failed (needs root and apt): {result.stderr.strip()[-300:]}")


def start(name: str, **env: str) -> None:
    result = script(name, "start", **env)
    assert result.returncode == 0, result.stdout + result.stderr


def poll(condition, *, timeout: float, every: float = 0.2, what: str = "the condition"):
    """``condition()``'s first truthy value within ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def prometheus_query(port: int, query: str) -> list[dict]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    with urllib.request.urlopen(url, timeout=10) as response:
        answer = json.load(response)
    assert answer["status"] == "success", answer
    return answer["data"]["result"]


def scrape(target: str) -> str:
    with urllib.request.urlopen(f"http://{target}/metrics", timeout=10) as response:
        return response.read().decode()


def config_for_test(shipped: Path, out: Path, targets_glob: str) -> Path:
    """The shipped Prometheus config with its targets glob pointed at ``targets_glob`` and 1 s scrapes."""
    text = shipped.read_text()
    lines = [line for line in text.splitlines() if "prometheus-targets/*.json" not in line]
    text = "\n".join(lines).replace("- files:", f"- files:\n          - {targets_glob}")
    for interval in ("scrape_interval", "evaluation_interval", "refresh_interval"):
        text = text.replace(f"{interval}: 5s", f"{interval}: 1s")
    (out / "rules.yml").write_text((shipped.parent / "rules.yml").read_text())
    (out / "prometheus.yml").write_text(text + "\n")
    return out / "prometheus.yml"
