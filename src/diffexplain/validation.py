"""One validation pass over the whole composed config, before anything heavy is imported or loaded.

Every config node built from a ``_target_`` has a spec here: its keys and a rule per key (type, range, enum, file).
An unknown key (a typo, or a ``+key=`` addition) is an error naming the nearest valid key. Cross-field rules follow
(steps × num_steps, seeds, output directory). Each constructor keeps its own checks as the second line; these specs
mirror them so a bad value is rejected in well under a second instead of after the model loads.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from diffexplain.config import options as _options
from diffexplain.errors import UserError, check

Rule = Callable[[str, object], None]
SEED_MAX = _options.SEED_MAX
FREE = object()  # a node whose keys are free (kwargs passed through)


# -- rules ------------------------------------------------------------------------------------------
def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool)) and math.isfinite(v)


def integer(lo: int | None = None, hi: int | None = None, null: bool = False) -> Rule:
    if lo is not None and hi is not None:
        allowed = f"an integer in [{lo}, {hi}]"
    else:
        allowed = "an integer" + (f" >= {lo}" if lo is not None else "") + (f" <= {hi}" if hi is not None else "")
    allowed += " or null" if null else ""

    def rule(key, v):
        if v is None and null:
            return
        check(_is_int(v) and (lo is None or v >= lo) and (hi is None or v <= hi), key, v, allowed)
    return rule


def number(lo: float | None = None, hi: float | None = None, open_lo: bool = False, open_hi: bool = False,
           null: bool = False, allowed: str | None = None) -> Rule:
    if allowed is None:
        bounds = ([f"{'>' if open_lo else '>='} {lo:g}"] if lo is not None else []) + \
                 ([f"{'<' if open_hi else '<='} {hi:g}"] if hi is not None else [])
        allowed = "a finite number" + (" " + " and ".join(bounds) if bounds else "") + (" or null" if null else "")

    def rule(key, v):
        if v is None and null:
            return
        ok = _is_number(v)
        if ok and lo is not None:
            ok = v > lo if open_lo else v >= lo
        if ok and hi is not None:
            ok = v < hi if open_hi else v <= hi
        check(ok, key, v, allowed)
    return rule


def choice(*values, null: bool = False) -> Rule:
    allowed = f"one of {list(values)}" + (" or null" if null else "")

    def rule(key, v):
        check((v is None and null) or (isinstance(v, (str, int)) and not isinstance(v, bool) and v in values),
              key, v, allowed)
    return rule


def boolean(key, v) -> None:
    check(isinstance(v, bool), key, v, "true or false")


def string(null: bool = False) -> Rule:
    def rule(key, v):
        check(isinstance(v, str) or (v is None and null), key, v, "a string" + (" or null" if null else ""))
    return rule


def text(key, v) -> None:
    check(isinstance(v, str), key, v, "a string (quote numbers: data.negative_prompt='\"123\"')")


def int_list(lo: int | None = None, hi: int | None = None, nonempty: bool = True, null: bool = False,
             single: bool = False) -> Rule:
    allowed = f"a {'non-empty ' if nonempty else ''}list of integers" + \
              (f" in [{lo}, {hi})" if lo is not None and hi is not None else "") + (" or null" if null else "")

    def rule(key, v):
        if v is None and null:
            return
        if single and _is_int(v):
            v = [v]
        check(isinstance(v, list) and (len(v) > 0 or not nonempty)
              and all(_is_int(x) and (lo is None or x >= lo) and (hi is None or x < hi) for x in v), key, v, allowed)
    return rule


def str_list(nonempty: bool = True, single: bool = False, null: bool = False) -> Rule:
    def rule(key, v):
        if v is None and null:
            return
        if single and isinstance(v, str):
            v = [v]
        check(isinstance(v, list) and (len(v) > 0 or not nonempty) and all(isinstance(x, str) and x.strip() for x in v),
              key, v, "a non-empty list of non-empty strings, e.g. '[a red circle, a blue square]'")
    return rule


def batch_size(key, v) -> None:
    check(v == "auto" or (_is_int(v) and v >= 1), key, v, _options.BATCH_SIZE_ALLOWED)


def n_masks(key, v) -> None:
    check(v == "auto" or (_is_int(v) and v >= 1), key, v, "an integer >= 1 or auto (until explainer.min_reliability)")


def controls(key, v) -> None:
    v = [] if v is None else [v] if isinstance(v, str) else v
    check(isinstance(v, list) and all(c in _options.CONTROLS for c in v), key, v,
          f"a list of {list(_options.CONTROLS)} (or [] for none)")


def mapping(key, v) -> None:
    check(isinstance(v, dict), key, v, "a mapping {key: value}")


def any_value(key, v) -> None:
    """Anything (checked where it is used)."""


def json_file(kind: str) -> Rule:
    def rule(key, v):
        if v is None:
            return
        p = Path(str(v))
        check(p.is_file(), key, v, f"an existing JSON file ({kind})")
        try:
            data = json.loads(p.read_text())
        except (OSError, UnicodeDecodeError) as e:
            raise UserError(key, v, f"a readable JSON file ({type(e).__name__})") from e
        except json.JSONDecodeError as e:
            raise UserError(key, v, f"valid JSON; line {e.lineno}, column {e.colno}: {e.msg}") from e
        check(isinstance(data, dict) and all(isinstance(x, dict) for x in data.values()), key, v, kind)
    return rule


def prompt_file(key, v) -> None:
    if v is None:
        return
    from diffexplain.items import read_prompt_file

    read_prompt_file(str(v))


def odd_kernel(key, v) -> None:
    check(v is None or (_is_int(v) and v >= 1 and v % 2 == 1), key, v,
          "an odd integer >= 1 (or null for the variant's default)")


def descending_timesteps(key, v) -> None:
    """``schedule=custom``: the timesteps in the order the sampler visits them."""
    int_list(0, _options.NUM_TRAIN_TIMESTEPS)(key, v)
    check(all(a > b for a, b in zip(v, v[1:])), key, v,
          "strictly decreasing timesteps without repeats (the order they are visited), e.g. [999, 500, 1]")


def safetensors_file(path: Path, key: str, value) -> None:
    """A complete safetensors file, from its header alone: 8 bytes of header length (little-endian), the JSON header,
    then the data its tensors' ``data_offsets`` reach (a truncated download or a Git LFS pointer fails here)."""
    size = path.stat().st_size
    with path.open("rb") as f:
        n = int.from_bytes(f.read(8), "little") if size >= 8 else -1
    check(0 < n <= 100_000_000, key, value, f"a readable model: {path} is not a safetensors file (a Git LFS "
          "pointer? git lfs pull fetches it)")
    check(n <= size - 8, key, value, f"a complete model: {path} is truncated ({size} bytes; its header alone needs "
          f"{8 + n})")
    try:
        with path.open("rb") as f:
            f.seek(8)
            header = json.loads(f.read(n))
        end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
    except (OSError, ValueError, TypeError, KeyError, IndexError, AttributeError) as e:
        raise UserError(key, value, f"a readable model: {path} has no valid safetensors header") from e
    check(size >= 8 + n + end, key, value,
          f"a complete model: {path} is truncated ({size} bytes; its header needs {8 + n + end})")


def feature_net(key, v) -> None:
    """``similarity=fid``'s feature network: null (random convolutions) or a ``_target_`` node; its ``path`` must
    exist (the Shapes classifier's: config.json and complete weights)."""
    if v is None:
        return
    mapping(key, v)
    if v.get("path") is None:
        return
    path = Path(str(v["path"])).expanduser()
    if str(v.get("_target_", "")).endswith("classifier_features"):
        check(path.is_dir() and (path / "config.json").is_file() and (path / "model.safetensors").is_file(),
              f"{key}.path", v["path"], "the Shapes classifier's directory, with config.json and model.safetensors "
              "(python run.py pipeline=train_world writes it)")
        safetensors_file(path / "model.safetensors", f"{key}.path", v["path"])
    else:
        check(path.exists(), f"{key}.path", v["path"], "an existing file or directory")


# -- specs per _target_ -------------------------------------------------------------------------------
HYDRA_KEYS = ("_target_", "_convert_", "_recursive_", "_args_")
STEPS = int_list(nonempty=True, null=True, single=True)
SEED = integer(0, SEED_MAX - 1)
GUIDANCE = number(0, _options.GUIDANCE_MAX,
                  allowed="a finite number in [0, 100] (7.5 is Stable Diffusion's usual scale)")
SCHEDULER = choice(*_options.SCHEDULER_CHOICES, null=True)
DTYPE = choice(*_options.DTYPES)
EXPLAINER_COMMON = {"steps": STEPS, "seed": SEED, "_partial_": boolean}
WINDOWED = {"kernel_size": odd_kernel, "sigma": number(0, open_lo=True),
            "data_range": number(0, open_lo=True, null=True), "variant": choice(*_options.SSIM_VARIANTS)}
CAPTUM_COMMON = {"target": choice(*_options.CAPTUM_TARGETS), "baseline": choice(*_options.CAPTUM_BASELINES),
                 "channel_reduce": choice(*_options.CHANNEL_REDUCES), "internal_batch_size": batch_size,
                 **EXPLAINER_COMMON}

SPECS: dict[str, dict] = {
    # model
    "diffexplain.models.DiffusionModel.from_pretrained": {
        "path": string(), "dtype": DTYPE, "scheduler": SCHEDULER, "scheduler_config": FREE, "eta": number(0, 1),
        "guidance_scale": GUIDANCE, "resolution": integer(*_options.RESOLUTION, null=True), "load_kwargs": FREE,
        "true_cfg_scale": GUIDANCE, "max_sequence_length": integer(1, null=True)},
    "diffexplain.models.tiny_model": {"seed": SEED, "guidance_scale": GUIDANCE, "scheduler": SCHEDULER,
                                      "variant": choice(*_options.MODEL_VARIANTS), "dtype": DTYPE,
                                      "scheduler_config": FREE, "eta": number(0, 1),
                                      "resolution": integer(*_options.RESOLUTION, null=True),
                                      "true_cfg_scale": GUIDANCE},
    # data
    "diffexplain.runner.data.PromptDataModule": {
        "prompts": str_list(null=True), "prompt_file": prompt_file, "num_prompts": integer(1, null=True),
        "num_objects": choice(*_options.NUM_OBJECTS, null=True), "seeds": int_list(0, SEED_MAX),
        "negative_prompt": text, "batch_size": integer(1), "offset": integer(0)},  # offset < the prompts: cross_checks
    # schedule
    "diffexplain.schedules.Uniform": {"num_steps": integer(*_options.NUM_STEPS)},
    "diffexplain.schedules.ExponentialEarly": {"num_steps": integer(*_options.NUM_STEPS), "lam": number(0)},
    "diffexplain.schedules.ExponentialLate": {"num_steps": integer(*_options.NUM_STEPS), "lam": number(0)},
    "diffexplain.schedules.Custom": {"timesteps": descending_timesteps},
    # explainers
    "diffexplain.explainers.RISE": {
        "masks": choice(*_options.RISE_MASKS), "grid_size": integer(1), "n_masks": n_masks,
        "min_reliability": number(0, 1, open_lo=True, open_hi=True, allowed="a number in (0, 1)"),
        "max_masks": integer(2),
        "p": number(0, 1, open_lo=True, open_hi=True, allowed="a probability in (0, 1)"), "batch_size": batch_size,
        "target": choice(*_options.OUTCOME_TARGETS), "score": choice(*_options.RISE_SCORES),
        "estimator": choice(*_options.RISE_ESTIMATORS),
        **EXPLAINER_COMMON},
    "diffexplain.explainers.DFCAM": {"modules": str_list(single=True), "target": choice(*_options.GRADIENT_TARGETS),
                                     "upsample": choice(*_options.CAM_UPSAMPLE), **EXPLAINER_COMMON},
    "diffexplain.explainers.AttentionRelevanceExplainer": {
        "target": choice(*_options.GRADIENT_TARGETS),
        "roles_file": json_file("a JSON object mapping each prompt to {word: role}"), **EXPLAINER_COMMON},
    "diffexplain.explainers.CrossAttentionExplainer": {
        "roles_file": json_file("a JSON object mapping each prompt to {word: role}"), "blocks": str_list(null=True),
        **EXPLAINER_COMMON},
    "diffexplain.explainers.ConceptAttentionExplainer": {
        "concepts": str_list(nonempty=False), "layers": int_list(0, null=True),
        "roles_file": json_file("a JSON object mapping each prompt to {word: role}"), **EXPLAINER_COMMON},
    "diffexplain.explainers.IntegratedGradientsExplainer": {
        "n_steps": integer(1), "method": choice(*_options.IG_METHODS), **CAPTUM_COMMON},
    "diffexplain.explainers.GradientShapExplainer": {"n_samples": integer(1), "stdevs": number(0), **CAPTUM_COMMON},
    "diffexplain.explainers.OcclusionExplainer": {"window": integer(1), "stride": integer(1), **CAPTUM_COMMON},
    "diffexplain.explainers.LimeExplainer": {
        "n_samples": integer(2), "superpixels": choice(*_options.LIME_SUPERPIXELS), "superpixel_kwargs": FREE,
        "alpha": number(0, open_lo=True), **CAPTUM_COMMON},
    "diffexplain.explainers.RandomExplainer": dict(EXPLAINER_COMMON),
    # similarities
    "diffexplain.similarity.SSIM": dict(WINDOWED),
    "diffexplain.similarity.Structure": dict(WINDOWED),
    "diffexplain.similarity.Luminance": dict(WINDOWED),
    "diffexplain.similarity.Contrast": dict(WINDOWED),
    "diffexplain.similarity.Cosine": {},
    "diffexplain.similarity.SingleImageFID": {"scale": number(0, open_lo=True), "eps": number(0, open_lo=True),
                                              "feature_net": feature_net,
                                              "features": choice(*_options.FID_FEATURES),
                                              "dinov2_path": string(), "model_path": string(null=True),
                                              "models_dir": string(null=True)},
    # pipelines
    "diffexplain.pipelines.explain.ExplainPipeline": {"explainer": any_value, "similarity": any_value},
    "diffexplain.pipelines.generate.GeneratePipeline": {},
    "diffexplain.pipelines.evaluate.EvaluatePipeline": {"explainer": any_value, "similarity": any_value,
                                                        "evaluate": any_value, "models_dir": string()},
    "diffexplain.runner.report_job.ReportJob": {"sweep_dir": string(), "bootstrap": integer(100), "logger": any_value},
    # runner and loggers
    "lightning.Trainer": {"accelerator": choice(*_options.ACCELERATORS), "devices": any_value,
                          "strategy": any_value, "enable_progress_bar": boolean, "precision": any_value,
                          "num_nodes": integer(1), "callbacks": any_value},
    "lightning.pytorch.loggers.WandbLogger": {"project": string(), "name": string(null=True),
                                              "group": string(null=True), "offline": boolean, "log_model": boolean,
                                              "entity": string(null=True), "tags": any_value},
    "lightning.pytorch.loggers.CSVLogger": {"save_dir": string(), "name": string()},
}


# -- pipeline=noised_classifier (paper B): its pipeline, image data and classifiers -------------------
def nested(spec: dict) -> Rule:
    """A sub-mapping whose keys are checked against ``spec``."""
    def rule(key, v):
        mapping(key, v)
        check_node(key, v, spec)
    return rule


def label_map(key, v) -> None:
    if v is None:
        return
    from diffexplain.classifiers.labels import read_label_map

    read_label_map(v)


BETA_SCHEDULES = _options.BETA_SCHEDULES


def noise_schedule(key, v) -> None:
    path = Path(str(v))
    check(v in BETA_SCHEDULES or (path / "scheduler_config.json").is_file()
          or (path / "scheduler" / "scheduler_config.json").is_file(), key, v,
          f"one of {list(BETA_SCHEDULES)} or a directory with a scheduler_config.json")


def noise_timesteps(key, v) -> None:
    check(_is_int(v) or (isinstance(v, list) and len(v) > 0 and all(_is_int(t) and t >= 0 for t in v)), key, v,
          "an integer >= 1 (evenly spaced over the training steps) or a non-empty list of timesteps >= 0")
    check(not _is_int(v) or v >= 1, key, v, "an integer >= 1 or a list of timesteps")


def model_dir(hub: bool) -> Rule:
    """A model directory; with ``hub``, a hub id (``org/name``) is accepted too, and only what is written as a path
    (absolute, ``./``, ``../``, ``~``) must exist."""
    def rule(key, v):
        string()(key, v)
        as_path = not hub or v.startswith(("/", "./", "../", "~")) or Path(v).exists()
        check(not as_path or Path(v).expanduser().is_dir(), key, v,
              "an existing model directory" + (" or a hub id (org/name)" if hub else ""))
    return rule


NOISED_CLASSIFIER = {
    "seed": SEED, "class_figures": integer(0),
    "noise": nested({"schedule": noise_schedule, "timesteps": noise_timesteps, "repeats": integer(1), "clip": boolean,
                     "batch_size": integer(1)}),
    "curve": nested({"smooth": number(0), "bootstrap": integer(10), "confidence": number(0, 1, True, True),
                     "accuracy_level": number(0, 1, open_hi=True)}),
    "attribute": nested({
        "methods": lambda k, v: check(isinstance(v, list) and all(
            m in _options.CLASSIFIER_METHODS for m in v) and len(set(v)) == len(v), k, v,
            f"a list of distinct methods among {list(_options.CLASSIFIER_METHODS)} (empty: none)"),
        "offsets": int_list(nonempty=False), "timesteps": int_list(0, nonempty=False), "band": integer(1),
        "ig_steps": integer(1), "shap_samples": integer(1), "shap_baselines": integer(1),
        "window": integer(1, null=True), "stride": integer(1, null=True), "internal_batch_size": integer(1),
        "baseline": number(-1, 1)}),
}
SPECS.update({
    "diffexplain.pipelines.noised_classifier.NoisedClassifierPipeline": NOISED_CLASSIFIER,
    "diffexplain.runner.image_data.ShapesImageDataModule": {
        "per_class": integer(1), "seed": SEED, "classes": str_list(null=True), "batch_size": integer(1)},
    "diffexplain.runner.image_data.ImageFolderDataModule": {
        "root": string(), "per_class": integer(1, null=True), "classes": str_list(null=True), "batch_size": integer(1)},
    "diffexplain.classifiers.ShapesImageClassifier.from_pretrained": {"path": model_dir(hub=False),
                                                                      "label_map": label_map},
    "diffexplain.classifiers.HFImageClassifier.from_pretrained": {"path": model_dir(hub=True), "label_map": label_map},
})


# -- pipeline=train_world: mirrors the dataclasses of pipelines/world_training (tests/test_validation.py compares the
# keys), so a bad value is refused before torch loads
POSITIVE = number(0, open_lo=True)
PER_STAGE = {"steps": integer(1), "batch_size": integer(1), "lr": POSITIVE}
WORLD_TRAINING = {
    "model_dir": string(), "classifier_dir": string(), "seed": SEED, "scenes": integer(1), "resume": boolean,
    "checkpoint_every": integer(1), "accelerator": choice(*_options.ACCELERATORS),
    "vae": nested({**PER_STAGE, "block_out_channels": int_list(1), "norm_num_groups": integer(1),
                   "kl_weight": number(0)}),
    "classifier": nested({**PER_STAGE, "scenes": integer(1), "held_out": integer(1),
                          "channels": lambda k, v: check(isinstance(v, list) and len(v) == 3 and all(
                              _is_int(c) and c >= 1 for c in v), k, v, "three integers >= 1, e.g. [32, 32, 64]")}),
    "denoiser": nested({**PER_STAGE, "block_out_channels": int_list(1), "attention_heads": integer(1),
                        "norm_num_groups": integer(1), "text_hidden": integer(1), "text_layers": integer(1),
                        "text_heads": integer(1), "p_uncond": number(0, 1, open_hi=True),
                        "prediction_type": choice(*_options.PREDICTION_TYPES),
                        "ema_decay": number(0, 1, open_lo=True, open_hi=True, null=True,
                                            allowed="a number in (0, 1), or null"),
                        "ema_start": integer(0), "grounding_loss": number(0)}),
    "evaluation": nested({"samples": integer(1), "num_steps": integer(*_options.NUM_STEPS), "guidance_scale": GUIDANCE,
                          "scheduler": choice(*_options.SCHEDULER_CHOICES, null=True),
                          "max_sequence_length": integer(1, null=True),
                          "compare_guidance": lambda k, v: check(isinstance(v, list) and all(
                              _is_number(g) and 0 <= g <= _options.GUIDANCE_MAX for g in v), k, v,
                              "a list of guidance scales in [0, 100]")}),
}
SPECS["diffexplain.pipelines.world_training.job.WorldTraining"] = WORLD_TRAINING
SPECS["diffexplain.pipelines.world_training.mmdit.MMDiTWorldTraining"] = {
    **{k: WORLD_TRAINING[k] for k in ("model_dir", "classifier_dir", "seed", "scenes", "resume", "checkpoint_every",
                                      "accelerator", "evaluation")},
    "vae_dir": string(),
    "denoiser": nested({**PER_STAGE, "patch_size": choice(1, 2, 4, 8, 16), "layers": integer(1), "heads": integer(1),
                        "head_dim": integer(1), "text_hidden": integer(1), "text_layers": integer(1),
                        "text_heads": integer(1), "max_sequence_length": integer(1),
                        "p_uncond": number(0, 1, open_hi=True), "shift": POSITIVE,
                        "ema_decay": number(0, 1, open_lo=True, open_hi=True, null=True,
                                            allowed="a number in (0, 1), or null"),
                        "ema_start": integer(0)}),
}


def check_world_training(pipeline: dict | None) -> None:
    """The rules of pipeline=train_world that span keys: GroupNorm groups divide the channels, attention heads divide
    the text width, the weight average starts within the steps."""
    if not pipeline or not pipeline.get("_target_", "").endswith("WorldTraining"):
        return
    for stage in ("vae", "denoiser"):
        cfg = pipeline.get(stage) or {}
        groups, channels = cfg.get("norm_num_groups"), cfg.get("block_out_channels")
        if groups and channels:
            check(all(c % groups == 0 for c in channels), f"pipeline.{stage}.norm_num_groups", groups,
                  f"a divisor of every block's channels {channels} (GroupNorm)")
    d = pipeline.get("denoiser") or {}
    if d.get("text_hidden") and d.get("text_heads"):
        check(d["text_hidden"] % d["text_heads"] == 0, "pipeline.denoiser.text_heads", d["text_heads"],
              f"a divisor of pipeline.denoiser.text_hidden={d['text_hidden']}")
    if d.get("ema_decay") is not None and "ema_start" in d and "steps" in d:
        check(d["ema_start"] < d["steps"], "pipeline.denoiser.ema_start", d["ema_start"],
              f"a step in [0, pipeline.denoiser.steps={d['steps']}), or pipeline.denoiser.ema_decay=null")


def _class_names(data: dict) -> list[str] | None:
    """The data's class names, where listing them is cheap (Shapes classes, an image folder's subfolders)."""
    target = data.get("_target_", "")
    if target.endswith("ShapesImageDataModule"):
        from diffexplain.items import shapes_labels

        return data.get("classes") or shapes_labels()
    if target.endswith("ImageFolderDataModule"):
        from diffexplain.items import image_folder_items

        items = image_folder_items(data["root"], data.get("per_class"), data.get("classes"))
        return list(dict.fromkeys(item.label for item in items))
    return None


def _label_names(classifier: dict) -> list[str] | None:
    """The classifier's label names, where they can be read without loading it: the Shapes classifier's, the
    config.json of a local transformers directory or of a hub model already in the local cache; None otherwise (a
    model not downloaded yet is checked image by image once it has loaded)."""
    target = classifier.get("_target_", "")
    if target.endswith("ShapesImageClassifier.from_pretrained"):
        from diffexplain.items import shapes_labels

        return shapes_labels()
    if not target.endswith("HFImageClassifier.from_pretrained"):
        return None
    config = Path(str(classifier.get("path"))) / "config.json"
    if not config.is_file():
        from huggingface_hub import try_to_load_from_cache

        try:
            cached = try_to_load_from_cache(str(classifier.get("path")), "config.json")
        except ValueError:  # not a valid hub id either; the loader reports it
            return None
        if not isinstance(cached, str):
            return None
        config = Path(cached)
    if config.is_file():
        try:
            id2label = json.loads(config.read_text()).get("id2label") or {}
            return [str(id2label[k]) for k in sorted(id2label, key=int)]
        except (OSError, ValueError, TypeError, AttributeError):
            return None  # the loader reports an unreadable model
    return None


def check_class_labels(nodes: dict) -> None:
    """The image folder must hold readable images in class folders, and every class of the data must be a label of
    the classifier (through ``classifier.label_map``)."""
    data, classifier = nodes.get("data"), nodes.get("classifier")
    names = _class_names(data) if data else None
    if not classifier:
        return
    labels = _label_names(classifier)
    if names is None or labels is None:
        return
    from diffexplain.classifiers.labels import read_label_map, resolve_label

    mapping_ = read_label_map(classifier.get("label_map"))
    for name in names:
        resolve_label(name, labels, mapping_)
OUTPUT = {"x0_steps": choice(*_options.X0_STEPS), "x0_quality": integer(*_options.X0_QUALITY, null=True),
          "heatmap_dtype": choice(*_options.HEATMAP_DTYPES), "figures": integer(0)}
TOP = {"seed": SEED, "resume": choice(*_options.RESUME)}
EVALUATE = {"target": choice(*_options.OUTCOME_TARGETS), "similarity": choice(*_options.SIMILARITIES, null=True),
            "n_points": integer(*_options.N_POINTS), "substrate": choice(*_options.SUBSTRATES),
            "batch_size": batch_size,
            "baselines": any_value, "protocol": choice(*_options.PROTOCOLS), "sanity": boolean,
            "sanity_stages": choice(*_options.SANITY_STAGES), "controls": controls,
            "sanity_similarity": choice(*_options.SANITY_SIMILARITIES),
            "bootstrap": integer(100)}
GROUPS = ("model", "data", "classifier", "schedule", "explainer", "similarity", "pipeline", "runner", "logger")


def _nearest(key: str, candidates: list[str]) -> str:
    near = difflib.get_close_matches(key.rsplit(".", 1)[-1], candidates, n=1, cutoff=0.5)
    return f"; nearest: {key.rsplit('.', 1)[0]}.{near[0]}" if near else f"; valid keys: {', '.join(sorted(candidates))}"


def check_node(prefix: str, node: dict, spec, choice_name: str | None = None) -> None:
    """Check every key of ``node`` against ``spec`` (unknown keys, then each rule)."""
    if spec is FREE:
        return
    for key, value in node.items():
        if key in HYDRA_KEYS:
            continue
        full = f"{prefix}.{key}"
        if key not in spec:
            where = f" of {prefix}={choice_name}" if choice_name else ""
            raise UserError(full, value, f"not a key{where}{_nearest(full, [k for k in spec if k != '_partial_'])}")
        if spec[key] is not FREE:
            spec[key](full, value)


def _container(cfg: DictConfig, key: str):
    node = cfg.get(key)
    if node is None:
        return None
    missing = [k for k in node if OmegaConf.is_missing(node, k)]
    if missing:
        choice_name = _choices().get(key)
        raise UserError(f"{key}.{missing[0]}", "???", f"required{f' for {key}={choice_name}' if choice_name else ''}; "
                        f"set it on the command line, e.g. {key}.{missing[0]}=...")
    try:
        return OmegaConf.to_container(node, resolve=True)
    except Exception as e:  # an interpolation that cannot resolve
        raise UserError(key, "...", f"a config that resolves ({type(e).__name__}: {str(e).splitlines()[0]})") from e


def _choices() -> dict:
    try:
        from hydra.core.hydra_config import HydraConfig

        return dict(HydraConfig.get().runtime.choices)
    except ValueError:
        return {}


def num_steps(schedule: dict | None) -> int | None:
    if not schedule:
        return None
    if "timesteps" in schedule:
        return len(schedule["timesteps"])
    return schedule.get("num_steps")


def check_output_dir(path: str) -> None:
    """The job's output directory must be a writable directory on a real file system."""
    p = Path(path)
    check(not str(p.resolve()).startswith(("/proc", "/sys", "/dev")), "hydra.run.dir", path,
          "a directory on a real file system (not under /proc, /sys or /dev)")
    check(p.is_dir() and os.access(p, os.W_OK), "hydra.run.dir", path, "a writable directory")


def validate(cfg: DictConfig) -> None:
    """Reject a bad config with one :class:`UserError` (see the module docstring)."""
    choices = _choices()
    if "sweep_dir" in cfg and OmegaConf.is_missing(cfg, "sweep_dir"):
        raise UserError("sweep_dir", "???",
                        "required for pipeline=report: the multirun (or run) directory to report on")
    for key, rule in TOP.items():
        if key in cfg:
            rule(key, cfg[key])
    if cfg.get("output") is not None:
        check_node("output", _container(cfg, "output"), OUTPUT)
    if cfg.get("evaluate") is not None:
        check_node("evaluate", _container(cfg, "evaluate"), EVALUATE)
    nodes = {}
    for group in GROUPS:
        node = _container(cfg, group)
        if not isinstance(node, dict):
            continue
        nodes[group] = node
        target = node.get("_target_")
        spec = SPECS.get(target)
        if spec is not None:
            check_node(group, node, spec, choices.get(group))
    cross_checks(nodes)
    if cfg.get("paths") is not None and not OmegaConf.is_missing(cfg.paths, "output_dir"):
        try:
            out = cfg.paths.output_dir
        except Exception:
            out = None
        if out:
            check_output_dir(out)


def visible_gpus() -> int:
    """CUDA GPUs torch can use; on a Linux machine without a GPU device node (NVIDIA, WSL's dxg, ROCm's kfd) that is
    known without importing torch, so the refusal stays fast."""
    if sys.platform.startswith("linux") and not any(
            next(Path("/dev").glob(pattern), None) for pattern in ("nvidia[0-9]*", "dxg", "kfd")):
        return 0
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def check_devices(runner: dict | None) -> None:
    """A GPU runner needs visible GPUs (enough of them for an integer ``devices``)."""
    if not runner or runner.get("accelerator") not in ("gpu", "cuda"):
        return
    visible = visible_gpus()
    check(visible > 0, "runner.accelerator", runner["accelerator"],
          "a CUDA GPU, and none is visible here (torch.cuda.is_available() is False); use runner=cpu")
    devices = runner.get("devices")
    check(not _is_int(devices) or devices <= visible, "runner.devices", devices,
          f"at most the {visible} visible GPU(s), or 'auto'")


def configured_scheduler(model: dict) -> str | None:
    """The diffusers scheduler class a model node will sample with, when it can be known without loading it."""
    if model.get("scheduler"):
        return model["scheduler"]
    if model.get("_target_", "").endswith("tiny_model"):
        return _options.TINY_SCHEDULERS.get(model.get("variant", "sd"), "DDIMScheduler")
    config = Path(str(model.get("path", ""))) / "scheduler" / "scheduler_config.json"
    try:
        return json.loads(config.read_text()).get("_class_name")
    except (OSError, ValueError):
        return None  # a hub id: checked when the model loads


def check_custom_timesteps(model: dict | None, schedule: dict | None) -> None:
    """Exponential and custom schedules set timesteps, which only some schedulers take."""
    if not model or not schedule or schedule.get("_target_", "").endswith("Uniform"):
        return
    name = configured_scheduler(model)
    if name is None:
        return
    from diffexplain.schedules import TIMESTEP_SCHEDULERS

    chosen = _choices().get("schedule") or schedule["_target_"].rsplit(".", 1)[-1]
    check(not name.startswith("FlowMatch"), "schedule", chosen,
          f"uniform for {name} (flow matching takes the model's own shifted sigma schedule)")
    if name not in TIMESTEP_SCHEDULERS:
        raise UserError("model.scheduler", name, f"a scheduler that takes custom timesteps (schedule={chosen} sets "
                        f"them): {', '.join(TIMESTEP_SCHEDULERS)}")


# -- the model's files, read without loading it -----------------------------------------------------------------------
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
NOT_NETWORKS = ("Scheduler", "Tokenizer", "TokenizerFast", "FeatureExtractor", "ImageProcessor", "Processor")
WEIGHTS = (".safetensors", ".bin", ".index.json", ".ckpt", ".pt", ".pth", ".msgpack", ".h5")


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE")


def model_root(path: str, key: str = "model.path") -> Path | None:
    """The directory a model loads from: a local directory, or a hub id's snapshot in the Hugging Face cache; None for
    a hub id not in the cache while online (downloaded when the model loads). A missing directory, a file, or (with
    HF_HUB_OFFLINE=1) a hub id not in the cache is refused."""
    string()(key, path)
    local = Path(path).expanduser()
    check(not local.is_file(), key, path, "a model directory (diffusers' save_pretrained output), not a file")
    if local.is_dir():
        return local
    as_path = path.startswith(("/", "./", "../", "~")) or not HUB_ID.match(path)
    check(not as_path, key, path, "an existing model directory (diffusers' save_pretrained output) or a hub id "
                                  "(org/name)")
    from huggingface_hub import try_to_load_from_cache

    try:
        cached = try_to_load_from_cache(path, "model_index.json")
    except ValueError:  # not a valid hub id either
        cached = None
    if isinstance(cached, str):
        return Path(cached).parent
    check(not hub_offline(), key, path, "a local model directory, or a hub id already in the Hugging Face cache: "
                                        "HF_HUB_OFFLINE=1 and it is not there (download it online once)")
    return None


def _read_json(path: Path, key: str, value) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise UserError(key, value, f"a readable model: {path} is not valid JSON ({type(e).__name__})") from e
    check(isinstance(data, dict), key, value, f"a readable model: {path} is not a JSON object")
    return data


def check_pipeline_dir(root: Path, key: str, value, skip=()) -> dict:
    """A diffusers pipeline directory: model_index.json, and for each network it lists (not in ``skip``, e.g. a
    ``safety_checker`` set to null) its config.json and complete weights. Returns model_index.json."""
    check((root / "model_index.json").is_file(), key, value,
          f"a diffusers pipeline directory (save_pretrained output); {root} has no model_index.json")
    index = _read_json(root / "model_index.json", key, value)
    for name, entry in index.items():
        if name.startswith("_") or name in skip or not isinstance(entry, list) or len(entry) != 2 or None in entry:
            continue
        library, cls = entry
        folder = root / name
        check(folder.is_dir(), key, value, f"a complete pipeline: model_index.json lists {name}/ ({cls}), missing here")
        if library not in ("diffusers", "transformers") or str(cls).endswith(NOT_NETWORKS):
            continue
        check((folder / "config.json").is_file(), key, value, f"a complete pipeline: {name}/config.json is missing")
        weights = [f for f in folder.iterdir() if f.name.endswith(WEIGHTS)]
        check(bool(weights), key, value, f"a complete pipeline: {name}/ holds no weights (*.safetensors or *.bin)")
        for f in weights:
            if f.name.endswith(".safetensors"):
                safetensors_file(f, key, value)
            elif f.name.endswith(".index.json"):  # sharded weights: every shard it names is there
                shards = set(_read_json(f, key, value).get("weight_map", {}).values())
                missing = sorted(x for x in shards if not (folder / x).is_file())
                check(not missing, key, value, f"a complete pipeline: {name}/{missing[:1]} (named in {f.name}) "
                                               "is missing")
    return index


class ModelInfo:
    """What validation knows of a model without loading it: its latent side, its UNet's config (None for a
    transformer) and its denoiser family (unet | sd3 | flux | pixart; None if unknown)."""

    def __init__(self, latent_side: int, unet: dict | None, family: str | None = "unet"):
        self.latent_side, self.unet, self.family = latent_side, unet, family


def vae_factor(vae: dict) -> int:
    return 2 ** (len(vae.get("block_out_channels") or (0,)) - 1)


def model_info(model: dict | None) -> ModelInfo | None:
    """Check the model's files (``DiffusionModel.from_pretrained``) and read its latent size and UNet config; the
    tiny model's come from :data:`diffexplain.config.options.TINY_UNETS`. None where they cannot be known yet (a hub id
    not downloaded)."""
    if not model:
        return None
    target = model.get("_target_", "")
    if target.endswith("tiny_model"):
        variant = model.get("variant", "sd")
        unet = _options.TINY_UNETS.get(variant)
        side = (model.get("resolution") or _options.TINY_VAE["sample_size"]) // vae_factor(_options.TINY_VAE)
        if variant in _options.TRANSFORMER_VARIANTS:
            factor = vae_factor(_options.TINY_VAE)
            multiple = factor * (2 if variant == "flux" else _options.TINY_TRANSFORMERS[variant].get("patch_size", 1))
            resolution = model.get("resolution") or _options.TINY_VAE["sample_size"]
            check(resolution % multiple == 0, "model.resolution", resolution,
                  f"a multiple of {multiple} for model.variant={variant} (the VAE's factor {factor} × its "
                  f"{'2x2 token packing' if variant == 'flux' else 'patch size'})")
            return ModelInfo(side, None, variant)
        return ModelInfo(side, unet) if unet else None
    if not target.endswith("DiffusionModel.from_pretrained"):
        return None
    path = model.get("path")
    root = model_root(path)
    if root is None:
        return None
    check_pipeline_dir(root, "model.path", path, skip=tuple(model.get("load_kwargs") or ()))
    denoiser = "unet" if (root / "unet" / "config.json").is_file() else "transformer"
    config = _read_json(root / denoiser / "config.json", "model.path", path)
    vae = _read_json(root / "vae" / "config.json", "model.path", path) if (root / "vae" / "config.json").is_file() \
        else None
    factor = vae_factor(vae) if vae else 1
    sample_size = config.get("sample_size")
    if isinstance(sample_size, (list, tuple)):
        sample_size = min(sample_size)
    resolution = model.get("resolution")
    if resolution is None:
        if not _is_int(sample_size):
            return None
        resolution = sample_size * factor
    check(resolution % factor == 0, "model.resolution", resolution,
          f"a multiple of the VAE's downsampling factor {factor} (this model's images are "
          f"{(sample_size or 0) * factor}x{(sample_size or 0) * factor})")
    family = "unet" if denoiser == "unet" else _options.TRANSFORMER_FAMILIES.get(config.get("_class_name"))
    return ModelInfo(resolution // factor, config if denoiser == "unet" else None, family)


# -- DF-CAM's modules, from the UNet's config (UNet2DConditionModel's structure, without building it) ----------------
KNOWN_DOWN = ("CrossAttnDownBlock2D", "DownBlock2D")
KNOWN_UP = ("CrossAttnUpBlock2D", "UpBlock2D")


def unet_module_names(config: dict) -> dict[str, bool]:
    """The names ``UNet2DConditionModel(**config).named_modules()`` gives, down to the blocks' resnets, attentions
    and samplers, each with whether it has submodules not listed (``True``: anything below it may exist)."""
    names: dict[str, bool] = {}

    def add(name: str, open_: bool = False) -> None:
        parts = name.split(".")
        for i in range(1, len(parts)):
            names.setdefault(".".join(parts[:i]), False)
        names[name] = open_

    def counted(value, n):
        return list(value) if isinstance(value, (list, tuple)) else [value] * n

    for top in ("conv_in", "time_proj", "time_embedding", "conv_out"):
        add(top, True)
    if config.get("norm_num_groups", 32) is not None:
        add("conv_norm_out", True)
        add("conv_act", True)
    for top, keys in (("encoder_hid_proj", ("encoder_hid_dim", "encoder_hid_dim_type")),
                      ("class_embedding", ("class_embed_type", "num_class_embeds")),
                      ("add_embedding", ("addition_embed_type",)), ("add_time_proj", ("addition_embed_type",)),
                      ("position_net", ("attention_type",))):
        if any(config.get(k) not in (None, "default") for k in keys):
            add(top, True)  # optional parts: listed whenever the config may create them
    down = list(config.get("down_block_types") or ())
    up = list(config.get("up_block_types") or ())
    layers = counted(config.get("layers_per_block", 2), len(down))
    for i, kind in enumerate(down):
        block = f"down_blocks.{i}"
        if kind not in KNOWN_DOWN:
            add(block, True)
            continue
        add(block)
        for j in range(layers[i]):
            add(f"{block}.resnets.{j}", True)
            if kind.startswith("CrossAttn"):
                add(f"{block}.attentions.{j}", True)
        if i < len(down) - 1:
            add(f"{block}.downsamplers.0", True)
    mid = config.get("mid_block_type", "UNetMidBlock2DCrossAttn")
    if mid == "UNetMidBlock2DCrossAttn":
        add("mid_block.resnets.0", True)
        add("mid_block.resnets.1", True)
        add("mid_block.attentions.0", True)
    elif mid is not None:
        add("mid_block", True)
    reversed_layers = list(reversed(layers))
    for i, kind in enumerate(up):
        block = f"up_blocks.{i}"
        if kind not in KNOWN_UP or i >= len(reversed_layers):
            add(block, True)
            continue
        add(block)
        for j in range(reversed_layers[i] + 1):
            add(f"{block}.resnets.{j}", True)
            if kind.startswith("CrossAttn"):
                add(f"{block}.attentions.{j}", True)
        if i < len(up) - 1:
            add(f"{block}.upsamplers.0", True)
    return names


def may_match(pattern: str, names: dict[str, bool]) -> bool:
    """Whether a dotted pattern can match a module of a UNet with these ``names`` (see :func:`unet_module_names`)."""
    pats = pattern.split(".")
    for name, open_ in names.items():
        parts = name.split(".")
        deeper = open_ and len(pats) > len(parts)  # the rest of the pattern may match what lies below
        if (len(pats) == len(parts) or deeper) and _options.module_matches(name, ".".join(pats[:len(parts)])):
            return True
    return False


def check_cam_modules(explainer: dict | None, info: ModelInfo | None) -> None:
    """DF-CAM's ``explainer.modules`` must match modules of the model's UNet."""
    if not explainer or not explainer.get("_target_", "").endswith("DFCAM") or info is None or info.unet is None:
        return
    modules = explainer.get("modules", _options.CAM_AUTO)
    names = unet_module_names(info.unet)
    if any(may_match(p, names) for p in _options.module_patterns(modules)):
        return
    blocks = sorted({".".join(n.split(".")[:2]) for n in names if n.startswith(("down_blocks.", "up_blocks."))} |
                    {n for n in names if "." not in n and n not in ("down_blocks", "up_blocks")})
    raise UserError("explainer.modules", modules, "'paper', 'resnets' or name patterns matching UNet modules, e.g. "
                    f"'up_blocks.*.resnets.*' or 'mid_block.resnets.0'; this UNet has {', '.join(blocks)}")


def check_concept_attention(explainer: dict | None, info: ModelInfo | None) -> None:
    """ConceptAttention needs joint attention: refused on UNets and PixArt."""
    if not explainer or not explainer.get("_target_", "").endswith("ConceptAttentionExplainer") or info is None \
            or info.family is None:
        return
    check(info.family in _options.CONCEPT_ATTENTION_FAMILIES, "explainer", "concept_attention",
          "an explainer this model supports: concept_attention needs joint attention (SD3/SD3.5, Flux.1; "
          f"model=tiny model.variant=sd3|flux); this model's denoiser is a {info.family}")


def check_latent_windows(explainer: dict | None, info: ModelInfo | None) -> None:
    """Windows on the latent grid must fit in it (latent side = resolution / the VAE's downsampling factor)."""
    if not explainer or info is None:
        return
    side = info.latent_side
    if explainer.get("_target_", "").endswith("OcclusionExplainer") and _is_int(explainer.get("window")):
        check(explainer["window"] <= side, "explainer.window", explainer["window"],
              f"an integer in [1, {side}] (latent pixels: this model's latents are {side}x{side})")
    if explainer.get("masks") == "grid" and _is_int(explainer.get("grid_size")):
        check(explainer["grid_size"] <= side, "explainer.grid_size", explainer["grid_size"],
              f"an integer in [1, {side}] (cells per side of a {side}x{side} latent)")


def check_similarity(similarity: dict | None) -> None:
    """Full SSIM (torchmetrics) derives its window from sigma; the authors' code has no luminance term."""
    if not similarity:
        return
    name = similarity.get("_target_", "").rsplit(".", 1)[-1]
    variant, sigma = similarity.get("variant", "textbook"), similarity.get("sigma", 1.5)
    size = similarity.get("kernel_size")
    if name == "SSIM" and variant == "textbook" and size is not None and _is_number(sigma):
        needed = _options.ssim_window_size(sigma)
        check(size == needed, "similarity.kernel_size", size,
              f"{needed} or null for similarity=ssim variant=textbook (torchmetrics derives the window from "
              f"sigma={sigma:g}: 2*int(3.5*sigma+0.5)+1); variant=authors and the terms take any odd size")
    if name == "Luminance":
        check(variant == "textbook", "similarity.variant", variant,
              "'textbook' for similarity=luminance (the authors' code has no luminance term)")


def check_fid_features(similarity: dict | None, model: dict | None) -> None:
    """``similarity.features``: ``auto`` never gives the Shapes CNN to a non-Shapes model (only
    ``similarity.features=shapes`` does), so there DINOv2 must load: a local directory with a config.json, or a hub id
    (with HF_HUB_OFFLINE=1: already in the Hugging Face cache)."""
    features = (similarity or {}).get("features")
    if not features or not similarity.get("_target_", "").endswith("SingleImageFID"):
        return
    used = _options.fid_features(features, _options.shapes_world(
        _choices().get("model"), similarity.get("model_path", (model or {}).get("path")), similarity.get("models_dir")))
    check(used != "shapes" or similarity.get("feature_net") is not None, "similarity.feature_net", None,
          "the Shapes classifier's features node for similarity.features=shapes")
    if used != "dinov2":
        return
    path = str(similarity.get("dinov2_path", _options.DINOV2_HUB_ID))
    allowed = f"a DINOv2 model for similarity.features={features}" + ("" if features == "dinov2" else
                                                                      " on a non-Shapes model (the Shapes CNN only "
                                                                      "by name: similarity.features=shapes)")
    local = Path(path).expanduser()
    if local.exists() or path.startswith(("/", "./", "../", "~")) or not HUB_ID.match(path):
        check((local / "config.json").is_file(), "similarity.dinov2_path", path,
              f"{allowed}: a save_pretrained directory with a config.json, or a hub id (org/name)")
    elif hub_offline():
        from huggingface_hub import try_to_load_from_cache

        try:
            cached = try_to_load_from_cache(path, "config.json")
        except ValueError:  # not a valid hub id either
            cached = None
        check(isinstance(cached, str), "similarity.dinov2_path", path, f"{allowed}: a local directory, or a hub id "
              "already in the Hugging Face cache (HF_HUB_OFFLINE=1 and it is not there: download it online once)")


def check_offset(data: dict | None) -> None:
    """``data.offset`` lies within the Shapes prompts of ``data.num_objects`` (12 one-object, 72 two-object)."""
    if not data or not data.get("_target_", "").endswith("PromptDataModule") or data.get("prompts") is not None \
            or data.get("prompt_file") is not None or not _is_int(data.get("offset")) or data["offset"] == 0:
        return  # (offset 0 always lies within the prompts)
    from diffexplain.world.scenes import all_prompts

    total = len(all_prompts(data.get("num_objects")))
    objects = {1: "one-object ", 2: "two-object "}.get(data.get("num_objects"), "")
    check(data["offset"] < total, "data.offset", data["offset"],
          f"an integer in [0, {total - 1}] (the mix has {total} {objects}prompts)")


def cross_checks(nodes: dict) -> None:
    """Rules that span config groups."""
    check_devices(nodes.get("runner"))
    check_offset(nodes.get("data"))
    check_similarity(nodes.get("similarity"))
    check_fid_features(nodes.get("similarity"), nodes.get("model"))
    check_world_training(nodes.get("pipeline"))
    writes_model = str((nodes.get("pipeline") or {}).get("_target_", "")).endswith("WorldTraining")
    info = None if writes_model else model_info(nodes.get("model"))  # train_world writes the model it would check
    check_latent_windows(nodes.get("explainer"), info)
    check_cam_modules(nodes.get("explainer"), info)
    check_concept_attention(nodes.get("explainer"), info)
    check_custom_timesteps(nodes.get("model"), nodes.get("schedule"))
    check_class_labels(nodes)
    explainer, schedule, similarity = nodes.get("explainer"), nodes.get("schedule"), nodes.get("similarity")
    n = num_steps(schedule)
    if explainer and n:
        steps = explainer.get("steps")
        for s in [steps] if _is_int(steps) else (steps or []):
            check(-n <= s < n, "explainer.steps", s,
                  f"step indices in [0, {n - 1}] (or negative from the end) for a {n}-step schedule")
    if explainer and similarity and explainer.get("score") == "map":
        check(similarity.get("_target_", "").rsplit(".", 1)[-1] != "SingleImageFID", "explainer.score", "map",
              "'scalar' for similarity=fid (it has no map form)")
    if schedule and schedule.get("_target_", "").endswith(("ExponentialEarly", "ExponentialLate")):
        from diffexplain.schedules import ExponentialEarly, ExponentialLate

        cls = ExponentialEarly if schedule["_target_"].endswith("Early") else ExponentialLate
        cls(schedule["num_steps"], schedule["lam"]).timesteps(1000)
