"""Reading a campaign spec and the checks that span its sections, all before any trial starts.

:func:`load_spec` reads the YAML file into a :class:`~caloforge.campaign.spec.CampaignSpec` (which
refuses unknown keys and wrong types, naming the key and the file), then checks families that
exist, search keys their configs know and values those configs accept (and, with
``include_defaults``, the defaults inside each range), data files that exist and can be read,
one data source per slice, valid refsim settings, and slices of a particle that do not overlap.
Every problem is one :class:`~caloforge.errors.ConfigError` line naming the key and the file.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from caloforge.campaign.spec import (
    KINDS,
    Budget,
    CampaignSpec,
    DataFiles,
    EarlyStopping,
    FamilySpec,
    RefsimSource,
    Resources,
    SearchParam,
    SliceSpec,
    family_config,
)
from caloforge.data import io
from caloforge.data.documents import read_yaml
from caloforge.data.presets import resolve_geometry
from caloforge.errors import CaloforgeError, ConfigError
from caloforge.models import FAMILIES, get_family
from caloforge.refsim import Spectrum, atlas_like, detector_for
from caloforge.validation.metrics.classifier import ClassifierConfig

__all__ = ["load_spec", "parse_spec"]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}")


def _sections(data: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The nested sections built one by one, so that an error names its own section (``families.gan.search.lr``)."""
    out: dict[str, Any] = {}
    for key, cls in (("budget", Budget), ("resources", Resources), ("early_stopping", EarlyStopping),
                     ("classifier", ClassifierConfig)):
        if data.get(key) is not None:
            out[key] = cls.from_dict(data[key], where=f"{key} of {where}")
    if isinstance(data.get("slices"), list):
        slices = []
        for i, raw in enumerate(data["slices"]):
            at = f"slices[{i}] of {where}"
            if isinstance(raw, Mapping):
                raw = {**raw, **{k: cls.from_dict(raw[k], where=f"slices[{i}].{k} of {where}")
                                 for k, cls in (("data", DataFiles), ("refsim", RefsimSource))
                                 if raw.get(k) is not None}}
            slices.append(SliceSpec.from_dict(raw, where=at))
        out["slices"] = tuple(slices)
    if isinstance(data.get("families"), Mapping):
        families = {}
        for name, raw in data["families"].items():
            at = f"families.{name} of {where}"
            if isinstance(raw, Mapping) and isinstance(raw.get("search"), Mapping):
                raw = {**raw, "search": {k: SearchParam.from_dict(v, where=f"families.{name}.search.{k} of {where}")
                                         for k, v in raw["search"].items()}}
            families[str(name)] = FamilySpec.from_dict(raw, where=at)
        out["families"] = families
    return out


def parse_spec(data: Any, where: str = "the campaign spec") -> CampaignSpec:
    """A :class:`CampaignSpec` from parsed YAML; errors name their section (without the checks of :func:`load_spec`).

    Raises:
        ConfigError: for unknown keys, wrong types or values out of range.
    """
    if not isinstance(data, Mapping):
        msg = f"expected a mapping of campaign keys but got {type(data).__name__}, in {where}"
        raise ConfigError(msg)
    return CampaignSpec.from_dict({**data, **_sections(data, where)}, where=where)


def load_spec(path: str | Path) -> CampaignSpec:
    """Read and check a campaign spec; relative paths become absolute (relative to the spec file).

    Raises:
        ConfigError: for a missing or unparsable file, unknown keys, wrong types, an unknown family or
            metric, an empty search space, a search key or value the family's config refuses, a slice
            without data (or with two sources), a missing or unreadable data file, overlapping slices.
    """
    path = Path(path)
    where = f"the campaign spec {path}"
    data = read_yaml(path, "a YAML campaign spec") or {}  # safe, bounded, no duplicate keys
    spec = parse_spec(data, where)
    base = path.resolve().parent
    slices = tuple(_check_slice(s, i, base, where) for i, s in enumerate(spec.slices))
    spec = spec.replace(slices=[s.to_dict() for s in slices])
    _check_overlaps(spec, where)
    if spec.budget.iterations is None and spec.budget.minutes is None:
        msg = f"expected a budget per trial (budget.iterations or budget.minutes) but got neither, in {where}"
        raise ConfigError(msg)
    if list(spec.energy_split) != sorted(set(spec.energy_split)):
        msg = f"expected energy_split to be strictly increasing but got {list(spec.energy_split)}, in {where}"
        raise ConfigError(msg)
    if not spec.families:
        msg = f"expected at least one family in families but got none, in {where}"
        raise ConfigError(msg)
    for family in spec.families:
        _check_family(spec, family, where)
    return spec


def _check_family(spec: CampaignSpec, family: str, where: str) -> None:
    if family not in FAMILIES:
        msg = f"expected a model family in {sorted(FAMILIES)} but got '{family}', in families of {where}"
        raise ConfigError(msg)
    search = spec.families[family].search
    if not search:
        msg = f"expected at least one key in the search space of family '{family}' but got none, in {where}"
        raise ConfigError(msg)
    fields = get_family(family).config_class.model_fields
    for key, param in search.items():
        at = f"families.{family}.search.{key} of {where}"
        if key not in fields:
            msg = f"expected a key of {get_family(family).config_class.__name__} in {sorted(fields)} but got " \
                  f"'{key}', in families.{family}.search of {where}"
            raise ConfigError(msg)
        given = [k for k in KINDS if getattr(param, k) is not None]
        if len(given) != 1:
            msg = f"expected exactly one of {list(KINDS)} but got {given or 'none'}, in {at}"
            raise ConfigError(msg)
        if param.choice is not None and not param.choice:
            msg = f"expected at least one value to choose from but got none, in {at}"
            raise ConfigError(msg)
        if param.choice is None:
            low, high = param.candidates()
            if not low < high or (param.kind.startswith("log_") and low <= 0):
                positive = " and low > 0" if param.kind.startswith("log_") else ""
                msg = f"expected [low, high] with low < high{positive} but got [{low}, {high}], in {at}"
                raise ConfigError(msg)
    for particle in sorted({s.particle for s in spec.slices}):
        default = family_config(spec, family, particle, where=where)
        for key, param in search.items():
            for value in param.candidates():
                family_config(spec, family, particle, {key: value}, where=where)
            current = getattr(default, key)
            if spec.include_defaults and not param.contains(current):
                msg = (f"expected the default {key} = {current!r} of {family} for {particle}s inside the search "
                       f"space {param.to_dict()[param.kind]!r} (include_defaults is true) but it is outside; widen "
                       f"the space or set include_defaults: false, in families.{family}.search.{key} of {where}")
                raise ConfigError(msg)


def _check_slice(s: SliceSpec, index: int, base: Path, where: str) -> SliceSpec:
    at = f"slices[{index}] ({s.label}) of {where}"
    if not _NAME.fullmatch(s.label):
        msg = f"expected a slice name of letters, digits, '.', '_', '+' or '-' but got {s.label!r}, in {at}"
        raise ConfigError(msg)
    if not s.eta[0] < s.eta[1]:
        msg = f"expected an |eta| range [low, high) with low < high but got {list(s.eta)}, in {at}"
        raise ConfigError(msg)
    if (s.data is None) == (s.refsim is None):
        got = "both" if s.data is not None else "neither"
        msg = f"expected exactly one data source, 'data' (files) or 'refsim' (simulated), but got {got}, in {at}"
        raise ConfigError(msg)
    if s.data is not None:
        files = {k: v for k, v in s.data.to_dict().items() if k != "geometry" and v is not None}
        resolved = {k: str((base / v).resolve()) for k, v in files.items()}
        for key, file in resolved.items():
            _check_file(Path(file), s.data.geometry, f"slices[{index}].data.{key} of {where}")
        return s.replace(data={**s.data.to_dict(), **resolved})
    return _check_refsim(s, at)


def _check_file(path: Path, geometry: str | None, at: str) -> None:
    if not path.is_file():
        msg = f"expected the data file {path} but it does not exist, in {at}"
        raise ConfigError(msg)
    try:
        info = io.inspect(path).require_showers()
        if geometry is not None or info.geometry is None:
            resolve_geometry(geometry, None if geometry is not None else info.n_voxels).check_voxels(info.n_voxels)
    except CaloforgeError as err:
        msg = f"expected a readable CaloChallenge file but {err}; in {at}"
        raise ConfigError(msg) from None


def _check_refsim(s: SliceSpec, at: str) -> SliceSpec:
    r = s.refsim or RefsimSource()
    geometry = r.geometry or ("ds1-pions" if s.particle == "pion" else "ds1-photons")
    eta = r.eta if r.eta is not None else 0.5 * (s.eta[0] + s.eta[1])
    try:
        geo = resolve_geometry(geometry)
        if not detector_for(geo).name.startswith("ATLAS"):
            msg = f"expected a dataset-1 (ATLAS-like) geometry for a refsim slice but got '{geometry}'"
            raise ConfigError(msg)
        atlas_like(eta, r.extra_material_x0).check_geometry(geo)
        if r.energies and r.spectrum is not None:
            msg = "expected either refsim.energies or refsim.spectrum but got both"
            raise ConfigError(msg)
        if r.spectrum is not None:
            Spectrum.parse(r.spectrum)
    except CaloforgeError as err:
        msg = f"{str(err).removesuffix('.')}; in {at}"
        raise ConfigError(msg) from None
    return s.replace(refsim={**r.to_dict(), "geometry": geometry, "eta": eta})


def _check_overlaps(spec: CampaignSpec, where: str) -> None:
    labels = [s.label for s in spec.slices]
    twice = sorted({n for n in labels if labels.count(n) > 1})
    if twice:
        msg = f"expected distinct slice names but got {twice} more than once, in slices of {where}"
        raise ConfigError(msg)
    for i, a in enumerate(spec.slices):
        for b in spec.slices[i + 1:]:
            if a.particle == b.particle and a.eta[0] < b.eta[1] and b.eta[0] < a.eta[1]:
                msg = (f"expected slices of one particle to cover separate |eta| ranges but {a.label} "
                       f"{list(a.eta)} and {b.label} {list(b.eta)} overlap, in slices of {where}")
                raise ConfigError(msg)
