"""``gfi models``, ``gfi methods``, ``gfi layers MODEL``: what there is to choose from."""

from __future__ import annotations

import argparse
import sys


def add_parsers(sub) -> None:
    from gfi.cli.commands import COMMAND_HELP
    from gfi.cli.common import model_name

    sub.add_parser("models", help=COMMAND_HELP["models"])
    me = sub.add_parser("methods", help=COMMAND_HELP["methods"])
    me.add_argument("--table", action="store_true",
                    help="print what each method supports (CNN, token model, multi-label, shared work across "
                         "targets, device) as a Markdown table")
    ly = sub.add_parser("layers", help=COMMAND_HELP["layers"])
    ly.add_argument("model", type=model_name, help="a preset or a model source (`gfi models`)")
    cl = sub.add_parser("classes", help=COMMAND_HELP["classes"])
    cl.add_argument("pattern", nargs="?", default="", help="part of a class name, e.g. dog (default: every class)")
    cl.add_argument("--model", default=None, type=model_name,
                    help="a preset or a model source (default: efficientnet_lite0)")


def cmd_models(_args: argparse.Namespace) -> int:
    """The presets (with their layers and whether their weights are offline), then the model sources
    and how to name them, with an example each."""
    from gfi.models.presets import DEFAULT_MODEL, PRESETS
    from gfi.models.sources import EXAMPLES, SOURCES, hf_cache_dir, hub_checkpoints_dir

    for name, preset in PRESETS.items():
        path = preset.weights_available()
        status = f"weights available offline ({path})" if path else "weights not available offline (--weights FILE)"
        mark = " [default]" if name == DEFAULT_MODEL else ""
        print(f"{name}{mark}: {preset.description}; l0={preset.inversion_layer} l1={preset.channel_layer}; {status}")
    print("\nmodel sources (--model SOURCE:NAME; l0 = l1 = the last module with a spatial map, or for a token "
          "model (ViT, DeiT, Swin) the input of its last block on the patch grid; --inversion-layer/"
          "--channel-layer override them):")
    print(f"{SOURCES['timm']}: any timm CNN or vision transformer ({EXAMPLES['timm']}), e.g. gfi explain "
          f"photo.jpg --model timm:convnext_tiny --weights FILE; weights: --weights FILE (a state dict), else timm's "
          f"file in the local Hugging Face cache ({hf_cache_dir()}) or torch hub cache ({hub_checkpoints_dir()})")
    print(f"{SOURCES['torchvision']}: a torchvision classifier with a weights= enum member, default DEFAULT "
          f"({EXAMPLES['torchvision']}), e.g. gfi explain photo.jpg --model torchvision:resnet50:IMAGENET1K_V2; "
          f"weights: --weights FILE (a state dict), else the enum's file in {hub_checkpoints_dir()}")
    print(f"{SOURCES['hf']}: a Hugging Face transformers image classifier with its image processor ({EXAMPLES['hf']}), "
          "e.g. gfi explain photo.jpg --model hf:./my-vit; read with local_files_only (no network; --download "
          "fetches a hub id); labels from config.id2label, mean/std/size from the processor (pip install "
          "'gfi-explain[hf]')")
    return 0


def cmd_methods(args: argparse.Namespace) -> int:
    """The methods with their summaries (or, with ``--table``, what each supports); plugins that
    could not be loaded are named on stderr."""
    from gfi.data.names import printable
    from gfi.methods.registry import METHODS, support_table

    if args.table:
        print(support_table())
    else:
        for name, cls in METHODS.items():
            print(f"{name:22s} {cls.summary}")
    for name, why in METHODS.failed.items():
        print(f"gfi: warning: method plugin {name} is left out: {printable(why)}", file=sys.stderr)
    return 0


def cmd_layers(args: argparse.Namespace) -> int:
    """Every module with its type and output shape; the preset's l0 and l1 are marked."""
    from gfi.models.layers import LayerRef, trace_shapes
    from gfi.models.presets import PRESETS, load_model

    clf, _ = load_model(args.model, weights="random")
    if args.model in PRESETS:  # the preset's own l0 and l1; a source's are chosen by the automatic rule
        preset = PRESETS[args.model]
        l0, l1 = LayerRef.parse(preset.inversion_layer), LayerRef.parse(preset.channel_layer)
    else:
        l0, l1 = clf.inversion_layer, clf.channel_layer
    modules = dict(clf.model.named_modules())
    x = clf.probe_input()
    print(f"{'module':40s} {'type':24s} output shape (C, H, W)")
    for name, shape in trace_shapes(clf.model, x):
        marks = [f"{label} ({ref})" for label, ref in (("l0", l0), ("l1", l1)) if ref.name == name]
        kind = type(modules[name]).__name__ if name in modules else "?"
        print(f"{name:40s} {kind:24s} {tuple(shape[1:])}" + (f"   <- {', '.join(marks)}" if marks else ""))
    return 0


def cmd_classes(args: argparse.Namespace) -> int:
    """Indices and names of the model's classes that contain the pattern."""
    from gfi.errors import UsageError
    from gfi.models.presets import DEFAULT_MODEL, load_model

    clf, _ = load_model(args.model or DEFAULT_MODEL, weights="random")
    found = clf.find_classes(args.pattern)
    if not found:
        raise UsageError(f"no class name of {clf.name} contains {args.pattern!r}; `gfi classes` lists them all")
    for i, name in found:
        print(f"{i:5d}  {name}")
    return 0


COMMANDS = {"models": cmd_models, "methods": cmd_methods, "layers": cmd_layers, "classes": cmd_classes}
