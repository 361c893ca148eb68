"""Validators of user input shared by the whole package: numeric arrays, incident energies, seeds.

One definition each, so that a ShowerSet, a file, a bundle and the simulator accept and
refuse the same things with the same message.

Accepted numeric data: floating point, integer and boolean arrays, converted explicitly to
the float type the caller asks for. Refused: complex numbers (the imaginary part would be
lost silently), strings, bytes, Python objects and compound (structured) records.

Incident energies must lie within :data:`E_MIN_MEV` (1 keV) and :data:`E_MAX_MEV`
(100 TeV). Below 1 keV a calorimeter sees nothing (showers come out all zero), above
100 TeV lies beyond any collider and the numerics of the simulator and the models.
"""

from __future__ import annotations

import math
import numbers
import operator
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, DTypeLike, NDArray

from caloforge.errors import CaloforgeError, ConfigError, DataError

__all__ = [
    "E_MAX_MEV",
    "E_MIN_MEV",
    "SEED_LIMIT",
    "check_dtype",
    "check_finite",
    "check_incident_energies",
    "check_integer",
    "check_seed",
    "to_real_array",
]

E_MIN_MEV = 1e-3
"""Smallest accepted incident energy: 1 keV, in MeV."""

E_MAX_MEV = 1e8
"""Largest accepted incident energy: 100 TeV, in MeV."""

SEED_LIMIT = 2**63
"""Seeds are integers in [0, SEED_LIMIT): numpy and torch accept them, and seed + offset stays below 2**64."""

_REAL_KINDS = {"b": "bool", "i": "integer", "u": "unsigned integer", "f": "floating point"}


def check_finite(values: NDArray[Any], what: str) -> None:
    """Raise :class:`DataError` naming how many values are NaN/inf and where the first one is."""
    bad = ~np.isfinite(values)
    if bad.any():
        first = np.unravel_index(int(np.argmax(bad)), values.shape)
        where = tuple(int(i) for i in first)
        msg = f"expected finite values but {int(bad.sum())} of {what} are NaN or inf (first at index {where})"
        raise DataError(msg)


def check_dtype(dtype: np.dtype[Any], what: str, error: type[CaloforgeError] = DataError) -> None:
    """Refuse a dtype that is not real numbers (float, integer or bool).

    Args:
        dtype: The dtype of an array or HDF5 dataset.
        what: What holds it, e.g. ``"'showers' in x.h5"``.
        error: The caloforge error type to raise.

    Raises:
        CaloforgeError: of type ``error``, for complex, string, bytes, object and compound dtypes.

    Example:
        >>> check_dtype(np.dtype("complex64"), "the showers")
        Traceback (most recent call last):
        ...
        caloforge.errors.DataError: expected real numbers (float, integer or bool) but got complex64, in the \
showers; complex values are refused rather than dropping their imaginary part
    """
    if dtype.kind in _REAL_KINDS and dtype.fields is None and dtype.subdtype is None:
        return
    if dtype.fields is not None:
        got = f"compound records {dtype.descr}"
    elif dtype.kind in "SUO":
        got = f"text or objects ({dtype})"
    else:
        got = str(dtype)
    also = "; complex values are refused rather than dropping their imaginary part" if dtype.kind == "c" else ""
    msg = f"expected real numbers (float, integer or bool) but got {got:.200}, in {what}{also}"
    raise error(msg)


def to_real_array(values: ArrayLike, dtype: DTypeLike, what: str) -> NDArray[Any]:
    """``values`` as an array of ``dtype`` after :func:`check_dtype`; integers and bools are converted explicitly.

    Raises:
        DataError: for values that are not real numbers, or ragged nested lists.
    """
    try:
        array = np.asarray(values)
    except (TypeError, ValueError) as err:  # ragged lists and the like
        msg = f"expected an array of real numbers but could not build one ({err}), in {what}"
        raise DataError(msg) from None
    check_dtype(array.dtype, what)
    with np.errstate(over="ignore"):  # beyond the target's range becomes inf, which the finite checks refuse
        return array.astype(dtype, copy=False)


def check_integer(
    value: Any, what: str, low: int, high: int, where: str, error: type[CaloforgeError] = ConfigError
) -> int:
    """``value`` as an int in [low, high]; integral floats such as ``2.0`` are accepted, bools and text are not.

    Args:
        value: A Python or numpy integer, or a float with an integral value.
        what: Its name, e.g. ``"n_alpha"``.
        low: Smallest allowed value.
        high: Largest allowed value.
        where: Where it was given; ends the message.
        error: The caloforge error type to raise.

    Raises:
        CaloforgeError: of type ``error``, for a non-integer or out-of-range value.
    """
    number: int | None = None
    if isinstance(value, numbers.Integral) and not isinstance(value, bool | np.bool_):
        number = operator.index(value)
    elif isinstance(value, numbers.Real) and math.isfinite(value) and float(value).is_integer():
        number = int(float(value))
    if number is None or not low <= number <= high:
        msg = f"expected {what} to be an integer from {low} to {high} but got {value!r:.60}, in {where}"
        raise error(msg)
    return number


def check_incident_energies(energies: ArrayLike, where: str, allow_empty: bool = True) -> NDArray[np.float64]:
    """Validate incident energies (MeV) and return them as a float64 array of shape (N,).

    Accepts a scalar, shape (N,) or shape (N, 1) (the CaloChallenge file layout).

    Args:
        energies: The incident energies, MeV.
        where: Where they come from, e.g. ``"in x.h5"``; ends every message.
        allow_empty: Accept zero energies (a ShowerSet may be empty; a request to generate may not).

    Returns:
        The energies, float64, shape (N,).

    Raises:
        DataError: for a wrong shape or dtype, NaN/inf, or values outside
            [:data:`E_MIN_MEV`, :data:`E_MAX_MEV`] (1 keV to 100 TeV).

    Example:
        >>> check_incident_energies([[1000.0], [2000.0]], "in the example")
        array([1000., 2000.])
        >>> check_incident_energies([1e300], "in the example")
        Traceback (most recent call last):
        ...
        caloforge.errors.DataError: expected incident energies from 0.001 MeV (1 keV) to 1e+08 MeV (100 TeV) but 1 of \
1 are outside (first at shower 0: 1e+300 MeV), in the example
    """
    e = to_real_array(energies, np.float64, f"the incident energies {where}")
    if e.ndim == 0:
        e = e.reshape(1)
    elif e.ndim == 2 and e.shape[1] == 1:
        e = e[:, 0]
    if e.ndim != 1:
        msg = f"expected incident energies of shape (N,) or (N, 1) but got {e.shape}, {where}"
        raise DataError(msg)
    if e.size == 0 and not allow_empty:
        msg = f"expected at least one incident energy but got none, {where}"
        raise DataError(msg)
    check_finite(e, f"the incident energies {where}")
    if (e <= 0).any():
        first = int(np.argmax(e <= 0))
        msg = (
            f"expected positive incident energies (MeV) but {int((e <= 0).sum())} are zero or negative "
            f"(first at shower {first}: {e[first]:.4g}), {where}"
        )
        raise DataError(msg)
    outside = (e < E_MIN_MEV) | (e > E_MAX_MEV)
    if outside.any():
        first = int(np.argmax(outside))
        msg = (
            f"expected incident energies from {E_MIN_MEV:g} MeV (1 keV) to {E_MAX_MEV:g} MeV (100 TeV) but "
            f"{int(outside.sum())} of {e.size} are outside (first at shower {first}: {e[first]:.4g} MeV), {where}"
        )
        raise DataError(msg)
    return e


def check_seed(seed: Any, where: str) -> int:
    """Validate a random seed: an integer with 0 <= seed < 2**63 (:data:`SEED_LIMIT`).

    numpy and torch both accept such seeds, and ``seed + offset`` (one stream per chunk or
    model) stays valid for torch, which refuses anything at or above 2**64.

    Args:
        seed: The seed as given (Python or numpy integer; bools are refused).
        where: Where it was given, e.g. ``"in generate"``; ends the message.

    Returns:
        The seed as a Python int.

    Raises:
        ConfigError: for a non-integer, negative or too large seed.

    Example:
        >>> check_seed(-1, "in the example")
        Traceback (most recent call last):
        ...
        caloforge.errors.ConfigError: expected a seed that is an integer from 0 to 2**63 - 1 but got -1, in the example
    """
    value: int | None = None
    if isinstance(seed, numbers.Integral) and not isinstance(seed, bool | np.bool_):
        value = operator.index(seed)
    if value is None or not 0 <= value < SEED_LIMIT:
        msg = f"expected a seed that is an integer from 0 to 2**63 - 1 but got {seed!r:.60}, {where}"
        raise ConfigError(msg)
    return value
