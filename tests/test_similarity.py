"""Property tests of the similarity functions: identity is the maximum, symmetry, bounds, monotone in noise."""
import math
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import scipy.ndimage
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from skimage.metrics import structural_similarity
from torchmetrics.functional.image import structural_similarity_index_measure

from diffexplain.errors import UserError
from diffexplain.similarity import (
    SIMILARITIES,
    SSIM,
    Contrast,
    Luminance,
    RandomConvFeatures,
    SingleImageFID,
    Structure,
)

NAMES = list(SIMILARITIES)
MAPPED = [n for n in NAMES if SIMILARITIES[n].has_map]
ANY_DOMAIN = [n for n in NAMES if SIMILARITIES[n].domain == "any"]
CONF = Path(__file__).resolve().parents[1] / "conf" / "similarity"


def smooth(batch: int = 2, channels: int = 3, size: int = 32) -> torch.Tensor:
    """Smooth sinusoidal images in [0.1, 0.9], a different pattern per channel and item."""
    y, x = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    items = [
        torch.stack([0.5 + 0.4 * torch.sin(2 * math.pi * (k + i + 1) * x + k) * torch.cos(math.pi * (k + 1) * y)
                     for k in range(channels)])
        for i in range(batch)
    ]
    return torch.stack(items)


def noise(shape, seed: int, sigma: float = 1.0) -> torch.Tensor:
    return sigma * torch.randn(shape, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def sims():
    return {name: cls() for name, cls in SIMILARITIES.items()}


@pytest.mark.parametrize("name", NAMES)
def test_identity_is_the_maximum(sims, name):
    s, x = sims[name], smooth()
    same = s(x, x.clone())
    torch.testing.assert_close(same, torch.ones(2), atol=1e-5, rtol=0)
    for seed in range(3):
        other = torch.rand(x.shape, generator=torch.Generator().manual_seed(seed))
        assert (same >= s(x, other)).all()
        assert (same >= s(x, x + noise(x.shape, seed, 0.05))).all()


@pytest.mark.parametrize("name", NAMES)
def test_symmetry(sims, name):
    s, a = sims[name], smooth()
    b = (a + noise(a.shape, 0, 0.2)).clamp(0, 1)
    torch.testing.assert_close(s(a, b), s(b, a), atol=1e-5, rtol=0)
    if s.has_map:
        torch.testing.assert_close(s.map(a, b), s.map(b, a), atol=1e-5, rtol=0)


NONNEGATIVE_BOUNDS = {"ssim": (-1, 1), "structure": (-1, 1), "luminance": (0, 1), "contrast": (0, 1), "cosine": (0, 1),
                      "fid": (0, 1)}


@pytest.mark.parametrize("name", NAMES)
def test_bounds(sims, name):
    s, x = sims[name], smooth()
    rand = torch.rand(x.shape, generator=torch.Generator().manual_seed(0))
    lo, hi = NONNEGATIVE_BOUNDS[name]
    signed = [(x - 0.5, 0.5 - x), (noise(x.shape, 1), noise(x.shape, 2))]  # anticorrelated, independent
    for a, b, (low, high) in [(x, rand, (lo, hi)), (x, 1 - x, (lo, hi))] + [(a, b, (-1, 1)) for a, b in signed]:
        values = [s(a, b)] + ([s.map(a, b)] if s.has_map else [])
        for v in values:
            assert v.min() >= low - 1e-6 and v.max() <= high + 1e-6, (v.min(), v.max())
    if name == "fid":
        assert (s(x, rand) > 0).all()
    if name in ("structure", "cosine"):  # the bound -1 is reached by a negated image
        assert s(x - 0.5, 0.5 - x).max() < -0.9


@pytest.mark.parametrize("name", NAMES)
def test_monotone_decrease_as_noise_grows(sims, name):
    s, x = sims[name], smooth(batch=1).expand(4, -1, -1, -1)  # 4 seeds as a batch
    scores = [s(x, x)] + [s(x, x + noise(x.shape, 10, sigma)) for sigma in (0.05, 0.1, 0.2, 0.4)]
    means = torch.stack(scores).mean(1)
    assert (means.diff() < 0).all(), means


@pytest.mark.parametrize("name", NAMES)
def test_batched_equals_per_item(sims, name):
    s, a = sims[name], smooth(batch=3)
    b = (a + noise(a.shape, 3, 0.1)).clamp(0, 1)
    batched = s(a, b)
    single = torch.cat([s(a[i : i + 1], b[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(batched, single, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(s(a, b[:1]), torch.cat([s(a[i : i + 1], b[:1]) for i in range(3)]), atol=1e-6, rtol=1e-5)
    if s.has_map:
        torch.testing.assert_close(s.map(a, b)[1], s.map(a[1:2], b[1:2])[0], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_map_shape_and_mean(sims, name):
    s, a = sims[name], smooth(batch=2, size=24)
    b = a.flip(-1)
    if not s.has_map:
        with pytest.raises(UserError):
            s.map(a, b)
        return
    m = s.map(a, b)
    assert m.shape == (2, 24, 24)
    if name != "cosine":  # cosine's scalar form is the cosine of the flattened items, not a mean
        torch.testing.assert_close(m.mean((1, 2)), s(a, b), atol=1e-6, rtol=0)


@pytest.mark.parametrize("data_range", [None, 1.0])
def test_ssim_matches_torchmetrics(data_range):
    a = smooth(batch=3) * torch.tensor([1.0, 2.0, 0.5]).view(3, 1, 1, 1)  # items with different ranges
    b = a + noise(a.shape, 4, 0.1)
    ours = SSIM(data_range=data_range)(a, b)
    if data_range is None:
        ranges = [(torch.cat((a[i], b[i])).max() - torch.cat((a[i], b[i])).min()).item() for i in range(3)]
        ref = torch.stack([structural_similarity_index_measure(a[i : i + 1], b[i : i + 1], data_range=r)
                           for i, r in enumerate(ranges)])
    else:
        ref = structural_similarity_index_measure(a, b, data_range=data_range, reduction="none")
    torch.testing.assert_close(ours, ref, atol=1e-6, rtol=0)


def test_ssim_matches_skimage():
    """skimage filters with scipy's 'reflect' (edge repeated) and crops the window radius before averaging,
    so the interior of our map must agree with its mean."""
    a = smooth(batch=1, size=40)
    b = (a + noise(a.shape, 5, 0.1)).clamp(0, 1)
    pad = 5
    ours = SSIM(data_range=1.0).map(a, b)[0, pad:-pad, pad:-pad].mean()
    ref = structural_similarity(
        a[0].double().numpy(), b[0].double().numpy(), gaussian_weights=True, sigma=1.5,
        use_sample_covariance=False, data_range=1.0, channel_axis=0,
    )
    assert abs(ours.item() - ref) < 1e-3 and ref < 0.9


def test_terms_multiply_to_ssim():
    """l·c·s = SSIM per channel; with one channel the maps themselves multiply (data_range per item)."""
    a = smooth(batch=2)
    b = (a + noise(a.shape, 6, 0.2)).clamp(0, 1)
    terms = [Luminance(data_range=1.0), Contrast(data_range=1.0), Structure(data_range=1.0)]
    per_channel = [math.prod(t.map(a[:, [c]], b[:, [c]]) for t in terms) for c in range(3)]
    torch.testing.assert_close(torch.stack(per_channel).mean(0), SSIM(data_range=1.0).map(a, b), atol=1e-5, rtol=0)
    a1, b1 = a[:, :1], b[:, :1] * 2
    lcs = Luminance().map(a1, b1) * Contrast().map(a1, b1) * Structure().map(a1, b1)
    torch.testing.assert_close(lcs, SSIM().map(a1, b1), atol=1e-5, rtol=0)
    torch.testing.assert_close(lcs.mean((1, 2)), SSIM()(a1, b1), atol=1e-4, rtol=0)  # torchmetrics' scalar


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("identical", [False, True])
def test_gradients_are_finite(sims, name, identical):
    s, x = sims[name], smooth()
    x[:, :, :8, :8] = 0.5  # a flat patch: zero local variance
    a = x.clone().requires_grad_(True)
    b = x.clone() if identical else (x + noise(x.shape, 7, 0.1)).clamp(0, 1)
    s(a, b).sum().backward()
    assert torch.isfinite(a.grad).all()
    if not identical:
        assert a.grad.abs().sum() > 0
    if s.has_map:
        a.grad = None
        s.map(a, b).sum().backward()
        assert torch.isfinite(a.grad).all()


@pytest.mark.parametrize("name", ANY_DOMAIN)
def test_unbounded_latents(sims, name):
    s = sims[name]
    a = 4 * noise((3, 4, 16, 16), 8) + 2
    b = torch.cat((a[:1], noise((2, 4, 16, 16), 9) - 3))  # one identical pair, two unrelated
    with torch.no_grad():
        v = s(a, b)
        m = s.map(a, b)
    assert torch.isfinite(v).all() and torch.isfinite(m).all() and m.shape == (3, 16, 16)
    assert v[0] > 0.999 and (v[1:] < 0.9).all()
    assert s(a.double(), b.double()).dtype == torch.float64


class DeadChannels(torch.nn.Module):
    """Features = the image plus as many all-zero channels (repeated covariance eigenvalues)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((x, torch.zeros_like(x)), 1)


def test_fid_matches_a_scipy_reference_and_maps_by_exp():
    s = SingleImageFID(feature_net=DeadChannels(), scale=2.0)
    a, b = smooth(), (smooth() + noise((2, 3, 32, 32), 11, 0.2)).clamp(0, 1) ** 2
    for i in range(2):
        fa, fb = (f.flatten(1).double().numpy() for f in DeadChannels()(torch.stack((a[i], b[i]))))
        ca, cb = (np.cov(f) + 1e-6 * np.eye(6) for f in (fa, fb))
        ref = ((fa.mean(1) - fb.mean(1)) ** 2).sum() + np.trace(ca + cb - 2 * scipy.linalg.sqrtm(ca @ cb).real)
        assert s.distance(a, b)[i].item() == pytest.approx(ref, rel=1e-4)
    torch.testing.assert_close(s(a, b), torch.exp(-s.distance(a, b) / 2.0))


@pytest.mark.parametrize("identical", [False, True])
def test_fid_gradients_with_repeated_eigenvalues(identical):
    a = smooth().requires_grad_(True)
    b = a.detach().clone() if identical else a.detach().flip(-1)
    SingleImageFID(feature_net=DeadChannels())(a, b).sum().backward()
    assert torch.isfinite(a.grad).all()


def test_fid_is_image_domain_and_distance_is_zero_iff_identical():
    s = SingleImageFID()
    assert s.domain == "image" and not s.has_map
    x = smooth()
    d = s.distance(x, torch.cat((x[:1], x[1:].flip(-1) * 0.5)))
    assert d[0] < 1e-5 and d[1] > 1e-2


def test_random_features_are_seeded_without_the_global_rng():
    state = torch.get_rng_state()
    nets = [RandomConvFeatures(seed=0), RandomConvFeatures(seed=0), RandomConvFeatures(seed=1)]
    assert torch.equal(state, torch.get_rng_state())
    x = smooth()
    assert torch.equal(nets[0](x), nets[1](x)) and not torch.equal(nets[0](x), nets[2](x))
    assert nets[0](x).shape == (2, 32, 32, 32)


def test_invalid_parameters():
    with pytest.raises(UserError, match="kernel_size"):
        SSIM(kernel_size=15)  # torchmetrics would silently use 11 taps for sigma 1.5
    SSIM(kernel_size=15, sigma=2.0)
    for bad in (4, 0, 2.5):
        with pytest.raises(UserError, match="similarity.kernel_size"):
            Structure(kernel_size=bad)
    with pytest.raises(UserError, match="similarity.kernel_size"):  # reflect padding needs a window under 2*side
        Structure(kernel_size=15)(torch.zeros(1, 1, 6, 6), torch.zeros(1, 1, 6, 6))
    with pytest.raises(UserError, match="data_range"):
        Structure(data_range=0.0)
    with pytest.raises(UserError, match="scale"):
        SingleImageFID(scale=0.0)
    with pytest.raises(UserError, match="inputs"):
        SSIM()(torch.zeros(2, 3, 16, 16), torch.zeros(2, 1, 16, 16))


@pytest.mark.parametrize("name", NAMES)
def test_hydra_configs_instantiate(name):
    with initialize_config_dir(config_dir=str(CONF.parent), version_base="1.3"):
        cfg = compose("config", overrides=[f"similarity={name}"])
    s = instantiate(cfg.similarity)
    assert type(s) is SIMILARITIES[name] and s.name == name


def test_fid_default_features_are_the_shapes_classifier():
    from diffexplain.world.classifier import ClassifierFeatures

    with initialize_config_dir(config_dir=str(CONF.parent), version_base="1.3"):
        cfg = compose("config", overrides=["similarity=fid"])
    fid = instantiate(cfg.similarity)
    assert isinstance(fid.feature_net, ClassifierFeatures)
    x = torch.rand(2, 3, 32, 32)
    assert torch.allclose(fid(x, x), torch.ones(2), atol=1e-4) and (fid(x, x.flip(0)) < 1).all()


# -- the authors' variant (X-Diffusion ssim.py) -----------------------------------------------------------------


def reference_maps(a: torch.Tensor, b: torch.Tensor, kernel_size: int, sigma: float, L: float, mode: str,
                   variant: str) -> dict:
    """A straightforward float64 re-implementation with scipy.ndimage.correlate, one channel at a time.

    ``mode``: "constant" (zero padding, the authors) or "mirror" (torch's reflect).  Returns channel-mean maps
    [B, H, W] of the structure term and (authors) the full SSIM formula.
    """
    x = np.arange(kernel_size) - kernel_size // 2
    g = np.exp(-(x**2) / (2 * sigma**2))
    window = np.outer(g / g.sum(), g / g.sum())
    c1, c2 = (0.01 * L) ** 2, (0.03 * L) ** 2
    c3 = c2 / 2
    maps: dict[str, list] = {"structure": [], "ssim": []}
    for ai, bi in zip(a.double().numpy(), b.double().numpy()):
        per_channel: dict[str, list] = {"structure": [], "ssim": []}
        for x1, x2 in zip(ai, bi):
            f = lambda img: scipy.ndimage.correlate(img, window, mode=mode, cval=0.0)
            mu1, mu2 = f(x1), f(x2)
            v1, v2, v12 = f(x1 * x1) - mu1**2, f(x2 * x2) - mu2**2, f(x1 * x2) - mu1 * mu2
            if variant == "authors":
                per_channel["structure"].append((2 * v12 + c3) / (np.sqrt(v1) * np.sqrt(v2) + c3))
                per_channel["ssim"].append((2 * mu1 * mu2 + c1) * (2 * v12 + c2)
                                           / ((mu1**2 + mu2**2 + c1) * (v1 + v2 + c2)))
            else:
                per_channel["structure"].append((v12 + c3)
                                                / (np.sqrt(np.clip(v1, 0, None) * np.clip(v2, 0, None)) + c3))
        for name, values in per_channel.items():
            if values:
                maps[name].append(np.mean(values, axis=0))
    return {name: torch.from_numpy(np.stack(v)) for name, v in maps.items() if v}


def test_authors_structure_by_hand():
    """A unit impulse a at the centre of a 3x3 image and b = -a/2, a 3-tap window, sigma 1.5, zero padding.

    1-D weights (w, 1, w) / (1 + 2w) with w = exp(-1/4.5) = 0.800737; pixel (i, j)'s window sees the impulse with
    weight m = g_i g_j: 0.147761 at the centre, 0.118318 on the edges, 0.094742 in the corners.  There
    mu_a = m, var_a = m - m^2 =: v, mu_b = -m/2, var_b = v/4, cov = -v/2, so the authors' term is
    s = (2 cov + C3) / (sqrt(var_a) sqrt(var_b) + C3) = (-v + C3) / (v/2 + C3), C3 = 0.03^2 / 2 = 0.00045.
    """
    a = torch.zeros(1, 1, 3, 3, dtype=torch.float64)
    a[0, 0, 1, 1] = 1.0
    b = -a / 2
    m = torch.tensor([[0.094742, 0.118318, 0.094742], [0.118318, 0.147761, 0.118318], [0.094742, 0.118318, 0.094742]],
                     dtype=torch.float64)
    v = m - m**2
    expected = (-v + 0.00045) / (v / 2 + 0.00045)
    got = Structure(variant="authors", kernel_size=3).map(a, b)[0]
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)
    assert got[1, 1].item() == pytest.approx(-1.97871, abs=1e-4)  # -0.125478 / 0.063414: the factor 2 shows
    textbook = Structure(kernel_size=3, data_range=1.0).map(a, b)[0]
    assert textbook.min() >= -1 - 1e-9  # the textbook term stays in [-1, 1]


@pytest.mark.parametrize("kernel_size, sigma, data_range", [(15, 1.5, None), (11, 2.0, 2.0), (5, 1.0, None)])
def test_authors_variant_matches_a_reference(kernel_size, sigma, data_range):
    a = 0.8 * noise((2, 4, 16, 16), 12) + 0.3
    b = torch.cat((a[:1] + noise((1, 4, 16, 16), 13, 0.3), noise((1, 4, 16, 16), 14)))
    ref = reference_maps(a, b, kernel_size, sigma, data_range or 1.0, "constant", "authors")
    kwargs = dict(kernel_size=kernel_size, sigma=sigma, data_range=data_range, variant="authors")
    for cls, name in [(Structure, "structure"), (Contrast, "structure"), (SSIM, "ssim")]:
        s = cls(**kwargs)
        torch.testing.assert_close(s.map(a.double(), b.double()), ref[name], atol=1e-10, rtol=0)
        torch.testing.assert_close(s.map(a, b), ref[name].float(), atol=2e-5, rtol=1e-5)
        torch.testing.assert_close(s(a, b), ref[name].float().mean((1, 2)), atol=2e-5, rtol=1e-5)
        assert s.map(a, b[:1]).shape == (2, 16, 16)  # broadcast as the other forms


def test_textbook_terms_honour_the_kernel_size():
    a = smooth(batch=2, size=20)
    b = (a + noise(a.shape, 15, 0.2)).clamp(0, 1)
    for k in (15, 11, 7):
        ref = reference_maps(a, b, k, 1.5, 1.0, "mirror", "textbook")["structure"]
        torch.testing.assert_close(Structure(kernel_size=k, data_range=1.0).map(a.double(), b.double()), ref,
                                   atol=1e-9, rtol=0)
    assert Structure().kernel_size == 11 and Structure(sigma=2.0).kernel_size == 15 and SSIM().kernel_size == 11
    assert Structure(variant="authors").kernel_size == 15  # the authors' SSIM(15, ...)


def test_authors_terms_properties():
    """Their structure term of an item with itself is (2 var + C3) / (var + C3) in [1, 2); symmetric; contrast =
    structure."""
    x = smooth()
    s, c = Structure(variant="authors"), Contrast(variant="authors")
    same = s.map(x, x)
    assert same.min() >= 1 - 1e-6 and same.max() < 2
    y = (x + noise(x.shape, 16, 0.2)).clamp(0, 1)
    torch.testing.assert_close(s.map(x, y), s.map(y, x), atol=1e-5, rtol=0)
    assert torch.equal(c.map(x, y), s.map(x, y))
    torch.testing.assert_close(SSIM(variant="authors")(x, x), torch.ones(2), atol=1e-5, rtol=0)
    assert not torch.allclose(s.map(x, y), Structure(kernel_size=15).map(x, y), atol=1e-2)  # not the textbook term


def test_authors_variant_keeps_the_nan_of_a_negative_rounded_variance():
    """A flat item has zero variance away from the border; rounding makes it negative for some levels (0.3 here),
    and their sqrt gives NaN there."""
    a = torch.linspace(0.1, 3.0, 30).view(30, 1, 1, 1).expand(30, 1, 32, 32)  # 30 flat levels: some round below 0
    b = smooth(batch=1, channels=1, size=32)
    s = Structure(variant="authors")
    negative = s.moments(*torch.broadcast_tensors(a, b)).var_a[:, 0] < 0
    assert negative.any()  # zero padding makes the border variances truly positive; the interior is rounding
    assert torch.equal(s.map(a, b).isnan(), negative)
    assert torch.isfinite(Structure().map(a, b)).all() and torch.isfinite(SSIM(variant="authors").map(a, b)).all()


def test_invalid_variants():
    with pytest.raises(UserError, match=r"^similarity\.variant='paper' is invalid"):
        Structure(variant="paper")
    with pytest.raises(UserError, match=r"similarity\.variant='authors'.*no luminance term"):
        Luminance(variant="authors")
    with pytest.raises(UserError, match="similarity.kernel_size"):
        SSIM(kernel_size=11, sigma=2.0)
    SSIM(kernel_size=11, sigma=2.0, variant="authors")  # the authors' window is not tied to sigma


@pytest.mark.parametrize("name", ["ssim", "structure", "contrast"])
def test_hydra_authors_variant(name):
    with initialize_config_dir(config_dir=str(CONF.parent), version_base="1.3"):
        cfg = compose("config", overrides=[f"similarity={name}", "similarity.variant=authors"])
    s = instantiate(cfg.similarity)
    assert s.variant == "authors" and s.kernel_size == 15 and s.data_range is None
