r"""Layer-wise Relevance Propagation (Bach et al. 2015) with Captum's ``LRP`` (epsilon rule).

The logit y_c is the relevance put on the output; each layer redistributes it to its inputs in
proportion to their contributions, ``R_j = sum_k a_j w_jk / (eps + sum_j a_j w_jk) R_k``
(epsilon rule, Captum's default for conv, linear, pooling and batch-norm layers; ReLU/Dropout
pass relevance through). Relevance is propagated to the *normalised* input (the network's input
layer), ``Classifier.normalize(x)``.

gfi adaptation: a pixel's relevance is the sum over its three channels; the map keeps the positive
part (relevance *for* the class; negative relevance is evidence against it), min-max normalised.

Where it cannot run, it says why instead of returning a wrong map:

* Captum's LRP knows only the layer types above; a leaf module of another type (e.g. ReLU6 or
  timm's BatchNormAct2d in EfficientNet-Lite) needs a ``rule`` attribute set by the user.
* A residual addition written as ``a + b`` in ``forward`` (ResNet, EfficientNet's inverted
  residuals) is invisible to module hooks, so Captum's LRP would pass relevance through it as if it
  were not there; the model is traced with ``torch.fx`` and refused if it adds two tensors.
"""

from __future__ import annotations

import operator

import torch
from torch import Tensor, nn

from gfi.errors import NotApplicable
from gfi.masks.channel_mask import min_max
from gfi.methods.base import Explainer, Explanation, TargetsLike
from gfi.models.layers import frozen
from gfi.targets import ClassTarget, Logit, Target


class LRPNotSupportedError(NotApplicable):
    """The model has a layer or an operation that Captum's LRP cannot propagate relevance through."""


_ADDS = {operator.add, operator.iadd, torch.add}


def unsupported_layers(model: nn.Module) -> list[str]:
    """``Type (e.g. name)`` for each type of leaf module Captum's LRP has no rule for (and that sets no
    ``rule`` attribute)."""
    from captum.attr._core.lrp import SUPPORTED_LAYERS_WITH_RULES, SUPPORTED_NON_LINEAR_LAYERS

    known = (*SUPPORTED_LAYERS_WITH_RULES, *SUPPORTED_NON_LINEAR_LAYERS)
    bad: dict[str, str] = {}
    for name, m in model.named_modules():
        if next(m.children(), None) is None and not isinstance(m, known) and not hasattr(m, "rule"):
            bad.setdefault(type(m).__name__, name)
    return [f"{kind} (e.g. {name})" for kind, name in bad.items()]


def residual_additions(model: nn.Module) -> list[str]:
    """Names of the ``a + b`` operations between two tensors in the model's traced forward."""
    import torch.fx

    try:
        graph = torch.fx.symbolic_trace(model).graph
    except Exception as err:  # re-raised with the reason: torch.fx raises many types
        raise LRPNotSupportedError(
            f"lrp: cannot check {type(model).__name__} for residual additions, torch.fx could not trace it "
            f"({type(err).__name__}: {err}); LRP needs a plain feed-forward network") from err
    found = []
    for node in graph.nodes:
        is_add = (node.op == "call_function" and node.target in _ADDS) or (
            node.op == "call_method" and node.target in ("add", "add_"))
        if is_add and sum(isinstance(a, torch.fx.Node) for a in node.args[:2]) == 2:
            found.append(node.name)
    return found


class LRP(Explainer):
    name = "lrp"
    target_objects = True  # class logits only: check_target
    needs_module = True  # a rule per module
    supports_tokens = False  # Captum has no LRP rule for LayerNorm / attention
    supports_cnn = "layers with a Captum LRP rule (Conv, Linear, ReLU, pooling, BatchNorm)"
    summary = "LRP (Bach et al. 2015), epsilon rule (Captum); feed-forward nets without residual additions"

    def check(self) -> None:
        """Raise :class:`LRPNotSupportedError` naming what this model has that LRP cannot handle."""
        model = self.classifier.model
        bad = unsupported_layers(model)
        if bad:
            shown = ", ".join(bad)
            raise LRPNotSupportedError(
                f"lrp: Captum's LRP has no propagation rule for {shown}. Set a rule on those modules "
                "(module.rule = captum.attr._utils.lrp_rules.EpsilonRule()) or use another method "
                "(e.g. 'gradcam', 'integrated-gradients').")
        adds = residual_additions(model)
        if adds:
            raise LRPNotSupportedError(
                f"lrp: {type(model).__name__} has {len(adds)} residual addition(s) (e.g. {adds[0]}); Captum's LRP "
                "cannot propagate relevance through an addition written in forward(). Use 'gradcam' or "
                "'integrated-gradients' for residual networks.")

    def check_target(self, target: Target) -> None:
        if type(target) not in (ClassTarget, Logit):
            raise NotApplicable(f"lrp starts its relevance at one output unit, a class's logit, so it explains class "
                                f"indices and Logit targets only, not {target.describe()}; use 'gradient', "
                                "'integrated-gradients' or 'gradcam' for other targets")

    def raw(self, images: Tensor, targets: Tensor) -> Tensor:
        """Captum's relevance at the normalised input, one (C, H, W) row per (image, target)."""
        from captum.attr import LRP as CaptumLRP

        self.check()
        clf = self.classifier
        x = clf.normalize(images.repeat_interleave(targets.shape[1], 0)).requires_grad_(True)
        # Captum deletes every module's ``rule`` when it is done, the user's own too: put those back
        rules = {m: m.rule for m in clf.model.modules() if hasattr(m, "rule")}
        try:
            with frozen(clf.model):
                return CaptumLRP(clf.model).attribute(x, target=targets.reshape(-1).tolist()).detach()
        finally:
            for module, rule in rules.items():
                module.rule = rule

    def _explain(self, images: Tensor, targets: TargetsLike) -> Explanation:
        self.check()
        grid, probs = self._target_grid(images, targets)
        t = grid.logit_classes()
        if t is None:
            for target in grid.flat:
                self.check_target(target)
        b, k = grid.shape
        sal, collapsed = min_max(self.raw(images, t).sum(1).clamp(min=0).view(b, k, *images.shape[-2:]))
        return Explanation(maps=sal, method=self.name, collapsed=collapsed, **self._fields(grid, probs))
