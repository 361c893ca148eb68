"""Reading small JSON and YAML documents (bundle.json, manifests, run records, configs) with bounds.

A hostile or damaged document must give one line, fast: every reader here bounds the file's
size before reading it and its nesting depth before parsing it, refuses NaN and infinities
(standard JSON has no such numbers), and in YAML refuses duplicate keys and aliases that
expand to more nodes than a hand-written file could hold (an "alias bomb").
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from caloforge._version import __version__
from caloforge.errors import CaloforgeError, ConfigError

__all__ = ["MAX_DEPTH", "MAX_JSON_BYTES", "MAX_YAML_BYTES", "MAX_YAML_NODES", "parse_json", "read_json",
           "read_versioned_json", "read_yaml"]

MAX_JSON_BYTES = 64 * 2**20  # bundle.json with a long training history stays far below
MAX_YAML_BYTES = 2**20  # a campaign spec or a training config is a few kB
MAX_YAML_NODES = 100_000  # scalars, lists and mappings after expanding aliases
MAX_DEPTH = 64

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)


def _read_bounded(path: Path, what: str, limit: int, error: type[CaloforgeError]) -> str:
    """The text of ``path``, refused when larger than ``limit`` bytes (checked before reading it whole)."""
    try:
        with path.open("rb") as handle:
            data = handle.read(limit + 1)
    except FileNotFoundError:
        msg = f"expected {what} but could not read {path}: it does not exist"
        raise error(msg) from None
    except OSError as err:
        msg = f"expected {what} but could not read {path} ({err.strerror or err})"
        raise error(msg) from None
    if len(data) > limit:
        msg = f"expected {what} of at most {limit / 2**20:g} MiB but {path} is larger"
        raise error(msg)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        msg = f"expected {what} in UTF-8 but {path} is not ({err.reason} at byte {err.start})"
        raise error(msg) from None


def _json_depth(text: str) -> int:
    """The deepest nesting of ``[`` and ``{`` in JSON text (brackets inside strings do not count)."""
    data = np.frombuffer(_STRING.sub(b'""', text.encode("utf-8")), dtype=np.uint8)
    depth = deepest = 0
    for start in range(0, data.size, 2**20):  # in slices of 1 MiB: memory stays small for any accepted file
        chunk = data[start:start + 2**20]
        step = np.isin(chunk, (ord("["), ord("{"))).astype(np.int8) - np.isin(chunk, (ord("]"), ord("}")))
        levels = np.cumsum(step, dtype=np.int64) + depth
        deepest, depth = max(deepest, int(levels.max())), int(levels[-1])
    return deepest


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        msg = f"expected finite numbers but got {text!r:.40}"
        raise ValueError(msg)
    return value


def _no_constant(name: str) -> Any:
    msg = f"expected finite numbers but got {name}"
    raise ValueError(msg)


def parse_json(text: str, where: str, error: type[CaloforgeError] = ConfigError) -> Any:
    """Parse JSON ``text`` whose nesting is at most :data:`MAX_DEPTH` and whose numbers are finite.

    Example:
        >>> parse_json('{"a": [1, 2.5]}', "example")
        {'a': [1, 2.5]}
        >>> parse_json('[' * 100_000, "example")
        Traceback (most recent call last):
        ...
        caloforge.errors.ConfigError: expected JSON nested at most 64 deep but got 100000 levels, in example
    """
    depth = _json_depth(text)
    if depth > MAX_DEPTH:
        msg = f"expected JSON nested at most {MAX_DEPTH} deep but got {depth} levels, in {where}"
        raise error(msg)
    try:  # NaN, Infinity and overflowing numbers such as 1e999 are refused, never loaded
        return json.loads(text, parse_constant=_no_constant, parse_float=_finite_float)
    except (ValueError, RecursionError) as err:
        msg = f"expected valid JSON but could not parse it ({' '.join(str(err).split())[:200]}), in {where}"
        raise error(msg) from None


def read_json(path: str | Path, what: str = "a JSON file", error: type[CaloforgeError] = ConfigError,
              max_bytes: int = MAX_JSON_BYTES) -> Any:
    """The parsed JSON file ``path``: at most ``max_bytes``, nested at most :data:`MAX_DEPTH`, finite numbers.

    Args:
        path: The file.
        what: What the file should be, for the error ("a bundle description").
        error: The error type raised (a :class:`~caloforge.errors.CaloforgeError`).
        max_bytes: The largest size accepted.

    Raises:
        CaloforgeError: of type ``error``, one line naming the file, for any of these faults.
    """
    path = Path(path)
    return parse_json(_read_bounded(path, what, max_bytes, error), str(path), error)


def read_versioned_json(path: str | Path, what: str, format_name: str, error: type[CaloforgeError] = ConfigError
                        ) -> dict[str, Any]:
    """:func:`read_json` of a caloforge file format: a JSON object whose ``format`` entry is ``format_name``.

    The one reader of bundle.json, model_set.json and ONNX export manifests: bounded in size and depth,
    NaN and infinities refused (:func:`read_json`), and a format ``name/version`` of another version named
    as such (a file written by another caloforge).

    Args:
        path: The file.
        what: What the file should be, for the error ("bundle", "model-set manifest").
        format_name: The expected ``format`` entry, e.g. ``"caloforge-bundle/1"``.
        error: The error type raised.

    Raises:
        CaloforgeError: of type ``error``, for any fault of :func:`read_json` or another format.
    """
    path = Path(path)
    data = read_json(path, f"a {what}", error)
    if isinstance(data, dict) and data.get("format") == format_name:
        return data
    got = data.get("format") if isinstance(data, dict) else type(data).__name__
    name, _, version = format_name.rpartition("/")
    if isinstance(data, dict) and isinstance(got, str) and got.rpartition("/")[0] == name:
        msg = (f"expected {what} format version {version} ('{format_name}') but got version "
               f"{got.rpartition('/')[2]!r:.20}, in {path}: written by another caloforge than this {__version__}")
    else:
        msg = f"expected {what} format '{format_name}' but got {got!r:.80}, in {path}"
    raise error(msg)


class _BoundedLoader(yaml.SafeLoader):  # type: ignore[misc]
    """A safe loader that bounds depth and expanded size, refuses duplicate keys and reads ``1e-4`` as a number."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth = getattr(self, "_depth", 0) + 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                msg = f"expected YAML nested at most {MAX_DEPTH} deep but got deeper at line {mark.line + 1}"
                raise yaml.YAMLError(msg)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:  # an unhashable key: the base class refuses it
                continue
            if duplicate:
                msg = f"expected each key once but '{key!s:.60}' is repeated at line {key_node.start_mark.line + 1}"
                raise yaml.YAMLError(msg)
        return super().construct_mapping(node, deep=deep)


_BoundedLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)[eE][-+]?\d+$"), list("-+0123456789."))


def _expanded_size(node: yaml.Node) -> int:
    """How many nodes ``node`` stands for once every alias is expanded (shared nodes counted each time)."""
    sizes: dict[int, int] = {}
    busy: set[int] = set()

    def size(item: yaml.Node) -> int:
        key = id(item)
        if key in sizes:
            return sizes[key]
        if key in busy:
            msg = f"expected no recursive YAML aliases but got one at line {item.start_mark.line + 1}"
            raise yaml.YAMLError(msg)
        busy.add(key)
        if isinstance(item, yaml.MappingNode):
            total = 1 + sum(size(k) + size(v) for k, v in item.value)
        elif isinstance(item, yaml.SequenceNode):
            total = 1 + sum(size(v) for v in item.value)
        else:
            total = 1
        busy.discard(key)
        sizes[key] = total
        return total

    return size(node)


def read_yaml(path: str | Path, what: str = "a YAML file", error: type[CaloforgeError] = ConfigError,
              max_bytes: int = MAX_YAML_BYTES) -> Any:
    """The parsed YAML file ``path`` (safe types only), refused fast when hostile or malformed.

    Refused: files over ``max_bytes``, nesting over :data:`MAX_DEPTH`, more than
    :data:`MAX_YAML_NODES` nodes once aliases are expanded, recursive aliases and a key repeated
    in one mapping. ``1e-4`` reads as a number (YAML 1.1 would need ``1.0e-4``).

    Raises:
        CaloforgeError: of type ``error``, one line naming the file.
    """
    path = Path(path)
    text = _read_bounded(path, what, max_bytes, error)
    try:
        loader = _BoundedLoader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            nodes = _expanded_size(node)
            if nodes > MAX_YAML_NODES:
                msg = (f"expected at most {MAX_YAML_NODES} values once aliases are expanded but got {nodes:.3g} "
                       f"(an alias bomb?)")
                raise yaml.YAMLError(msg)
            return loader.construct_document(node)
        finally:
            loader.dispose()
    except (yaml.YAMLError, RecursionError) as err:
        msg = f"expected {what} but could not parse {path} ({' '.join(str(err).split())[:200]})"
        raise error(msg) from None
