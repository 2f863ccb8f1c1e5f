"""Explainers: one class per method on one interface (:class:`~diffexplain.explainers.base.Explainer`)."""

from diffexplain.explainers.attention_relevance import AttentionRelevanceExplainer
from diffexplain.explainers.base import Explainer
from diffexplain.explainers.cam import DFCAM
from diffexplain.explainers.captum_base import CaptumExplainer, StepOutcome
from diffexplain.explainers.concept_attention import ConceptAttentionExplainer
from diffexplain.explainers.cross_attention import CrossAttentionExplainer
from diffexplain.explainers.gradient_shap import GradientShapExplainer
from diffexplain.explainers.integrated_gradients import IntegratedGradientsExplainer
from diffexplain.explainers.lime import LimeExplainer
from diffexplain.explainers.occlusion import OcclusionExplainer
from diffexplain.explainers.random import RandomExplainer
from diffexplain.explainers.rise import RISE

__all__ = ["DFCAM", "RISE", "AttentionRelevanceExplainer", "CaptumExplainer", "ConceptAttentionExplainer",
           "CrossAttentionExplainer", "Explainer", "GradientShapExplainer", "IntegratedGradientsExplainer",
           "LimeExplainer", "OcclusionExplainer", "RandomExplainer", "StepOutcome"]
