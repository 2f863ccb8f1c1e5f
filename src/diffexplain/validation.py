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
import sys
from collections.abc import Callable
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from diffexplain.errors import UserError, check

Rule = Callable[[str, object], None]
SEED_MAX = 2**63
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


# -- specs per _target_ -------------------------------------------------------------------------------
STEPS = int_list(nonempty=True, null=True, single=True)
SEED = integer(0, SEED_MAX - 1)
GUIDANCE = number(0, 100, allowed="a finite number in [0, 100] (7.5 is Stable Diffusion's usual scale)")
SCHEDULER = string(null=True)
DTYPE = choice("float32", "float16", "bfloat16")
EXPLAINER_COMMON = {"steps": STEPS, "seed": SEED, "_partial_": boolean}
WINDOWED = {"kernel_size": integer(1, 99, null=True), "sigma": number(0, open_lo=True),
            "data_range": number(0, open_lo=True, null=True), "variant": choice("textbook", "authors")}
CAPTUM_COMMON = {"target": choice("output", "next_latent", "x0"), "baseline": choice("zeros", "blur", "noise"),
                 "channel_reduce": choice("sum", "abs_sum"), "internal_batch_size": integer(1), **EXPLAINER_COMMON}

SPECS: dict[str, dict] = {
    # model
    "diffexplain.models.DiffusionModel.from_pretrained": {
        "path": string(), "dtype": DTYPE, "scheduler": SCHEDULER, "scheduler_config": FREE, "eta": number(0, 1),
        "guidance_scale": GUIDANCE, "resolution": integer(8, 4096, null=True), "load_kwargs": FREE},
    "diffexplain.models.tiny_model": {"seed": SEED, "guidance_scale": GUIDANCE, "scheduler": SCHEDULER,
                                      "variant": choice("sd", "sd2", "sdxl"), "dtype": DTYPE, "scheduler_config": FREE,
                                      "eta": number(0, 1)},
    # data
    "diffexplain.runner.data.PromptDataModule": {
        "prompts": str_list(null=True), "prompt_file": prompt_file, "num_prompts": integer(1, null=True),
        "num_objects": choice(1, 2, null=True), "seeds": int_list(0, SEED_MAX), "negative_prompt": text,
        "batch_size": integer(1), "offset": integer(0, 83)},
    # schedule
    "diffexplain.schedules.Uniform": {"num_steps": integer(1, 1000)},
    "diffexplain.schedules.ExponentialEarly": {"num_steps": integer(1, 1000), "lam": number(0)},
    "diffexplain.schedules.ExponentialLate": {"num_steps": integer(1, 1000), "lam": number(0)},
    "diffexplain.schedules.Custom": {"timesteps": int_list(0, 1000)},
    # explainers
    "diffexplain.explainers.RISE": {
        "masks": choice("pixel", "grid"), "grid_size": integer(1), "n_masks": integer(1),
        "p": number(0, 1, open_lo=True, open_hi=True, allowed="a probability in (0, 1)"), "batch_size": integer(1),
        "target": choice("output", "paper", "next_latent", "x0", "final"), "score": choice("scalar", "map"),
        "estimator": choice("rise", "centred", "coverage"),
        **EXPLAINER_COMMON},
    "diffexplain.explainers.DFCAM": {"modules": str_list(single=True), "target": choice("noise_sum", "similarity"),
                                     "upsample": choice("latent", "image"), **EXPLAINER_COMMON},
    "diffexplain.explainers.AttentionRelevanceExplainer": {
        "target": choice("noise_sum", "similarity"),
        "roles_file": json_file("a JSON object mapping each prompt to {word: role}"), **EXPLAINER_COMMON},
    "diffexplain.explainers.CrossAttentionExplainer": {
        "roles_file": json_file("a JSON object mapping each prompt to {word: role}"), **EXPLAINER_COMMON},
    "diffexplain.explainers.IntegratedGradientsExplainer": {
        "n_steps": integer(1), "method": choice("gausslegendre", "riemann_trapezoid", "riemann_left", "riemann_right",
                                                "riemann_middle"), **CAPTUM_COMMON},
    "diffexplain.explainers.GradientShapExplainer": {"n_samples": integer(1), "stdevs": number(0), **CAPTUM_COMMON},
    "diffexplain.explainers.OcclusionExplainer": {"window": integer(1), "stride": integer(1), **CAPTUM_COMMON},
    "diffexplain.explainers.LimeExplainer": {
        "n_samples": integer(2), "superpixels": choice("quickshift", "slic"), "superpixel_kwargs": FREE,
        "alpha": number(0, open_lo=True), **CAPTUM_COMMON},
    "diffexplain.explainers.RandomExplainer": dict(EXPLAINER_COMMON),
    # similarities
    "diffexplain.similarity.SSIM": dict(WINDOWED),
    "diffexplain.similarity.Structure": dict(WINDOWED),
    "diffexplain.similarity.Luminance": dict(WINDOWED),
    "diffexplain.similarity.Contrast": dict(WINDOWED),
    "diffexplain.similarity.Cosine": {},
    "diffexplain.similarity.SingleImageFID": {"scale": number(0, open_lo=True), "eps": number(0, open_lo=True),
                                              "feature_net": FREE},
    # pipelines
    "diffexplain.pipelines.explain.ExplainPipeline": {"explainer": any_value, "similarity": any_value},
    "diffexplain.pipelines.generate.GeneratePipeline": {},
    "diffexplain.pipelines.evaluate.EvaluatePipeline": {"explainer": any_value, "similarity": any_value,
                                                        "evaluate": any_value, "models_dir": string()},
    "diffexplain.pipelines.world_training.job.WorldTraining": FREE,
    "diffexplain.runner.report_job.ReportJob": {"sweep_dir": string(), "bootstrap": integer(100), "logger": any_value},
    # runner and loggers
    "lightning.Trainer": {"accelerator": choice("cpu", "gpu", "cuda", "mps", "auto"), "devices": any_value,
                          "strategy": any_value, "enable_progress_bar": boolean, "precision": any_value,
                          "num_nodes": integer(1)},
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


BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")  # = models.forward_process.BETA_SCHEDULES


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
            m in ("integrated_gradients", "gradient_shap", "occlusion") for m in v) and len(set(v)) == len(v), k, v,
            "a list of distinct methods among ['integrated_gradients', 'gradient_shap', 'occlusion'] (empty: none)"),
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
OUTPUT = {"x0_steps": choice("explained", "all", "none"),
          "x0_quality": integer(1, 100, null=True), "heatmap_dtype": choice("float32", "float16"), "figures": integer(0)}
TOP = {"seed": SEED, "resume": choice("auto", "overwrite")}
EVALUATE = {"target": choice("output", "paper", "next_latent", "x0", "final"),
            "similarity": choice("ssim", "structure", "luminance", "contrast", "cosine", "fid", null=True),
            "n_points": integer(2, 10_000), "substrate": choice("zeros", "blur", "mean"), "batch_size": integer(1),
            "baselines": any_value, "protocol": choice("per_prompt", "paper"), "sanity": boolean,
            "sanity_stages": choice("cascade", "full"),
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
        if key == "_target_":
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
        raise UserError("sweep_dir", "???", "required for pipeline=report: the multirun (or run) directory to report on")
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
        except Exception:  # noqa: BLE001  (no Hydra runtime, e.g. composing in a test)
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
        return "EulerDiscreteScheduler" if model.get("variant") == "sdxl" else "DDIMScheduler"
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

    if name not in TIMESTEP_SCHEDULERS:
        chosen = _choices().get("schedule") or schedule["_target_"].rsplit(".", 1)[-1]
        raise UserError("model.scheduler", name, f"a scheduler that takes custom timesteps (schedule={chosen} sets "
                        f"them): {', '.join(TIMESTEP_SCHEDULERS)}")


def cross_checks(nodes: dict) -> None:
    """Rules that span config groups."""
    check_devices(nodes.get("runner"))
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
