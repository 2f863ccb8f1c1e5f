"""Captum attributions of an image classifier's true-class logit with respect to its (noised) input image.

One call attributes a batch of images [B, C, H, W] for one target class with each chosen method and reduces the
attributions to maps [B, H, W] (absolute values summed over channels: where the decision's evidence lies, either
sign). Baselines live in the input's space (for noised images: DDPM's [-1, 1]); ``baseline`` is a constant image
value, by default 0 = E[x_T] (mid-grey), the mean the forward process ends at; -1 is black (the Shapes background):

- ``integrated_gradients``: the straight path from the constant ``baseline`` image to the input.
- ``gradient_shap``: expected gradients from ``shap_baselines`` pure-noise images N(0, I) (draws of x_T, seeded).
- ``occlusion``: a ``window`` × ``window`` patch (all channels) set to ``baseline``, sliding with ``stride``; each
  pixel gets the mean logit drop over the patches covering it. ``window`` null: 1/8 of the image side (at least 2);
  ``stride`` null: half the window.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from captum.attr import GradientShap, IntegratedGradients, Occlusion

from diffexplain.config.options import CLASSIFIER_METHODS as METHODS
from diffexplain.errors import check
from diffexplain.explainers.captum_base import seeded_global_rngs


class ClassifierAttribution:
    """Captum's IntegratedGradients, GradientShap and Occlusion (``methods``: some of them) on a classifier."""

    def __init__(self, methods: Sequence[str] = METHODS, ig_steps: int = 32, shap_samples: int = 16,
                 shap_baselines: int = 8, window: int | None = None, stride: int | None = None,
                 internal_batch_size: int = 64, baseline: float = 0.0):
        check(isinstance(methods, Sequence) and not isinstance(methods, str) and all(m in METHODS for m in methods)
              and len(set(methods)) == len(methods), "pipeline.attribute.methods", methods,
              f"a list of distinct methods among {list(METHODS)} (empty: no attributions)")
        for key, value in (("ig_steps", ig_steps), ("shap_samples", shap_samples), ("shap_baselines", shap_baselines),
                           ("internal_batch_size", internal_batch_size)):
            check(isinstance(value, int) and value >= 1, f"pipeline.attribute.{key}", value, "an integer >= 1")
        for key, value in (("window", window), ("stride", stride)):
            check(value is None or (isinstance(value, int) and value >= 1), f"pipeline.attribute.{key}", value,
                  "an integer >= 1 (pixels of the classifier's input) or null (from the image size)")
        self.methods, self.ig_steps, self.shap_samples = list(methods), ig_steps, shap_samples
        self.shap_baselines, self.window, self.stride = shap_baselines, window, stride
        self.internal_batch_size = internal_batch_size
        check(isinstance(baseline, (int, float)) and not isinstance(baseline, bool) and -1 <= baseline <= 1,
              "pipeline.attribute.baseline", baseline, "a number in [-1, 1] (0: mid-grey = E[x_T]; -1: black)")
        self.baseline = float(baseline)

    def occlusion_window(self, side: int) -> tuple[int, int]:
        """(window, stride) for images of ``side`` pixels."""
        window = self.window or max(2, side // 8)
        check(window <= side, "pipeline.attribute.window", window, f"an integer in [1, {side}] (the input's side)")
        return window, self.stride or max(1, window // 2)

    def __call__(self, forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, target: int,
                 generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Maps {method: [B, H, W]} (on the CPU) of ``forward``'s logit ``target`` at the images ``x``, seeded by
        ``generator`` (Captum's own sampling included)."""
        x = x.detach()
        c, h, w = x.shape[1:]
        out = {}
        for method in self.methods:
            with seeded_global_rngs(generator, x.device):
                if method == "integrated_gradients":
                    a = IntegratedGradients(forward).attribute(
                        x, baselines=torch.full_like(x, self.baseline), target=target, n_steps=self.ig_steps,
                        internal_batch_size=self.internal_batch_size)
                elif method == "gradient_shap":
                    noise = torch.randn((self.shap_baselines, c, h, w), generator=generator).to(x.device, x.dtype)
                    a = GradientShap(forward).attribute(x, baselines=noise, target=target,
                                                        n_samples=self.shap_samples, stdevs=0.0)
                else:
                    window, stride = self.occlusion_window(min(h, w))
                    a = Occlusion(forward).attribute(
                        x, sliding_window_shapes=(c, window, window), strides=(c, stride, stride),
                        baselines=self.baseline, target=target,
                        perturbations_per_eval=max(1, self.internal_batch_size // len(x)))
            out[method] = a.detach().abs().sum(1).float().cpu()
        return out

    def describe(self) -> dict:
        return {"methods": self.methods, "ig_steps": self.ig_steps, "shap_samples": self.shap_samples,
                "shap_baselines": self.shap_baselines, "baseline": self.baseline, "window": self.window,
                "stride": self.stride,
                "map": "|attribution| summed over channels", "target": "the true class's logit"}
