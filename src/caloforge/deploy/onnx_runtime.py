"""Generate showers with ONNX Runtime from graphs written by :func:`caloforge.deploy.export.export_onnx`.

The noise is drawn exactly as the PyTorch path draws it (a CPU ``torch.Generator`` seeded with
``seed + range index``, one standard-normal block per batch), so the same seed and batch size give
the same showers on both backends, up to floating-point rounding.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray

from caloforge.data.checks import check_incident_energies, check_integer, check_seed, to_real_array
from caloforge.data.geometry import Geometry
from caloforge.data.showers import ShowerSet
from caloforge.errors import CaloforgeError, CheckpointError, ConfigError
from caloforge.extras import require

__all__ = ["OnnxGenerator"]


def _session(ort: Any, graph: Path, options: Any) -> Any:
    """An ONNX Runtime session on ``graph``; a missing, truncated or foreign file is one line."""
    if not graph.is_file():
        msg = f"expected the ONNX graph {graph} named in its manifest but it is missing"
        raise CheckpointError(msg)
    try:
        return ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own types (InvalidProtobuf, Fail, ...)
        reason = " ".join(str(err).split())
        msg = f"expected a readable ONNX graph in {graph} but ONNX Runtime refused it ({reason:.160}); export it again"
        raise CheckpointError(msg) from None


class OnnxGenerator:
    """The exported generator of a bundle, run by ONNX Runtime on the CPU.

    Args:
        manifest: The export manifest (``model.json``) or the graph beside it.
        threads: Intra-op threads of ONNX Runtime (None: its default).
    """

    def __init__(self, manifest: str | Path, threads: int | None = None) -> None:
        from caloforge.deploy.export import read_manifest

        ort = require("onnxruntime", "onnx", "generation with ONNX Runtime")
        self.manifest = read_manifest(manifest)
        if self.manifest.get("order") != "calochallenge":
            msg = (f"expected a graph exported in the CaloChallenge order for generation but {manifest} is in the "
                   f"'{self.manifest.get('order')}' order (for Par04-style callers); export again without --order")
            raise ConfigError(msg)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads is not None:
            options.intra_op_num_threads = threads
        directory = Path(self.manifest["directory"])  # read_manifest keeps every graph inside it
        self.sessions = [_session(ort, directory / part["file"], options) for part in self.manifest["parts"]]
        try:
            self.geometry = Geometry.from_dict(self.manifest["geometry"])
            self.splits = tuple(float(s) for s in self.manifest["splits"])
            self.condition_names = tuple(str(c) for c in self.manifest["conditions"])
            self.noise_size = int(self.manifest["noise_size"])
        except (CaloforgeError, KeyError, TypeError, ValueError) as err:
            msg = f"expected a complete ONNX export manifest but {manifest} lacks or mangles {err!s:.120}"
            raise ConfigError(msg) from None
        if len(self.splits) != len(self.sessions) - 1:
            msg = f"expected {len(self.sessions) - 1} split energies for {len(self.sessions)} graphs, in {manifest}"
            raise ConfigError(msg)

    def __repr__(self) -> str:
        return (f"OnnxGenerator(family='{self.manifest['family']}', graphs={len(self.sessions)}, "
                f"geometry='{self.geometry.name}')")

    def _run(self, session: Any, energies: NDArray[np.float64], conditions: Mapping[str, NDArray[np.float64]],
             out: NDArray[np.float32], batch_size: int, generator: torch.Generator) -> None:
        for start in range(0, len(energies), batch_size):
            rows = slice(start, start + batch_size)
            n = len(energies[rows])
            feeds = {"noise": torch.randn(n, self.noise_size, generator=generator).numpy(),
                     "energy": energies[rows].astype(np.float32).reshape(-1, 1)}
            if self.condition_names:
                feeds["conditions"] = np.stack([conditions[k][rows] for k in self.condition_names], axis=1) \
                    .astype(np.float32)
            out[rows] = session.run(None, feeds)[0]

    def generate(self, energies: ArrayLike, conditions: Mapping[str, ArrayLike] | None = None,
                 batch_size: int = 10_000, seed: int = 0) -> ShowerSet:
        """One shower per incident energy (MeV); the arguments are those of ``Bundle.generate``."""
        where = "in generate (onnxruntime)"
        e = check_incident_energies(energies, where, allow_empty=False)
        seed = check_seed(seed, where)
        batch_size = check_integer(batch_size, "batch_size", 1, 2**62, "generate (onnxruntime)")
        cond = {k: to_real_array(v, np.float64, f"condition '{k}' {where}").reshape(-1)
                for k, v in dict(conditions or {}).items()}
        if sorted(cond) != sorted(self.condition_names) or any(v.shape != e.shape for v in cond.values()):
            msg = f"expected conditions {sorted(self.condition_names)} with {e.size} values each, {where}"
            raise ConfigError(msg)
        showers = np.empty((e.size, self.geometry.n_voxels), dtype=np.float32)
        part = np.searchsorted(np.asarray(self.splits), e, side="right")
        for i, session in enumerate(self.sessions):
            rows = np.flatnonzero(part == i)
            if rows.size:
                block = np.empty((rows.size, self.geometry.n_voxels), dtype=np.float32)
                self._run(session, e[rows], {k: v[rows] for k, v in cond.items()}, block, batch_size,
                          torch.Generator().manual_seed(seed + i))
                showers[rows] = block
        return ShowerSet(e, np.maximum(showers, 0.0), self.geometry, cond)
