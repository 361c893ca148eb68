"""One shower per call, as Geant4 asks for it: the lean path (no per-call allocation of inputs or outputs).

``Bundle.generate`` checks its inputs, groups energies by range, moves arrays between numpy and
torch and allocates its result: about 0.5 ms per call, for about 1 us of arithmetic at batch 1.
:class:`LeanGenerator` does that work once, when it is built:

* ``torch``: the sampling graph of :mod:`caloforge.deploy.export` (conditioning, network, inverse
  preprocessing) traced and frozen with TorchScript, so a call runs no Python of the model;
  the noise, energy and condition tensors are preallocated and filled in place.
* ``onnxruntime``: the exported graph run with I/O binding: inputs and output are bound once to
  preallocated arrays, so a call is one ``run_with_iobinding`` on memory ONNX Runtime already knows.

The noise is drawn as ``Bundle.generate(..., batch_size=1, seed=seed)`` draws it (one CPU
``torch.Generator`` per energy range, seeded ``seed + range index``, one standard-normal row per
shower), so successive calls give that call's showers; or it is given (``noise=``), e.g. by a caller
that owns its random numbers, as Geant4 does. The returned row is the generator's own buffer,
overwritten by the next call: copy it to keep it.

Per call, only what changes is done: the noise drawn into its buffer (or copied in), the energy and
conditions written, one graph run. ONNX Runtime runs on one intra-op thread unless told otherwise:
one shower is too little work to share, and a thread pool costs wake-ups on every call. The output
needs no clipping here: the inverse preprocessing clips its input at 0 and multiplies non-negative
factors, so the graph's voxels are already >= 0 (the batched paths clip only where a graph gives a negative value).
"""

from __future__ import annotations

import bisect
import copy
import math
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from numpy.typing import NDArray

from caloforge.deploy.export import SamplingGraph, export_onnx
from caloforge.deploy.onnx_runtime import OnnxGenerator
from caloforge.errors import ConfigError

__all__ = ["LeanBackend", "LeanGenerator"]

LeanBackend = Literal["torch", "onnxruntime"]


class _TorchPart:
    """One model of the bundle, traced; its inputs are preallocated tensors sharing memory with numpy arrays."""

    def __init__(self, model: Any, noise: NDArray[np.float32], energy: NDArray[np.float32],
                 conditions: NDArray[np.float32] | None) -> None:
        # a private copy without gradients: the traced graph holds its weights (e.g. the GAN's folded
        # BatchNorms) as constants, and the caller's model keeps its training state
        graph = SamplingGraph(copy.deepcopy(model).eval().requires_grad_(False)).eval()
        self.inputs = tuple(torch.from_numpy(a) for a in (noise, energy, conditions) if a is not None)
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracer's notes on Python values it records as constants
            traced = torch.jit.trace(graph, self.inputs, check_trace=False)  # type: ignore[no-untyped-call]
            self.module = torch.jit.optimize_for_inference(torch.jit.freeze(traced))

    def run(self, out: torch.Tensor) -> None:
        with torch.inference_mode():
            out.copy_(self.module(*self.inputs))


class _OnnxPart:
    """One exported graph with its inputs and output bound once (ONNX Runtime I/O binding)."""

    def __init__(self, session: Any, noise: NDArray[np.float32], energy: NDArray[np.float32],
                 conditions: NDArray[np.float32] | None, out: NDArray[np.float32]) -> None:
        import onnxruntime as ort  # optional dependency (the onnx extra)

        self.session = session
        self.values = [ort.OrtValue.ortvalue_from_numpy(a) for a in (noise, energy, conditions, out) if a is not None]
        self.binding = session.io_binding()
        names = ["noise", "energy", *(["conditions"] if conditions is not None else [])]
        for name, value in zip(names, self.values[:-1], strict=True):
            self.binding.bind_ortvalue_input(name, value)
        self.binding.bind_ortvalue_output("showers", self.values[-1])

    def run(self, out: torch.Tensor) -> None:
        self.session.run_with_iobinding(self.binding)  # writes into the bound output array (``out``'s memory)


class LeanGenerator:
    """A bundle's generator for one shower per call, built once, called many times.

    Args:
        bundle: A loaded bundle (:func:`caloforge.training.bundle.load`) of a family that exports
            (``noise_size()`` not None).
        backend: ``torch`` (TorchScript, CPU) or ``onnxruntime`` (I/O binding).
        seed: Seed of the noise drawn when a call gives none.
        threads: ONNX Runtime intra-op threads (default 1: see the module; None: ONNX Runtime's default);
            torch uses its current setting.

    Example:
        ``gen = LeanGenerator(load("run/bundle")); row = gen(4096.0)``: one shower (V,) in MeV.

    Raises:
        ConfigError: for a family that does not export, or an unknown backend.
    """

    def __init__(self, bundle: Any, backend: LeanBackend = "torch", seed: int = 0, threads: int | None = 1) -> None:
        if backend not in ("torch", "onnxruntime"):
            msg = f"expected a lean backend 'torch' or 'onnxruntime' but got {backend!r}"
            raise ConfigError(msg)
        size = bundle.models[0].noise_size()
        if size is None:
            msg = (f"expected a family whose sampling is a fixed function of standard-normal noise for the lean "
                   f"path but '{bundle.family}' is not, so it cannot be run one shower per call this way")
            raise ConfigError(msg)
        self.backend = backend
        self.noise_size = int(size)
        self.condition_names = tuple(bundle.condition_names)
        self.splits = [float(s) for s in bundle.splits]
        self.n_voxels = bundle.geometry.n_voxels
        k = len(self.condition_names)
        self.noise = np.zeros((1, self.noise_size), np.float32)
        self.energy = np.ones((1, 1), np.float32)
        self.conditions = np.zeros((1, k), np.float32) if k else None
        self.out = np.zeros((1, self.n_voxels), np.float32)
        self._noise_t, self._out_t = torch.from_numpy(self.noise), torch.from_numpy(self.out)
        self._row: NDArray[np.float32] = self.out[0]  # the view returned by every call, made once
        self._generators = [torch.Generator() for _ in bundle.models]
        self.reseed(seed)
        self.parts: list[_TorchPart | _OnnxPart]
        if backend == "torch":
            self.parts = [_TorchPart(m.to("cpu"), self.noise, self.energy, self.conditions) for m in bundle.models]
        else:
            self.parts = [_OnnxPart(s, self.noise, self.energy, self.conditions, self.out)
                          for s in _onnx_sessions(bundle, threads)]

    def reseed(self, seed: int) -> None:
        """Restart the noise: the next calls draw what ``Bundle.generate(..., batch_size=1, seed=seed)`` draws."""
        for i, generator in enumerate(self._generators):
            generator.manual_seed(seed + i)

    def __repr__(self) -> str:
        return f"LeanGenerator(backend='{self.backend}', parts={len(self.parts)}, voxels={self.n_voxels})"

    def __call__(self, energy: float, conditions: Sequence[float] = (),
                 noise: NDArray[np.float32] | None = None) -> NDArray[np.float32]:
        """One shower (V,) in MeV, CaloChallenge order, for an incident energy in MeV.

        Args:
            energy: Incident energy, MeV (finite, > 0).
            conditions: The extra conditions in the bundle's order (``condition_names``).
            noise: Standard-normal numbers (noise_size,); drawn from the seeded generator when None.

        Returns:
            The generator's output buffer (overwritten by the next call).
        """
        if not 0.0 < energy < math.inf:
            msg = f"expected a finite incident energy > 0 MeV but got {energy!r}, in LeanGenerator"
            raise ConfigError(msg)
        if len(conditions) != len(self.condition_names):
            msg = f"expected conditions {list(self.condition_names)} but got {len(conditions)} values, in LeanGenerator"
            raise ConfigError(msg)
        i = bisect.bisect_right(self.splits, energy) if self.splits else 0
        if noise is None:
            torch.randn(1, self.noise_size, generator=self._generators[i], out=self._noise_t)
        else:
            self.noise[0] = noise
        self.energy[0, 0] = energy
        if self.conditions is not None:
            self.conditions[0] = conditions
        self.parts[i].run(self._out_t)
        return self._row


def _onnx_sessions(bundle: Any, threads: int | None) -> list[Any]:
    """Export the bundle into a temporary folder and open one session per graph (held in memory)."""
    with tempfile.TemporaryDirectory(prefix="caloforge-lean-") as work:
        return list(OnnxGenerator(export_onnx(bundle, Path(work) / "model.onnx"), threads=threads).sessions)
