"""Single-image FID (SIFID): Fréchet distance between two images' spatial feature sets.

A feature network maps each image to [D, h, w]; its h·w vectors are samples of a D-dimensional
Gaussian with mean μ and covariance Σ (+ eps·I).  The distance is
d = |μa − μb|² + Tr(Σa + Σb − 2 (Σa^½ Σb Σa^½)^½) ≥ 0, and the similarity is exp(−d / scale) in (0, 1],
equal to 1 iff the feature statistics agree (d = 0) and falling towards 0 as d grows; ``scale`` is the
distance at which it reaches 1/e.

Any ``nn.Module`` returning [B, D, h, w] features (h·w > 1) can be plugged in as ``feature_net``,
e.g. Inception's conv layers before the first pooling, through Hydra:
``feature_net: {_target_: mypackage.InceptionConvFeatures}``.  Without one, a fixed random conv net is used.
The ``similarity=fid`` config chooses with ``features`` (:mod:`diffexplain.similarity.features`): ``shapes`` uses
``feature_net`` (there the embedded Shapes classifier's conv features), ``dinov2`` DINOv2's patch features from
``dinov2_path``, ``auto`` the former on the Shapes world (``model=shapes | shapes_grounded`` or a model in
``models_dir/shapes-*``) and the latter on any other model: the Shapes CNN judges another model's images only when
asked for by name (``similarity.features=shapes``).
"""
import torch
from torch import Tensor, nn

from diffexplain.config.options import DINOV2_HUB_ID, FID_FEATURES, fid_features, shapes_world
from diffexplain.errors import check
from diffexplain.similarity.base import Similarity, pair
from diffexplain.similarity.features import dinov2_features, hydra_model_choice


class RandomConvFeatures(nn.Module):
    """Fixed random-init features: 3×3 convs (stride 1, He-normal weights, zero bias) each followed by ReLU.

    [B, in_channels, H, W] → [B, channels[-1], H, W].  Weights come from a local generator seeded with
    ``seed``, so building the net neither needs nor changes the global RNG.
    """

    def __init__(self, in_channels: int = 3, channels: tuple[int, ...] = (16, 32), seed: int = 0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        layers: list[nn.Module] = []
        for c_in, c_out in zip((in_channels, *channels), channels):
            conv = nn.utils.skip_init(nn.Conv2d, c_in, c_out, 3, padding=1)
            with torch.no_grad():
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen) * (2 / (9 * c_in)) ** 0.5)
                conv.bias.zero_()
            layers += [conv, nn.ReLU()]
        self.net = nn.Sequential(*layers).requires_grad_(False)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class SingleImageFID(Similarity):
    """exp(−SIFID / scale) between RGB images in [0, 1]; see the module docstring for the mapping."""

    name = "fid"
    has_map = False
    domain = "image"

    def __init__(self, feature_net: nn.Module | None = None, scale: float = 1.0, eps: float = 1e-6,
                 features: str | None = None, dinov2_path: str = DINOV2_HUB_ID, model_path: str | None = None,
                 models_dir: str | None = None):
        """``features=None``: ``feature_net`` as given (fixed random convs without one). ``auto | shapes | dinov2``
        choose as the module docstring says; ``auto`` decides on the running job's ``model=`` choice, ``model_path``
        and ``models_dir``. ``self.features`` names the network used."""
        super().__init__()
        check(scale > 0, "similarity.scale", scale, "must be > 0")
        check(eps > 0, "similarity.eps", eps, "must be > 0")
        check(features is None or features in FID_FEATURES, "similarity.features", features,
              f"one of {list(FID_FEATURES)} (auto: shapes on the Shapes models, dinov2 on any other)")
        if features is not None:
            features = fid_features(features, shapes_world(hydra_model_choice(), model_path, models_dir))
        if features == "dinov2":
            feature_net = dinov2_features(dinov2_path)
        check(features != "shapes" or feature_net is not None, "similarity.feature_net", None,
              "the Shapes classifier's features node for similarity.features=shapes "
              "({_target_: diffexplain.world.classifier.classifier_features, path: ...})")
        self.features = features or ("random" if feature_net is None else type(feature_net).__name__)
        self.feature_net = RandomConvFeatures() if feature_net is None else feature_net
        self.scale, self.eps = scale, eps

    def distance(self, a: Tensor, b: Tensor) -> Tensor:
        """Fréchet distance [B] between the feature statistics of ``a`` and ``b``, computed in float64.

        Tr((Σa^½ Σb Σa^½)^½) is taken as Σ√λ over the eigenvalues λ of Lᵀ Σb L with Σa = L Lᵀ (Cholesky):
        the same spectrum, but only eigenvalues are needed, whose gradient stays finite when they repeat.
        """
        a, b = pair(a, b)
        feats = self.feature_net(torch.cat((a, b))).flatten(2).double()
        n = feats.shape[-1]
        check(n > 1, "similarity.feature_net", type(self.feature_net).__name__,
              "must return spatial features [B,D,h,w] with h*w > 1")
        mu = feats.mean(-1)
        centred = feats - mu[..., None]
        eye = torch.eye(feats.shape[1], dtype=feats.dtype, device=feats.device)
        cov = centred @ centred.mT / (n - 1) + self.eps * eye
        (mu_a, mu_b), (cov_a, cov_b) = mu.chunk(2), cov.chunk(2)
        chol = torch.linalg.cholesky(cov_a)
        eig = torch.linalg.eigvalsh(chol.mT @ cov_b @ chol)
        root_trace = eig.clamp(min=torch.finfo(eig.dtype).tiny).sqrt().sum(-1)
        trace = cov_a.diagonal(dim1=-2, dim2=-1).sum(-1) + cov_b.diagonal(dim1=-2, dim2=-1).sum(-1)
        d = ((mu_a - mu_b) ** 2).sum(-1) + trace - 2 * root_trace
        return d.clamp(min=0).to(a.dtype)

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        return torch.exp(-self.distance(a, b) / self.scale)
