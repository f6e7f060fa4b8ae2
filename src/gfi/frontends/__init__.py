"""gfi's methods in the calling conventions of the field's usual libraries, three front ends over one
rule:

* :mod:`gfi.frontends.captum`: ``GuidedFeatureInversion(model).attribute(x, target=c)``, a
  ``captum.attr.Attribution`` (Captum's wrappers and metrics take it; targets and
  ``additional_forward_args`` as Captum reads them);
* :mod:`gfi.frontends.cam`: ``GFICAM(model, target_layers=[...])``, called like pytorch-grad-cam's
  ``GradCAM`` (several layers, ``eigen_smooth``, ``aug_smooth``, its wrappers ``RefineCAM`` and ``SESS``);
* :mod:`gfi.frontends.quantus`: ``explain``, a Quantus ``explain_func``.

Each takes ``method=`` (any name of ``gfi methods``, a plugin's too), ``config=`` (a preset name or
the method's settings), ``options=`` (:class:`gfi.RunOptions`) and the method's settings as keywords,
resolved once by :func:`gfi.methods.resolve` when the front end is made. What they share is
:mod:`gfi.frontends.common`. Importing this package imports none of Captum, pytorch-grad-cam or Quantus.

**The input rule.** Users of Captum, pytorch-grad-cam and Quantus pass the tensors their model takes,
usually normalised with a mean and std, while gfi's methods take pixels in [0, 1] and apply the
normalisation inside :class:`~gfi.models.classifier.Classifier`. So, in this order:

1. ``model`` is a :class:`~gfi.models.classifier.Classifier`: the inputs are pixels in [0, 1] and go
   to the native explainer unchanged (values outside [0, 1] are refused there). It has its own mean
   and std, so ``mean=``/``std=`` are refused with it.
2. ``mean=`` and ``std=`` are given (per-channel sequences, as in torchvision's ``Normalize``, or one
   number for every channel): the pixels are ``p = x * std + mean`` and the model is wrapped as
   ``Classifier(model, mean=mean, std=std)``, so ``classifier.normalize(p) == x`` up to float32
   rounding. This is the native explainer on the pixel image, **exact for every method and
   background**. Pixels outside [0, 1] by more than ``PIXEL_TOLERANCE`` (1e-3; e.g. the noise of
   Captum's ``NoiseTunnel`` or ``sensitivity_max``, or a wrong mean/std) are an error naming two ways
   out: ``clamp=True`` clamps the pixels to [0, 1] (the model then sees ``normalize(clamp(p))``, not
   the inputs it was given), or leaving out ``mean``/``std`` falls back to rule 3, which takes any range.
   ``clamp`` applies to this rule only.
3. any other ``nn.Module`` (or, for Captum, any callable): per call, with ``lo`` and ``hi`` the batch's
   minimum and maximum (two scalars), the pixels are ``x01 = (x - lo) / (hi - lo)`` and the model is
   wrapped as ``Classifier(model, mean=-lo / (hi - lo), std=1 / (hi - lo))`` (the same value for every
   channel), so that ``classifier.normalize(x01) == x`` up to float32 rounding: the model sees exactly
   the tensors the user gave. A constant batch (``hi == lo``) has no range and is refused.

Why rule 3 gives the native map, and when it does not. The true pixels p and x01 differ by a
per-channel affine map ``x01 = a_c p + b_c`` (``a_c = 1 / (s_c (hi - lo))``,
``b_c = (-m_c / s_c - lo) / (hi - lo)`` for the model's unknown mean m and std s). Gaussian blur
(reflect or replicate padding) and the blends of Eq. (2) and (4), ``m x + (1 - m) p``, are affine with
weights that sum to 1, so they commute with that map: the blurred background, the kept and the
removed images built from x01 are, after ``normalize``, the very tensors the native method builds
from p. Features, gradients with respect to features, and the mask maths never see pixel values.
Hence GFI with ``background="blur"`` (the default), its stage-2 start from Grad-CAM weights, Grad-CAM
and CAM give the native maps (to float rounding). Not exact, because they fix a pixel value rather
than transform the image: ``background="mean"`` (a constant ImageNet-mean colour in pixel space,
which is not the same colour after a different affine map) and ``background="noise"`` (noise around
pixel 0.5); baselines at pixel 0 (integrated gradients, RISE); and maps of gradients with respect to
pixels (gradient, SmoothGrad, guided backprop), which are scaled per channel by ``s_c (hi - lo)``.
For those, give the model's ``mean=`` and ``std=`` (rule 2).

**Layers.** The methods whose class says ``needs_module`` hook or inspect the model's layers, so they
need an ``nn.Module``. A plain callable (Captum's ``forward_func``) runs the others (the gradient and
perturbation methods); with one of these it is refused when the front end is made
(:func:`gfi.frontends.common.require_module`, a one-line error).
"""
