"""Model sources: any timm or torchvision classifier by name, beside the presets.

``--model`` (and :func:`gfi.load_model`) takes, besides a preset name:

* ``timm:NAME`` (e.g. ``timm:resnet18``, ``timm:convnext_tiny``, ``timm:resnet18.a1_in1k`` with a
  pretrained tag): ``timm.create_model(NAME, pretrained=False)``; mean, std, input size and
  interpolation from ``timm.data.resolve_model_data_config``; class names from timm's ImageNet
  info (the presets' 1000 ImageNet names for a 1000-class model, the 12k/22k names where timm
  knows the subset, else none).
* ``hf:PATH`` (e.g. ``hf:./my-vit``, or ``hf:google/vit-base-patch16-224`` once it is in the local
  Hugging Face cache): a ``transformers`` image classifier, ``AutoModelForImageClassification`` and
  ``AutoImageProcessor`` read with ``local_files_only=True`` (no network call), wrapped by
  :meth:`Classifier.from_transformers` (``.logits``, ``id2label``, the processor's mean, std and
  size). ``--weights random`` builds the architecture of the folder's config with random
  weights; ``--weights FILE`` loads a state dict into it.
* ``torchvision:NAME[:WEIGHTS]`` (e.g. ``torchvision:resnet50:IMAGENET1K_V2``): the architecture of
  ``torchvision.models.get_model(NAME)`` for the ``weights=`` enum member WEIGHTS (default
  ``DEFAULT``); class names from the enum's ``meta["categories"]``; mean, std and size read from
  the attributes of its ``transforms()`` preset (built, never run on an image).

Rules:

* **Input size.** gfi resizes the *whole* image to ``input_size`` (no crop; :meth:`Classifier.prepare`),
  so a map covers the whole photo. ``input_size`` is the size the network was evaluated at: timm's
  ``input_size`` (its crop size; ``crop_pct`` is recorded in the info, not applied) and
  torchvision's ``crop_size`` (224 for ``resnet50:IMAGENET1K_V2``; its ``resize_size`` 232 is
  recorded, not applied). The model's interpolation is recorded too; gfi resizes bilinearly with
  antialiasing, as for the presets.
* **Layers.** No preset fixes them: :func:`gfi.models.classifier.auto_layers` chooses l0 = l1 = the
  map the model's head pools, where the library's own metadata says it is
  (:mod:`gfi.models.metadata`: timm's ``forward_features`` and ``feature_info``, torchvision's graph
  node names, the Hugging Face base model's ``last_hidden_state``; e.g. ``layer4`` of a ResNet,
  ``stages.3`` of a ConvNeXt, ``bn2`` of an EfficientNet, ``final_conv`` of a MobileViT), else by the
  generic rule (the module that last produces a 4-D map with spatial size > 1); for a token model
  (ViT, DeiT, Swin) the input of its last transformer block, its tokens put back on their grid
  (:mod:`gfi.models.tokens`; ``encoder.layers.encoder_layer_11:input`` of torchvision's ``vit_b_16``).
  ``--inversion-layer`` / ``--channel-layer`` (``Classifier.with_layers``) override them.
* **Weights.** ``weights="random"`` (or None): random initialisation (tests, timing). A path: a
  local state dict read with ``torch.load(weights_only=True)`` (or ``.safetensors``) by
  :func:`gfi.models.weights.read_state_dict` and loaded strictly. ``"default"``: the source's
  pretrained file from the local cache, looked up on disk only (no network call):

  - timm: the Hugging Face hub cache (``$HF_HUB_CACHE``, default ``~/.cache/huggingface/hub``),
    ``models--timm--<arch.tag>/snapshots/<revision of refs/main>/model.safetensors`` (or
    ``pytorch_model.bin``), found with ``huggingface_hub.try_to_load_from_cache``; then the torch
    hub cache (``<torch.hub.get_dir()>/checkpoints/<file of the config's url>``) for timm's older
    URL weights;
  - torchvision: the torch hub cache, ``<torch.hub.get_dir()>/checkpoints/<file of the enum's url>``.

  Missing: a one-line :class:`WeightsError` naming ``--weights FILE`` and that cache folder.
  ``download=True`` (CLI ``--download``) fetches them into that cache (network).
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path

import torch
from torch import nn

from gfi.errors import GFIError
from gfi.models.classifier import Classifier
from gfi.models.weights import WeightsError, file_sha256, load_into, read_state_dict, torchvision_cached

__all__ = ["EXAMPLES", "SOURCES", "SOURCE_SYNTAX", "ModelSpecError", "hf_cache_dir", "hub_checkpoints_dir", "is_source",
           "load_source", "parse_spec"]

#: the source prefixes and how to name a model of each (for help and error messages)
SOURCES = {"timm": "timm:NAME", "torchvision": "torchvision:NAME[:WEIGHTS]", "hf": "hf:PATH"}
EXAMPLES = {"timm": "timm:resnet18, timm:convnext_tiny, timm:vit_small_patch16_224",
            "torchvision": "torchvision:resnet18, torchvision:resnet50:IMAGENET1K_V2",
            "hf": "hf:./my-model-folder, hf:microsoft/resnet-50 (from the local cache)"}
SOURCE_SYNTAX = "timm:NAME, torchvision:NAME[:WEIGHTS] or hf:PATH"


class ModelSpecError(GFIError, ValueError):
    """A ``timm:``/``torchvision:`` name that is malformed or names no model or weights."""


def is_source(name: str) -> bool:
    """Whether ``name`` names a model source (``timm:...`` / ``torchvision:...``) rather than a preset."""
    return isinstance(name, str) and name.partition(":")[0] in SOURCES and ":" in name


def parse_spec(spec: str) -> tuple[str, str, str | None]:
    """``(source, NAME, WEIGHTS or None)`` of a spec, checking its syntax only (no import of timm)."""
    source, _, rest = spec.partition(":")
    if source not in SOURCES:
        raise ModelSpecError(f"{spec!r} is not a model source; name one as {SOURCE_SYNTAX}")
    if source == "hf":
        if not rest.strip():
            raise ModelSpecError(f"{spec!r}: expected {SOURCES[source]} (e.g. {EXAMPLES[source]})")
        return source, rest.strip(), None
    parts = rest.split(":")
    most = 1 if source == "timm" else 2
    if len(parts) > most or not all(p.strip() for p in parts):
        raise ModelSpecError(f"{spec!r}: expected {SOURCES[source]} (e.g. {EXAMPLES[source]})")
    return source, parts[0].strip(), parts[1].strip() if len(parts) == 2 else None


def _nearest(name: str, names: list[str]) -> str:
    near = difflib.get_close_matches(name, names, n=5, cutoff=0.6)
    return f" Nearest: {', '.join(near)}." if near else ""


def hub_checkpoints_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache folder, read at call time ($HF_HUB_CACHE, $HF_HOME/hub, the default)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def _weighted(model: nn.Module, weights, *, spec: str, allow_pickle: bool, cached, fix=None) -> dict:
    """Load ``weights`` ("random", a path, or the ``cached`` path for "default") into ``model``."""
    if weights is None or weights == "random":
        return {"weights": "random", "sha256": None}
    path = cached if weights == "default" else Path(weights)
    state = read_state_dict(path, allow_pickle=allow_pickle and weights != "default")
    load_into(model, fix(state) if fix else state, source=str(path))
    return {"weights": str(path), "sha256": file_sha256(path)}


# -- timm ---------------------------------------------------------------------------------------------
def _timm_safe_names(filename: str) -> list[str]:
    if filename.endswith(".safetensors"):
        return [filename]
    try:
        from timm.models._hub import _get_safe_alternatives

        safe = list(_get_safe_alternatives(filename))
    except ImportError:  # an older or newer timm without the helper
        safe = ["model.safetensors"] if filename == "pytorch_model.bin" else []
    return [*safe, filename]


def _timm_cached(cfg: dict) -> tuple[Path | None, str]:
    """(the cached pretrained file of a timm config or None, where it was looked for): disk only."""
    places = []
    hf_id = cfg.get("hf_hub_id")
    if hf_id:
        from huggingface_hub import try_to_load_from_cache

        repo, _, revision = hf_id.partition("@")
        cache = hf_cache_dir()
        folder = cache / f"models--{repo.replace('/', '--')}"
        names = _timm_safe_names(cfg.get("hf_hub_filename") or "pytorch_model.bin")
        for filename in names:
            found = try_to_load_from_cache(repo, filename, cache_dir=str(cache), revision=revision or None)
            if isinstance(found, str) and Path(found).is_file():
                return Path(found), ""
        places.append(f"{folder}/snapshots/*/{names[0]}")
    url = cfg.get("url")
    if url:
        path = hub_checkpoints_dir() / os.path.basename(url)
        if path.is_file():
            return path, ""
        places.append(str(path))
    return None, " or ".join(places) or "(timm names no pretrained file for it)"


def _timm_download(cfg: dict, spec: str) -> Path:
    from huggingface_hub import hf_hub_download

    hf_id = cfg.get("hf_hub_id")
    if not hf_id:
        raise WeightsError(f"--download: timm names no Hugging Face hub file for {spec}; pass --weights FILE")
    repo, _, revision = hf_id.partition("@")
    last: Exception | None = None
    for filename in _timm_safe_names(cfg.get("hf_hub_filename") or "pytorch_model.bin"):
        try:
            return Path(hf_hub_download(repo, filename, revision=revision or None, cache_dir=str(hf_cache_dir())))
        except Exception as exc:  # EntryNotFoundError: try the next name; network errors: said below
            last = exc
    raise WeightsError(f"--download: could not fetch the weights of {spec} from the Hugging Face hub ({repo}: "
                       f"{str(last).splitlines()[0] if last else 'no file'}); pass --weights FILE") from last


def _timm_class_names(model: nn.Module, num_classes: int) -> list[str] | None:
    """timm's ImageNet names: the 1k ones (the presets' names, in the same order) for 1000 classes,
    those of the 12k/22k subset timm infers for the model otherwise, else None."""
    try:
        from timm.data import ImageNetInfo, infer_imagenet_subset

        subset = "imagenet-1k" if num_classes == 1000 else infer_imagenet_subset(model)
        if subset:
            info = ImageNetInfo(subset)
            if info.num_classes() == num_classes:
                return [info.index_to_description(i) for i in range(num_classes)]
    except Exception:  # class names are a convenience; indices still work
        pass
    return None


def _load_timm(spec: str, name: str, *, weights, allow_pickle: bool, download: bool) -> tuple[Classifier, dict]:
    import timm
    from timm.data import resolve_model_data_config

    if not timm.is_model(name):
        raise ModelSpecError(f"{spec!r}: timm has no model {name!r}.{_nearest(name, timm.list_models())} "
                             "timm.list_models() lists them")
    model = timm.create_model(name, pretrained=False)
    cfg = dict(getattr(model, "pretrained_cfg", None) or {})
    data = resolve_model_data_config(model)
    cached = None
    if weights == "default":
        cached, looked = _timm_cached(cfg)
        if cached is None and download:
            cached = _timm_download(cfg, spec)
        if cached is None:
            raise WeightsError(
                f"no pretrained weights of {spec} in timm's local cache (looked for {looked}); pass --weights FILE "
                "(a state dict: torch.save(model.state_dict(), FILE)), put the file in that cache, or --download "
                "(needs network access); --weights random for a random initialisation")
    info = _weighted(model, weights, spec=spec, allow_pickle=allow_pickle, cached=cached)
    num_classes = int(getattr(model, "num_classes", 0) or 0)
    size = tuple(int(s) for s in data["input_size"][-2:])
    mean, std = tuple(float(m) for m in data["mean"]), tuple(float(s) for s in data["std"])
    # the hub id names where the weights came from only when they did (a local file or random weights
    # are recorded as what they are: path and SHA-256, or "random")
    hub = {"hf_hub_id": cfg.get("hf_hub_id")} if weights == "default" else {}
    info = {"model": spec, "source": "timm", "architecture": name, **hub, **info,
            "mean": mean, "std": std, "input_size": size, "interpolation": data.get("interpolation"),
            "crop_pct": data.get("crop_pct"), "num_classes": num_classes}
    model.eval()
    clf = Classifier(model, mean=mean, std=std, input_size=size,
                     class_names=_timm_class_names(model, num_classes), name=spec)
    return clf, info


# -- torchvision ----------------------------------------------------------------------------------------
#: build arguments the torchvision builders set themselves when given a ``weights=`` enum; gfi builds
#: with ``weights=None`` (and reads the file with ``weights_only=True``), so it sets them too
_TV_WEIGHTED_KWARGS = {
    "inception_v3": {"transform_input": True, "aux_logits": True, "init_weights": False},
    "googlenet": {"transform_input": True, "aux_logits": False, "init_weights": False},
}
# torchvision's DenseNet weights use old key names ("norm.1"); its own loader renames them so
_DENSENET_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$")


def _fix_densenet(state: dict) -> dict:
    out = {}
    for k, v in state.items():
        m = _DENSENET_KEY.match(k)
        out[m.group(1) + m.group(2) if m else k] = v
    return out


def _tv_task(name: str) -> str | None:
    """The task of torchvision's model ``name``: classification, segmentation or detection (None:
    none of them)."""
    import torchvision

    for task, module in (("classification", torchvision.models), ("segmentation", torchvision.models.segmentation),
                         ("detection", torchvision.models.detection)):
        if name in torchvision.models.list_models(module=module):
            return task
    return None


def _tv_enum(spec: str, name: str, member: str | None):
    import torchvision
    from torchvision.models import get_model_weights

    if _tv_task(name) is None:
        names = [n for m in (torchvision.models, torchvision.models.segmentation, torchvision.models.detection)
                 for n in torchvision.models.list_models(module=m)]
        raise ModelSpecError(f"{spec!r}: torchvision has no classification, segmentation or detection model "
                             f"{name!r}.{_nearest(name, names)} torchvision.models.list_models() lists them")
    enum = get_model_weights(name)
    key = (member or "DEFAULT").rpartition(".")[2]
    if key == "DEFAULT":
        return enum.DEFAULT
    try:
        return enum[key]
    except KeyError:
        raise ModelSpecError(f"{spec!r}: {enum.__name__} has no member {key!r}; its weights: "
                             f"{', '.join(['DEFAULT', *(m for m in enum.__members__ if m != 'DEFAULT')])}") from None


def _tv_download(url: str, spec: str) -> Path:
    """torchvision's file from ``url`` into the torch hub cache (network); a failure is one line."""
    import urllib.error

    path = hub_checkpoints_dir() / os.path.basename(url)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        m = torch.hub.HASH_REGEX.search(path.name)  # torchvision's files end in a prefix of their SHA-256
        torch.hub.download_url_to_file(url, str(path), hash_prefix=m.group(1) if m else None, progress=False)
    except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
        raise WeightsError(f"--download: could not fetch the weights of {spec} from {url} "
                           f"({getattr(exc, 'reason', exc)}); to work offline, copy {path.name} into {path.parent} "
                           "or pass --weights FILE") from exc
    return path


def _load_torchvision(spec: str, name: str, member: str | None, *, weights, allow_pickle: bool,
                      download: bool) -> tuple[Classifier, dict]:
    import torchvision

    enum = _tv_enum(spec, name, member)
    if _tv_task(name) != "classification":
        return _load_torchvision_dense(spec, name, enum, weights=weights, allow_pickle=allow_pickle, download=download)
    categories = list(enum.meta.get("categories") or [])
    preset = enum.transforms()  # built to read its attributes, never run
    crop = getattr(preset, "crop_size", None)
    if not categories or crop is None:
        raise ModelSpecError(f"{spec!r}: {enum} is not an image-classification weight (no categories/crop size)")
    kwargs = {"num_classes": len(categories), **_TV_WEIGHTED_KWARGS.get(name, {})}
    if name.startswith("vit_") and enum.meta.get("min_size"):
        kwargs["image_size"] = int(enum.meta["min_size"][0])
    model = torchvision.models.get_model(name, weights=None, **kwargs)
    cached = _tv_cached_or_refused(enum, spec, weights, download)
    fix = _fix_densenet if name.startswith("densenet") else None
    info = _weighted(model, weights, spec=spec, allow_pickle=allow_pickle, cached=cached, fix=fix)
    crop = [crop] if isinstance(crop, int) else list(crop)
    size = (int(crop[0]), int(crop[-1]))
    resize = getattr(preset, "resize_size", None)
    interpolation = getattr(preset, "interpolation", None)
    mean = tuple(float(m) for m in getattr(preset, "mean", (0.485, 0.456, 0.406)))
    std = tuple(float(s) for s in getattr(preset, "std", (0.229, 0.224, 0.225)))
    # the enum's weights only when they are the ones loaded; otherwise it gave the class names and preprocessing
    enum_key = "weights_enum" if weights == "default" else "preprocessing_of"
    info = {"model": spec, "source": "torchvision", "architecture": name, enum_key: str(enum), **info,
            "mean": mean, "std": std, "input_size": size,
            "resize_size": list(resize) if isinstance(resize, list | tuple) else resize,
            "interpolation": getattr(interpolation, "value", interpolation), "num_classes": len(categories)}
    model.eval()
    clf = Classifier(model, mean=mean, std=std, input_size=size, class_names=categories, name=spec)
    return clf, info


def _tv_cached_or_refused(enum, spec: str, weights, download: bool) -> Path | None:
    """The file of torchvision's weights ``enum`` in the local torch hub cache when ``weights`` is
    "default" (fetched with ``download``; else a one-line refusal with the ways out), None otherwise."""
    if weights != "default":
        return None
    cached = torchvision_cached(enum)
    if cached is None and download:
        cached = _tv_download(enum.url, spec)
    if cached is None:
        raise WeightsError(
            f"the weights {enum} of {spec} are not in the local torch hub cache "
            f"({hub_checkpoints_dir() / os.path.basename(enum.url)}); pass --weights FILE (a state dict: "
            "torch.save(model.state_dict(), FILE)), copy the file into that folder, or --download (needs network "
            "access); --weights random for a random initialisation")
    return cached


def _load_torchvision_dense(spec: str, name: str, enum, *, weights, allow_pickle: bool,
                            download: bool) -> tuple[Classifier, dict]:
    """A torchvision segmentation or detection model, as a :class:`Classifier` whose ``task`` says so.

    Segmentation: normalised as its weights' preset says, the whole image resized to a square of the
    preset's ``resize_size`` (520), its output's ``"out"`` read (FCN and DeepLabV3 keep their
    auxiliary head when weights are loaded, as torchvision builds them). Detection: given pixels in
    [0, 1] (the model normalises and resizes them itself), the image resized to a square of the
    model's ``min_size``; l0 = l1 = the first (finest) FPN output, the feature map the box head pools,
    when the model has an FPN (else the automatic rule, or the user's layers)."""
    import torchvision

    task = _tv_task(name)
    categories = list(enum.meta.get("categories") or [])
    kwargs: dict = {"num_classes": len(categories), "weights_backbone": None}
    if task == "segmentation" and (name.startswith("fcn") or name.startswith("deeplabv3")):
        kwargs["aux_loss"] = weights != "random"  # torchvision's weights hold the auxiliary head
    model = torchvision.models.get_model(name, weights=None, **kwargs)
    cached = _tv_cached_or_refused(enum, spec, weights, download)
    info = _weighted(model, weights, spec=spec, allow_pickle=allow_pickle, cached=cached)
    model.eval()
    layer = None
    if task == "segmentation":
        preset = enum.transforms()
        side = getattr(preset, "resize_size", None) or [520]
        side = int(side[0] if isinstance(side, list | tuple) else side)
        mean = tuple(float(m) for m in preset.mean)
        std = tuple(float(v) for v in preset.std)
    else:
        side = int(model.transform.min_size[0])
        mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)  # GeneralizedRCNNTransform normalises
        fpn = getattr(getattr(model, "backbone", None), "fpn", None)
        if fpn is not None and hasattr(fpn, "layer_blocks"):
            layer = "backbone.fpn.layer_blocks.0"
    enum_key = "weights_enum" if weights == "default" else "preprocessing_of"
    info = {"model": spec, "source": "torchvision", "architecture": name, "task": task, enum_key: str(enum), **info,
            "mean": mean, "std": std, "input_size": (side, side), "num_classes": len(categories)}
    clf = Classifier(model, mean=mean, std=std, input_size=(side, side), class_names=categories, name=spec,
                     inversion_layer=layer, channel_layer=layer, task=task)
    return clf, info


# -- Hugging Face transformers ----------------------------------------------------------------------
def _load_hf(spec: str, path: str, *, weights, allow_pickle: bool, download: bool) -> tuple[Classifier, dict]:
    try:
        import transformers
    except ImportError as exc:
        raise ModelSpecError(f"{spec}: needs the transformers package (pip install 'gfi-explain[hf]')") from exc
    local = not download
    looks_like_path = path.startswith((".", "/", "~")) or (os.sep in path and Path(path).parent.exists())
    if looks_like_path and not Path(path).expanduser().is_dir():
        raise ModelSpecError(f"{spec}: no such folder {path!r}; give a folder saved with model.save_pretrained(DIR) "
                             "and processor.save_pretrained(DIR), or a hub id (ORG/NAME) in the local cache")
    path = str(Path(path).expanduser()) if looks_like_path else path
    transformers.utils.logging.disable_progress_bar()  # gfi shows its own progress
    try:
        processor = transformers.AutoImageProcessor.from_pretrained(path, local_files_only=local)
        if weights == "default":  # the folder's (or the cached hub id's) own weights
            model = transformers.AutoModelForImageClassification.from_pretrained(path, local_files_only=local)
        else:  # random, or a state dict loaded below
            config = transformers.AutoConfig.from_pretrained(path, local_files_only=local)
            model = transformers.AutoModelForImageClassification.from_config(config)
    except (OSError, ValueError) as exc:  # no such folder / not in the cache / not an image classifier
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        where = ("a local folder" if Path(path).exists()
                 else f"a folder or a hub id in the local cache ({hf_cache_dir()})")
        raise ModelSpecError(
            f"{spec}: could not read a transformers image classifier with its image processor from {path!r} "
            f"({first}); give {where} saved with model.save_pretrained(DIR) and processor.save_pretrained(DIR)"
            f"{'' if download else ', or --download to fetch a hub id (network)'}") from exc
    info = (_hf_weights_file(path) if weights == "default" else
            _weighted(model, weights, spec=spec, allow_pickle=allow_pickle, cached=None))
    model.eval()
    clf = Classifier.from_transformers(model, processor, name=spec)
    info = {"model": spec, "source": "hf", "architecture": type(model).__name__, **info,
            "mean": tuple(clf.mean.flatten().tolist()), "std": tuple(clf.std.flatten().tolist()),
            "input_size": clf.input_size, "num_classes": clf.num_classes}
    return clf, info


def _hf_weights_file(path: str) -> dict:
    """What a Hugging Face model's own weights were read from: the weights file of a local folder
    (``model.safetensors`` or ``pytorch_model.bin``) with its SHA-256, else (a hub id read from the
    local cache) the hub id, with ``sha256`` None."""
    folder = Path(path)
    if folder.is_dir():
        for name in ("model.safetensors", "pytorch_model.bin"):
            if (folder / name).is_file():
                return {"weights": str(folder / name), "sha256": file_sha256(folder / name)}
    return {"weights": str(path), "sha256": None}


def load_source(spec: str, *, weights: str | os.PathLike | None = "default", allow_pickle: bool = False,
                download: bool = False) -> tuple[Classifier, dict]:
    """The :class:`Classifier` of a ``timm:NAME``, ``torchvision:NAME[:WEIGHTS]`` or ``hf:PATH`` spec, with its
    weights.

    Args:
        spec: ``timm:NAME``, ``torchvision:NAME[:WEIGHTS]`` or ``hf:PATH`` (see the module's docstring).
        weights: ``"default"`` (the pretrained file from the local timm / torch hub cache, no network),
            ``"random"`` / None (random initialisation), or a path to a local state dict.
        allow_pickle: read a checkpoint that is a full pickle (can run arbitrary code).
        download: fetch missing pretrained weights into the cache (network).

    Returns:
        ``(classifier, info)``; ``info`` holds the spec, source, architecture, what the weights were
        read from (``weights``: the file and its SHA-256 prefix, or ``"random"``; a timm model's
        ``hf_hub_id`` and a torchvision model's ``weights_enum`` only when its own pretrained weights
        were loaded, else ``preprocessing_of`` names the enum its class names and preprocessing come
        from), mean, std, input size, interpolation and number of classes. The layers are chosen by
        :func:`gfi.models.classifier.auto_layers` on first use.
    """
    source, name, member = parse_spec(str(spec))
    if weights is not None and weights not in ("default", "random"):
        weights = os.fspath(weights)
    if source == "hf":
        return _load_hf(spec, name, weights=weights, allow_pickle=allow_pickle, download=download)
    if source == "timm":
        return _load_timm(spec, name, weights=weights, allow_pickle=allow_pickle, download=download)
    return _load_torchvision(spec, name, member, weights=weights, allow_pickle=allow_pickle, download=download)
