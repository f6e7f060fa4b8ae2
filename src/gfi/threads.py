"""How torch's CPU threads wait: gfi's thread policy.

torch runs its CPU kernels on an OpenMP thread pool, one thread per core by default. Between two
parallel regions OpenMP's threads spin, busy-waiting for the next one; on a machine where other
work runs, a spinning thread holds a core that the other process, or gfi's own next kernel, needs,
and a run slows down several times (docs/PERFORMANCE.md, "Threads under load"). With
``OMP_WAIT_POLICY=PASSIVE`` the threads sleep instead: under load that keeps torch's default
thread count about as fast as one thread, and on a quiet machine it costs little.

OpenMP reads the variable once, when torch is imported, so it must be set before that:

* the command line (``gfi``, ``python -m gfi``) sets ``OMP_WAIT_POLICY=PASSIVE`` for itself when
  the user has not set the variable (:func:`apply_cli_policy`); a value the user set is kept
  (``OMP_WAIT_POLICY=ACTIVE gfi ...`` spins as before);
* a library import never changes the process's environment: from Python, call
  :func:`wait_passively` before anything imports torch (an explicit opt-in).

How many threads: with ``--threads 0`` (the default) the command line takes torch's default count
(one per core it may use) less the cores that other processes kept busy while it started
(:func:`cores_busy_elsewhere`: the CPU time of its cores in ``/proc/stat`` over its start-up, less
its own, on Linux). A second busy process on two cores leaves one thread, which is what
``--threads 1`` gives; on a quiet machine every core is used. A count the user gives
(``--threads N``, or ``OMP_NUM_THREADS``) is kept. From Python, torch's count is never changed.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterable, Mapping, MutableMapping

log = logging.getLogger(__name__)

WAIT_POLICY = "OMP_WAIT_POLICY"
PASSIVE = "PASSIVE"


def apply_cli_policy(environ: MutableMapping[str, str] | None = None,
                     modules: Mapping[str, object] | None = None) -> str | None:
    """The command line's thread policy: ``OMP_WAIT_POLICY=PASSIVE`` in ``environ`` (default:
    ``os.environ``) unless the user set the variable or torch is already imported (then it could
    no longer take effect). Returns the value set, None when nothing was changed."""
    global _START
    environ = os.environ if environ is None else environ
    modules = sys.modules if modules is None else modules
    if environ is os.environ:
        _START = CpuSample.now()
    if WAIT_POLICY in environ or "torch" in modules:
        return None
    environ[WAIT_POLICY] = PASSIVE
    return PASSIVE


def wait_passively() -> bool:
    """Opt-in for the Python API: let torch's CPU threads sleep, not spin, between parallel regions
    (``OMP_WAIT_POLICY=PASSIVE``), as the command line does. Call it first thing, before torch is
    imported::

        import gfi.threads
        gfi.threads.wait_passively()
        import gfi, torch  # ...

    Returns True when the policy is passive for this process (set now, or already set so by the
    user). Changes nothing and returns False when the user set another policy, or when torch is
    already imported (OpenMP has read its settings; a warning says so)."""
    current = os.environ.get(WAIT_POLICY)
    if current is not None:
        return current.upper() == PASSIVE
    if "torch" in sys.modules:
        log.warning("gfi.threads.wait_passively(): torch is already imported, so OpenMP has read its settings; "
                    "call it before importing torch, or set %s=%s in the environment", WAIT_POLICY, PASSIVE)
        return False
    os.environ[WAIT_POLICY] = PASSIVE
    return True


class CpuSample:
    """A reading of the CPUs this process may run on: ``busy`` ticks of each (``/proc/stat``: user,
    nice, system, irq, softirq, steal; ``SC_CLK_TCK`` a second), this process's own CPU seconds
    (``os.times``) and the monotonic clock. (A plain class: ``gfi --help`` imports this module, and
    dataclasses would cost it a few milliseconds.)"""

    __slots__ = ("busy", "own", "wall")

    def __init__(self, wall: float, busy: Mapping[int, int], own: float) -> None:
        self.wall, self.busy, self.own = wall, busy, own

    @classmethod
    def now(cls, cpus: Iterable[int] | None = None, stat: str | None = None) -> CpuSample | None:
        """The reading now; None where ``/proc/stat`` cannot be read (not Linux). ``stat``: the
        file's text (for tests)."""
        if cpus is None:
            try:
                cpus = os.sched_getaffinity(0)
            except (AttributeError, OSError):  # not Linux
                return None
        wanted = set(cpus)
        if stat is None:
            try:
                with open("/proc/stat", encoding="ascii") as f:
                    stat = f.read()
            except OSError:
                return None
        busy = {}
        for line in stat.splitlines():
            name, _, rest = line.partition(" ")
            if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in wanted:
                v = [int(x) for x in rest.split()[:8]]
                if len(v) >= 5:
                    busy[int(name[3:])] = sum(v) - v[3] - v[4]  # all but idle and iowait
        if not busy:
            return None
        t = os.times()
        return cls(time.monotonic(), busy, t.user + t.system)


def cores_busy_elsewhere(start: CpuSample, end: CpuSample, ticks_per_second: float | None = None) -> float | None:
    """How many of this process's cores other processes kept busy between two readings: the busy
    CPU time of those cores less this process's own, over the wall time. None when the readings are
    under 0.25 s apart (too few ticks to tell)."""
    wall = end.wall - start.wall
    if wall < 0.25:
        return None
    hz = ticks_per_second or float(os.sysconf("SC_CLK_TCK"))
    busy = sum(end.busy[c] - start.busy[c] for c in end.busy if c in start.busy) / hz
    return max(0.0, (busy - (end.own - start.own)) / wall)


def free_threads(default: int, cores: int, elsewhere: float | None) -> int:
    """Threads for a run: ``default`` (torch's count) less the cores busy elsewhere, at least one;
    ``default`` when that is unknown. A core half busy counts as free."""
    if elsewhere is None:
        return default
    return max(1, min(default, int(cores - elsewhere + 0.5)))


#: the command line's reading at its start (:func:`apply_cli_policy`); None from Python
_START: CpuSample | None = None


def cli_threads(default: int, environ: Mapping[str, str] | None = None) -> tuple[int, float | None] | None:
    """The command line's thread count for ``--threads 0`` (:func:`free_threads` over its start-up)
    and the cores busy elsewhere; None when the process is not the ``gfi`` program (called from
    Python) or the user set ``OMP_NUM_THREADS`` (their count stands)."""
    environ = os.environ if environ is None else environ
    if _START is None or "OMP_NUM_THREADS" in environ:
        return None
    end = CpuSample.now(_START.busy)
    elsewhere = None if end is None else cores_busy_elsewhere(_START, end)
    return free_threads(default, len(_START.busy), elsewhere), elsewhere


def set_cli_threads() -> int | None:
    """``--threads 0`` on the command line: torch's thread count set to :func:`cli_threads` (logged);
    nothing from Python. Returns the count set, None when unchanged."""
    import torch

    got = cli_threads(torch.get_num_threads())
    if got is None:
        return None
    n, elsewhere = got
    if elsewhere is not None:
        log.debug("%d CPU thread(s): other processes kept %.1f of %d core(s) busy while gfi started (--threads N "
                  "to choose)", n, elsewhere, len(_START.busy) if _START else 0)
    if n == torch.get_num_threads():
        return None
    torch.set_num_threads(n)
    return n


def use_threads(threads: int) -> None:
    """A run's ``threads`` option: ``N`` > 0 sets torch's count to N; 0 is the command line's count
    (:func:`set_cli_threads`: the free cores), and from Python leaves torch's count alone."""
    if threads:
        import torch

        torch.set_num_threads(threads)
    else:
        set_cli_threads()
