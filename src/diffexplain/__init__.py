"""diffexplain: explain diffusion models timestep by timestep."""

from diffexplain import config as _config  # noqa: F401  (registers the OmegaConf resolvers conf/ uses)

__version__ = "0.1.0"
