"""``explainer=concept_attention``: ConceptAttention (Helbling et al., ICML 2025) on MMDiT models (SD3/3.5, Flux.1).

Concepts are the prompt's words (their text-encoder states from the prompt's own encoding) and
``explainer.concepts`` (default ``[background]``, encoded like a prompt). They run through the joint blocks'
text-stream weights as extra queries over [concepts; image] keys that the image and text streams never see
(:class:`~diffexplain.models.joint_attention.ConceptStream`), so the trajectory and the image are unchanged bit for
bit. The map of a concept at a step is, per image token, the softmax over concepts of the dot product of the image
token's attention output with the concept's attention output, the dot products averaged over ``explainer.layers``
(default: the authors' layers — Flux.1's double-stream blocks 10–17 of 19 — scaled to the model's depth); token maps
are upsampled bilinearly to the latent grid, where the maps of all concepts sum to 1 at every position. The
games, localisation and sanity check score the prompt's words' share (1 − the extra concepts'), the object map
ConceptAttention segments with. Raw cross-attention: ``explainer=cross_attention`` (every joint layer). Refused on
UNets and PixArt, which have no joint attention.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from diffexplain.config.options import CONCEPT_ATTENTION_FAMILIES
from diffexplain.errors import check
from diffexplain.explainers.cross_attention import CrossAttentionExplainer
from diffexplain.explainers.words import word_spans
from diffexplain.models.attention_capture import on_grid
from diffexplain.models.joint_attention import ConceptStream, concept_blocks, paper_layers


class ConceptAttentionExplainer(CrossAttentionExplainer):
    name = "concept_attention"
    per_token = True

    def __init__(self, model, similarity=None, concepts=("background",), layers=None, steps=None, seed: int = 0,
                 roles_file: str | None = None):
        family = model.family.family
        check(family in CONCEPT_ATTENTION_FAMILIES, "explainer", "concept_attention",
              f"an explainer this model supports: concept_attention needs joint attention (SD3/SD3.5, Flux.1; "
              f"model=tiny model.variant=sd3|flux); this model's denoiser is a {family}")
        super().__init__(model, similarity, steps, seed, roles_file)
        usable = concept_blocks(model.denoiser)
        self.layers = paper_layers(model.denoiser) if layers is None else sorted(int(i) for i in layers)
        check(bool(self.layers) and all(i in usable for i in self.layers), "explainer.layers", layers,
              f"indices of joint blocks with a text stream: {usable}")
        self.concepts = [str(c) for c in concepts]

    def describe(self) -> dict:
        return {"concepts": self.concepts, "layers": self.layers}

    def words(self, trajectory) -> list[str]:
        prompt = super().words(trajectory)
        return prompt + [c for c in self.concepts if c not in prompt]

    def overall(self, maps: torch.Tensor, trajectory) -> torch.Tensor:
        """The prompt's words' share [S, h, w] — 1 minus the extra concepts' (``[background]`` by default): the
        object map ConceptAttention segments with. Without extra concepts it is 1 everywhere (the maps sum to 1)."""
        return maps[:, : len(super().words(trajectory))].sum(1)

    def concept_states(self, trajectory) -> torch.Tensor:
        """[K, D] text-encoder states of the concepts: each word's tokens averaged, prompt words from the prompt's
        own conditional encoding, extra concepts from encoding them together like a prompt."""
        tokenizer = self.model.word_tokenizer
        states = [trajectory.cond.embeds[-1, pos].mean(0) for _, pos in word_spans(tokenizer, trajectory.prompt)]
        prompt_words = set(super().words(trajectory))
        extra = [c for c in self.concepts if c not in prompt_words]
        if extra:
            text = " ".join(extra)
            embeds = self.model.encode(text).embeds[-1]
            states += [embeds[pos].mean(0) for _, pos in word_spans(tokenizer, text)]
        return torch.stack(states)

    @torch.no_grad()
    def explain(self, trajectory, steps: list[int] | None = None) -> torch.Tensor:
        """[len(steps), K, h, w]: one map per concept (the prompt's words, then the extra concepts)."""
        steps = trajectory.check_steps(self.steps if steps is None else steps)
        latent_hw = tuple(trajectory.latents.shape[-2:])
        with ConceptStream(self.model.denoiser, self.model.family.family, self.concept_states(trajectory),
                           self.layers, trajectory.cond.rows) as stream:
            for i in steps:
                self.model.unet_output(trajectory.latents[i: i + 1], trajectory.timesteps[i], trajectory.cond)
        maps = []
        for raw in stream.raw:  # [1, K, tokens]
            probs = raw.softmax(dim=1)
            grid = on_grid(probs.transpose(1, 2), latent_hw)  # [1, K, h', w']
            maps.append(F.interpolate(grid, size=latent_hw, mode="bilinear", align_corners=False)[0])
        return torch.stack(maps).cpu()
