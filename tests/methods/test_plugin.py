"""A new method is its file, its test and one registration: a tiny method defined in one file
(tests/methods/occlusion_plugin.py) is found in ``gfi methods``, ``gfi methods --table``, ``gfi
explain --method`` and the three front ends, whether it was registered in-process
(``gfi.methods.registry.register``) or installed as a package with an entry point of the group
``gfi.methods`` (a ``*.dist-info/entry_points.txt`` on the path, read by ``importlib.metadata``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from gfi.errors import UsageError
from gfi.methods import resolve
from gfi.methods.registry import METHODS, get_method, method_class, register, unregister
from tests import cli_tiny
from tests.cli.test_reliability import run, write_images
from tests.conftest import REPO
from tests.methods.occlusion_plugin import Occlusion
from tests.methods.region_net import SIZE, region_classifier, region_images

NAME = Occlusion.name
ROW = f"| `{NAME}` | yes | yes | yes | all | yes |"


@pytest.fixture
def registered():
    register(Occlusion)
    yield Occlusion
    unregister(NAME)


def test_the_tiny_method_is_the_score_drop_of_each_cell():
    """On the model that sees only the top-left quadrant, greying out a cell of a 2 x 2 grid lowers
    class 0's score only for that quadrant: the map is 1 there and 0 elsewhere."""
    clf, x = region_classifier(), region_images()
    e = Occlusion(clf, grid=2).explain(x, 0)
    half = SIZE // 2
    want = torch.zeros(2, 1, SIZE, SIZE)
    want[..., :half, :half] = 1.0
    torch.testing.assert_close(e.maps, want)


def test_a_method_registered_in_process_is_found_everywhere(registered, tmp_path, capsys, monkeypatch):
    assert METHODS[NAME] is registered and method_class(NAME) is registered
    assert resolve(NAME, None, {"grid": "3", "chunk": "2"}).config.grid == 3
    # gfi methods, and the support table
    rc, out, _ = run(["methods"], capsys)
    assert rc == 0 and f"{NAME:22s} {Occlusion.summary}" in out.splitlines()
    rc, out, _ = run(["methods", "--table"], capsys)
    assert rc == 0 and ROW in out.splitlines()
    # gfi explain --method NAME, with its settings as typed options
    cli_tiny.patch(monkeypatch)
    rc, out, _ = run(["explain", "--method", NAME, "--help"], capsys)
    assert rc == 0 and "--grid N" in out and "tiny-occlusion settings" in out
    out = tmp_path / "o"
    rc, _, err = run(["explain", str(write_images(tmp_path / "in", 1)), "--method", NAME, "--grid", "2",
                      "--out", str(out), "--quiet"], capsys)
    assert rc == 0, err
    res = json.loads((out / "results.json").read_text())
    assert res["method"] == NAME and res["config"] == {"grid": 2, "fill": 0.5}
    rc, _, err = run(["explain", str(tmp_path / "in"), "--method", NAME, "--grid", "0", "--out", str(tmp_path / "b")],
                     capsys)
    assert rc == 2 and "OcclusionSettings.grid must be >= 1" in err


def test_the_front_ends_run_a_registered_method(registered):
    from gfi.frontends.cam import GFICAM
    from gfi.frontends.captum import GuidedFeatureInversion
    from gfi.frontends.quantus import explain

    clf = cli_tiny.make()
    p = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    want = get_method(NAME, clf, grid=2).explain(p, [1, 2]).maps[:, 0]
    net = clf.model
    attr = GuidedFeatureInversion(lambda z: net(z), method=NAME, grid=2, mean=0.0, std=1.0).attribute(p, target=[1, 2])
    torch.testing.assert_close(attr[:, 0], want)  # a plain callable: the method does not need a module
    got = explain(clf, p.numpy(), np.array([1, 2]), method=NAME, grid=2)
    np.testing.assert_allclose(got[:, 0], want.numpy(), atol=1e-6)
    top1 = get_method(NAME, clf, grid=2).explain(p).maps[:, 0]
    np.testing.assert_allclose(GFICAM(clf, [net.relu2], method=NAME, grid=2)(p), top1.numpy(), atol=1e-6)


def test_registration_refuses_what_is_no_complete_method_in_one_line(registered):
    from dataclasses import dataclass
    from typing import ClassVar

    from gfi.methods.base import Explainer
    from gfi.settings import Settings, setting

    class Taken(Occlusion):
        pass

    class NoSummary(Occlusion):
        name = "no-summary"
        summary = ""

    class Unfinished(Explainer):
        name = "unfinished"
        summary = "no _explain"

    @dataclass(frozen=True)
    class Clashing(Settings):
        chunk: int = setting(1, "a run option's name")

    class RunOptionName(Occlusion):
        name = "clash"
        settings_class = Clashing
        test_settings: ClassVar[dict] = {}

    class BadName(Occlusion):
        name = "Bad Name"

    class BadTestSettings(Occlusion):
        name = "bad-test-settings"
        test_settings: ClassVar[dict] = {"gird": 2}

    cases = [(Taken, r"method name 'tiny-occlusion' of .*Taken is taken by .*Occlusion"),
             (NoSummary, "has no summary"), (Unfinished, "does not implement _explain"),
             (RunOptionName, "settings chunk are run options"), (BadName, "name must be lower case"),
             (BadTestSettings, "test_settings name gird"), (object, "must be a subclass of gfi.methods.base.Explainer")]
    for cls, message in cases:
        with pytest.raises(UsageError, match=message) as info:
            register(cls)
        assert "\n" not in str(info.value)
    assert register(Occlusion) is Occlusion  # registering the same class again changes nothing
    with pytest.raises(UsageError, match="one of gfi's own methods"):
        unregister("gfi")


# -- installed as a package: the entry point ------------------------------------------------------
def _cli(tmp_path, *args: str) -> subprocess.CompletedProcess:
    """``gfi ARGS`` (the tiny model in place of the presets) in a fresh interpreter that sees the
    plugin package through ``tmp_path`` on its path only."""
    path = os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", "tests.cli_tiny", *args], capture_output=True, text=True,
                          timeout=300, cwd=REPO, env={**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"})


def test_an_installed_plugin_is_found_through_its_entry_point(tmp_path):
    """One line in a package's pyproject.toml: ``[project.entry-points."gfi.methods"]`` with
    ``tiny-occlusion = "tests.methods.occlusion_plugin:Occlusion"``; installed, that is an
    ``entry_points.txt`` in the package's ``.dist-info``. A second plugin that cannot be imported is
    left out with a message, and the first still works."""
    assert NAME not in METHODS  # only the fresh interpreters see the package
    dist = tmp_path / "gfi_tiny_occlusion-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: gfi-tiny-occlusion\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[gfi.methods]\n{NAME} = tests.methods.occlusion_plugin:Occlusion\n"
                                           "broken = tests.methods.no_such_module:Nope\n")
    done = _cli(tmp_path, "methods")
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"{NAME:22s} {Occlusion.summary}" in done.stdout.splitlines()
    assert "gfi: warning: method plugin broken is left out: tests.methods.no_such_module:Nope: " \
           "ModuleNotFoundError" in done.stderr
    done = _cli(tmp_path, "methods", "--table")
    assert ROW in done.stdout.splitlines()
    images, out = write_images(tmp_path / "in", 1), tmp_path / "o"
    done = _cli(tmp_path, "explain", str(images), "--method", NAME, "--grid", "2", "--out", str(out), "--quiet")
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads((out / "results.json").read_text())["config"] == {"grid": 2, "fill": 0.5}
    done = _cli(tmp_path, "explain", str(images), "--method", "broken", "--out", str(tmp_path / "b"))
    assert done.returncode == 2 and "'broken'" in done.stderr and done.stderr.count("\n") == 1
    # a front end, in a fresh interpreter too; naming the broken plugin says why it is not there
    code = ("import numpy as np, torch; from tests import cli_tiny; from gfi.frontends.quantus import explain; "
            f"m = explain(cli_tiny.make(), torch.rand(1, 3, 32, 32).numpy(), np.array([1]), method={NAME!r}, grid=2); "
            "print(m.shape, float(m.max()))\n"
            "try:\n    explain(cli_tiny.make(), torch.rand(1, 3, 32, 32).numpy(), None, method='broken')\n"
            "except ValueError as exc:\n    print(exc)")
    path = os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0 and done.stdout.startswith("(1, 1, 32, 32)"), done.stderr[-2000:]
    assert done.stdout.splitlines()[1].startswith("method 'broken' is a plugin that could not be loaded "
                                                  "(tests.methods.no_such_module:Nope: ModuleNotFoundError")
