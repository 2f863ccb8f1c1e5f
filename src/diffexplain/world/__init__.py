"""The embedded Shapes world: scenes with exact masks, their prompt grammar, tokenizer and segmentation."""

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
from diffexplain.world.tokenizer import GRAMMAR_WORDS, build_vocab, load_tokenizer

__all__ = [
    "COLOURS",
    "GRAMMAR_WORDS",
    "SHAPES",
    "Scene",
    "SceneObject",
    "all_prompts",
    "build_vocab",
    "detect_objects",
    "draw_mask",
    "load_tokenizer",
    "parse_prompt",
    "prompt_for",
    "render",
    "sample_scene",
    "segment",
    "word_roles",
]
