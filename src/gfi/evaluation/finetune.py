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
from pathlib import Path

import torch
from torch import nn

from gfi.data.images import ImageLoadError, load_image
from gfi.data.samples import DataError
from gfi.evaluation.models import HEAD_KEY, find_head
from gfi.models.layers import LayerRef


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


def finetune_voc_head(args) -> dict:
    from gfi.data.voc import VOC_CLASSES, VOCDetection
    from gfi.models.presets import load_model

    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / "voc_head.pt"
    if ckpt_path.exists() and not args.overwrite:
        from gfi.evaluation.runner import EvalError

        raise EvalError(f"{ckpt_path} exists; choose another --out or pass --overwrite")
    ds = VOCDetection(args.data, args.split)
    n_cls = len(VOC_CLASSES)
    paths, y, w, failures = [], [], [], []
    for i in range(len(ds))[: args.limit or None]:
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
    clf, info = load_model(args.model, weights=args.weights)
    device = torch.device("cuda" if args.device != "cpu" and torch.cuda.is_available() else "cpu")
    clf.to(device)
    head_name, old = find_head(clf.model)
    t0 = time.perf_counter()
    feats, keep, bad = head_features(clf, head_name, paths, args.batch_size)
    failures += bad
    if not keep:
        from gfi.evaluation.runner import EvalError

        raise EvalError(f"no readable training image in {args.data} ({len(failures)} failed)")
    y_t, w_t = torch.stack(y)[keep], torch.stack(w)[keep]
    g = torch.Generator().manual_seed(args.seed)
    head = nn.Linear(old.in_features, n_cls, bias=old.bias is not None)
    with torch.no_grad():
        for p in head.parameters():
            p.copy_(torch.empty_like(p).uniform_(-1, 1, generator=g) / old.in_features ** 0.5)
    opt = torch.optim.Adam(head.parameters(), lr=args.lr)
    losses = []
    for _epoch in range(args.epochs):
        order = torch.randperm(len(feats), generator=g)
        total = 0.0
        for b in range(0, len(order), args.train_batch):
            idx = order[b:b + args.train_batch]
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
    meta = {"model": args.model, "layer": head_name, "num_classes": n_cls, "class_names": list(VOC_CLASSES),
            "base_weights": str(info.get("weights")), "split": args.split, "epochs": args.epochs, "lr": args.lr,
            "batch": args.train_batch, "n_images": len(keep)}
    state = {k: v.detach().cpu() for k, v in clf.model.state_dict().items()}
    tmp = ckpt_path.with_suffix(".tmp")
    torch.save({"state_dict": state, HEAD_KEY: meta}, tmp)
    tmp.replace(ckpt_path)
    aps = [a for a in ap if a is not None]
    summary = {"checkpoint": str(ckpt_path), **meta, "loss_by_epoch": losses,
               "train_map": sum(aps) / len(aps) if aps else None, "train_ap": dict(zip(VOC_CLASSES, ap, strict=True)),
               "n_failed": len(failures), "failures": failures, "seconds": round(time.perf_counter() - t0, 2),
               "use": f"gfi eval pointing --data VOC --model {args.model} --weights {ckpt_path} --multilabel ..."}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
