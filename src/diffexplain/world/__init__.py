"""The embedded Shapes world: ground-level data — scenes with exact masks, their prompt grammar, segmentation, the
tokenizer and the scene classifier. Importing the package loads neither transformers nor torch: the tokenizer's names
are resolved on first use (its training is a job: :mod:`diffexplain.pipelines.world_training`)."""

from diffexplain.world.scenes import (
    COLOURS,
    SHAPES,
    Scene,
    SceneObject,
    all_prompts,
    draw_mask,
    parse_prompt,
    prompt_for,
    render,
    sample_scene,
    word_roles,
)
from diffexplain.world.segment import detect_objects, segment

_TOKENIZER = ("GRAMMAR_WORDS", "build_t5_vocab", "build_vocab", "load_t5_tokenizer", "load_tokenizer")


def __getattr__(name: str):
    if name in _TOKENIZER:
        from diffexplain.world import tokenizer

        return getattr(tokenizer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "COLOURS",
    "GRAMMAR_WORDS",
    "SHAPES",
    "Scene",
    "SceneObject",
    "all_prompts",
    "build_t5_vocab",
    "build_vocab",
    "detect_objects",
    "draw_mask",
    "load_t5_tokenizer",
    "load_tokenizer",
    "parse_prompt",
    "prompt_for",
    "render",
    "sample_scene",
    "segment",
    "word_roles",
]
