"""Experiment names (as used by ``gfi eval NAME``) to experiments: adding one is one line here."""

from __future__ import annotations

from gfi.evaluation.adversarial import Adversarial
from gfi.evaluation.deletion import Deletion
from gfi.evaluation.experiment import Experiment
from gfi.evaluation.finetune import VOC_HEAD, VOCHead
from gfi.evaluation.grid import Grid
from gfi.evaluation.localization import Localization
from gfi.evaluation.pointing import Pointing
from gfi.evaluation.saliency import Saliency
from gfi.evaluation.sanity import Sanity
from gfi.evaluation.two_names import TwoNames

EXPERIMENTS: dict[str, Experiment] = {
    e.name: e for e in (Localization(), Pointing(), Saliency(), Adversarial(), Deletion(), Sanity(), Grid(), TwoNames())
}

__all__ = ["EXPERIMENTS", "VOC_HEAD", "VOCHead"]
