"""``explainer=lime``: Captum's LIME on z_t at a step, over superpixels (Ribeiro et al., 2016).

Superpixels come from the decoded x0-prediction at the step (quickshift as in the paper, or SLIC), mapped to the
latent grid by the label at each latent cell's centre and relabelled 0..K−1. LIME switches random sets of them
to the baseline, scores each sample's step outcome and fits Captum's Lasso surrogate; a superpixel's coefficient
is its cells' value. ``alpha`` defaults below Captum's 0.01, which zeroes every coefficient when similarities move
little (FID, cosine of x0).
"""

from __future__ import annotations

import inspect

import numpy as np
import torch
from captum._utils.models.linear_model import SkLearnLasso
from captum.attr import Lime
from skimage.segmentation import quickshift, slic

from diffexplain.config.options import LIME_SUPERPIXELS
from diffexplain.errors import check
from diffexplain.explainers.base import check_in
from diffexplain.explainers.captum_base import CaptumExplainer, StepOutcome

SUPERPIXELS = dict(zip(LIME_SUPERPIXELS, (quickshift, slic)))


class LimeExplainer(CaptumExplainer):
    name = "lime"
    sampled = True  # another seed, another map (no mc_reliability: Captum fits one surrogate on all samples)

    def __init__(self, model, similarity, n_samples: int = 256, superpixels: str = "quickshift",
                 superpixel_kwargs: dict | None = None, alpha: float = 1e-4, **kwargs):
        super().__init__(model, similarity, **kwargs)
        check(isinstance(n_samples, int) and n_samples >= 2, "explainer.n_samples", n_samples, "an integer >= 2")
        check_in("explainer.superpixels", superpixels, SUPERPIXELS)
        superpixel_kwargs = dict(superpixel_kwargs or {})
        try:
            inspect.signature(SUPERPIXELS[superpixels]).bind(None, **superpixel_kwargs)
        except TypeError as e:
            check(False, "explainer.superpixel_kwargs", superpixel_kwargs, f"keyword arguments of {superpixels}: {e}")
        check(alpha > 0, "explainer.alpha", alpha, "a number > 0 (the Lasso's L1 weight)")
        self.n_samples, self.superpixels, self.superpixel_kwargs = n_samples, superpixels, superpixel_kwargs
        self.alpha = float(alpha)

    def feature_mask(self, trajectory, i: int) -> torch.Tensor:
        """Superpixels of the decoded x0-prediction at step ``i`` on the latent grid: [1, 1, h, w], labels 0..K−1."""
        image = self.model.decode(trajectory.x0[i: i + 1].to(self.model.device))[0]
        labels = SUPERPIXELS[self.superpixels](image.permute(1, 2, 0).double().cpu().numpy(), **self.superpixel_kwargs)
        _, h, w = trajectory.latents.shape[1:]
        sy, sx = labels.shape[0] // h, labels.shape[1] // w
        grid = labels[sy // 2:: sy, sx // 2:: sx][:h, :w]
        relabelled = np.unique(grid, return_inverse=True)[1].reshape(h, w)
        return torch.from_numpy(relabelled)[None, None].to(self.model.device)

    def attribute(self, forward: StepOutcome, z: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        lime = Lime(forward, interpretable_model=SkLearnLasso(alpha=self.alpha))
        return lime.attribute(z, baselines=self.baselines(z, generator), n_samples=self.n_samples,
                              feature_mask=self.feature_mask(forward.trajectory, forward.i),
                              perturbations_per_eval=self.per_call)
