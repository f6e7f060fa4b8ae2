"""Loading a model by name, the one loader of every command: a preset or a model source with its
weights (its own, random, a local file), or with a checkpoint of ``gfi eval voc-head`` (a
checkpoint holding ``gfi_head`` metadata and the whole state dict: the model with its last layer
replaced); then the layers l0, l1 and ``multilabel``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from torch import nn

from gfi.errors import NotApplicable

if TYPE_CHECKING:
    from gfi.models.classifier import Classifier

log = logging.getLogger("gfi")
HEAD_KEY = "gfi_head"


def find_head(model: nn.Module) -> tuple[str, nn.Linear]:
    """The model's last ``nn.Linear`` (in module order): the classifier layer the paper replaces."""
    linears = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise NotApplicable(f"{type(model).__name__} has no nn.Linear layer to replace")
    return linears[-1]


def replace_head(model: nn.Module, num_classes: int) -> str:
    """Put a fresh ``nn.Linear(in_features, num_classes)`` in place of the last linear layer."""
    name, old = find_head(model)
    parent = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
    setattr(parent, name.rpartition(".")[2], nn.Linear(old.in_features, num_classes, bias=old.bias is not None))
    return name


def read_head_checkpoint(path: str | Path) -> dict | None:
    """The checkpoint written by ``gfi eval voc-head``, or None for any other weights file."""
    path = Path(path)
    if not path.is_file() or path.suffix == ".safetensors":
        return None
    from gfi.models.weights import torch_load

    try:
        obj = torch_load(path)
    except Exception as exc:  # not our format: the preset loader reports the file's problem
        log.debug("%s is not a voc-head checkpoint (%s)", path, exc)
        return None
    return obj if isinstance(obj, dict) and HEAD_KEY in obj else None


class ModelChoice(Protocol):
    """What names a model (e.g. a :class:`gfi.evaluation.EvalRun`)."""

    model: str
    weights: str
    allow_pickle: bool
    download: bool
    inversion_layer: str | None
    channel_layer: str | None
    multilabel: bool


def load_classifier(run: ModelChoice) -> tuple[Classifier, dict]:
    """(Classifier, info) from ``run``'s model, weights, layers and ``multilabel`` (:func:`load_checkpointed`),
    for ``gfi eval``: a classifier (its experiments score class maps against class labels)."""
    clf, info = load_checkpointed(run.model, run.weights, allow_pickle=run.allow_pickle, download=run.download,
                                  inversion_layer=run.inversion_layer, channel_layer=run.channel_layer,
                                  multilabel=run.multilabel)
    if clf.task != "classification":
        from gfi.errors import UsageError

        raise UsageError(f"gfi eval scores class maps against class labels, and --model {run.model} is a {clf.task} "
                         "model; give a classifier, or explain it with gfi explain (a mask or box target)")
    return clf, info


def load_checkpointed(model: str, weights: str = "default", *, allow_pickle: bool = False, download: bool = False,
                      inversion_layer: str | None = None, channel_layer: str | None = None,
                      multilabel: bool = False) -> tuple[Classifier, dict]:
    """A preset with ``weights``: its own, random, a checkpoint file, or a checkpoint of
    ``gfi eval voc-head`` (the preset with its head replaced); then the layers and ``multilabel``.
    The one model loader of every command."""
    from gfi.models import presets  # looked up at call time (tests replace presets.load_model)
    from gfi.models.weights import WeightsError, file_sha256, load_into

    weights = str(weights)
    ckpt = read_head_checkpoint(weights) if weights not in ("default", "random") else None
    if ckpt is not None:
        meta = ckpt[HEAD_KEY]
        if meta.get("model") != model:
            raise WeightsError(f"{weights} fine-tunes {meta.get('model')}, not --model {model}")
        clf, info = presets.load_model(model, weights="random")
        replace_head(clf.model, int(meta["num_classes"]))
        load_into(clf.model, ckpt["state_dict"], source=weights)
        clf.model.eval()
        clf.class_names = list(meta["class_names"])
        info.update(weights=weights, sha256=file_sha256(weights), head=meta)
    else:
        clf, info = presets.load_model(model, weights=weights, allow_pickle=allow_pickle, download=download)
    if inversion_layer or channel_layer:
        clf = clf.with_layers(inversion_layer, channel_layer)
    clf.multilabel = bool(multilabel)
    return clf, info
