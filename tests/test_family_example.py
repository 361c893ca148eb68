"""Adding a family is one file plus its registration: a tiny sixth family, written here as its own module would
be, registered, trained a few iterations through the real ``train`` path, loaded from its bundle and generating.

The family needs only what every family provides (caloforge.models.base): a config class, the loss, the sampler;
the training step, the checkpoints, the selection, the bundle, generation and export come from the shared code.
"""

from __future__ import annotations

import csv
from typing import Annotated

import numpy as np
import pytest
import torch
from pydantic import Field
from torch import Tensor, nn

from caloforge.deploy.backends import open_generator
from caloforge.generator import Generator
from caloforge.models import FAMILIES, get_family, register_family
from caloforge.models.base import Batch, FamilyConfig, GenerativeModel
from caloforge.models.preprocess import Preprocessing
from caloforge.training import load, train
from synthetic import make_showers

pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.filterwarnings("ignore:the validation sample has fewer:UserWarning")]


# ----------------------------------------------------------- the family: what a new models/<name>.py would hold
class GaussianConfig(FamilyConfig):
    """A conditional diagonal Gaussian over the network-space shower: a mean network and one width per feature."""

    hidden: Annotated[int, Field(ge=1, le=4096)] = 16
    lr: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 1e-2
    batch_size: Annotated[int, Field(ge=1, le=2**24)] = 64


class Gaussian(GenerativeModel):
    """x = mean(c) + exp(log_sigma) * noise; trained by the Gaussian negative log-likelihood."""

    config_class = GaussianConfig

    def __init__(self, config: GaussianConfig, preprocessing: Preprocessing) -> None:
        super().__init__(config, preprocessing)
        self.mean = nn.Sequential(nn.Linear(self.n_conditions, config.hidden), nn.ReLU(),
                                  nn.Linear(config.hidden, self.n_features))
        self.log_sigma = nn.Parameter(torch.zeros(self.n_features))

    def loss(self, batch: Batch, generator: torch.Generator | None = None) -> Tensor:
        x, c = self.encode(batch)
        z = (x - self.mean(c)) * torch.exp(-self.log_sigma)
        return (0.5 * z**2 + self.log_sigma).sum(dim=1).mean()

    def noise_size(self) -> int:
        return self.n_features

    def sample_from_noise(self, conditions: Tensor, noise: Tensor) -> Tensor:
        out: Tensor = self.mean(conditions) + torch.exp(self.log_sigma) * noise
        return out

    def sample_features(self, conditions: Tensor, generator: torch.Generator | None = None) -> Tensor:
        noise = torch.randn(conditions.shape[0], self.n_features, generator=generator, device=conditions.device,
                            dtype=conditions.dtype)
        return self.sample_from_noise(conditions, noise)

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        return [torch.optim.Adam(self.parameters(), lr=self.config.lr)]


# ----------------------------------------------------------------------------------------------- the test
@pytest.fixture
def registered():
    register_family("gaussian", Gaussian)
    yield "gaussian"
    FAMILIES.pop("gaussian")  # the contract test's parametrisation is the built-in families


def test_a_sixth_family_trains_through_train_and_generates(registered, tiny_geometry, tmp_path):
    assert get_family(registered) is Gaussian
    data = make_showers(tiny_geometry, 400, seed=1, energies=(1000.0, 4000.0))
    config = GaussianConfig(hidden=8, preprocessing="layer")
    result = train(data, registered, config, tmp_path / "run", max_iterations=60, checkpoint_every=20,
                   progress=False, seed=2)
    with (tmp_path / "run" / "log.csv").open() as f:
        log = list(csv.DictReader(f))
    assert [int(r["iteration"]) for r in log] == [0, 20, 40, 60]
    losses = [float(r["loss"]) for r in log[1:]]
    assert losses[-1] < losses[0]  # the shared training step minimised the family's loss
    assert result.ranges[0].best_chi2_ndf < float(log[0]["chi2_ndf"])  # and the selection saw it learn
    bundle = load(result.bundle_dir)
    assert bundle.family == registered and bundle.models[0].config == config
    generator = open_generator(result.bundle_dir, device="cpu")
    assert isinstance(generator, Generator)
    showers = generator.generate([1000.0, 4000.0] * 50, seed=3, batch_size=32)
    assert showers.showers.shape == (100, tiny_geometry.n_voxels)
    assert np.isfinite(showers.showers).all() and (showers.showers >= 0).all()
    again = generator.generate([1000.0, 4000.0] * 50, seed=3, batch_size=32)
    np.testing.assert_array_equal(showers.showers, again.showers)
    # trained, its showers carry about the incident energy's share the data carries (an untrained mean would not)
    ratio = showers.showers.sum(1) / showers.energies
    reference = data.showers.sum(1) / data.energies
    assert abs(np.median(ratio) / np.median(reference) - 1) < 0.25
