"""batch_size: auto — halves on out-of-memory, retries the same range, and never changes a result."""

import pytest
import torch

from diffexplain.errors import UserError
from diffexplain.explainers import RISE, GradientShapExplainer, IntegratedGradientsExplainer, StepOutcome
from diffexplain.metrics.games import play_games
from diffexplain.models.batching import BatchSize, is_out_of_memory
from diffexplain.models.outcomes import Outcome
from diffexplain.schedules import Uniform
from diffexplain.similarity import SSIM

OOM = "DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 bytes"


@pytest.fixture(scope="module")
def traj(tiny):
    return tiny.generate("a red circle and a blue square", 0, Uniform(4))


def test_auto_halves_on_out_of_memory_and_covers_every_range_once():
    seen = []

    def fn(start, stop):
        if stop - start > 16:
            raise RuntimeError(OOM)
        seen.append((start, stop))

    batch = BatchSize("auto")
    batch.run(100, fn)
    assert batch.size == batch.used == 16
    assert [i for a, b in seen for i in range(a, b)] == list(range(100))


def test_a_fixed_size_and_other_errors_are_not_swallowed():
    def oom(start, stop):
        raise RuntimeError(OOM)

    with pytest.raises(RuntimeError, match="allocate"):
        BatchSize(8).run(10, oom)

    def bug(start, stop):
        raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape"):
        BatchSize("auto").run(10, bug)
    assert is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory")) and not is_out_of_memory(ValueError(OOM))
    with pytest.raises(UserError, match="explainer.batch_size"):
        BatchSize(0, "explainer.batch_size")


def test_rise_auto_gives_the_fixed_batch_map_after_an_out_of_memory(tiny, traj, monkeypatch):
    fixed = RISE(tiny, SSIM(), n_masks=96, batch_size=64, seed=3).explain(traj, [2])
    scores = RISE.scores

    def small_only(self, outcome, reference, masks):
        if len(masks) > 16:
            raise RuntimeError(OOM)
        return scores(self, outcome, reference, masks)

    monkeypatch.setattr(RISE, "scores", small_only)
    auto = RISE(tiny, SSIM(), n_masks=96, batch_size="auto", seed=3)
    torch.testing.assert_close(auto.explain(traj, [2]), fixed, rtol=0, atol=1e-6)
    assert auto.batch.used == 16 and auto.last_stats[2]["batch_size_used"] == 16


@pytest.mark.parametrize("cls, kwargs, fixed_size", [
    (IntegratedGradientsExplainer, {"n_steps": 32}, 64),  # auto hands Captum the batches of 64 (AUTO_BATCH_START)
    (GradientShapExplainer, {"n_samples": 96, "stdevs": 0.1}, 64),  # Captum's calls (and draws) of 64 samples
], ids=["integrated_gradients", "gradient_shap"])
def test_captum_auto_gives_the_fixed_batch_map_after_an_out_of_memory(tiny, traj, monkeypatch, cls, kwargs,
                                                                       fixed_size):
    fixed = cls(tiny, SSIM(), internal_batch_size=fixed_size, seed=3, **kwargs).explain(traj, [2])
    score = StepOutcome.score

    def small_only(self, z):
        if len(z) > 16:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return score(self, z)

    monkeypatch.setattr(StepOutcome, "score", small_only)
    auto = cls(tiny, SSIM(), internal_batch_size="auto", seed=3, **kwargs)
    # bitwise on the CPU; atol for kernels whose per-latent results depend on the batch
    torch.testing.assert_close(auto.explain(traj, [2]), fixed, rtol=0, atol=1e-6)
    assert auto.batch.used == 16 and auto.last_stats[2]["batch_size_used"] == 16


def test_games_auto_give_the_fixed_batch_curves_after_an_out_of_memory(tiny, traj):
    outcome = Outcome(tiny, traj, 1, "output")
    maps = {"a": torch.rand(8, 8, generator=torch.Generator().manual_seed(0))}
    fixed = play_games(outcome, SSIM(), maps, n_points=9, batch_size=64)

    class Small:  # the outcome, out of memory above 4 latents
        trajectory, i = outcome.trajectory, outcome.i

        def __call__(self, latents):
            if len(latents) > 4:
                raise RuntimeError(OOM)
            return outcome(latents)

        def reference(self):
            return outcome.reference()

    auto = BatchSize("auto")
    curves = play_games(Small(), SSIM(), maps, n_points=9, batch_size=auto)
    assert auto.used == 4
    for game in ("deletion", "insertion"):
        torch.testing.assert_close(torch.tensor(curves["a"][game].y), torch.tensor(fixed["a"][game].y), atol=1e-6,
                                   rtol=0)


def test_validation_accepts_auto_and_refuses_the_rest():
    from diffexplain.validation import EVALUATE, SPECS, check_node

    check_node("evaluate", {"batch_size": "auto"}, EVALUATE)
    check_node("explainer", {"batch_size": "auto"}, SPECS["diffexplain.explainers.RISE"])
    check_node("explainer", {"internal_batch_size": "auto"}, SPECS["diffexplain.explainers.LimeExplainer"])
    with pytest.raises(UserError, match="explainer.internal_batch_size.*auto"):
        check_node("explainer", {"internal_batch_size": 0}, SPECS["diffexplain.explainers.OcclusionExplainer"])
    for bad in (0, "big", True):
        with pytest.raises(UserError, match="evaluate.batch_size.*auto"):
            check_node("evaluate", {"batch_size": bad}, EVALUATE)
