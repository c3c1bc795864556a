"""What else ran while the benchmark measured: the share of all CPUs' time that other processes
used, from the system's CPU times minus this process's own (its finished children included).

The load average the report also gives is a poor witness for this: it decays over minutes, so a
job stopped just before the benchmark still shows in it.
"""

from __future__ import annotations

import time

import psutil

# Linux's busy fields; guest time is already inside user and nice. Fields a system lacks are 0.
BUSY_FIELDS = ("user", "nice", "system", "irq", "softirq", "steal")


def _sample() -> tuple[float, float, float]:
    """(monotonic seconds, busy CPU seconds of the whole system, CPU seconds of this process)."""
    system = psutil.cpu_times()
    busy = sum(getattr(system, field, 0.0) for field in BUSY_FIELDS)
    own = psutil.Process().cpu_times()
    mine = own.user + own.system + own.children_user + own.children_system
    return time.monotonic(), busy, mine


class OtherLoad:
    """Started at construction; :meth:`share` reads how busy other processes kept the CPUs."""

    def __init__(self) -> None:
        self._start = _sample()

    def share(self) -> float:
        """Other processes' CPU time since construction over (wall time x CPUs): 0 when nothing
        else ran, 1 when other processes kept every CPU busy all along. Children of this process
        count as its own only once they have ended (their times reach it when waited for)."""
        start_time, start_busy, start_mine = self._start
        now, busy, mine = _sample()
        capacity = (now - start_time) * (psutil.cpu_count() or 1)
        if capacity <= 0:
            return 0.0
        return max(0.0, ((busy - start_busy) - (mine - start_mine)) / capacity)
