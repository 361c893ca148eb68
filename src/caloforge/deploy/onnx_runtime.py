"""Generate showers with ONNX Runtime from graphs written by :func:`caloforge.deploy.export.export_onnx`.

The noise is drawn exactly as the PyTorch path draws it (a CPU ``torch.Generator`` seeded with
``seed + range index``, one standard-normal block per batch), so the same seed and batch size give
the same showers on both backends, up to floating-point rounding.
"""

from __future__ import annotations

import functools
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray

from caloforge.data.geometry import Geometry
from caloforge.data.showers import ShowerSet
from caloforge.deploy.export import quantize_onnx, read_manifest
from caloforge.errors import CaloforgeError, CheckpointError, ConfigError
from caloforge.extras import require
from caloforge.generator import Request, check_request, generate_routed
from caloforge.runtime.hardware import PEAK_SIZES, best_seconds

__all__ = ["BLOCK_ROWS", "OnnxGenerator", "int8_matmul_gflops", "int8_probe_graph"]

BLOCK_ROWS = 1024
"""Rows per ONNX Runtime call within a batch: a GAN's activations then stay in cache (batch 10000, int8, one
thread, CPU time: 4.7 us per shower in one call, 3.5 in blocks of 1024; docs/performance.md). An int8 graph
quantises its activations per call, so its showers depend on this block size (and on nothing else than the seed
and inputs)."""


def int8_probe_graph(n: int, directory: Path, seed: int = 0) -> tuple[Path, NDArray[np.float32]]:
    """The int8 probe's graph ``y = x @ W`` (n x n) as an int8 export runs it, and its fp32 weight ``W``.

    One MatMul with an fp32 weight, quantised by :func:`caloforge.deploy.export.quantize_onnx` (ONNX Runtime's
    dynamic quantisation: int8 weights, uint8 activations quantised per call, int32 accumulation).
    """
    import onnx  # optional dependency (the onnx extra)
    from onnx import TensorProto, helper, numpy_helper

    weight = np.random.default_rng(seed).standard_normal((n, n), dtype=np.float32)
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "probe.weight"], ["y"])], "int8_probe",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [n, n])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [n, n])],
                              [numpy_helper.from_array(weight, "probe.weight")])
    fp32, int8 = directory / f"probe_fp32_{n}.onnx", directory / f"probe_int8_{n}.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(fp32))
    quantize_onnx(fp32, int8)
    return int8, weight


def int8_matmul_gflops(threads: int = 1, sizes: tuple[int, ...] = PEAK_SIZES, min_seconds: float = 0.05) -> float:
    """The int8 limit of the int8 rows' runtime, giga-operations/s: the best over ``sizes`` of ``x @ W`` (n x n).

    The probe pays what a model's int8 layer pays, the activations' quantisation included
    (:func:`int8_probe_graph`). Measured on AMD EPYC (AVX-512 VNNI), one thread: about 400, against
    about 100 for fp32 and 200 for bf16 matmuls (docs/performance.md).

    Example:
        >>> int8_matmul_gflops(sizes=(64,), min_seconds=0.005) > 0
        True
    """
    ort = require("onnxruntime", "onnx", "the int8 matmul limit")
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    best = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            graph, _ = int8_probe_graph(n, Path(tmp))
            session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
            run = functools.partial(session.run, None, {"x": np.random.default_rng(1).standard_normal((n, n),
                                                                                               dtype=np.float32)})
            best = max(best, 2 * n**3 / best_seconds(run, min_seconds) / 1e9)
    return best


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

    def _run(self, session: Any, part: Request, generator: torch.Generator) -> NDArray[np.float32]:
        out = np.empty((part.energies.size, self.geometry.n_voxels), dtype=np.float32)
        for start in range(0, len(part.energies), part.batch_size):
            rows = slice(start, start + part.batch_size)
            n = len(part.energies[rows])
            noise = torch.randn(n, self.noise_size, generator=generator).numpy()  # drawn whole, as torch draws it
            energy = part.energies[rows].astype(np.float32).reshape(-1, 1)
            conditions = (np.stack([part.conditions[k][rows] for k in self.condition_names], axis=1)
                          .astype(np.float32) if self.condition_names else None)
            for first in range(0, n, BLOCK_ROWS):  # each block's activations stay in cache
                block = slice(first, first + BLOCK_ROWS)
                feeds = {"noise": noise[block], "energy": energy[block]}
                if conditions is not None:
                    feeds["conditions"] = conditions[block]
                out[start + first : start + min(first + BLOCK_ROWS, n)] = session.run(None, feeds)[0]
        return out

    def generate(self, energies: ArrayLike, conditions: Mapping[str, ArrayLike] | None = None,
                 batch_size: int = 10_000, seed: int = 0) -> ShowerSet:
        """One shower per incident energy (MeV) (:class:`caloforge.generator.Generator`)."""
        request = check_request(energies, conditions, seed=seed, batch_size=batch_size,
                                condition_names=self.condition_names, where="generate (onnxruntime)",
                                n_voxels=self.geometry.n_voxels)

        def sample(k: int, part: Request) -> NDArray[np.float32]:
            return self._run(self.sessions[k], part, torch.Generator().manual_seed(part.seed + k))

        showers = generate_routed(request, self.splits, self.geometry.n_voxels, sample)
        if not showers.min() >= 0:  # the graphs' inverse preprocessing clamps already: a read, not a clip's write
            np.maximum(showers, 0.0, out=showers)  # (int8 GAN, batch 10000: 0.14 us per shower less)
        return ShowerSet(request.energies, showers, self.geometry, request.conditions)
