"""``explainer=cross_attention``: per-word cross-attention maps at each step (DAAM-style aggregation).

At each chosen step the guided denoiser is evaluated once at the trajectory's z_t with recording attention
processors (:mod:`~diffexplain.models.attention_capture`): probabilities of the conditional half, averaged
over heads, upsampled to the latent grid, averaged over layers; sub-word tokens are summed into words and special
tokens skipped. Works with negative prompts (they only enter the unconditional half). On SD3 and Flux the
probabilities are the image queries' share of the joint softmax on each text key (every joint layer: Flux's double-
and single-stream blocks); on PixArt its cross-attention to T5 tokens. ``explainer.blocks`` records only the named
blocks (e.g. ``[transformer_blocks.2]``, the layers ConceptAttention reads, for its raw cross-attention side by side).
"""

from __future__ import annotations

import torch

from diffexplain.errors import check
from diffexplain.explainers.base import Explainer
from diffexplain.explainers.words import word_spans
from diffexplain.metrics.token_roles import load_roles, roles_for


class CrossAttentionExplainer(Explainer):
    name = "cross_attention"
    per_token = True
    uses_similarity = classmethod(lambda cls, config: False)  # see Explainer

    def __init__(self, model, similarity=None, steps=None, seed: int = 0, roles_file: str | None = None,
                 blocks: list[str] | None = None):
        super().__init__(model, similarity, steps, seed)
        self.tagged = load_roles(roles_file)
        self.blocks = None if blocks is None else [str(b) for b in blocks]
        if self.blocks is not None:
            names = list(model.denoiser.attn_processors)
            for block in self.blocks:
                check(any(n.startswith(f"{block}.") for n in names), "explainer.blocks", block,
                      "names of denoiser blocks holding attention, e.g. transformer_blocks.2 or up_blocks.1")

    def describe(self) -> dict:
        return {} if self.blocks is None else {"blocks": self.blocks}

    def roles(self, prompt: str) -> dict[str, str] | None:
        """Word → role for the token_roles table (user tags, else the Shapes grammar)."""
        return roles_for(prompt, self.tagged)

    def words(self, trajectory) -> list[str]:
        return [w for w, _ in word_spans(self.model.word_tokenizer, trajectory.prompt)]

    @torch.no_grad()
    def explain(self, trajectory, steps: list[int] | None = None) -> torch.Tensor:
        """[len(steps), K, h, w]: one map per word of the prompt."""
        steps = trajectory.check_steps(self.steps if steps is None else steps)
        spans = word_spans(self.model.word_tokenizer, trajectory.prompt)
        with self.model.attention_recorder(trajectory.latents.shape[-2:], rows=trajectory.cond.rows,
                                           layers=self.blocks) as rec:
            for i in steps:
                self.model.unet_output(trajectory.latents[i: i + 1], trajectory.timesteps[i], trajectory.cond)
        maps = torch.stack([call.mean_maps()[0] for call in rec.calls])  # [S, tokens, h, w]
        return torch.stack([maps[:, pos].sum(1) for _, pos in spans], dim=1).cpu()
