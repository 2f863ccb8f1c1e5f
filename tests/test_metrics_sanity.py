import pytest
import torch
import torch.nn.functional as F
from diffusers import UNet2DConditionModel

from diffexplain.explainers import DFCAM, Explainer
from diffexplain.metrics.sanity import REST, cascading_randomisation, randomisation_stages, reinitialise, sanity_rho
from diffexplain.models.outcomes import Outcome
from diffexplain.schedules import Uniform

PROMPT = "a red circle and a blue square"
TINY_STAGES = ["conv_out", "up_blocks.1", "up_blocks.0", "mid_block", "down_blocks.1", "down_blocks.0", REST]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def traj(tiny):
    return tiny.generate(PROMPT, 0, Uniform(4))


class EdgeExplainer(Explainer):
    """An input-only map: the Sobel edge magnitude of z_t (channels summed); it never looks at the model."""

    name = "edges"

    def explain_step(self, trajectory, i):
        z = F.pad(trajectory.latents[i].sum(0)[None, None], (1, 1, 1, 1), mode="replicate")
        kx = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]])[None, None]
        return (F.conv2d(z, kx) ** 2 + F.conv2d(z, kx.mT) ** 2).sqrt()[0, 0]


def weights(module):
    """Conv and linear weights by name: what re-initialisation must change (norms re-initialise to 1 and 0)."""
    kinds = (torch.nn.Conv2d, torch.nn.Linear)
    return {n: m.weight.detach().clone() for n, m in module.named_modules() if isinstance(m, kinds)}


def test_stages_run_from_the_output_side_and_cover_every_parameter_once(tiny):
    stages = randomisation_stages(tiny.denoiser)
    assert [name for name, _ in stages] == TINY_STAGES
    ids = [id(p) for _, paths in stages for path in paths for p in tiny.denoiser.get_submodule(path).parameters()]
    assert len(ids) == len(set(ids)) == len(list(tiny.denoiser.parameters()))


def sdxl_like_unet():
    """A small UNet with SDXL's features: added text/time embeddings, linear projections, transformer depth per
    block."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return UNet2DConditionModel(
            sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(16, 32),
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=32, attention_head_dim=(2, 4), norm_num_groups=8, use_linear_projection=True,
            transformer_layers_per_block=(1, 2), addition_embed_type="text_time", addition_time_embed_dim=8,
            projection_class_embeddings_input_dim=32 + 6 * 8)


class Stub:
    """The two members of DiffusionModel the cascade uses."""

    def __init__(self, denoiser):
        self.denoiser = denoiser

    def with_denoiser(self, denoiser):
        return Stub(denoiser)


def test_any_diffusers_unet_is_randomised_completely_and_left_intact():
    unet = sdxl_like_unet()
    before = {k: v.clone() for k, v in unet.state_dict().items()}
    stages = randomisation_stages(unet)
    ids = [id(p) for _, paths in stages for path in paths for p in unet.get_submodule(path).parameters()]
    assert len(ids) == len(set(ids)) == len(list(unet.parameters()))
    assert "add_embedding" in dict(stages)[REST]
    *_, (last, model) = cascading_randomisation(Stub(unet))
    new, old = weights(model.denoiser), weights(unet)
    assert last == REST and all(not torch.equal(new[n], old[n]) for n in old)
    assert all(torch.equal(v, before[k]) for k, v in unet.state_dict().items())


def test_the_cascade_is_cumulative_seeded_and_never_touches_the_model(tiny):
    before = {k: v.clone() for k, v in tiny.denoiser.state_dict().items()}
    rng = torch.get_rng_state()
    original = weights(tiny.denoiser)
    done: set[str] = set()
    stages = randomisation_stages(tiny.denoiser)
    for (name, model), (expected, paths) in zip(cascading_randomisation(tiny, seed=3), stages):
        assert name == expected and model.denoiser is not tiny.denoiser
        done.update(paths)
        for n, w in weights(model.denoiser).items():
            randomised = any(n == p or n.startswith(p + ".") for p in done)
            assert torch.equal(w, original[n]) != randomised, (name, n)
    assert torch.equal(torch.get_rng_state(), rng), "the caller's RNG is untouched"
    assert all(torch.equal(v, before[k]) for k, v in tiny.denoiser.state_dict().items()), "original unchanged"
    final = lambda seed: list(cascading_randomisation(tiny, seed))[-1][1].denoiser.state_dict()
    a, b, c = final(3), final(3), final(4)
    assert all(torch.equal(a[k], b[k]) for k in a) and not all(torch.equal(a[k], c[k]) for k in a)


def test_reinitialisation_does_not_depend_on_dtype():
    a, b = torch.nn.Linear(8, 8), torch.nn.Linear(8, 8).double()
    reinitialise(a, 7)
    reinitialise(b, 7)
    assert torch.allclose(a.weight.double(), b.weight) and not torch.equal(a.weight, torch.nn.Linear(8, 8).weight)


def test_an_input_only_map_passes_unchanged_while_a_model_map_decorrelates(tiny, traj):
    """Adebayo et al.'s check: an edge detector of z_t keeps ρ = 1 at every stage; DF-CAM, which reads the UNet,
    does not (and the randomised model's outcomes are its own)."""
    steps = [1, 2]
    edges, cam = EdgeExplainer(tiny).explain(traj, steps), DFCAM(tiny).explain(traj, steps)
    reference = Outcome(tiny, traj, 1).reference()
    rhos = {}
    for stage, model in cascading_randomisation(tiny):
        e, c = EdgeExplainer(model).explain(traj, steps), DFCAM(model).explain(traj, steps)
        assert all(sanity_rho(edges[k], e[k]) == pytest.approx(1.0) for k in range(2)), stage
        rhos[stage] = [sanity_rho(cam[k], c[k]) for k in range(2)]
        assert not torch.allclose(Outcome(model, traj, 1).reference(), reference)
    assert all(r < 0.9 for r in rhos["conv_out"]), rhos
    assert all(abs(r) < 0.5 for r in rhos[REST]), rhos


def test_sanity_rho_is_spearman_optionally_of_magnitudes():
    a = torch.randn(8, 8, generator=torch.Generator().manual_seed(0))
    assert sanity_rho(a, a * 2 + 1) == pytest.approx(1.0)
    assert sanity_rho(a, -a) == pytest.approx(-1.0) and sanity_rho(a, -a, absolute=True) == pytest.approx(1.0)
