"""SSIM and its luminance, contrast and structure terms, all on one Gaussian window.

With local (Gaussian-weighted) means μ, variances σ² and covariance σxy:
l = (2μxμy + C1) / (μx² + μy² + C1), c = (2σxσy + C2) / (σx² + σy² + C2),
s = (σxy + C3) / (σxσy + C3), C1 = (0.01 L)², C2 = (0.03 L)², C3 = C2 / 2, so SSIM = l · c · s.
Variances are clamped at 0.  The window is the one torchmetrics uses: Gaussian with ``sigma`` and
``kernel_size`` taps, reflect padding, so maps are H × W like the input.  torchmetrics sizes its
Gaussian window from sigma alone (2·int(3.5σ + 0.5) + 1: 11 for σ = 1.5, 15 for σ = 2), so
``kernel_size`` must equal that value.

``data_range`` L: a float, or None for each pair's joint range max(a, b) − min(a, b) over the item
(all channels), which suits unbounded latents and keeps S(a, b) = S(b, a); a constant pair uses L = 1.
Unlike torchmetrics' own None, this range is per item, not over the whole batch.

Bounds: SSIM, l and s lie in [-1, 1]; c in (0, 1]; l in [0, 1] for nonnegative inputs.
Map forms average over channels; scalar forms average the map over pixels.
"""
import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics.functional.image import structural_similarity_index_measure

from diffexplain.errors import check
from diffexplain.similarity.base import Similarity, pair


def window_size(sigma: float) -> int:
    """The Gaussian window size torchmetrics (and skimage) use for ``sigma``."""
    return 2 * int(3.5 * sigma + 0.5) + 1


class _Windowed(Similarity):
    """Shared parameters and the per-item data range of the SSIM family."""

    def __init__(self, kernel_size: int = 11, sigma: float = 1.5, data_range: float | None = None):
        super().__init__()
        check(sigma > 0, "similarity.sigma", sigma, "must be > 0")
        size = window_size(sigma)
        check(kernel_size == size, "similarity.kernel_size", kernel_size, f"must be {size} for sigma={sigma} (2*int(3.5*sigma+0.5)+1, as torchmetrics)")
        check(data_range is None or data_range > 0, "similarity.data_range", data_range, "must be null or > 0")
        self.kernel_size, self.sigma, self.data_range = kernel_size, sigma, data_range

    def range_of(self, a: Tensor, b: Tensor) -> Tensor | float:
        """L per item as [B, 1, 1, 1] (joint range of the pair), or the configured float."""
        if self.data_range is not None:
            return self.data_range
        joint = torch.cat((a, b), 1).flatten(1)
        r = joint.amax(1) - joint.amin(1)
        return torch.where(r > 0, r, torch.ones_like(r)).view(-1, 1, 1, 1)

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        return self.map(a, b).mean(dim=(1, 2))


class SSIM(_Windowed):
    """Full SSIM via torchmetrics (each pair scaled by 1/L, then data_range=1: SSIM is scale-invariant)."""

    name = "ssim"

    def _ssim(self, a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
        a, b = pair(a, b)
        scale = self.range_of(a, b)
        return structural_similarity_index_measure(
            a / scale, b / scale, sigma=self.sigma, kernel_size=self.kernel_size,
            data_range=1.0, reduction="none", return_full_image=True,
        )  # type: ignore[return-value]

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        return self._ssim(a, b)[0]

    def map(self, a: Tensor, b: Tensor) -> Tensor:
        return self._ssim(a, b)[1].mean(1)


class _Term(_Windowed):
    """One SSIM term from the window moments; subclasses define ``term`` per channel."""

    def map(self, a: Tensor, b: Tensor) -> Tensor:
        a, b = pair(a, b)
        k, channels = self.kernel_size, a.shape[1]
        g = torch.exp(-(((torch.arange(k, dtype=a.dtype, device=a.device) - (k - 1) / 2) / self.sigma) ** 2) / 2)
        g = g / g.sum()
        kernel = (g[:, None] * g[None, :]).expand(channels, 1, k, k)
        p = (k - 1) // 2
        x = F.pad(torch.cat((a, b, a * a, b * b, a * b)), (p, p, p, p), mode="reflect")
        mu_a, mu_b, e_aa, e_bb, e_ab = F.conv2d(x, kernel, groups=channels).split(a.shape[0])
        var_a, var_b = (e_aa - mu_a**2).clamp(min=0), (e_bb - mu_b**2).clamp(min=0)
        tiny = torch.finfo(a.dtype).tiny  # sqrt has an infinite slope at 0
        sd_ab = var_a.clamp(min=tiny).sqrt() * var_b.clamp(min=tiny).sqrt()
        c2 = (0.03 * self.range_of(a, b)) ** 2
        return self.term(mu_a, mu_b, var_a, var_b, e_ab - mu_a * mu_b, sd_ab, c2).mean(1)

    def term(self, mu_a: Tensor, mu_b: Tensor, var_a: Tensor, var_b: Tensor, cov: Tensor, sd_ab: Tensor, c2: Tensor | float) -> Tensor:
        raise NotImplementedError


class Luminance(_Term):
    """l = (2μxμy + C1) / (μx² + μy² + C1), C1 = (0.01 L)² = C2 / 9."""

    name = "luminance"

    def term(self, mu_a, mu_b, var_a, var_b, cov, sd_ab, c2):
        c1 = c2 / 9
        return (2 * mu_a * mu_b + c1) / (mu_a**2 + mu_b**2 + c1)


class Contrast(_Term):
    """c = (2σxσy + C2) / (σx² + σy² + C2)."""

    name = "contrast"

    def term(self, mu_a, mu_b, var_a, var_b, cov, sd_ab, c2):
        return (2 * sd_ab + c2) / (var_a + var_b + c2)


class Structure(_Term):
    """s = (σxy + C3) / (σxσy + C3), C3 = C2 / 2."""

    name = "structure"

    def term(self, mu_a, mu_b, var_a, var_b, cov, sd_ab, c2):
        return (cov + c2 / 2) / (sd_ab + c2 / 2)
