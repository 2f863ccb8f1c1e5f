"""``explainer=attention_relevance``: gradient × attention relevance of the cross-attention per word and step
(Chefer et al., 2021, "Generic Attention-model Explainability"; the authors' relevance study of word roles).

At each chosen step one guided denoiser forward with gradients at the trajectory's z_t, with recording attention
processors that keep the probabilities A on the autograd graph
(:class:`~diffexplain.models.attention_capture.CrossAttentionRecorder`), and one ``autograd.grad`` of the target
w.r.t. every cross-attention layer's A (``attn2`` of UNets and PixArt; the image→text block of the joint softmax in
SD3's and Flux's joint attention, computed there from explicit probabilities so the gradient reaches them). Per
layer, the conditional half's relevance E_heads[(A ⊙ ∂target/∂A)⁺] is upsampled to the latent grid; layers are
summed. Words, sub-word merging and roles are those of ``explainer=cross_attention``, so the explain pipeline writes
the same attention/role share rows.

Targets as DF-CAM's: ``noise_sum`` (the guided model output summed) or ``similarity`` (x0-prediction vs the final
latent, with ``similarity=...``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from diffexplain.explainers.cross_attention import CrossAttentionExplainer
from diffexplain.explainers.gradient_targets import check_target, step_target
from diffexplain.explainers.words import word_spans
from diffexplain.models.attention_capture import on_grid


class AttentionRelevanceExplainer(CrossAttentionExplainer):
    name = "attention_relevance"
    per_token = True
    uses_similarity = classmethod(lambda cls, config: config.get("target") == "similarity")  # see Explainer

    def __init__(self, model, similarity=None, target: str = "noise_sum", steps=None, seed: int = 0,
                 roles_file: str | None = None):
        super().__init__(model, similarity, steps, seed, roles_file)
        check_target(target, similarity)
        self.target = target

    def describe(self) -> dict:
        return {"target": self.target}

    def explain(self, trajectory, steps: list[int] | None = None) -> torch.Tensor:
        """[len(steps), K, h, w]: one relevance map per word of the prompt."""
        steps = trajectory.check_steps(self.steps if steps is None else steps)
        maps = torch.stack([self.token_relevance(trajectory, i) for i in steps])  # [S, tokens, h, w]
        spans = word_spans(self.model.word_tokenizer, trajectory.prompt)
        return torch.stack([maps[:, pos].sum(1) for _, pos in spans], dim=1)

    def token_relevance(self, trajectory, i: int) -> torch.Tensor:
        """Relevance of every token position at step ``i``, summed over cross-attention layers: [tokens, h, w]."""
        latent_hw = tuple(trajectory.latents.shape[-2:])
        with self.model.attention_recorder(latent_hw, attached=True, rows=trajectory.cond.rows) as rec, \
                torch.enable_grad():
            z = trajectory.latents[i: i + 1].detach().to(self.model.device, self.model.dtype).requires_grad_(True)
            out = self.model.guide(*self.model.unet_halves(z, trajectory.timesteps[i], trajectory.cond))
            target = step_target(self.model, self.similarity, self.target, out, z, trajectory, i)
            (call,) = rec.calls
            layers = list(call.probs.values())
            grads = torch.autograd.grad(target, [p for p, _, _ in layers])
        total = 0
        for (probs, heads, block), grad in zip(layers, grads):
            probs, grad = block(probs), block(grad)
            b = probs.shape[0] // heads
            relevance = (probs.detach().float() * grad.float()).clamp(min=0)
            relevance = relevance.view(b, heads, *probs.shape[1:]).mean(1)[rec.conditional_rows(b)]  # [1, q, K]
            total = total + F.interpolate(on_grid(relevance, latent_hw), size=latent_hw, mode="bilinear",
                                          align_corners=False)
        return total[0].cpu()
