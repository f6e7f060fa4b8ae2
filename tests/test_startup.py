"""Start-up: what ``import gfi``, ``gfi --help`` and the default model import, each in a fresh
interpreter (a module already imported by the test process would hide an import)."""

import json
import subprocess
import sys

HEAVY = ("torch", "timm", "torchvision", "matplotlib", "captum", "transformers", "torch._dynamo")


def _imported_after(code: str) -> dict[str, bool]:
    probe = f"{code}\nimport json, sys\nprint(json.dumps({{m: m in sys.modules for m in {HEAVY!r}}}))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_gfi_imports_no_heavy_library():
    assert _imported_after("import gfi") == dict.fromkeys(HEAVY, False)


def test_public_names_load_on_first_use():
    found = _imported_after("import gfi\nassert callable(gfi.load_image) and gfi.Classifier.__name__ == 'Classifier'"
                            "\nassert gfi.models.TokenGrid and gfi.targets.Logit")
    assert found["torch"] and not found["timm"] and not found["matplotlib"] and not found["captum"]


def test_help_and_version_import_no_heavy_library():
    code = ("import contextlib, io\nfrom gfi.cli import main\n"
            "for argv in (['--help'], ['--version'], []):\n"
            "    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):\n"
            "        try:\n            main(argv)\n        except SystemExit:\n            pass")
    assert _imported_after(code) == dict.fromkeys(HEAVY, False)


def test_top_level_help_is_the_full_parsers():
    from gfi.cli import build_parser, top_level_parser

    assert top_level_parser().format_help() == build_parser().format_help()
    assert top_level_parser().format_usage() == build_parser().format_usage()


def test_default_model_is_built_without_timm_or_torchvision():
    found = _imported_after("from gfi.models import load_model\nload_model('efficientnet_lite0', weights='random')")
    assert found["torch"] and not found["timm"] and not found["torchvision"] and not found["torch._dynamo"]


def test_version_names_both_distributions():
    from importlib.metadata import version

    from gfi import __version__
    from gfi.folder.job import version as results_version

    out = subprocess.run([sys.executable, "-m", "gfi", "--version"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0
    assert out.stdout.strip() == f"gfi {__version__} (torch {version('torch')})" == results_version()
