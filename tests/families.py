"""Tiny configs and bundles of every model family, shared by the tests that run each family (contract, deploy,
lean and reduced-precision generation)."""

from __future__ import annotations

from pathlib import Path

import torch

from caloforge.data.geometry import Geometry
from caloforge.data.showers import ShowerSet
from caloforge.models import FAMILIES, GAN, GANConfig
from caloforge.models.base import Batch, FamilyConfig
from caloforge.models.diffusion import DiffusionConfig
from caloforge.models.flow import FlowConfig
from caloforge.models.latent import LatentConfig
from caloforge.models.parametric import ParametricConfig
from caloforge.models.preprocess import Preprocessing
from caloforge.models.vae import VAEConfig
from caloforge.training.bundle import Bundle, load
from caloforge.training.bundle_format import save_model

__all__ = ["TINY_CONFIGS", "batch_of", "one_step_bundle", "tiny_config", "untrained_gan_bundle"]

TINY_CONFIGS = {
    "flow": FlowConfig(design="split", coupling="spline", blocks=2, hidden=(16,), energy_blocks=2, energy_hidden=(8,),
                       bins=4, knots=3, batch_size=32, init_batches=2),
    "parametric": ParametricConfig(knots=3, reservoir=16, levels=9, batch_size=32),
    "gan": GANConfig(noise_dim=4, generator_layers=(16, 16, 16), critic_layers=(16, 16, 16), batch_size=32,
                     critic_steps=2),
    "diffusion": DiffusionConfig(width=16, depth=2, time_dim=8, embedding_dim=8, batch_size=32, normalisation_batches=2,
                                 sampler_steps=3),
    "vae": VAEConfig(encoder_layers=(16, 8), latent_dim=3, batch_size=32, kl_warmup_iterations=10),
    "latent": LatentConfig(layer_shapes=((2, 3), (1, 2)), channels=(4, 8), latent_dim=4, prior_width=16,
                           prior_depth=2, time_dim=8, embedding_dim=8, batch_size=32, normalisation_batches=2,
                           sampler_steps=3, voxel_model="zero_inflated"),
}
"""A config per family small enough for a test (a family without an entry uses its defaults)."""


def tiny_config(name: str) -> FamilyConfig:
    """The tiny config of the family registered as ``name``."""
    return TINY_CONFIGS.get(name, FAMILIES[name].config_class())


def batch_of(data: ShowerSet) -> Batch:
    """All of ``data`` as one training batch."""
    return Batch(torch.tensor(data.energies, dtype=torch.float32), torch.tensor(data.showers))


def one_step_bundle(tmp_path: Path, family: str, geometry: Geometry, data: ShowerSet) -> Bundle:
    """A bundle of ``family`` (tiny config) after one training step on ``data`` (not an all-zero generator)."""
    config = tiny_config(family)
    torch.manual_seed(0)
    model = FAMILIES[family](config, Preprocessing.fit(data, config.preprocessing))
    model.train_step(lambda: batch_of(data), model.configure_optimizers(), lambda loss: loss.backward(),
                     torch.Generator().manual_seed(0))
    return load(save_model(tmp_path / family, model, family, geometry))


UNTRAINED_GAN = GANConfig(noise_dim=4, generator_layers=(8, 8, 8), critic_layers=(8, 8, 8), batch_size=16)


def untrained_gan_bundle(path: Path, showers: ShowerSet, seed: int) -> Path:
    """An untrained tiny GAN bundle (its weights drawn from ``seed``), fitted to ``showers``' preprocessing."""
    torch.manual_seed(seed)
    model = GAN(UNTRAINED_GAN, Preprocessing.fit(showers, UNTRAINED_GAN.preprocessing, UNTRAINED_GAN.energy_scale))
    return save_model(path, model, "gan", showers.geometry)
