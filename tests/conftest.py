"""Shared fixtures: tiny geometries and showers made by the tests, the official binning files."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

# Keep libraries from writing outside the sandbox (matplotlib font cache, torch inductor cache); removed at exit.
for _variable, _prefix in (("MPLCONFIGDIR", "caloforge-mpl-"), ("TORCHINDUCTOR_CACHE_DIR", "caloforge-inductor-")):
    if _variable not in os.environ:
        os.environ[_variable] = tempfile.mkdtemp(prefix=_prefix)
        atexit.register(shutil.rmtree, os.environ[_variable], ignore_errors=True)

from caloforge.data.geometry import Geometry, Layer  # noqa: E402 (after the environment is set)
from caloforge.data.showers import ShowerSet  # noqa: E402
from synthetic import make_showers  # noqa: E402


@pytest.fixture
def official_xml_dir() -> Path:
    """The official CaloChallenge binning XML files, copied into tests/data so that no test skips without them."""
    return Path(__file__).resolve().parent / "data" / "calochallenge"


@pytest.fixture
def tiny_geometry() -> Geometry:
    """Two layers: 3 radial x 2 alpha bins, then 2 radial x 1 alpha bin (8 voxels)."""
    return Geometry((Layer(0, (0.0, 1.0, 2.0, 4.0), 2), Layer(5, (0.0, 2.0, 5.0), 1)), name="tiny")


@pytest.fixture
def tiny_showers(tiny_geometry: Geometry) -> ShowerSet:
    """50 random showers at 1 and 4 GeV in the tiny geometry."""
    return make_showers(tiny_geometry, 50, seed=1)


@pytest.fixture
def one_thread():
    """Torch on one thread: tiny networks run fastest so, and do not slow down when other jobs share the cores.

    The thread count is restored afterwards (the CLI sets it from ``--threads``).
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
