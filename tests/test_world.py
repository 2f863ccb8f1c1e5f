"""Fast tests of the Shapes world: scenes, grammar, tokenizer and segmentation."""

import numpy as np
import pytest
from scipy.ndimage import binary_dilation, gaussian_filter
from transformers import CLIPTokenizer

from diffexplain.errors import UserError
from diffexplain.world import (
    COLOURS,
    GRAMMAR_WORDS,
    SHAPES,
    all_prompts,
    build_vocab,
    detect_objects,
    draw_mask,
    load_tokenizer,
    parse_prompt,
    prompt_for,
    render,
    sample_scene,
    segment,
    word_roles,
)
from diffexplain.world.tokenizer import VOCAB_DIR


@pytest.fixture(scope="module")
def scenes():
    rng = np.random.default_rng(0)
    return [sample_scene(rng) for _ in range(100)]


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer()


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return (a & b).sum() / (a | b).sum()


def test_scene_masks_match_drawn_pixels(scenes):
    for scene in scenes:
        assert scene.image.dtype == np.float32 and scene.image.shape == (32, 32, 3)
        union = np.logical_or.reduce([o.mask for o in scene.objects])
        np.testing.assert_array_equal(scene.image.any(-1), union)
        for obj in scene.objects:
            assert obj.mask.dtype == bool and obj.mask.any()
            np.testing.assert_array_equal(scene.image[obj.mask], np.tile(COLOURS[obj.colour], (obj.mask.sum(), 1)))


def test_objects_separated_distinct_and_left_to_right(scenes):
    two = [s for s in scenes if len(s.objects) == 2]
    assert 30 < len(two) < 70  # n_objects=None is a fair coin
    for scene in two:
        a, b = scene.objects
        assert not (binary_dilation(a.mask, np.ones((5, 5), bool)) & b.mask).any()  # >= 2 px gap
        assert a.colour != b.colour and a.shape != b.shape
        assert np.nonzero(a.mask)[1].mean() < np.nonzero(b.mask)[1].mean()
        assert scene.prompt == f"a {a.colour} {a.shape} and a {b.colour} {b.shape}"


def test_draw_mask_geometry():
    square = draw_mask("square", 10.0, 10.0, 8)
    assert square.sum() == 64 and square[6:14, 6:14].all()
    circle = draw_mask("circle", 16.0, 16.0, 10)
    assert circle[11:21, 16].all() and not circle[10, 16] and not circle[11, 11]
    triangle = draw_mask("triangle", 16.5, 16.5, 9)
    rows = triangle.sum(1)[12:21]
    assert rows[-1] == 9 and rows[0] == 1 and (np.diff(rows) >= 0).all()
    assert np.array_equal(triangle, np.fliplr(draw_mask("triangle", 32 - 16.5, 16.5, 9)))


def test_render_respects_order_and_sample_scene_is_deterministic():
    rng = np.random.default_rng(1)
    for _ in range(20):
        scene = render([("yellow", "triangle"), ("red", "square")], rng)
        assert scene.prompt == "a yellow triangle and a red square"
        assert [(o.colour, o.shape) for o in scene.objects] == [("yellow", "triangle"), ("red", "square")]
        assert np.nonzero(scene.objects[0].mask)[1].mean() < np.nonzero(scene.objects[1].mask)[1].mean()
    first, again = sample_scene(np.random.default_rng(7)), sample_scene(np.random.default_rng(7))
    assert first.prompt == again.prompt and np.array_equal(first.image, again.image)
    others = [sample_scene(np.random.default_rng(seed)).image for seed in range(8, 12)]
    assert not all(np.array_equal(first.image, other) for other in others)


def test_sizes_within_bounds():
    rng = np.random.default_rng(2)
    for _ in range(30):
        (obj,) = sample_scene(rng, n_objects=1, min_size=5, max_size=6).objects
        ys, xs = np.nonzero(obj.mask)
        assert xs.max() - xs.min() + 1 <= 6 and ys.max() - ys.min() + 1 <= 6
    with pytest.raises(UserError):
        sample_scene(rng, n_objects=2, min_size=20, max_size=20)
    with pytest.raises(UserError):
        sample_scene(rng, n_objects=3)


def test_all_prompts_round_trip():
    prompts = all_prompts()
    assert len(prompts) == len(set(prompts)) == 84
    assert len(all_prompts(1)) == 12 and len(all_prompts(2)) == 72 and all_prompts() == all_prompts()
    for prompt in prompts:
        assert prompt_for(parse_prompt(prompt)) == prompt
    assert parse_prompt("a blue square and a yellow triangle") == [("blue", "square"), ("yellow", "triangle")]


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "a red",
        "red circle",
        "a purple circle",
        "a red hexagon",
        "A red circle",
        "a red circle and",
        "a red  circle",
        "a red circle and a red square",
        "a red circle and a blue circle",
        "a red circle and a blue square and a green triangle",
        None,
    ],
)
def test_bad_prompts_raise(bad):
    with pytest.raises(UserError):
        parse_prompt(bad)


def test_word_roles():
    roles = word_roles("a blue square and a yellow triangle")
    assert roles == {
        "a": "connective",
        "blue": "colour",
        "square": "shape",
        "and": "connective",
        "yellow": "colour",
        "triangle": "shape",
    }


def test_grammar_words_are_single_tokens(tokenizer):
    assert set(GRAMMAR_WORDS) == {"a", "and", *COLOURS, *SHAPES}
    ids = [tokenizer.convert_tokens_to_ids(w + "</w>") for w in GRAMMAR_WORDS]
    assert len(set(ids)) == len(ids) and tokenizer.unk_token_id not in ids
    for word, token_id in zip(GRAMMAR_WORDS, ids):
        assert tokenizer(word).input_ids == [tokenizer.bos_token_id, token_id, tokenizer.eos_token_id]
        assert tokenizer.decode([token_id]) == word
    prompt = "a red circle and a blue square"
    encoded = tokenizer(prompt).input_ids
    words = prompt.split()
    assert encoded == [tokenizer.bos_token_id, *(ids[GRAMMAR_WORDS.index(w)] for w in words), tokenizer.eos_token_id]
    assert tokenizer.decode(encoded, skip_special_tokens=True) == prompt
    padded = tokenizer(prompt, padding="max_length", max_length=tokenizer.model_max_length).input_ids
    assert len(padded) == 16 and padded[len(encoded) :] == [tokenizer.pad_token_id] * (16 - len(encoded))


def test_unknown_words_fall_back_to_characters(tokenizer):
    tokens = tokenizer.tokenize("a purple circle")
    assert tokens == ["a</w>", "p", "u", "r", "p", "l", "e</w>", "circle</w>"]


def test_tokenizer_save_load_round_trip(tokenizer, tmp_path):
    tokenizer.save_pretrained(tmp_path)
    loaded = CLIPTokenizer.from_pretrained(tmp_path)
    assert loaded.model_max_length == 16
    for prompt in all_prompts()[::7]:
        assert loaded(prompt).input_ids == tokenizer(prompt).input_ids
    assert loaded.get_vocab() == tokenizer.get_vocab()


def test_shipped_vocab_is_what_build_vocab_writes(tmp_path):
    build_vocab(tmp_path)
    for name in ("vocab.json", "merges.txt"):
        assert (tmp_path / name).read_text(encoding="utf-8") == (VOCAB_DIR / name).read_text(encoding="utf-8")
    assert (VOCAB_DIR / "merges.txt").read_text(encoding="utf-8").startswith("#version: 0.2\n")


@pytest.mark.parametrize("corruption", ["clean", "noise", "blur", "uint8"])
def test_segment_recovers_drawn_objects(scenes, corruption):
    rng = np.random.default_rng(3)
    for scene in scenes:
        image = {
            "clean": scene.image,
            "noise": np.clip(scene.image + rng.normal(0, 0.1, scene.image.shape), 0, 1),
            "blur": gaussian_filter(scene.image, (0.7, 0.7, 0)),
            "uint8": (scene.image * 255).astype(np.uint8),
        }[corruption]
        masks = segment(image, scene.prompt)
        assert set(masks) == {w for w, role in word_roles(scene.prompt).items() if role != "connective"}
        for obj in scene.objects:
            assert iou(masks[obj.colour], obj.mask) >= 0.9
            assert masks[obj.shape] is masks[obj.colour]
        detected = detect_objects(image)
        assert [c for c, _ in detected] == [o.colour for o in scene.objects]


def test_segment_missing_object_is_empty():
    scene = render([("red", "circle")], np.random.default_rng(4))
    masks = segment(scene.image, "a red circle and a blue square")
    assert masks["red"].sum() == scene.objects[0].mask.sum()
    assert masks["blue"].shape == (32, 32) and not masks["blue"].any() and not masks["square"].any()
    assert detect_objects(np.zeros((32, 32, 3))) == []
