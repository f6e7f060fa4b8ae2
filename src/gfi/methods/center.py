"""The "Center" baseline: a centred Gaussian (sigma = a quarter of each side), whatever the input."""

from __future__ import annotations

from torch import Tensor

from gfi.masks.priors import center_prior
from gfi.methods.base import Explainer, Explanation, TargetsLike


class Center(Explainer):
    name = "center"
    target_objects = True  # any gfi.targets target, through the target grid
    needs_module = False
    shares_across_targets = "all"
    summary = "Center: a centred Gaussian, the sanity baseline that ignores the model"

    def _explain(self, images: Tensor, targets: TargetsLike) -> Explanation:
        grid, probs = self._target_grid(images, targets)
        prior = center_prior(*images.shape[-2:]).to(images.device)
        maps = prior.expand(*grid.shape, *prior.shape).clone()
        return Explanation(maps=maps, method=self.name, **self._fields(grid, probs))
