"""Typed, validated settings: the base of every config (model families, training, classifier, campaigns).

A :class:`Config` is a frozen pydantic model that refuses unknown keys and values of the wrong
type (no silent coercion: ``"10"`` is not an integer, ``2.5`` is not one either, ``true`` is not
a seed), round-trips exactly through JSON (:meth:`Config.to_dict` / :meth:`Config.from_dict`;
tuples are written as lists and read back as tuples) and turns every validation failure into
one :class:`~caloforge.errors.ConfigError` line that names the key, what was expected, what came,
and where (a class, or a section of a file).

Example:
    >>> class Demo(Config):
    ...     layers: tuple[int, ...] = (64, 64)
    ...     lr: float = 1e-3
    >>> Demo.from_dict({"layers": [32, 32]}).layers
    (32, 32)
    >>> Demo.from_dict({"lr": "fast"}, where="the model section of cfg.yaml")
    Traceback (most recent call last):
    ...
    caloforge.errors.ConfigError: expected lr to be a number but got 'fast', in the model section of cfg.yaml
"""

from __future__ import annotations

import contextvars
import types
import typing
from collections.abc import Mapping
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from caloforge.errors import ConfigError

__all__ = ["Config", "config_error"]

_WHERE: contextvars.ContextVar[str | None] = contextvars.ContextVar("caloforge_config_where", default=None)

_WHAT = {
    "int_type": "to be an integer", "int_parsing": "to be an integer", "int_from_float": "to be an integer",
    "float_type": "to be a number", "float_parsing": "to be a number", "finite_number": "to be a finite number",
    "bool_type": "to be true or false", "bool_parsing": "to be true or false",
    "string_type": "to be a string", "tuple_type": "to be a list", "list_type": "to be a list",
    "dict_type": "to be a mapping", "model_type": "to be a mapping", "missing": "to be given",
}
_BOUNDS = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}


def config_error(err: ValidationError, model: type[BaseModel], where: str | None = None) -> ConfigError:
    """One :class:`ConfigError` line for the first problem pydantic found (the others follow once it is fixed)."""
    where = where or model.__name__
    problem = err.errors(include_url=False)[0]
    kind, ctx, got = problem["type"], problem.get("ctx") or {}, problem.get("input")
    name = ".".join(str(part) for part in problem["loc"] if not isinstance(part, int)) or "the input"
    if kind == "extra_forbidden":
        also = "" if where == model.__name__ else f", in {where}"
        return ConfigError(f"expected keys of {model.__name__} in {sorted(model.model_fields)} but got unknown "
                           f"['{name}']{also}")
    if kind == "literal_error":
        expected = ctx.get("expected", "")
        choices = [c.strip().strip("'\"") for c in expected.replace(" or ", ", ").split(",") if c.strip()]
        return ConfigError(f"expected {name} in {choices} but got {got!r}, in {where}")
    if kind in _BOUNDS:
        bound = next(iter(ctx.values()), "?")
        return ConfigError(f"expected {name} {_BOUNDS[kind]} {bound} but got {got!r}, in {where}")
    if kind in ("too_short", "too_long"):
        size = ctx.get("min_length") if kind == "too_short" else ctx.get("max_length")
        return ConfigError(f"expected {name} to have {'at least' if kind == 'too_short' else 'at most'} {size} "
                           f"entries but got {got!r}, in {where}")
    if kind == "value_error":
        reason = str(ctx.get("error", problem["msg"]))
        return ConfigError(f"expected {name} {reason} but got {got!r}, in {where}")
    what = _WHAT.get(kind, f"to be valid ({problem['msg']})")
    return ConfigError(f"expected {name} {what} but got {got!r:.80}, in {where}")


def _is_tuple(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin is tuple:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_is_tuple(arg) for arg in typing.get_args(annotation))
    return False


class Config(BaseModel):
    """Base of caloforge's settings: frozen, strict types, unknown keys refused, exact JSON round trip."""

    model_config = ConfigDict(strict=True, frozen=True, extra="forbid", validate_default=True)

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as err:
            raise config_error(err, type(self), _WHERE.get()) from None

    @model_validator(mode="before")
    @classmethod
    def _lists_to_tuples(cls, data: Any) -> Any:
        """JSON and YAML have lists where the config has tuples: accept them (their items are still checked)."""
        if not isinstance(data, dict):
            return data
        out = dict(data)
        for name, field in cls.model_fields.items():
            if isinstance(out.get(name), list) and _is_tuple(field.annotation):
                out[name] = tuple(out[name])
        return out

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples become lists); :meth:`from_dict` inverts it exactly."""
        return self.model_dump(mode="json")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], base: Self | None = None, where: str | None = None) -> Self:
        """Build from ``data``; keys not given keep ``base``'s values (or the defaults).

        ``model_fields_set`` of the result is ``base``'s plus the keys of ``data``: which settings someone
        gave, as opposed to defaults (a resumed training run applies a checkpoint interval only when given).

        Raises:
            ConfigError: on unknown keys or values of the wrong type, range or choice, naming ``where``.
        """
        if not isinstance(data, Mapping):
            msg = f"expected a mapping of {cls.__name__} keys but got {type(data).__name__}, in {where or cls.__name__}"
            raise ConfigError(msg)
        merged = {**(base.model_dump() if base is not None else {}), **dict(data)}
        token = _WHERE.set(where)
        try:
            out = cls(**merged)
        finally:
            _WHERE.reset(token)
        if base is not None:  # frozen: pydantic's own bookkeeping attribute, set as pydantic does
            object.__setattr__(out, "__pydantic_fields_set__", base.model_fields_set | set(data))
        return out

    def replace(self, **changes: Any) -> Self:
        """A copy with ``changes``, validated like any other input."""
        return self.from_dict(changes, base=self)
