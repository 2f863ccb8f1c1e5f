"""Joint (MMDiT) attention of SD3 and Flux: recording processors and ConceptAttention's concept stream.

In a joint attention layer image and text tokens are one sequence (SD3: [image; text], Flux: [text; image]; Flux's
single-stream blocks get [text; image] as one hidden state). The "cross-attention" of an image token to a word is its
probability on that word's key in the joint softmax. :class:`JointRecordingProcessor` computes exactly what
diffusers' ``JointAttnProcessor2_0`` (SD3) and ``FluxAttnProcessor`` (Flux) compute — the same projections, norms,
rotary embedding and attention call, so outputs are bit for bit the original's — and hands the image queries' text
probabilities of the conditional rows to the recorder: on a CPU from the log-sum-exp the attention kernel returns
(only the image × text scores are extra), elsewhere computed separately in chunks of queries. With an attached
recorder the attention itself is computed from explicit probabilities, so gradients reach them (attention relevance).

:class:`ConceptStream` is ConceptAttention (Helbling et al., ICML 2025): concept tokens, encoded like the prompt,
run through the joint blocks' text-stream weights as extra queries over [concepts; image] keys; the image and text
streams never see them, so the model's output is unchanged bit for bit. Per recorded layer the map is the dot product
of the image tokens' attention outputs with the concept tokens' attention outputs (both after their output
projections), averaged over layers and softmaxed over concepts.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

QUERY_CHUNK_ELEMENTS = 2**24  # probabilities computed per chunk of image queries: at most this many scores at once


def text_probabilities(query: torch.Tensor, key: torch.Tensor, images: slice, texts: slice) -> torch.Tensor:
    """Joint-softmax probabilities of the image queries over the text keys, [B, H, n_image, n_text] (float32),
    from query/key [B, H, S, d]; computed in chunks of queries to bound memory."""
    q, k = query[:, :, images].float(), key.float()
    scale = 1 / math.sqrt(q.shape[-1])
    chunk = max(1, QUERY_CHUNK_ELEMENTS // max(1, q.shape[0] * q.shape[1] * k.shape[2]))
    parts = [((qc @ k.transpose(-1, -2)) * scale).softmax(-1)[..., texts] for qc in q.split(chunk, dim=2)]
    return torch.cat(parts, dim=2)


class JointRecordingProcessor:
    """SD3's ``JointAttnProcessor2_0`` or Flux's ``FluxAttnProcessor`` computation (``original``), recording the image
    queries' probabilities over the text keys (see the module docstring)."""

    def __init__(self, recorder, name: str, original, flux: bool):
        self.recorder, self.name, self.original, self.flux = recorder, name, original, flux
        self.plain_attention = getattr(original, "_attention_backend", None) is None  # no custom backend chosen

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, image_rotary_emb=None,
                 **kwargs):
        if self.flux:
            return self._flux(attn, hidden_states, encoder_hidden_states, attention_mask, image_rotary_emb)
        return self._sd3(attn, hidden_states, encoder_hidden_states)

    def _attend(self, query, key, value, images: slice, texts: slice, heads: int, sdpa):
        """Attention output [B, H, S, d] from [B, H, S, d] inputs; records the image→text probabilities."""
        if self.recorder.attached:
            scores = (query @ key.transpose(-1, -2)) * (1 / math.sqrt(query.shape[-1]))
            probs = scores.float().softmax(-1).to(query.dtype)  # recorded as used, so gradients reach it

            def block(x):  # [B, H, S, S] → the image→text block [B·H, n_image, n_text]
                return x[:, :, images, texts].reshape(-1, images.stop - images.start, texts.stop - texts.start)

            self.recorder.record(self.name, probs, heads, block)
            return probs @ value
        rows = self.recorder.conditional_rows(query.shape[0])
        if query.device.type == "cpu" and self.plain_attention:
            # the kernel F.scaled_dot_product_attention runs on a CPU, which also returns each query's log-sum-exp:
            # the same output bit for bit, and the text probabilities cost only the image × text scores
            out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(query, key, value, 0.0, False)
            q, k = query[rows][:, :, images].float(), key[rows][:, :, texts].float()
            scores = (q @ k.transpose(-1, -2)) * (1 / math.sqrt(q.shape[-1]))
            self.recorder.add_probabilities(self.name, torch.exp(scores - lse[rows][:, :, images, None].float()))
            return out
        self.recorder.add_probabilities(self.name, text_probabilities(query[rows], key[rows], images, texts))
        return sdpa()

    def _sd3(self, attn, hidden_states, encoder_hidden_states):
        batch = hidden_states.shape[0]
        n_image = hidden_states.shape[1]
        query, key, value = attn.to_q(hidden_states), attn.to_k(hidden_states), attn.to_v(hidden_states)
        head_dim = key.shape[-1] // attn.heads

        def heads(x):
            return x.view(batch, -1, attn.heads, head_dim).transpose(1, 2)

        query, key, value = heads(query), heads(key), heads(value)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)
        cq, ck, cv = (heads(attn.add_q_proj(encoder_hidden_states)), heads(attn.add_k_proj(encoder_hidden_states)),
                      heads(attn.add_v_proj(encoder_hidden_states)))
        if attn.norm_added_q is not None:
            cq = attn.norm_added_q(cq)
        if attn.norm_added_k is not None:
            ck = attn.norm_added_k(ck)
        query, key, value = torch.cat([query, cq], dim=2), torch.cat([key, ck], dim=2), torch.cat([value, cv], dim=2)
        out = self._attend(query, key, value, slice(0, n_image), slice(n_image, key.shape[2]), attn.heads,
                           lambda: F.scaled_dot_product_attention(query, key, value, dropout_p=0.0, is_causal=False))
        out = out.transpose(1, 2).reshape(batch, -1, attn.heads * head_dim).to(query.dtype)
        hidden_states, encoder_hidden_states = out[:, :n_image], out[:, n_image:]
        if not attn.context_pre_only:
            encoder_hidden_states = attn.to_add_out(encoder_hidden_states)
        hidden_states = attn.to_out[1](attn.to_out[0](hidden_states))
        return hidden_states, encoder_hidden_states

    def _flux(self, attn, hidden_states, encoder_hidden_states, attention_mask, image_rotary_emb):
        from diffusers.models.attention_dispatch import dispatch_attention_fn
        from diffusers.models.embeddings import apply_rotary_emb
        from diffusers.models.transformers.transformer_flux import _get_qkv_projections

        query, key, value, eq, ek, ev = _get_qkv_projections(attn, hidden_states, encoder_hidden_states)
        query, key, value = (x.unflatten(-1, (-1, attn.head_dim)) for x in (query, key, value))
        query, key = attn.norm_q(query), attn.norm_k(key)
        if attn.added_kv_proj_dim is not None:
            eq, ek, ev = (x.unflatten(-1, (-1, attn.head_dim)) for x in (eq, ek, ev))
            eq, ek = attn.norm_added_q(eq), attn.norm_added_k(ek)
            query, key, value = torch.cat([eq, query], dim=1), torch.cat([ek, key], dim=1), torch.cat([ev, value], 1)
        if image_rotary_emb is not None:
            query = apply_rotary_emb(query, image_rotary_emb, sequence_dim=1)
            key = apply_rotary_emb(key, image_rotary_emb, sequence_dim=1)
        n_text = encoder_hidden_states.shape[1] if encoder_hidden_states is not None else self.recorder.text_length
        heads = query.shape[2]

        def sdpa():
            out = dispatch_attention_fn(query, key, value, attn_mask=attention_mask,
                                        backend=getattr(self.original, "_attention_backend", None),
                                        parallel_config=getattr(self.original, "_parallel_config", None))
            return out.transpose(1, 2)  # [B, H, S, d] like the explicit path

        if attention_mask is not None:
            self.plain_attention = False
        out = self._attend(query.transpose(1, 2), key.transpose(1, 2), value.transpose(1, 2),
                           slice(n_text, query.shape[1]), slice(0, n_text), heads, sdpa)
        hidden_states = out.transpose(1, 2).flatten(2, 3).to(query.dtype)
        if encoder_hidden_states is None:
            return hidden_states
        encoder_hidden_states, hidden_states = hidden_states.split_with_sizes(
            [n_text, hidden_states.shape[1] - n_text], dim=1)
        hidden_states = attn.to_out[1](attn.to_out[0](hidden_states.contiguous()))
        return hidden_states, attn.to_add_out(encoder_hidden_states.contiguous())


def concept_blocks(denoiser) -> list[int]:
    """Indices of the joint blocks whose text stream can carry concepts (SD3's last block has no text output)."""
    return [i for i, block in enumerate(denoiser.transformer_blocks) if not getattr(block, "context_pre_only", False)]


def paper_layers(denoiser) -> list[int]:
    """ConceptAttention's default layers scaled to this depth: Flux.1's double-stream blocks 10–17 of 19
    (the authors' diffusers port, ``range(10, 18)``), i.e. ⌊10n/19⌋ … ⌈18n/19⌉ − 1; all usable blocks if none."""
    n = len(denoiser.transformer_blocks)
    usable = concept_blocks(denoiser)
    chosen = [i for i in range(10 * n // 19, math.ceil(18 * n / 19)) if i in usable]
    return chosen or usable


class ConceptStream:
    """Context manager running concept tokens through the joint blocks of an SD3 or Flux transformer (see the module
    docstring). ``concepts`` [K, D_text] are the concept tokens' text-encoder states; ``layers`` the block indices
    whose maps are kept. Each denoiser forward inside appends one [N, K, n_image] map (layer-averaged dot products,
    before the softmax) of the conditional rows to ``raw``. Hooks are removed on exit, also on error."""

    def __init__(self, denoiser, family: str, concepts: torch.Tensor, layers: list[int], cond_rows: int):
        self.denoiser, self.flux, self.layers = denoiser, family == "flux", sorted(layers)
        self.concepts, self.cond_rows = concepts, cond_rows
        self.raw: list[torch.Tensor] = []
        self._handles: list = []

    def __enter__(self) -> ConceptStream:
        try:
            self._handles.append(self.denoiser.register_forward_pre_hook(self._start, with_kwargs=True))
            for i in range(self.layers[-1] + 1):
                block = self.denoiser.transformer_blocks[i]
                self._handles.append(block.attn.register_forward_hook(self._keep_attention, with_kwargs=True))
                self._handles.append(block.register_forward_hook(
                    lambda module, args, kwargs, output, i=i: self._advance(i, module, kwargs), with_kwargs=True))
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _rows(self, x: torch.Tensor) -> torch.Tensor:
        """The conditional rows of a guidance batch."""
        n = x.shape[0] // self.cond_rows
        return x[x.shape[0] - n:]

    def _start(self, module, args, kwargs) -> None:
        hidden = kwargs.get("hidden_states", args[0] if args else None)
        n = hidden.shape[0] // self.cond_rows
        concepts = self.concepts.to(self.denoiser.dtype)[None].expand(n, -1, -1)
        self.state = self.denoiser.context_embedder(concepts)
        self.maps: list[torch.Tensor] = []

    def _keep_attention(self, module, args, kwargs, output) -> None:
        self.image_in = self._rows(kwargs["hidden_states"])
        self.image_out = self._rows(output[0])
        self.rotary = kwargs.get("image_rotary_emb")

    def _advance(self, i: int, block, kwargs) -> None:
        temb = self._rows(kwargs["temb"])
        c = self.state
        norm_c, gate, shift, scale, gate_mlp = block.norm1_context(c, emb=temb)
        extra = {}
        if self.flux and self.rotary is not None:  # concepts sit at position id 0, like the text: no rotation
            cos, sin = self.rotary
            n_image, k = self.image_in.shape[1], c.shape[1]
            extra["image_rotary_emb"] = (torch.cat([torch.ones_like(cos[:1]).expand(k, -1), cos[-n_image:]]),
                                         torch.cat([torch.zeros_like(sin[:1]).expand(k, -1), sin[-n_image:]]))
        _, concept_out = block.attn.processor(block.attn, hidden_states=self.image_in, encoder_hidden_states=norm_c,
                                              **extra)
        if i in self.layers:
            self.maps.append(torch.einsum("nkd,npd->nkp", concept_out.float(), self.image_out.float()))
        c = c + gate.unsqueeze(1) * concept_out
        norm_c = block.norm2_context(c) * (1 + scale[:, None]) + shift[:, None]
        self.state = c + gate_mlp.unsqueeze(1) * block.ff_context(norm_c)
        if i == self.layers[-1]:
            self.raw.append(torch.stack(self.maps).mean(0))
