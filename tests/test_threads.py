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
