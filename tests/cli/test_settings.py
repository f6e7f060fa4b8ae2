"""Every numeric setting is checked to be finite and in range, on every command, with an error that
names the setting (issue 14 case 7), before the model is loaded."""

import pytest

from tests.cli.test_reliability import run, write_images


@pytest.fixture
def loads(monkeypatch):
    from tests import cli_tiny

    cli_tiny.patch(monkeypatch)
    import gfi.models.presets as presets

    calls = []
    original = presets.load_model
    monkeypatch.setattr(presets, "load_model", lambda *a, **k: calls.append(1) or original(*a, **k))
    return calls


@pytest.mark.parametrize("argv,message", [
    (["--gamma", "nan"], "GFIConfig.gamma must be a finite number, got nan"),
    (["--set", "lam=inf"], "GFIConfig.lam must be a finite number, got inf"),
    (["--lam", "-1"], "GFIConfig.lam must be >= 0"),
    (["--iters1", "2.5"], "iters1: expected an integer, got '2.5'"),
    (["--blur-kernel", "4"], "GFIConfig.blur_kernel must be a positive odd integer, got 4"),
    (["--background", "fog"], "GFIConfig.background must be one of blur, mean, noise; got 'fog'"),
    (["--early-stop-tol", "nan"], "GFIConfig.early_stop_tol must be a finite number"),
    (["--method", "rise", "--n-masks", "0"], "RISESettings.n_masks must be >= 1"),
    (["--set", "gamma"], "--set 'gamma': expected KEY=VALUE"),
    (["--set", "gamm=1"], "--gamm: not a setting of --method gfi"),
])
def test_bad_settings_are_one_line_errors_naming_the_setting(tmp_path, capsys, loads, argv, message):
    rc, _, err = run(["explain", str(write_images(tmp_path / "in", 1)), "--out", str(tmp_path / "o"), *argv], capsys)
    assert rc == 2 and message in err and err.count("\n") == 1, err
    assert loads == [] or "RISESettings" in message  # refused before the model (a bad value of a known field)


def test_eval_and_compare_check_settings_the_same_way(tmp_path, capsys, loads):
    from tests.cli.test_fault_injection import sod

    data = sod(tmp_path / "sod", 1)
    rc, _, err = run(["eval", "saliency", "--data", str(data), "--out", str(tmp_path / "e"), "--method", "gradcam",
                      "--set", "layer=relu2", "--set", "chunk=-1"], capsys)
    assert rc == 2 and "RunOptions.chunk must be >= 0" in err
    rc, _, err = run(["eval", "saliency", "--data", str(data), "--out", str(tmp_path / "e2"), "--gamma", "nan"],
                     capsys)
    assert rc == 2 and "GFIConfig.gamma must be a finite number, got nan" in err
    rc, _, err = run(["compare", "--methods", "gfi", "--lam", "nan", "--out", str(tmp_path / "c.png")], capsys)
    assert rc == 2 and "GFIConfig.lam must be a finite number" in err


@pytest.mark.parametrize("argv,message", [
    (["--methods", "gradcam,gradient", "--gamma", "5"],
     "--gamma set GFI options, which --methods gradcam, gradient do not use"),
    (["--methods", "gradcam", "--set", "foo=1"], "--foo: not a setting of --method gradcam (its settings: layer"),
])
def test_compare_refuses_a_setting_none_of_its_methods_has(tmp_path, capsys, loads, argv, message):
    """A setting that no listed method reads was silently ignored by gfi compare."""
    rc, _, err = run(["compare", *argv, "--out", str(tmp_path / "c.png")], capsys)
    assert rc == 2 and message in err and loads == [] and not (tmp_path / "c.png").exists()
