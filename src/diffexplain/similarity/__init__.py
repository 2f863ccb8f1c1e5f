"""Similarity functions for DF-RISE and evaluation: higher = more similar, scalar [B] and map [B,H,W] forms."""
from diffexplain.similarity.base import Similarity
from diffexplain.similarity.cosine import Cosine
from diffexplain.similarity.fid import RandomConvFeatures, SingleImageFID
from diffexplain.similarity.ssim import SSIM, Contrast, Luminance, Structure

SIMILARITIES: dict[str, type[Similarity]] = {
    "ssim": SSIM,
    "structure": Structure,
    "luminance": Luminance,
    "contrast": Contrast,
    "cosine": Cosine,
    "fid": SingleImageFID,
}

__all__ = ["SIMILARITIES", "SSIM", "Contrast", "Cosine", "Luminance", "RandomConvFeatures", "SingleImageFID",
           "Similarity", "Structure"]
