import pytest

from diffexplain.errors import UserError
from diffexplain.models.schedulers import swap_scheduler
from diffexplain.models.tiny import build_tiny_pipeline
from diffexplain.schedules import Custom, ExponentialEarly, ExponentialLate, Uniform

# Park et al.'s exponential sampling, N = 30, λ = 60 (worked by hand from METHODS.md's formula)
EARLY_30_60 = [999, 893, 884, 875, 865, 854, 842, 829, 816, 801, 785, 768, 749, 729, 708, 684, 659, 632, 602, 571,
               536, 499, 459, 416, 370, 319, 265, 206, 143, 74]
LATE_30_60 = [999, 926, 857, 794, 735, 681, 630, 584, 541, 501, 464, 429, 398, 368, 341, 316, 292, 271, 251, 232,
              215, 199, 184, 171, 158, 146, 135, 125, 116, 107]


def test_exponential_schedules_match_the_paper_formula():
    assert ExponentialEarly(30, 60).timesteps(1000) == EARLY_30_60
    assert ExponentialLate(30, 60).timesteps(1000) == LATE_30_60


def test_early_is_dense_early_and_late_is_dense_late():
    early, late = ExponentialEarly(30, 30).timesteps(1000), ExponentialLate(30, 30).timesteps(1000)
    gaps = lambda ts: [a - b for a, b in zip(ts, ts[1:])]
    assert gaps(early)[1] < gaps(early)[-1]
    assert gaps(late)[0] > gaps(late)[-1]


def test_custom_timesteps_are_set_on_a_scheduler_that_takes_them():
    pipe = build_tiny_pipeline()
    sched = swap_scheduler(pipe, "dpm_solver")
    assert ExponentialLate(30, 60).apply(sched) == LATE_30_60
    assert Custom([900, 500, 100]).apply(sched) == [900, 500, 100]
    assert len(Uniform(7).apply(sched)) == 7


def test_scheduler_without_custom_timesteps_names_those_that_can():
    pipe = build_tiny_pipeline()  # DDIM
    with pytest.raises(UserError, match="dpm_solver"):
        ExponentialEarly(10, 5).apply(pipe.scheduler)


@pytest.mark.parametrize("make", [lambda: Uniform(0), lambda: ExponentialLate(0, 60), lambda: ExponentialEarly(5, -1),
                                  lambda: Custom([]), lambda: Custom([5, 9]).timesteps(1000),
                                  lambda: Custom([1000]).timesteps(1000)])
def test_invalid_schedules_raise_user_errors(make):
    with pytest.raises(UserError, match="schedule"):
        make()
