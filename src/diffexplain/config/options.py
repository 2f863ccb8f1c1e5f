"""Every enumeration and bound a config value is checked against, written once.

The classes check their arguments against these names and :mod:`diffexplain.validation` refuses a bad command with
the same ones before anything heavy loads. Ground layer: stdlib and :mod:`diffexplain.errors` only (no torch).
"""

from __future__ import annotations

import fnmatch

# -- top level, output and resume -------------------------------------------------------------------------------------
SEED_MAX = 2**63                                   # seeds in [0, 2**63)
RESUME = ("auto", "overwrite")                     # resume=
X0_STEPS = ("explained", "all", "none")            # output.x0_steps
HEATMAP_DTYPES = ("float32", "float16")            # output.heatmap_dtype
X0_QUALITY = (1, 100)                              # output.x0_quality (WebP quality; null = lossless)

# -- model ------------------------------------------------------------------------------------------------------------
DTYPES = ("float32", "float16", "bfloat16")        # model.dtype
MODEL_VARIANTS = ("sd", "sd2", "sdxl", "sd3", "flux", "pixart")  # model=tiny model.variant
TRANSFORMER_VARIANTS = ("sd3", "flux", "pixart")  # the tiny variants with a transformer denoiser
DENOISER_FAMILIES = ("unet", "sd3", "flux", "pixart")  # models/denoisers.py: one adapter per family
CONCEPT_ATTENTION_FAMILIES = ("sd3", "flux")    # explainer=concept_attention: joint attention only
GUIDANCE_MAX = 100.0                               # model.guidance_scale in [0, 100]
RESOLUTION = (8, 4096)                             # model.resolution
NUM_TRAIN_TIMESTEPS = 1000                         # schedule.timesteps lie in [0, 1000)
BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")  # the forward process's beta schedules
PREDICTION_TYPES = ("epsilon", "v_prediction")     # what the trained world's denoiser predicts
# model.scheduler: the short names, and every diffusers class of KarrasDiffusionSchedulers but the two not offered
# (tests/test_validation.py checks this list against the installed diffusers)
SCHEDULER_SHORT_NAMES = {
    "ddim": "DDIMScheduler",
    "dpm_solver": "DPMSolverMultistepScheduler",
    "pndm": "PNDMScheduler",
    "unipc": "UniPCMultistepScheduler",
}
SCHEDULERS_NOT_OFFERED = ("EDMEulerScheduler", "DPMSolverSDEScheduler")
SCHEDULER_CLASSES = ("DDIMScheduler", "DDPMScheduler", "PNDMScheduler", "LMSDiscreteScheduler",
                     "EulerDiscreteScheduler", "HeunDiscreteScheduler", "EulerAncestralDiscreteScheduler",
                     "DPMSolverMultistepScheduler", "DPMSolverSinglestepScheduler", "KDPM2DiscreteScheduler",
                     "KDPM2AncestralDiscreteScheduler", "DEISMultistepScheduler", "UniPCMultistepScheduler")
SCHEDULER_CHOICES = (*SCHEDULER_SHORT_NAMES, *SCHEDULER_CLASSES)

# model=tiny: the random-init UNets of each variant (models/tiny.py builds them from these; validation reads the
# latent size and DF-CAM's module names from them without building anything). Images 16x16, latents 8x8x4.
TINY_VAE = {"in_channels": 3, "out_channels": 3, "latent_channels": 4, "layers_per_block": 1, "norm_num_groups": 4,
            "block_out_channels": (8, 16), "down_block_types": ("DownEncoderBlock2D",) * 2,
            "up_block_types": ("UpDecoderBlock2D",) * 2, "sample_size": 16}
_TINY_SD_UNET = {"sample_size": 8, "in_channels": 4, "out_channels": 4, "layers_per_block": 1,
                 "block_out_channels": (16, 32), "down_block_types": ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                 "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"), "cross_attention_dim": 32,
                 "norm_num_groups": 8}
TINY_UNETS = {
    "sd": {**_TINY_SD_UNET, "attention_head_dim": 4, "use_linear_projection": False},
    "sd2": {**_TINY_SD_UNET, "attention_head_dim": (2, 4), "use_linear_projection": True},
    "sdxl": {"sample_size": 8, "in_channels": 4, "out_channels": 4, "layers_per_block": 1,
             "block_out_channels": (16, 32), "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D"),
             "up_block_types": ("CrossAttnUpBlock2D", "UpBlock2D"), "attention_head_dim": (2, 4),
             "use_linear_projection": True, "transformer_layers_per_block": (1, 2), "addition_embed_type": "text_time",
             "addition_time_embed_dim": 8,
             "projection_class_embeddings_input_dim": 6 * 8 + 32,  # 6 time ids × 8 + the pooled embedding
             "cross_attention_dim": 32 + 32, "norm_num_groups": 8},  # both encoders' hidden states, concatenated
}
# the tiny transformer denoisers (as in diffusers' own pipeline tests, ``get_dummy_components``): 8x8x4 latents
TINY_TRANSFORMERS = {
    "sd3": {"sample_size": 8, "patch_size": 1, "in_channels": 4, "out_channels": 4, "num_layers": 2,
            "attention_head_dim": 8, "num_attention_heads": 4, "joint_attention_dim": 64, "caption_projection_dim": 32,
            "pooled_projection_dim": 64, "pos_embed_max_size": 64},  # CLIP-L/G hidden 32 + 32; pooled 32 + 32
    "flux": {"patch_size": 1, "in_channels": 16, "num_layers": 1, "num_single_layers": 1, "attention_head_dim": 16,
             "num_attention_heads": 2, "joint_attention_dim": 32, "pooled_projection_dim": 32,
             "guidance_embeds": True, "axes_dims_rope": (4, 4, 8)},  # 4 latent channels packed 2x2
    "pixart": {"sample_size": 8, "num_layers": 2, "patch_size": 2, "attention_head_dim": 8, "num_attention_heads": 3,
               "caption_channels": 32, "in_channels": 4, "cross_attention_dim": 24, "out_channels": 8,
               "attention_bias": True, "activation_fn": "gelu-approximate", "num_embeds_ada_norm": 1000,
               "norm_type": "ada_norm_single", "norm_elementwise_affine": False, "norm_eps": 1e-6},
}
TINY_T5 = {"d_model": 32, "d_kv": 8, "d_ff": 64, "num_layers": 2, "num_heads": 4, "relative_attention_num_buckets": 8}
TINY_MAX_SEQUENCE_LENGTH = 16  # the T5 prompt length of the tiny transformer pipelines
TINY_SCHEDULERS = {"sdxl": "EulerDiscreteScheduler", "sd3": "FlowMatchEulerDiscreteScheduler",
                   "flux": "FlowMatchEulerDiscreteScheduler", "pixart": "DPMSolverMultistepScheduler"}  # else DDIM
TRANSFORMER_FAMILIES = {"SD3Transformer2DModel": "sd3", "FluxTransformer2DModel": "flux",
                        "PixArtTransformer2DModel": "pixart"}  # a saved transformer's _class_name → its family

# -- data and schedules -----------------------------------------------------------------------------------------------
NUM_OBJECTS = (1, 2)                               # data.num_objects (or null: both)
NUM_STEPS = (1, 1000)                              # schedule.num_steps

# -- explainers -------------------------------------------------------------------------------------------------------
OUTCOME_TARGETS = ("output", "paper", "next_latent", "x0", "final")   # explainer=rise / evaluate.target
RISE_MASKS = ("pixel", "grid")
RISE_SCORES = ("scalar", "map")
RISE_ESTIMATORS = ("rise", "centred", "coverage")
CAPTUM_TARGETS = ("output", "next_latent", "x0")  # integrated_gradients, gradient_shap, occlusion, lime
CAPTUM_BASELINES = ("zeros", "blur", "noise")
CHANNEL_REDUCES = ("sum", "abs_sum")
IG_METHODS = ("gausslegendre", "riemann_trapezoid", "riemann_left", "riemann_right", "riemann_middle")
LIME_SUPERPIXELS = ("quickshift", "slic")
GRADIENT_TARGETS = ("noise_sum", "similarity")     # explainer=cam and attention_relevance
CAM_UPSAMPLE = ("latent", "image")
# explainer=cam modules: dotted name patterns (``*`` = one segment) and these shorthands
CAM_MODULE_SETS = {
    "resnets": ("down_blocks.*.resnets.*", "mid_block.resnets.*", "up_blocks.*.resnets.*"),
    # the authors' set: every down/up-block resnet, attention (Transformer2DModel) and sampler, the mid block's resnets
    "paper": ("down_blocks.*.resnets.*", "down_blocks.*.attentions.*", "down_blocks.*.downsamplers.*",
              "mid_block.resnets.*", "up_blocks.*.resnets.*", "up_blocks.*.attentions.*", "up_blocks.*.upsamplers.*"),
}
# DF-CAM's default ``modules: auto``: the paper's set on UNets; on transformers the first half of the blocks (in
# forward order), which beat every block and the second half on shapes_mmdit (README, "Two architectures")
CAM_AUTO = "auto"
# DF-CAM's ``paper`` rule on transformers (no resnets or samplers there): every block's image-stream output
CAM_TRANSFORMER_RULES = {"sd3": ("transformer_blocks.*",),
                         "flux": ("transformer_blocks.*", "single_transformer_blocks.*"),
                         "pixart": ("transformer_blocks.*",)}
CLASSIFIER_METHODS = ("integrated_gradients", "gradient_shap", "occlusion")  # pipeline=noised_classifier attribute


def module_matches(name: str, pattern: str) -> bool:
    """Dotted-name match where ``*`` stands for one path segment (``up_blocks.*.resnets.*``)."""
    parts, pats = name.split("."), pattern.split(".")
    return len(parts) == len(pats) and all(fnmatch.fnmatchcase(a, b) for a, b in zip(parts, pats))


def module_patterns(modules, family: str = "unet") -> list[str]:
    """``explainer.modules`` (a pattern, a shorthand or a list of them) as a list of dotted patterns; ``paper`` on a
    transformer ``family`` is its rule in :data:`CAM_TRANSFORMER_RULES`; ``auto`` on a UNet is ``paper`` (on a
    transformer, the first half of its blocks: resolved by DF-CAM, which knows the depth)."""
    sets = {**CAM_MODULE_SETS, CAM_AUTO: CAM_MODULE_SETS["paper"]} if family == "unet" else \
        {"paper": CAM_TRANSFORMER_RULES[family]}
    return [p for m in ([modules] if isinstance(modules, str) else modules) for p in sets.get(m, (m,))]


# -- similarities -----------------------------------------------------------------------------------------------------
SIMILARITIES = ("ssim", "structure", "luminance", "contrast", "cosine", "fid")
SSIM_VARIANTS = ("textbook", "authors")
AUTHORS_KERNEL_SIZE = 15  # X-Diffusion: SSIM(15, ...)


def ssim_window_size(sigma: float) -> int:
    """The Gaussian window size torchmetrics (and skimage) use for ``sigma``: full SSIM's only textbook size."""
    return 2 * int(3.5 * sigma + 0.5) + 1


# -- evaluation (pipeline=evaluate) -----------------------------------------------------------------------------------
SUBSTRATES = ("zeros", "blur", "mean", "renoise")  # evaluate.substrate: what deletion puts in place of a pixel
PROTOCOLS = ("per_prompt", "paper")
EVALUATE_BASELINES = ("random",)
SANITY_STAGES = ("cascade", "full")
N_POINTS = (2, 10_000)                             # evaluate.n_points
INPUT_CONTROLS = ("magnitude", "edges")             # control maps computed from z_t alone
CONTROLS = (*INPUT_CONTROLS, "randomised")         # evaluate.controls: input-only maps, the randomised model's map
SANITY_SIMILARITIES = ("spearman", "abs_spearman", "ssim")  # evaluate.sanity_similarity (as Quantus offers)
SANITY_LINE = 0.3                                  # sanity verdict: passes if the CI's upper end is below it

# -- runner -----------------------------------------------------------------------------------------------------------
ACCELERATORS = ("cpu", "gpu", "cuda", "mps", "auto")

# -- batching (batch_size: auto) ------------------------------------------------------------------------------------
AUTO_BATCH_START = 64  # batch_size: auto starts here and halves on out-of-memory
BATCH_SIZE_ALLOWED = f"an integer >= 1 or auto (start at {AUTO_BATCH_START}, halve on out-of-memory)"

# -- single-image FID's feature network (similarity=fid) -------------------------------------------------------------
FID_FEATURES = ("auto", "shapes", "dinov2")        # similarity.features; auto: shapes on the Shapes world, else dinov2
DINOV2_HUB_ID = "facebook/dinov2-small"            # similarity.dinov2_path's default (a hub id or a local directory)
SHAPES_MODELS = ("shapes", "shapes_grounded")      # the model= configs of the Shapes world
SHAPES_MODEL_DIRS = "shapes-*"                     # ... and its model directories under paths.models_dir


def shapes_world(model_choice: str | None, model_path: str | None, models_dir: str | None) -> bool:
    """Whether the model is the embedded Shapes world: ``model=shapes | shapes_grounded``, or a model whose path is
    a ``shapes-*`` directory of ``models_dir`` (what ``similarity.features=auto`` gives the Shapes CNN to)."""
    import os.path

    if model_choice in SHAPES_MODELS:
        return True
    if not model_path or not models_dir:
        return False
    path = os.path.realpath(os.path.expanduser(str(model_path)))
    return os.path.dirname(path) == os.path.realpath(os.path.expanduser(str(models_dir))) and \
        fnmatch.fnmatchcase(os.path.basename(path), SHAPES_MODEL_DIRS)


def fid_features(features: str, shapes: bool) -> str:
    """The feature network ``similarity.features`` names: ``auto`` is ``shapes`` on the Shapes world (``shapes``:
    :func:`shapes_world`), ``dinov2`` on any other model; it never picks the Shapes CNN for another model."""
    return ("shapes" if shapes else "dinov2") if features == "auto" else features
