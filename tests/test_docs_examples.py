"""Every ```python block of README.md and docs/*.md runs, as a user would paste it.

The blocks run in a fresh directory that holds the files they name: small CaloChallenge files made
by the reference simulator, copies of the official binning XMLs, and a bundle trained for a few
iterations. A block that stops working (an import, a renamed argument) fails here.
"""

from __future__ import annotations

import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from caloforge.data.io import write
from caloforge.models import GANConfig
from caloforge.refsim import simulate

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)
XMLS = ROOT / "tests" / "data" / "calochallenge"  # the official binning files, kept in the repository


def _blocks() -> list[pytest.param]:
    found = []
    for document in DOCUMENTS:
        text = document.read_text()
        for match in BLOCK.finditer(text):
            line = text[: match.start()].count("\n") + 1
            found.append(pytest.param(match.group(1), id=f"{document.relative_to(ROOT)}:{line}"))
    return found


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """The files the examples name, made small."""
    from caloforge.training import train

    base = tmp_path_factory.mktemp("docs")
    energies = np.repeat(2.0 ** np.arange(10, 14), 30)
    photons = simulate("ds1-photons", "photon", energies, seed=1)
    write(base / "dataset_1_photons_1.hdf5", photons)
    write(base / "dataset_3_1.hdf5", simulate("ds3", "electron", [2e3, 2e4], seed=2))
    shutil.copy(XMLS / "binning_dataset_1_pions.xml", base)
    shutil.copy(XMLS / "binning_dataset_2.xml", base / "my_binning.xml")  # an electron binning
    tiny = GANConfig(noise_dim=8, generator_layers=(32, 32), critic_layers=(32, 32), batch_size=64, critic_steps=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a tiny validation sample
        train(photons, "gan", tiny, base / "run", max_iterations=2, checkpoint_every=1, progress=False, seed=1)
    return base


@pytest.mark.parametrize("code", _blocks())
@pytest.mark.usefixtures("one_thread")
def test_the_documented_example_runs(code, workdir, monkeypatch):
    monkeypatch.chdir(workdir)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # e.g. tiny samples; the example's own output is not tested
        exec(compile(code, "<example>", "exec"), {"__name__": "__example__"})
