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
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping, MutableMapping

log = logging.getLogger(__name__)

WAIT_POLICY = "OMP_WAIT_POLICY"
PASSIVE = "PASSIVE"


def apply_cli_policy(environ: MutableMapping[str, str] | None = None,
                     modules: Mapping[str, object] | None = None) -> str | None:
    """The command line's thread policy: ``OMP_WAIT_POLICY=PASSIVE`` in ``environ`` (default:
    ``os.environ``) unless the user set the variable or torch is already imported (then it could
    no longer take effect). Returns the value set, None when nothing was changed."""
    environ = os.environ if environ is None else environ
    modules = sys.modules if modules is None else modules
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
