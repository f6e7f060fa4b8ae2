"""``gfi eval EXPERIMENT``: the paper's experiments (and two later checks) over a dataset folder.

    gfi eval localization --data imagenet-val --method gfi --out runs/loc-gfi
    gfi eval pointing --data VOCdevkit --method gradcam --weights voc_head.pt --multilabel --out runs/pt
    gfi eval saliency --data sod --out runs/sod            # method gfi-stage1
    gfi eval voc-head --data VOCdevkit --split trainval --out runs/voc-head

See docs/EVALUATION.md for the protocols and :mod:`gfi.evaluation.runner` for the files written.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from gfi.evaluation.adversarial import Adversarial
from gfi.evaluation.deletion import Deletion
from gfi.evaluation.localization import Localization
from gfi.evaluation.pointing import Pointing
from gfi.evaluation.runner import EvalError, run_experiment
from gfi.evaluation.saliency import Saliency
from gfi.evaluation.sanity import Sanity

EXPERIMENTS = {e.name: e for e in (Localization(), Pointing(), Saliency(), Adversarial(), Deletion(), Sanity())}
HEADLINE = {"localization": ("error", "alpha"), "pointing": ("accuracy",),
            "saliency": ("f_beta", "precision", "recall", "mae"), "adversarial": ("accuracy", "prediction_changed"),
            "deletion": ("deletion_auc", "insertion_auc"), "sanity": ("spearman", "ssim")}


def _common(p: argparse.ArgumentParser, default_method: str) -> None:
    from gfi.models.presets import DEFAULT_MODEL

    p.add_argument("--data", type=Path, required=True,
                   help="dataset folder (ImageNet val, VOCdevkit, or images/ + masks/)")
    p.add_argument("--dataset", choices=["auto", "imagenet", "voc", "sod"], default="auto",
                   help="dataset kind (default: from the folder's layout)")
    p.add_argument("--split", default="test", help="VOC split, ImageSets/Main/<split>.txt (default: %(default)s)")
    p.add_argument("--method", default=default_method, help="explanation method (`gfi methods`; default: %(default)s)")
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help="model preset; a comma list runs each into OUT/<model>/ (default: %(default)s)")
    p.add_argument("--weights", default="default", help="'default', 'random' or a checkpoint (e.g. from voc-head)")
    p.add_argument("--unsafe-allow-pickle", action="store_true", help="DANGEROUS: load a full-pickle checkpoint")
    p.add_argument("--download", action="store_true", help="let torchvision download missing weights")
    p.add_argument("--multilabel", action="store_true", help="sigmoid scores (the fine-tuned VOC model)")
    p.add_argument("--preset", default="default", choices=["default", "paper"], help="GFI settings preset")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a GFIConfig field (GFI methods) or a constructor option (other methods); repeatable")
    p.add_argument("--inversion-layer", help="l0 (module name, ':input' for its input)")
    p.add_argument("--channel-layer", help="l1 (module name, ':input' for its input); Table 2's ablation")
    p.add_argument("--range", metavar="START:STOP",
                   help="only images START..STOP-1 of the sorted order, e.g. 150:300 (the reporting half)")
    p.add_argument("--limit", type=int, default=0, help="only the first N images (after --range; 0: all)")
    p.add_argument("--out", type=Path, required=True, help="output folder (resumes a run with the same options)")
    p.add_argument("--maps", type=Path, help="folder of cached maps to read and fill (default: OUT/maps)")
    p.add_argument("--batch-size", type=int, default=8, help="images per forward (default: %(default)s)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0: torch's default)")
    p.add_argument("--overwrite", action="store_true", help="discard the lines and maps of an earlier run in OUT")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def add_parser(sub) -> argparse.ArgumentParser:
    ev = sub.add_parser("eval", help="run an evaluation (localization, pointing, saliency, ...) over a dataset",
                        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    esub = ev.add_subparsers(dest="experiment", required=True)
    for exp in EXPERIMENTS.values():
        p = esub.add_parser(exp.name, help=exp.help, description=exp.help)
        _common(p, exp.default_method)
        exp.add_arguments(p)
    vh = esub.add_parser("voc-head", help="fine-tune a 20-way multi-label head on PASCAL VOC (the paper's VOC model)")
    from gfi.models.presets import DEFAULT_MODEL

    vh.add_argument("--data", type=Path, required=True, help="VOCdevkit folder")
    vh.add_argument("--split", default="trainval", help="training split (default: %(default)s)")
    vh.add_argument("--model", default=DEFAULT_MODEL)
    vh.add_argument("--weights", default="default", help="backbone weights (default: the preset's ImageNet ones)")
    vh.add_argument("--epochs", type=int, default=20, help="(default: %(default)s)")
    vh.add_argument("--lr", type=float, default=1e-4, help="Adam learning rate (default: the paper's %(default)s)")
    vh.add_argument("--train-batch", type=int, default=64, help="training batch (default: the paper's %(default)s)")
    vh.add_argument("--batch-size", type=int, default=16, help="images per feature forward (default: %(default)s)")
    vh.add_argument("--limit", type=int, default=0)
    vh.add_argument("--seed", type=int, default=0)
    vh.add_argument("--out", type=Path, required=True)
    vh.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    vh.add_argument("--threads", type=int, default=0)
    vh.add_argument("--overwrite", action="store_true")
    vh.add_argument("--quiet", action="store_true")
    return ev


def _headline(name: str, s: dict) -> str:
    parts = [f"{k}={s[k]:.4g}" if isinstance(s.get(k), float) else f"{k}={s.get(k)}" for k in HEADLINE[name]]
    sec = s.get("seconds_per_image")
    return (f"{name} {s['method']} on {s['model']}: " + " ".join(parts)
            + f" n_images={s['n_images']} failed={s['n_failed']}" + (f" s/img={sec:.3g}" if sec is not None else ""))


def run(args, *, classifier=None, info=None) -> int:
    """Entry point of ``gfi eval``; ``classifier`` lets tests and scripts pass their own model."""
    if args.experiment == "voc-head":
        from gfi.evaluation.finetune import finetune_voc_head

        s = finetune_voc_head(args)
        print(f"voc-head: {s['checkpoint']} train mAP={s['train_map']} n_images={s['n_images']}")
        return 0
    exp = EXPERIMENTS[args.experiment]
    models = [m.strip() for m in str(args.model).split(",") if m.strip()]
    if not models:
        raise EvalError("--model is empty")
    out = Path(args.out)
    summaries = {}
    for m in models:
        a = argparse.Namespace(**vars(args))
        a.model = m
        if len(models) > 1:
            a.out = out / m
            if a.maps is not None:
                a.maps = Path(a.maps) / m
        s = run_experiment(exp, a, classifier=classifier, info=info)
        if s is not None:
            summaries[m] = s
            print(_headline(exp.name, s), file=sys.stdout)
    if len(models) > 1 and summaries:
        table = {m: {k: s.get(k) for k in (*HEADLINE[exp.name], "n_images", "seconds_per_image")}
                 for m, s in summaries.items()}
        (out / "summary.json").write_text(json.dumps({"experiment": exp.name, "models": table}, indent=2))
    return 0
