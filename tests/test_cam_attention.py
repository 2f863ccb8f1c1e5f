"""DF-CAM's hooks and the cross-attention recorder: real maps, always restored."""

import numpy as np
import pytest
import torch
from conftest import GROUNDED_PROMPTS, ROOT

from diffexplain.errors import UserError
from diffexplain.explainers import DFCAM, AttentionRelevanceExplainer, CrossAttentionExplainer
from diffexplain.explainers.cam import output_tensor, resolve_modules
from diffexplain.explainers.words import word_spans
from diffexplain.metrics.localisation import mask_to_grid, pointing_game
from diffexplain.models.attention_capture import CrossAttentionRecorder
from diffexplain.schedules import Uniform
from diffexplain.similarity import SSIM
from diffexplain.world import segment

PROMPT = "a red circle and a blue square"


@pytest.fixture(scope="module")
def traj(tiny):
    return tiny.generate(PROMPT, 0, Uniform(4))


def hook_count(module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in module.modules())


def processors(unet) -> dict:
    return {k: id(v) for k, v in unet.attn_processors.items()}


def test_cam_sums_normalised_module_maps_and_removes_its_hooks(tiny, traj):
    before = hook_count(tiny.denoiser)
    cam = DFCAM(tiny, modules="resnets", upsample="latent")
    assert len(cam.module_names) == 8 and all(".resnets." in n for n in cam.module_names)
    maps = cam.module_maps(traj, 1)
    assert set(maps) == set(cam.module_names)
    for m in maps.values():
        assert m.shape == (8, 8) and m.min() >= 0 and m.max() <= 1
    assert torch.allclose(cam.explain(traj, [1])[0], torch.stack(list(maps.values())).sum(0))
    assert hook_count(tiny.denoiser) == before
    assert all(p.grad is None for p in tiny.denoiser.parameters())


def test_cam_hooks_attentions_samplers_resnets_and_token_outputs_in_one_pass(tiny, traj):
    before = hook_count(tiny.denoiser)
    names = ["down_blocks.0.attentions.0", "down_blocks.0.downsamplers.0", "up_blocks.1.resnets.0",
             "up_blocks.0.attentions.0.transformer_blocks.0.attn2"]  # the last outputs [B, h·w, C] tokens
    cam = DFCAM(tiny, modules=names, upsample="latent")
    maps = cam.module_maps(traj, 0)
    assert set(maps) == set(names)
    for m in maps.values():
        assert m.shape == (8, 8) and torch.isfinite(m).all() and m.max() == 1
    assert hook_count(tiny.denoiser) == before
    with pytest.raises(UserError, match="explainer.modules.*spatial"):
        DFCAM(tiny, modules="time_embedding").explain(traj, [1])
    assert hook_count(tiny.denoiser) == before


def unet_from_config(**config):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(sample_size=8, block_out_channels=(8, 8, 16, 16)[: len(config["down_block_types"])],
                                cross_attention_dim=8, attention_head_dim=2, norm_num_groups=4, **config)


def kinds(names: list[str]) -> dict[str, int]:
    return {k: sum(f".{k}." in n for n in names) for k in ("resnets", "attentions", "downsamplers", "upsamplers")}


def test_paper_modules_are_the_authors_43_on_sd1_and_resolve_for_other_unets():
    sd1 = unet_from_config(layers_per_block=2, down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                           up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3)
    names = resolve_modules(sd1, "paper")
    assert len(names) == 43 and kinds(names) == {"resnets": 22, "attentions": 15, "downsamplers": 3, "upsamplers": 3}
    assert "mid_block.resnets.1" in names and not any(n.startswith("mid_block.attentions") for n in names)
    modules = dict(sd1.named_modules())
    assert all(type(modules[n]).__name__ == "Transformer2DModel" for n in names if ".attentions." in n)
    sdxl = unet_from_config(layers_per_block=2, transformer_layers_per_block=(1, 2, 2),
                            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"))
    assert kinds(resolve_modules(sdxl, "paper")) == {"resnets": 17, "attentions": 10, "downsamplers": 2,
                                                      "upsamplers": 2}
    assert resolve_modules(sd1, ["resnets"]) == [n for n in names if ".resnets." in n]
    assert resolve_modules(sd1, ["paper", "mid_block.attentions.*"])[-3:] == [
        "mid_block.attentions.0", "mid_block.resnets.0", "mid_block.resnets.1"]


def test_paper_modules_on_the_embedded_model_and_in_describe(tiny, traj):
    from diffusers import UNet2DConditionModel

    config = UNet2DConditionModel.load_config(str(ROOT / "models" / "shapes-sd" / "unet"))
    unet = UNet2DConditionModel.from_config(config)
    assert set(resolve_modules(unet, "paper")) == {
        "down_blocks.0.resnets.0", "down_blocks.0.attentions.0", "down_blocks.0.downsamplers.0",
        "down_blocks.1.resnets.0", "down_blocks.1.attentions.0", "mid_block.resnets.0", "mid_block.resnets.1",
        *(f"up_blocks.{b}.{kind}.{k}" for b in (0, 1) for kind in ("resnets", "attentions") for k in (0, 1)),
        "up_blocks.0.upsamplers.0"}
    cam = DFCAM(tiny, modules="paper")  # the tiny model has the embedded model's layout
    assert cam.describe()["modules"] == resolve_modules(tiny.denoiser, "paper") and len(cam.module_names) == 16
    assert set(cam.module_maps(traj, 0)) == set(cam.module_names)
    assert DFCAM(tiny).describe()["modules"] == resolve_modules(tiny.denoiser, "paper")  # the default


def test_output_tensor_unwraps_tuples_and_diffusers_outputs():
    from diffusers.models.modeling_outputs import Transformer2DModelOutput

    x = torch.ones(1)
    assert output_tensor(x) is x and output_tensor((x, (torch.zeros(1),))) is x
    assert output_tensor(Transformer2DModelOutput(sample=x)) is x and output_tensor(None) is None


def test_cam_image_upsampling_is_the_authors_path(tiny, traj):
    cam = DFCAM(tiny, modules="paper", upsample="image")
    maps = cam.module_maps(traj, 0)
    assert all(m.shape == (16, 16) and m.min() >= 0 and m.max() <= 1 for m in maps.values())  # 16 px images
    total = torch.stack(list(maps.values())).sum(0)
    expected = (total - total.min()) / (total.max() - total.min())
    assert torch.equal(cam.explain(traj, [0])[0], expected[::2, ::2])  # nearest: each cell's top-left pixel
    latent = DFCAM(tiny, modules="paper").explain(traj, [0])[0]
    assert latent.shape == (8, 8) and not torch.allclose(latent / latent.max(), expected[::2, ::2])
    with pytest.raises(UserError, match="explainer.upsample"):
        DFCAM(tiny, upsample="pixel")


def test_cam_removes_hooks_when_the_target_fails(tiny, traj):
    before = hook_count(tiny.denoiser)
    cam = DFCAM(tiny, SSIM(), target="similarity")
    cam.similarity = None  # breaks the target computation mid-way
    with pytest.raises(AttributeError):
        cam.explain(traj, [0])
    assert hook_count(tiny.denoiser) == before


def test_cam_single_module_similarity_target_and_bad_patterns(tiny, traj):
    single = DFCAM(tiny, modules="mid_block.resnets.0")
    assert single.module_names == ["mid_block.resnets.0"]
    assert torch.isfinite(single.explain(traj, [2])).all()
    sim = DFCAM(tiny, SSIM(), target="similarity").explain(traj, [0])
    assert torch.isfinite(sim).all() and sim.max() > 0
    with pytest.raises(UserError, match="explainer.modules"):
        DFCAM(tiny, modules=["no_such_block.*"])
    with pytest.raises(UserError, match="explainer.target"):
        DFCAM(tiny, target="similarity")


def test_recorder_restores_processors_and_hooks_even_on_error(tiny, traj):
    before, hooks = processors(tiny.denoiser), hook_count(tiny.denoiser)
    with pytest.raises(RuntimeError, match="boom"):
        with CrossAttentionRecorder(tiny.denoiser, (8, 8)):
            assert processors(tiny.denoiser) != before
            raise RuntimeError("boom")
    assert processors(tiny.denoiser) == before and hook_count(tiny.denoiser) == hooks


def test_recording_does_not_change_the_model_output(tiny, traj):
    z, t = traj.latents[1:2], traj.timesteps[1]
    with torch.no_grad():
        plain = tiny.unet_output(z, t, traj.cond)
        with CrossAttentionRecorder(tiny.denoiser, (8, 8)) as rec:
            recorded = tiny.unet_output(z, t, traj.cond)
    assert torch.allclose(plain, recorded, atol=1e-5)
    (call,) = rec.calls
    assert len(call.layers) == sum(".attn2." in n for n in tiny.denoiser.attn_processors)
    # probabilities over all tokens sum to one at every position (upsampling keeps that)
    assert torch.allclose(call.mean_maps()[0].sum(0), torch.ones(8, 8), atol=1e-4)


def test_recorder_handles_batches_of_prompts_and_negative_prompts(tiny, traj):
    z, t = traj.latents[1:2], traj.timesteps[1]
    a, b = tiny.encode(PROMPT), tiny.encode("a green triangle")
    neg = tiny.encode(PROMPT, negative_prompt="a yellow square")

    def record(latents, embeds):
        with torch.no_grad(), CrossAttentionRecorder(tiny.denoiser, (8, 8)) as rec:
            tiny.denoiser(torch.cat([latents, latents]), t, encoder_hidden_states=embeds)
        return rec.calls[0].mean_maps()

    single_a, single_b = record(z, a.embeds), record(z, b.embeds)
    both = record(torch.cat([z, z]), torch.cat([a.embeds[:1], b.embeds[:1], a.embeds[1:], b.embeds[1:]]))
    assert torch.allclose(both[0], single_a[0], atol=1e-5) and torch.allclose(both[1], single_b[0], atol=1e-5)
    assert not torch.allclose(single_a, single_b)
    assert torch.allclose(record(z, neg.embeds), single_a, atol=1e-5), "negative prompt only enters the uncond half"


def test_cross_attention_explainer_gives_one_map_per_word(tiny, traj):
    ex = CrossAttentionExplainer(tiny)
    maps = ex.explain(traj, [0, 3])
    assert ex.words(traj) == ["a", "red", "circle", "and", "a#2", "blue", "square"]
    assert maps.shape == (2, 7, 8, 8) and torch.isfinite(maps).all() and (maps >= 0).all()
    assert torch.equal(maps, ex.explain(traj, [0, 3]))
    assert ex.roles(PROMPT)["circle"] == "shape"


def test_attention_relevance_gives_one_map_per_word_and_restores_processors(tiny, traj):
    before, hooks = processors(tiny.denoiser), hook_count(tiny.denoiser)
    ex = AttentionRelevanceExplainer(tiny)
    maps = ex.explain(traj, [0, 3])
    assert ex.per_token and ex.words(traj) == CrossAttentionExplainer(tiny).words(traj)
    assert maps.shape == (2, 7, 8, 8) and torch.isfinite(maps).all() and (maps >= 0).all() and maps.sum() > 0
    assert ex.roles(PROMPT)["circle"] == "shape" and ex.describe() == {"target": "noise_sum"}
    sim = AttentionRelevanceExplainer(tiny, SSIM(), target="similarity").explain(traj, [1])
    assert torch.isfinite(sim).all() and not torch.allclose(sim, ex.explain(traj, [1]))
    assert processors(tiny.denoiser) == before and hook_count(tiny.denoiser) == hooks
    assert all(p.grad is None for p in tiny.denoiser.parameters())
    broken = AttentionRelevanceExplainer(tiny, SSIM(), target="similarity")
    broken.similarity = None  # fails after the forward, inside the recorder
    with pytest.raises(AttributeError):
        broken.explain(traj, [0])
    assert processors(tiny.denoiser) == before and hook_count(tiny.denoiser) == hooks
    with pytest.raises(UserError, match="explainer.target"):
        AttentionRelevanceExplainer(tiny, target="similarity")


def test_attention_relevance_is_zero_when_the_target_ignores_the_conditional_half(tiny, traj):
    """g = 0: the guided output is the unconditional half alone, so the text half's attention has no relevance."""
    unguided = tiny.with_denoiser(tiny.denoiser)
    unguided.guidance_scale = 0.0
    assert AttentionRelevanceExplainer(unguided).explain(traj, [1]).abs().max() == 0
    assert AttentionRelevanceExplainer(tiny).explain(traj, [1]).abs().max() > 0


def test_sub_word_tokens_merge_into_one_word(tiny):
    spans = word_spans(tiny.pipe.tokenizer, "a purple circle")
    assert [w for w, _ in spans] == ["a", "purple", "circle"]
    assert len(spans[1][1]) > 1


def test_grounded_shapes_model_shape_word_maps_peak_inside_their_objects(grounded):
    """model=shapes_grounded was trained to ground its cross-attention: a check that capture, aggregation and word
    alignment are right end to end (a shifted token index or a transposed map would miss the objects)."""
    model, trajectories = grounded  # 20-step trajectories of GROUNDED_PROMPTS, seed = index
    explainer = CrossAttentionExplainer(model)
    hits = {"colour": [], "shape": []}
    for prompt, traj in zip(GROUNDED_PROMPTS, trajectories):
        maps = explainer.explain(traj, [19])[0]
        image = model.decode(traj.latents[-1:])[0].permute(1, 2, 0).numpy()
        masks, words = segment(image, prompt), explainer.words(traj)
        for role, position in (("colour", 1), ("shape", 2)):
            for word in prompt.split()[position::4]:
                hits[role].append(pointing_game(maps[words.index(word)], mask_to_grid(masks[word], maps.shape[-2:])))
    assert np.mean(hits["shape"]) == 1.0 and np.mean(hits["colour"]) >= 0.8, hits


def test_cam_applies_guidance_once_like_the_authors(tiny, traj):
    """Our gradients (guided target, halves summed) equal the authors' (raw output summed over both halves, then
    guidance-combined); activations are guidance-combined."""
    cam = DFCAM(tiny)
    ours = cam.cam_inputs(traj, 1)
    modules, acts = dict(tiny.denoiser.named_modules()), {}
    handles = [modules[n].register_forward_hook(lambda m, a, out, n=n: acts.__setitem__(n, output_tensor(out)))
               for n in cam.module_names]
    try:
        z = traj.latents[1:2].clone().requires_grad_(True)
        raw = torch.cat(tiny.unet_halves(z, traj.timesteps[1], traj.cond))
        grads = torch.autograd.grad(raw.sum(), [acts[n] for n in cam.module_names])
    finally:
        for h in handles:
            h.remove()
    for name, grad in zip(cam.module_names, grads):
        a, g = ours[name]
        authors = tiny.guide(*grad.chunk(2))
        assert torch.allclose(g, authors, rtol=1e-3, atol=1e-5 * authors.abs().max().item())
        assert torch.allclose(a, tiny.guide(*acts[name].detach().chunk(2)))


class Pattern(torch.nn.Module):
    """A feature map that is a fixed signed pattern (in both guidance halves), with a gradient path."""

    def __init__(self, pattern: torch.Tensor):
        super().__init__()
        self.pattern = torch.nn.Parameter(pattern[None, None])

    def forward(self, x):
        return self.pattern.expand(x.shape[0], 1, *self.pattern.shape[-2:]) + 0 * x[:, :1]


class UncondOnly(torch.nn.Module):
    """A two-half toy UNet: only the unconditional half's feature reaches the output (negated); the text half's
    output is constant. With g > 1 a larger unconditional feature *raises* the guided output (1 − g)·u + g·c."""

    def __init__(self, pattern: torch.Tensor):
        super().__init__()
        self.feat = Pattern(pattern)

    device, dtype = torch.device("cpu"), torch.float32

    def forward(self, x, t, encoder_hidden_states=None, return_dict=False):
        a = self.feat(x)
        return (torch.cat([-a[:1].expand_as(x[:1]), torch.zeros_like(x[1:])]),)


def test_cam_shows_a_signal_carried_by_the_unconditional_half_alone_with_the_right_sign(tiny, traj):
    blob = torch.zeros(8, 8, dtype=torch.bool)
    blob[2:5, 3:6] = True
    toy = tiny.with_denoiser(UncondOnly(blob.float() - 0.5))
    assert toy.guidance_scale > 1
    cam = DFCAM(toy, modules="feat", upsample="latent").explain(traj, [0])[0]
    # correct: G = (g − 1)·4 > 0 on the pattern, map ∝ ReLU(pattern) = the blob; guidance applied twice flips the
    # sign of G ((1 − g)·(g − 1)·4 < 0) and shows the complement instead
    assert cam[blob].min() > 0.99 and cam[~blob].max() == 0


def test_grounded_shapes_model_word_relevance_peaks_inside_their_objects_in_the_late_steps(grounded):
    """Gradient × attention relevance on the model trained to ground its cross-attention: each word's relevance
    peaks inside its own object in the late steps (measured on these prompts: shape 1.0, 1.0, 1.0, 0.83, 0.83 and
    colour 1.0, 1.0, 0.83, 0.83, 0.83 at steps 15–19; a shifted token or a wrong half would point at the other
    object)."""
    model, trajectories = grounded  # 20-step trajectories of GROUNDED_PROMPTS, seed = index
    explainer = AttentionRelevanceExplainer(model)
    hits = {"colour": [], "shape": []}
    for prompt, traj in zip(GROUNDED_PROMPTS, trajectories):
        maps = explainer.explain(traj, [15, 16, 17, 18, 19])
        image = model.decode(traj.latents[-1:])[0].permute(1, 2, 0).numpy()
        masks, words = segment(image, prompt), explainer.words(traj)
        for role, position in (("colour", 1), ("shape", 2)):
            for word in prompt.split()[position::4]:
                mask = mask_to_grid(masks[word], maps.shape[-2:])
                hits[role] += [pointing_game(m, mask) for m in maps[:, words.index(word)]]
    assert np.mean(hits["shape"]) >= 0.9 and np.mean(hits["colour"]) >= 0.8, hits


def test_token_role_table_keeps_raw_attention_and_relevance_apart():
    """experiment=token_roles sweeps explainer=cross_attention,attention_relevance: one block per explainer."""
    from diffexplain.items import PromptItem
    from diffexplain.metrics.token_roles import stage_table
    from diffexplain.reporting.tables import row, to_frame

    item = PromptItem("p-s0-x", "a red circle", 0)
    rows = [row(item, "role_share", value, s, 999 - s, name, token="colour")
            for name, value in (("cross_attention", 0.2), ("attention_relevance", 0.6)) for s in range(3)]
    table = stage_table(to_frame(rows))
    assert table.loc["cross_attention", "colour"].tolist() == pytest.approx([0.2] * 3)
    assert table.loc["attention_relevance", "colour"].tolist() == pytest.approx([0.6] * 3)
