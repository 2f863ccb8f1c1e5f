"""Diffusion transformers (SD3, Flux, PixArt) behind the same DiffusionModel: sampling, every explainer, the
evaluation and the sanity cascade, attention capture and ConceptAttention, on the tiny random pipelines."""

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import cli_refusal, run_job

from diffexplain.explainers import ConceptAttentionExplainer
from diffexplain.metrics.sanity import cascading_randomisation, randomisation_stages
from diffexplain.models import DiffusionModel, tiny_model
from diffexplain.models.joint_attention import ConceptStream
from diffexplain.models.tiny import build_tiny_pipeline
from diffexplain.schedules import Uniform

PROMPT = "a red circle and a blue square"
FAMILIES = ("sd3", "flux", "pixart")
EXPLAINERS = ("rise", "cam", "cross_attention", "attention_relevance", "integrated_gradients", "random")
SMALL = {"rise": ("explainer.n_masks=16", "explainer.batch_size=16"), "integrated_gradients": ("explainer.n_steps=4",)}
JOBS = [(v, e) for v in FAMILIES for e in EXPLAINERS] + [("sd3", "concept_attention"), ("flux", "concept_attention")]


@pytest.fixture(scope="module")
def models():
    return {v: tiny_model(variant=v) for v in FAMILIES}


@pytest.mark.parametrize("variant", FAMILIES)
def test_trajectory_is_the_diffusers_pipelines_sample(models, variant, one_thread):
    model = models[variant]
    trajectory = model.generate(PROMPT, 0, Uniform(4))
    guidance = {"sd3": {}, "flux": {}, "pixart": {"use_resolution_binning": False}}[variant]
    reference = model.pipe(PROMPT, num_inference_steps=4, height=16, width=16, output_type="pt",
                           guidance_scale=model.guidance_scale, max_sequence_length=model.max_sequence_length,
                           generator=torch.Generator().manual_seed(0), **guidance).images
    assert torch.equal(model.decode(trajectory.latents[-1:]), reference)
    assert trajectory.latents.shape == (5, 4, 8, 8)  # the unpacked latent grid, also for Flux's packed tokens


def test_flow_matching_x0_and_noise_follow_the_velocity(models):
    model = models["sd3"]
    trajectory = model.generate(PROMPT, 0, Uniform(4))
    i = 2
    sigma = float(trajectory.timesteps[i]) / 1000
    z, v = trajectory.latents[i], trajectory.outputs[i]
    assert torch.allclose(trajectory.x0[i], z - sigma * v) and torch.allclose(trajectory.eps[i], z + (1 - sigma) * v)
    assert torch.allclose((1 - sigma) * trajectory.x0[i] + sigma * trajectory.eps[i], z, atol=1e-5)


def test_a_saved_sd3_without_t5_loads_with_from_pretrained(tmp_path):
    build_tiny_pipeline(0, "sd3").save_pretrained(tmp_path / "sd3")
    model = DiffusionModel.from_pretrained(str(tmp_path / "sd3"), resolution=16)
    assert model.family.family == "sd3" and model.pipe.text_encoder_3 is None and model.latent_shape == (4, 8, 8)


@pytest.mark.parametrize("variant,explainer", JOBS)
def test_every_explainer_evaluates_on_every_family(tmp_path, variant, explainer):
    sanity = ("evaluate.sanity=true",) if explainer == "cam" else ()  # the cascade once per family
    out = run_job("pipeline=evaluate", "model=tiny", f"model.variant={variant}", f"explainer={explainer}",
                  "logger=none", "schedule.num_steps=3", "explainer.steps=[2]", f"data.prompts=[{PROMPT}]",
                  "evaluate.n_points=5", "evaluate.bootstrap=100", *SMALL.get(explainer, ()), *sanity,
                  out_dir=tmp_path / "job")
    rows = pd.read_parquet(out / "results.parquet")
    values = rows.loc[rows.metric.isin(["deletion_auc", "insertion_auc", "mass_inside"]), "value"]
    assert len(values) and np.isfinite(values.to_numpy(float)).all()
    with np.load(out / "heatmaps.npz") as maps:
        assert maps.files and all(maps[k].shape[-2:] == (8, 8) and np.isfinite(maps[k]).all() for k in maps.files)
    if sanity:
        stages = rows.loc[rows.metric == "sanity_rho", "stage"].unique().tolist()
        assert stages[0] == "proj_out" and stages[-1] == "embeddings"


@pytest.mark.parametrize("variant", FAMILIES)
def test_the_cascade_covers_every_transformer_parameter_once(models, variant):
    denoiser = models[variant].denoiser
    stages = randomisation_stages(denoiser)
    own = dict(denoiser.named_parameters(recurse=False))
    ids = [id(p) for _, paths in stages for path in paths
           for p in ([own[path]] if path in own else denoiser.get_submodule(path).parameters())]
    assert len(ids) == len(set(ids)) == len(list(denoiser.parameters()))
    assert stages[0][0] == "proj_out" and stages[-1][0] == "embeddings"
    *_, (name, randomised) = cascading_randomisation(models[variant], seed=1)
    assert all(not torch.equal(p, q) for p, q in zip(denoiser.parameters(), randomised.denoiser.parameters())
               if p.numel() > 1 and p.std() > 0)


def test_flux_capture_records_every_double_and_single_stream_block():
    pipe = build_tiny_pipeline(0, "flux")
    from diffusers import FluxTransformer2DModel

    config = {**pipe.transformer.config, "num_layers": 2, "num_single_layers": 3}
    pipe.transformer = FluxTransformer2DModel.from_config(config).eval()
    model = DiffusionModel(pipe, guidance_scale=3.5, resolution=16, max_sequence_length=16)
    trajectory = model.generate(PROMPT, 0, Uniform(2))
    with model.attention_recorder((8, 8), rows=trajectory.cond.rows) as rec:
        again = model.generate(PROMPT, 0, Uniform(2))
    expected = [f"transformer_blocks.{i}.attn.processor" for i in range(2)] + \
        [f"single_transformer_blocks.{i}.attn.processor" for i in range(3)]  # forward order
    assert len(expected) == 5 and all(call.layers == expected for call in rec.calls) and len(rec.calls) == 2
    assert torch.equal(trajectory.latents, again.latents)  # recording changes nothing
    maps = rec.calls[0].mean_maps()
    assert maps.shape == (1, 16, 8, 8) and maps.sum() > 0
    assert torch.allclose(rec.calls[0].mean_mass().sum(-1), torch.ones(1))  # shares among the text tokens
    assert all(type(p).__name__ == "FluxAttnProcessor" for p in model.denoiser.attn_processors.values())


@pytest.mark.parametrize("variant", ("sd3", "flux"))
def test_concept_maps_sum_to_one_over_concepts_at_every_position(models, variant):
    model = models[variant]
    trajectory = model.generate(PROMPT, 0, Uniform(3))
    explainer = ConceptAttentionExplainer(model, concepts=["background"])
    maps = explainer.explain(trajectory, [1, 2])
    words = explainer.words(trajectory)
    assert words[-1] == "background" and maps.shape == (2, len(words), 8, 8)
    assert torch.allclose(maps.sum(1), torch.ones(2, 8, 8), atol=1e-5) and (maps >= 0).all()


@pytest.mark.parametrize("variant", ("sd3", "flux"))
def test_adding_concepts_leaves_the_generated_image_bitwise_equal(models, variant):
    model = models[variant]
    plain = model.generate(PROMPT, 0, Uniform(3))
    states = ConceptAttentionExplainer(model, concepts=["background", "sky"]).concept_states(plain)
    with ConceptStream(model.denoiser, variant, states, [0], plain.cond.rows) as stream:
        with_concepts = model.generate(PROMPT, 0, Uniform(3))
    assert len(stream.raw) == 3 and stream.raw[0].shape[1] == len(states)
    assert torch.equal(plain.latents, with_concepts.latents)
    assert torch.equal(model.decode(plain.latents[-1:]), model.decode(with_concepts.latents[-1:]))
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.denoiser.modules())  # hooks removed


def test_concept_attention_is_refused_without_joint_attention(tmp_path, capsys):
    line = cli_refusal("model=tiny", "model.variant=pixart", "explainer=concept_attention", out_dir=tmp_path / "r",
                       capsys=capsys)
    assert "explainer='concept_attention'" in line and "joint attention" in line and "pixart" in line
    with pytest.raises(Exception, match="joint attention"):
        ConceptAttentionExplainer(tiny_model(variant="sd"))


def test_flow_matching_refuses_custom_schedules_and_diffusion_samplers(tmp_path, capsys):
    line = cli_refusal("model=tiny", "model.variant=flux", "schedule=exp_early", out_dir=tmp_path / "r", capsys=capsys)
    assert "schedule='exp_early'" in line and "uniform" in line
    with pytest.raises(Exception, match="flow-matching and diffusion"):
        tiny_model(variant="sd3", scheduler="ddim")
    line = cli_refusal("model=tiny", "model.variant=flux", "model.resolution=18", out_dir=tmp_path / "s", capsys=capsys)
    assert "model.resolution=18" in line and "multiple of 4" in line  # Flux packs 2x2 latent patches


def test_flux_without_true_cfg_runs_one_conditional_row(models):
    model = models["flux"]
    cond = model.encode(PROMPT)
    assert cond.rows == 1 and cond.added["guidance"].tolist() == [model.guidance_scale]  # Flux.1-dev's distilled
    z = torch.randn(2, 4, 8, 8)
    uncond, text = model.unet_halves(z, torch.tensor(500.0), cond)
    assert uncond is text and torch.equal(model.guide(uncond, text), text)
    cfg = tiny_model(variant="flux", true_cfg_scale=2.0)
    assert cfg.encode(PROMPT, "a green triangle").rows == 2


@pytest.mark.parametrize("variant", ("sd3", "flux"))
def test_text_probabilities_from_the_cpu_kernel_equal_the_explicit_softmax(models, variant):
    from diffexplain.models.joint_attention import JointRecordingProcessor

    model = models[variant]
    trajectory = model.generate(PROMPT, 0, Uniform(3))
    maps = []
    for kernel in (True, False):
        with torch.no_grad(), model.attention_recorder((8, 8), rows=trajectory.cond.rows) as rec:
            for p in model.denoiser.attn_processors.values():
                if isinstance(p, JointRecordingProcessor):
                    p.plain_attention = kernel
            model.unet_output(trajectory.latents[1:2], trajectory.timesteps[1], trajectory.cond)
        maps.append(rec.calls[0].mean_maps())
    assert torch.allclose(maps[0], maps[1], atol=1e-6) and maps[0].abs().sum() > 0


def test_cross_attention_of_named_blocks_records_only_them(models):
    from diffexplain.explainers import CrossAttentionExplainer

    model = models["flux"]
    trajectory = model.generate(PROMPT, 0, Uniform(3))
    single = CrossAttentionExplainer(model, blocks=["single_transformer_blocks.0"])
    every = CrossAttentionExplainer(model).explain(trajectory, [1])
    one = single.explain(trajectory, [1])
    assert one.shape == every.shape and not torch.allclose(one, every)
    assert single.describe() == {"blocks": ["single_transformer_blocks.0"]}
    with pytest.raises(Exception, match="explainer.blocks"):
        CrossAttentionExplainer(model, blocks=["up_blocks.0"])
