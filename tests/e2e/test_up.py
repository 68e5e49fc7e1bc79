"""`leadrouter up` (what `make run` calls) as a newcomer uses it: start, read the banner, post the printed
lead, see it routed, Ctrl-C, and nothing left running."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from shared.broker import free_port, port_open


def test_up_prints_a_working_curl_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    ports = {name: free_port() for name in ("ROUTER", "MONITOR", "WORKER", "EMBEDDED_KAFKA")}
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEADROUTER_")}
    env.update({f"LEADROUTER_{name}_PORT": str(port) for name, port in ports.items()})
    proc = subprocess.Popen([sys.executable, "-m", "shared.cli", "up"], cwd=tmp_path, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    assert proc.stdout is not None
    banner: list[str] = []
    deadline = time.monotonic() + 90
    try:
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line, "leadrouter up exited early:\n" + "".join(banner)
            banner.append(line)
            if "Ctrl-C stops everything" in line:
                break
        text = "".join(banner)
        token = re.search(r"admin token\s+(\S+)", text)
        payload = re.search(r"-d '(\{.*\})'", text)
        assert token and payload, text
        router = f"http://127.0.0.1:{ports['ROUTER']}"
        assert f"{router}/v1/webhooks/generic" in text
        assert (tmp_path / "var" / "leadrouter.db").exists()
        admin = {"Authorization": f"Bearer {token.group(1)}"}

        created = httpx.post(f"{router}/v1/webhooks/generic", content=payload.group(1),
                             headers={"Content-Type": "application/json"}, timeout=10)
        assert created.status_code == 202, created.text
        lead_id = created.json()["lead_id"]
        status = None
        for _ in range(100):
            status = httpx.get(f"{router}/v1/leads/{lead_id}", headers=admin, timeout=10).json()["status"]
            if status == "offered":
                break
            time.sleep(0.1)
        assert status == "offered"
        keys = dict(line.split() for line in (tmp_path / "var" / "demo-partner-keys.txt").read_text().splitlines())
        assert set(keys) == {"acme", "bluepeak", "northwind", "rheinwerk"}
        for secret in ("admin-token", "demo-partner-keys.txt", "secret-key"):
            assert (tmp_path / "var" / secret).stat().st_mode & 0o777 == 0o600
        acme = httpx.get(f"{router}/v1/partners/acme", headers=admin, timeout=10).json()
        assert acme["operating_periods"] == {"start_months": [1, 7]} and len(acme["objectives"]) == 2
        board = httpx.get(f"{router}/v1/metrics/partners", headers=admin, timeout=10).json()["items"]
        assert sorted(item["partner_id"] for item in board) == ["acme", "bluepeak", "northwind", "rheinwerk"]

        # a killed process is restarted (and the console says so); the rest never stopped
        api_pid = int(re.search(r"started lead_router \(pid (\d+)\)", text).group(1))  # type: ignore[union-attr]
        os.kill(api_pid, signal.SIGKILL)
        said: list[str] = []
        while not any("restarted lead_router" in line for line in said):
            line = proc.stdout.readline()
            assert line, "leadrouter up exited:\n" + "".join(said)
            said.append(line)
        assert any(f"lead_router (pid {api_pid}) exited" in line for line in said), said
        monitor = f"http://127.0.0.1:{ports['MONITOR']}"
        assert httpx.get(f"{monitor}/healthz", timeout=5).status_code == 200
        for _ in range(100):
            try:
                again = httpx.post(f"{router}/v1/webhooks/generic", json={**json.loads(payload.group(1)),
                                   "external_id": "after-restart", "email": "another.person@example.com"},
                                   timeout=10)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        assert again.status_code == 202, again.text
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in the terminal does: the whole process group
        code = proc.wait(30)
    assert code == 0
    for port in ports.values():
        assert not port_open(port), f"port {port} still open after Ctrl-C"
