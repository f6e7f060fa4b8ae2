"""The paper's PASCAL VOC classifier (Sec. 4.3): an ImageNet model whose last layer is replaced by
a 20-way head, fine-tuned alone with binary cross-entropy (Adam, lr 1e-4, batch 64), then used
in multi-label mode (sigmoid scores, ``--multilabel``).

The backbone is frozen, so the head's inputs are computed once per image (whole image resized
to the model's input, no augmentation) and the head is trained on them. Targets are 1 for a
class with a non-difficult object, 0 for an absent class; a class present only as difficult
objects is left out of the loss (weight 0), as VOC's ``0`` label says. The checkpoint holds the
whole state dict plus ``gfi_head`` metadata; ``gfi eval ... --weights FILE --multilabel`` loads it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from gfi.data.images import ImageLoadError, load_image
from gfi.data.samples import DataError
from gfi.evaluation.experiment import EvalError, EvalRun
from gfi.models.layers import LayerRef
from gfi.models.loading import HEAD_KEY, find_head
from gfi.persist import atomic_write, atomic_write_text
from gfi.settings import Settings, setting
from gfi.threads import use_threads


@dataclass(frozen=True)
class VOCHeadOptions(Settings):
    """Options of ``gfi eval voc-head`` (with the run's data, model, weights, out, device, threads,
    overwrite and quiet from its :class:`~gfi.evaluation.experiment.EvalRun`)."""

    split: str = setting("trainval", "training split, ImageSets/Main/<split>.txt")
    epochs: int = setting(20, "training epochs (the paper gives no number)", low=1)
    lr: float = setting(1e-4, "Adam learning rate", paper=1e-4, low=0, low_open=True)
    train_batch: int = setting(64, "training batch", paper=64, low=1)
    batch_size: int = setting(16, "images per feature forward", low=1)
    limit: int = setting(0, "only the first N images of the split (0: all)", low=0)
    seed: int = setting(0, "seed of the head's initialisation and of the batch order")


def average_precision(scores: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor) -> list[float | None]:
    """Per-class AP (mean precision at each positive, ranked by score; weight-0 entries left out)."""
    out: list[float | None] = []
    for c in range(scores.shape[1]):
        keep = weights[:, c] > 0
        s, y = scores[keep, c], labels[keep, c]
        if y.sum() == 0:
            out.append(None)
            continue
        order = torch.argsort(s, descending=True, stable=True)
        y = y[order]
        tp = torch.cumsum(y, 0)
        prec = tp / torch.arange(1, len(y) + 1)
        out.append(float((prec * y).sum() / y.sum()))
    return out


def head_features(clf, head_name: str, paths: list, batch: int) -> tuple[torch.Tensor, list[int], list[dict]]:
    """Inputs of the head layer for every readable image; the indices read, and the failures."""
    ref = LayerRef(head_name, True)
    feats, ok, failures = [], [], []
    with torch.no_grad():
        for i in range(0, len(paths), batch):
            imgs = []
            for j in range(i, min(i + batch, len(paths))):
                try:
                    imgs.append(load_image(paths[j]))
                    ok.append(j)
                except ImageLoadError as exc:
                    failures.append({"image": str(paths[j]), "error": str(exc)})
            if imgs:
                store, _ = clf.activations(clf.prepare(imgs).to(clf.device), [ref])
                feats.append(store[ref].flatten(1).float().cpu())
    return (torch.cat(feats) if feats else torch.zeros(0)), ok, failures


def finetune_voc_head(run: EvalRun, opts: VOCHeadOptions | None = None) -> dict:
    """Train the 20-way head on ``run.data`` (split ``opts.split``) for ``run.model``; writes
    ``run.out/voc_head.pt`` and ``run.out/summary.json`` and returns the summary."""
    from gfi.data.voc import VOC_CLASSES, VOCDetection
    from gfi.models.device import choose_device
    from gfi.models.presets import load_model

    opts = VOCHeadOptions() if opts is None else opts
    use_threads(run.threads)  # 0: the gfi program's free cores; from Python, torch's count
    out = run.out
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / "voc_head.pt"
    if ckpt_path.exists() and not run.overwrite:
        raise EvalError(f"{ckpt_path} exists; choose another --out or pass --overwrite")
    ds = VOCDetection(run.data, opts.split)
    n_cls = len(VOC_CLASSES)
    paths, y, w, failures = [], [], [], []
    for i in range(len(ds))[: opts.limit or None]:
        try:
            s = ds[i]
        except DataError as exc:
            failures.append({"image": str(ds.paths[i]), "error": str(exc)})
            continue
        t = torch.zeros(n_cls)
        t[s.classes] = 1
        m = torch.ones(n_cls)
        m[[c for c in {int(c) for c in s.labels} if c not in s.classes]] = 0
        paths.append(s.path)
        y.append(t)
        w.append(m)
    clf, info = load_model(run.model, weights=run.weights, allow_pickle=run.allow_pickle, download=run.download)
    device = choose_device(run.device)
    clf.to(device)
    head_name, old = find_head(clf.model)
    t0 = time.perf_counter()
    feats, keep, bad = head_features(clf, head_name, paths, opts.batch_size)
    failures += bad
    if not keep:
        raise EvalError(f"no readable training image in {run.data} ({len(failures)} failed)")
    y_t, w_t = torch.stack(y)[keep], torch.stack(w)[keep]
    g = torch.Generator().manual_seed(opts.seed)
    head = nn.Linear(old.in_features, n_cls, bias=old.bias is not None)
    with torch.no_grad():
        for p in head.parameters():
            p.copy_(torch.empty_like(p).uniform_(-1, 1, generator=g) / old.in_features ** 0.5)
    opt = torch.optim.Adam(head.parameters(), lr=opts.lr)
    losses = []
    for _epoch in range(opts.epochs):
        order = torch.randperm(len(feats), generator=g)
        total = 0.0
        for b in range(0, len(order), opts.train_batch):
            idx = order[b:b + opts.train_batch]
            logits = head(feats[idx])
            loss = nn.functional.binary_cross_entropy_with_logits(logits, y_t[idx], weight=w_t[idx], reduction="sum")
            loss = loss / w_t[idx].sum().clamp_min(1)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        losses.append(total / len(order))
    with torch.no_grad():
        ap = average_precision(torch.sigmoid(head(feats)), y_t, w_t)
    parent = clf.model.get_submodule(head_name.rpartition(".")[0]) if "." in head_name else clf.model
    setattr(parent, head_name.rpartition(".")[2], head.to(device))
    meta = {"model": run.model, "layer": head_name, "num_classes": n_cls, "class_names": list(VOC_CLASSES),
            "base_weights": str(info.get("weights")), "split": opts.split, "epochs": opts.epochs, "lr": opts.lr,
            "batch": opts.train_batch, "n_images": len(keep)}
    state = {k: v.detach().cpu() for k, v in clf.model.state_dict().items()}
    atomic_write(ckpt_path, lambda tmp: torch.save({"state_dict": state, HEAD_KEY: meta}, tmp))
    aps = [a for a in ap if a is not None]
    summary = {"checkpoint": str(ckpt_path), **meta, "loss_by_epoch": losses,
               "train_map": sum(aps) / len(aps) if aps else None, "train_ap": dict(zip(VOC_CLASSES, ap, strict=True)),
               "n_failed": len(failures), "failures": failures, "seconds": round(time.perf_counter() - t0, 2),
               "use": f"gfi eval pointing --data VOC --model {run.model} --weights {ckpt_path} --multilabel ..."}
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2))
    return summary


class VOCHead:
    """``gfi eval voc-head``: not an :class:`~gfi.evaluation.experiment.Experiment` (no maps, no
    per-image lines), but called the same way: ``VOC_HEAD.run(run, opts)``, ``VOC_HEAD.headline(summary)``."""

    name: ClassVar[str] = "voc-head"
    help: ClassVar[str] = "fine-tune a 20-way multi-label head on PASCAL VOC (the paper's VOC model)"
    options_class: ClassVar[type[Settings]] = VOCHeadOptions

    def options(self, overrides: dict | None = None, **more) -> VOCHeadOptions:
        return VOCHeadOptions().with_overrides(overrides, **more)

    def run(self, run: EvalRun, opts: VOCHeadOptions | None = None) -> dict:
        return finetune_voc_head(run, opts)

    def headline(self, summary: dict) -> str:
        s = summary
        return f"voc-head: {s['checkpoint']} train mAP={s['train_map']} n_images={s['n_images']}"


VOC_HEAD = VOCHead()
