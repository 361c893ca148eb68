"""training.spec: a RunSpec is built from the user's intent with its family looked up once."""

from __future__ import annotations

import pytest

import caloforge.training.spec as spec_module
from caloforge.errors import ConfigError
from caloforge.models import GAN, GANConfig
from caloforge.models.flow import FlowConfig
from caloforge.training.settings import TrainingSettings
from caloforge.training.spec import RunSpec, Runtime

SETTINGS = TrainingSettings(max_iterations=3)


def _counting(monkeypatch):
    names = []

    def get_family(name):
        names.append(name)
        return real(name)

    real = spec_module.get_family
    monkeypatch.setattr(spec_module, "get_family", get_family)
    return names


def test_from_section_looks_the_family_up_once(monkeypatch):
    names = _counting(monkeypatch)
    spec = RunSpec.from_section("gan", {"batch_size": 8}, SETTINGS, Runtime(), preset="cpu", particle=None,
                                where="the model section")
    assert names == ["gan"]
    assert spec.family_class is GAN and spec.config == GANConfig.for_cpu(None).replace(batch_size=8)
    selected = spec.with_default_selection().with_callbacks([object()])  # derived specs keep the class
    assert names == ["gan"] and selected.family_class is GAN and selected.settings.selection is not None
    assert RunSpec.from_arguments("gan", None, SETTINGS, None, Runtime()).family_class is GAN
    assert names == ["gan", "gan"]


def test_from_section_refuses_unknown_families_keys_and_other_configs():
    with pytest.raises(ConfigError, match="model family"):
        RunSpec.from_section("gann", {}, SETTINGS, Runtime(), preset="cpu", particle=None, where="x")
    with pytest.raises(ConfigError, match="in the model section"):
        RunSpec.from_section("gan", {"bach_size": 8}, SETTINGS, Runtime(), preset="cpu", particle=None,
                             where="the model section")
    with pytest.raises(ConfigError, match="expected a GANConfig"):
        RunSpec("gan", FlowConfig(), SETTINGS)
