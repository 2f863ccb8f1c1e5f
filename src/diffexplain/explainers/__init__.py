"""Explainers: one class per method on one interface (:class:`~diffexplain.explainers.base.Explainer`)."""

from diffexplain.explainers.base import Explainer
from diffexplain.explainers.cam import DFCAM
from diffexplain.explainers.cross_attention import CrossAttentionExplainer
from diffexplain.explainers.random import RandomExplainer
from diffexplain.explainers.rise import RISE

__all__ = ["DFCAM", "RISE", "CrossAttentionExplainer", "Explainer", "RandomExplainer"]
