"""Generative model families and their registry.

Each family is one module with a ``<Family>Config`` dataclass and a
:class:`~caloforge.models.base.GenerativeModel` subclass. :data:`FAMILIES` maps the
names users type (``--family gan``) to the model classes; :func:`register_family` adds
one (and thereby enrols it in the contract test, ``tests/test_models_contract.py``).
:data:`DISTILLED` holds the families made from another model instead of from showers (the
one-pass flow student, ``caloforge distill``): bundles of them load, ``train`` and the
leaderboard do not offer them.

Example:
    >>> get_family("gan").__name__
    'GAN'
    >>> "gan" in FAMILIES
    True
"""

from __future__ import annotations

from caloforge.errors import ConfigError
from caloforge.models.base import Batch, FamilyConfig, GenerativeModel
from caloforge.models.diffusion import Diffusion
from caloforge.models.flow import Flow
from caloforge.models.flow_student import FlowStudent
from caloforge.models.gan import GAN, GANConfig
from caloforge.models.latent import Latent
from caloforge.models.parametric import Parametric
from caloforge.models.vae import VAE

__all__ = ["DISTILLED", "FAMILIES", "GAN", "Batch", "FamilyConfig", "GANConfig", "GenerativeModel", "get_family",
           "register_family"]

FAMILIES: dict[str, type[GenerativeModel]] = {
    "gan": GAN,
    "flow": Flow,
    "parametric": Parametric,
    "diffusion": Diffusion,
    "vae": VAE,
    "latent": Latent,
}

DISTILLED: dict[str, type[GenerativeModel]] = {
    "flow-student": FlowStudent,
}
"""Families distilled from a trained model (not trainable from showers alone): loaded by name like :data:`FAMILIES`."""


def get_family(name: str) -> type[GenerativeModel]:
    """The model class registered as ``name``.

    Raises:
        ConfigError: for an unknown name; the message lists the valid ones (those trainable from showers).
    """
    try:
        return FAMILIES[name] if name in FAMILIES else DISTILLED[name]
    except KeyError:
        msg = f"expected a model family in {sorted(FAMILIES)} but got '{name}'"
        raise ConfigError(msg) from None


def register_family(name: str, family: type[GenerativeModel], replace: bool = False) -> None:
    """Register a model family under ``name``.

    Raises:
        ConfigError: if ``family`` is not a GenerativeModel subclass, or ``name`` is taken and not ``replace``.
    """
    if not (isinstance(family, type) and issubclass(family, GenerativeModel)):
        msg = f"expected a GenerativeModel subclass but got {family!r}, in register_family('{name}')"
        raise ConfigError(msg)
    if (name in FAMILIES or name in DISTILLED) and not replace:
        msg = f"expected a new family name but '{name}' is already registered; pass replace=True"
        raise ConfigError(msg)
    FAMILIES[name] = family
