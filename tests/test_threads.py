"""The thread policy: the command line sets OMP_WAIT_POLICY=PASSIVE for itself, before torch is
imported, unless the user set the variable; a library import changes no environment; the Python
API's opt-in does it only where it can still take effect."""

import json
import logging
import os
import subprocess
import sys

import pytest

from gfi import threads


def test_cli_policy_sets_passive_when_unset_and_torch_not_imported():
    env: dict[str, str] = {}
    assert threads.apply_cli_policy(env, {}) == "PASSIVE"
    assert env == {"OMP_WAIT_POLICY": "PASSIVE"}


@pytest.mark.parametrize("users", ["ACTIVE", "active", "PASSIVE", ""])
def test_cli_policy_keeps_the_users_value(users):
    env = {"OMP_WAIT_POLICY": users}
    assert threads.apply_cli_policy(env, {}) is None
    assert env == {"OMP_WAIT_POLICY": users}


def test_cli_policy_changes_nothing_once_torch_is_imported():
    env: dict[str, str] = {}
    assert threads.apply_cli_policy(env, {"torch": object()}) is None
    assert env == {}


def _child(code: str, **env: str) -> dict:
    base = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True,
                         env={**base, **env})
    return json.loads(out.stdout.strip().splitlines()[-1])


RUN_CLI = ("import contextlib, io, json, os, sys\nfrom gfi.cli import console_main\nsys.argv = ['gfi', '--version']\n"
           "with contextlib.redirect_stdout(io.StringIO()):\n    try:\n        console_main()\n"
           "    except SystemExit:\n        pass\n")


def test_the_gfi_program_sets_passive_for_itself():
    assert _child(RUN_CLI + "print(json.dumps(os.environ.get('OMP_WAIT_POLICY')))") == "PASSIVE"


def test_the_gfi_program_keeps_a_policy_the_user_set():
    assert _child(RUN_CLI + "print(json.dumps(os.environ.get('OMP_WAIT_POLICY')))", OMP_WAIT_POLICY="ACTIVE") \
        == "ACTIVE"


def test_importing_gfi_and_calling_main_change_no_environment():
    code = ("import contextlib, io, json, os\nimport gfi\nfrom gfi.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n    try:\n        main(['--version'])\n"
            "    except SystemExit:\n        pass\n"
            "print(json.dumps(os.environ.get('OMP_WAIT_POLICY')))")
    assert _child(code) is None


def test_wait_passively_before_torch_sets_it():
    code = ("import json, os, sys\nimport gfi.threads\nok = gfi.threads.wait_passively()\n"
            "print(json.dumps([ok, os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules]))")
    assert _child(code) == [True, "PASSIVE", False]


def test_wait_passively_after_torch_warns_and_changes_nothing(monkeypatch, caplog):
    import torch  # noqa: F401 - the point: torch is imported

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    with caplog.at_level(logging.WARNING, logger="gfi.threads"):
        assert threads.wait_passively() is False
    assert "OMP_WAIT_POLICY" not in os.environ
    assert "before importing torch" in caplog.text


def test_wait_passively_respects_the_users_choice(monkeypatch):
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    assert threads.wait_passively() is False
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"


STAT = """cpu  500 0 200 9000 100 0 10 0 0 0
cpu0 {u0} 0 {s0} 4000 50 0 {q0} 0 0 0
cpu1 {u1} 0 {s1} 5000 50 0 {q1} 0 0 0
intr 12345
"""


def _sample(wall, own, cpus=(0, 1), **ticks):
    return threads.CpuSample(wall, threads.CpuSample.now(cpus, STAT.format(**ticks)).busy, own)


def test_a_reading_counts_busy_ticks_of_the_processs_own_cores():
    s = threads.CpuSample.now([1], STAT.format(u0=100, s0=10, q0=1, u1=200, s1=20, q1=2))
    assert dict(s.busy) == {1: 222}  # user + system + softirq of cpu1; cpu0 and the total line left out
    assert threads.CpuSample.now([7], STAT.format(u0=1, s0=1, q0=1, u1=1, s1=1, q1=1)) is None


def test_threads_from_the_cores_busy_elsewhere_by_hand():
    start = _sample(10.0, 1.0, u0=0, s0=0, q0=0, u1=0, s1=0, q1=0)
    # 2 s: this process used 1.9 CPU s; the two cores were busy 4.0 s in all (100 ticks a second)
    loaded = _sample(12.0, 2.9, u0=190, s0=10, q0=0, u1=195, s1=5, q1=0)
    elsewhere = threads.cores_busy_elsewhere(start, loaded, ticks_per_second=100)
    assert elsewhere == pytest.approx((4.0 - 1.9) / 2)
    assert threads.free_threads(2, 2, elsewhere) == 1
    quiet = _sample(12.0, 2.9, u0=190, s0=10, q0=0, u1=0, s1=2, q1=0)  # 2.02 s busy: ours 1.9 and a little
    assert threads.cores_busy_elsewhere(start, quiet, ticks_per_second=100) == pytest.approx((2.02 - 1.9) / 2)
    assert threads.free_threads(2, 2, 0.05) == 2
    assert threads.free_threads(2, 2, 1.6) == 1  # never below one
    assert threads.free_threads(1, 2, 0.0) == 1  # never above torch's count
    assert threads.free_threads(4, 4, 1.4) == 3 and threads.free_threads(4, 4, 1.6) == 2
    too_short = _sample(10.1, 1.1, u0=10, s0=0, q0=0, u1=0, s1=0, q1=0)
    assert threads.cores_busy_elsewhere(start, too_short, ticks_per_second=100) is None
    assert threads.free_threads(2, 2, None) == 2


def test_the_count_is_the_programs_alone(monkeypatch):
    """From Python (no start reading) and with OMP_NUM_THREADS set, torch's count stands."""
    monkeypatch.setattr(threads, "_START", None)
    assert threads.cli_threads(2) is None
    start = threads.CpuSample(0.0, {0: 0}, 0.0)
    monkeypatch.setattr(threads, "_START", start)
    assert threads.cli_threads(2, {"OMP_NUM_THREADS": "2"}) is None


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="reads /proc/stat (Linux)")
def test_the_gfi_program_measures_its_start_up():
    code = ("import json, sys, torch\nfrom gfi import threads\nthreads.apply_cli_policy()\nimport time\n"
            "t = time.monotonic()\nwhile time.monotonic() - t < 0.4: pass\n"
            "got = threads.cli_threads(torch.get_num_threads(), {})\n"
            "print(json.dumps([got[0], got[1], torch.get_num_threads()]))")
    n, elsewhere, default = _child(code)
    assert 1 <= n <= default and elsewhere is not None and elsewhere >= 0
