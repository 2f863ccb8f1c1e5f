"""Cosine similarity, in [-1, 1] (1 = same direction, 0 for a zero item)."""
import torch.nn.functional as F
from torch import Tensor

from diffexplain.similarity.base import Similarity, pair


class Cosine(Similarity):
    """Scalar form: cosine of the flattened items.  Map form: per-pixel cosine across channels
    (with a single channel that is just sign(a·b))."""

    name = "cosine"

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        a, b = pair(a, b)
        return F.cosine_similarity(a.flatten(1), b.flatten(1), dim=1)

    def map(self, a: Tensor, b: Tensor) -> Tensor:
        a, b = pair(a, b)
        return F.cosine_similarity(a, b, dim=1)
