"""The GAN's CPU sampling: 512-row blocks give the whole batch's showers; the BatchNorm fold follows the weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from caloforge.data.geometry import Geometry, Layer
from caloforge.models import GAN
from caloforge.models.preprocess import Preprocessing
from families import batch_of, tiny_config
from synthetic import make_showers

pytestmark = pytest.mark.usefixtures("one_thread")

UNEQUAL = Geometry((Layer(0, (0.0, 1.0, 2.0), 2), Layer(1, (0.0, 1.0, 2.0, 4.0), 3)), name="unequal")  # 4 + 9 voxels


@pytest.fixture
def gan() -> GAN:
    data = make_showers(UNEQUAL, 128, seed=1, energies=(256.0, 4096.0, 65536.0))
    config = tiny_config("gan").replace(preprocessing="total")
    torch.manual_seed(0)
    model = GAN(config, Preprocessing.fit(data, "total"))
    model.train_step(lambda: batch_of(data), model.configure_optimizers(), lambda loss: loss.backward(),
                     torch.Generator().manual_seed(0))  # BatchNorm statistics and weights away from their start
    return model


def test_blocked_sampling_gives_the_whole_batch_showers(gan, monkeypatch):
    energies = torch.as_tensor(np.geomspace(256.0, 65536.0, 1300))  # 2 full blocks and a partial one
    assert GAN.sample_block_rows == 512
    blocked = gan.sample(energies, generator=torch.Generator().manual_seed(3))
    monkeypatch.setattr(GAN, "sample_block_rows", None)
    whole = gan.sample(energies, generator=torch.Generator().manual_seed(3))
    assert blocked.shape == (1300, UNEQUAL.n_voxels) and bool((blocked >= 0).all())
    torch.testing.assert_close(blocked, whole, rtol=1e-5, atol=1e-6 * float(whole.abs().max()))
    assert float(blocked.sum(1).min()) >= 0 and float(blocked.sum()) > 0


def test_the_folded_generator_follows_weight_updates(gan):
    x = torch.randn(64, gan.config.noise_dim + gan.n_conditions)
    gan.eval()
    with torch.no_grad():
        before = gan._folded_generator()(x)
        torch.testing.assert_close(before, gan.generator(x), rtol=1e-4, atol=1e-5)
        gan.generator[0].weight.mul_(1.5)  # in place: the same storage, a new version
        after = gan._folded_generator()(x)
    torch.testing.assert_close(after, gan.generator(x), rtol=1e-4, atol=1e-5)
    assert not torch.allclose(after, before)
