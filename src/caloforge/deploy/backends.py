"""Open any generator from a path: :func:`open_generator`, the one place that chooses a backend.

* a bundle or run directory: the bundle (torch), its graph exported now (``backend="onnxruntime"``),
  or the bundle in a reduced precision (:class:`~caloforge.deploy.precision.ReducedGenerator`);
* an export manifest (``.json``) or graph (``.onnx``): ONNX Runtime;
* a campaign's model set (``model_set.json`` or its directory, or any path with ``particle`` and ``eta``):
  the model set at that particle and pseudorapidity.

Each is a :class:`caloforge.generator.Generator`: callers generate without asking which it is.

Example:
    >>> generator = open_generator("run/bundle", "onnxruntime")  # doctest: +SKIP
    >>> showers = generator.generate([1024.0] * 100, seed=1)  # doctest: +SKIP
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import torch

from caloforge.campaign.model_set import MANIFEST, ModelSet
from caloforge.deploy.export import export_onnx
from caloforge.deploy.onnx_runtime import OnnxGenerator
from caloforge.deploy.precision import ReducedGenerator, check_precision, choose_precision
from caloforge.errors import ConfigError
from caloforge.generator import Generator
from caloforge.runtime.hardware import resolve_device
from caloforge.training.bundle import Bundle, load

__all__ = ["Backend", "bundle_generator", "is_model_set", "open_generator"]

Backend = Literal["torch", "onnxruntime"]


def is_model_set(path: Path) -> bool:
    """Whether ``path`` is a model-set manifest or the directory holding one."""
    return path.name == MANIFEST or (path.is_dir() and (path / MANIFEST).is_file())


def open_generator(path: str | Path, backend: Backend = "torch", *, device: str = "auto", precision: str = "fp32",
                   threads: int | None = None, trust_unverified: bool = False, particle: str | None = None,
                   eta: float | None = None, report: Callable[[str], object] | None = None) -> Generator:
    """The generator stored at ``path``, ready to :meth:`~caloforge.generator.Generator.generate`.

    Args:
        path: A bundle or run directory, an ONNX export (manifest ``.json`` or ``.onnx``), or a model set.
        backend: ``torch`` or ``onnxruntime`` (a bundle is then exported on the fly).
        device: The torch backend's device (``auto``: CUDA when present).
        precision: ``fp32``, ``bf16``, ``int8`` (ONNX Runtime's quantised graph) or ``auto`` (measured here).
        threads: ONNX Runtime's intra-op threads (None: its default).
        trust_unverified: Load a bundle whose bundle.json records no weights sha256.
        particle: With a model set: the particle.
        eta: With a model set: the pseudorapidity (its sign is ignored).
        report: Called with a line saying which precision ``auto`` chose (e.g. ``print``).

    Raises:
        ConfigError: a model set without particle and eta or with another backend or precision; a precision
            this CPU, backend or device cannot run; a reduced precision asked of an ONNX export.
        CheckpointError: an unreadable bundle, manifest, graph or model set.
    """
    path = Path(path)
    if particle is not None or eta is not None or is_model_set(path):
        if particle is None or eta is None or backend != "torch" or precision != "fp32":
            msg = (f"expected particle and eta, the torch backend and fp32 with the model set {path} but got "
                   f"particle {particle}, eta {eta}, backend {backend}, precision {precision}")
            raise ConfigError(msg)
        return ModelSet.load(path).at(particle, eta, device)
    if path.suffix in (".json", ".onnx") and (backend == "onnxruntime" or precision != "fp32"):
        check_precision(precision, "onnxruntime" if precision == "int8" else backend, resolve_device(device))
        if precision != "fp32":
            msg = (f"expected a bundle for precision {precision} but got the export {path}; its precision was "
                   "fixed when it was exported (caloforge export --precision)")
            raise ConfigError(msg)
        return OnnxGenerator(path, threads)
    bundle = load(path, trust_unverified=trust_unverified)
    return bundle_generator(bundle, backend, device=device, precision=precision, threads=threads, report=report)


def bundle_generator(bundle: Bundle, backend: Backend = "torch", *, device: str | torch.device = "auto",
                     precision: str = "fp32", threads: int | None = None,
                     report: Callable[[str], object] | None = None) -> Generator:
    """A loaded bundle as the generator of ``backend`` and ``precision`` (the arguments of :func:`open_generator`).

    Raises:
        ConfigError: a precision this CPU, backend or device cannot run, or one the family cannot run.
    """
    if precision != "fp32":
        check_precision(precision, "onnxruntime" if precision == "int8" else backend, resolve_device(device))
    if precision == "auto" and resolve_device(device).type != "cpu":
        precision = "fp32"  # auto measures CPU precisions; on a GPU the showers are generated in fp32 there
        if report is not None:
            report(f"--precision auto: fp32 (on {device}; bf16 and int8 are chosen by measurement on a CPU)")
    elif precision == "auto":
        allowed = ("fp32", "int8") if backend == "onnxruntime" else ("fp32", "bf16", "int8")
        precision = choose_precision(bundle, allowed=allowed).precision
        if report is not None:
            report(f"--precision auto: {precision} (measured on this CPU, within the errors of fp32)")
    if precision != "fp32":
        return ReducedGenerator(bundle, precision, threads)
    if backend == "onnxruntime":
        with tempfile.TemporaryDirectory(prefix="caloforge-onnx-") as work:  # the sessions hold the graphs in memory
            return OnnxGenerator(export_onnx(bundle, Path(work) / "model.onnx"), threads)
    bundle.device = device
    return bundle
