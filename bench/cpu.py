"""CPU time and memory of the pipeline's processes, read from /proc: far less noisy on a shared box than a
rate, so it says where work goes. Linux only (the bench's home)."""

from __future__ import annotations

import os
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS  # fields 14 and 15 of stat(5), after pid and comm


def peak_rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return 0.0


def pids_named(name: str, *, containing: str | None = None) -> list[int]:
    """Processes whose command name starts with `name` (and whose command line contains `containing`)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if not (entry / "comm").read_text().startswith(name):
                continue
            if containing and containing not in (entry / "cmdline").read_bytes().decode(errors="replace"):
                continue
        except OSError:
            continue
        out.append(int(entry.name))
    return out


class CpuMeter:
    """CPU seconds per named group of processes between `start()` and `stop()`. PostgreSQL backends come and
    go, so every `postgres` process is summed at both ends (the others on this box are idle)."""

    def __init__(self, groups: dict[str, list[int]]) -> None:
        self.groups = groups
        self.before: dict[str, float] = {}

    def _sample(self) -> dict[str, float]:
        sample = {name: sum(cpu_seconds(p) for p in pids) for name, pids in self.groups.items()}
        sample["postgresql"] = sum(cpu_seconds(p) for p in pids_named("postgres"))
        return sample

    def start(self) -> None:
        self.before = self._sample()

    def stop(self, leads: int) -> dict[str, float]:
        """CPU milliseconds per lead, per group and in total."""
        after = self._sample()
        per = {name: round(1000 * (after[name] - self.before.get(name, 0.0)) / leads, 3) for name in after}
        per["total"] = round(sum(per.values()), 3)
        return per
