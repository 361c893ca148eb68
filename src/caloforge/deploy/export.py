"""Export a bundle's generator to ONNX: noise and conditions in, voxel energies in MeV out.

The graph holds everything between the noise and the shower: the conditioning (log-scaled
incident energy, standardised extra conditions), the family's network (for diffusion its fast
sampler, unrolled) and the inverse preprocessing, so a C++ user (e.g. Geant4's Par04 example
through ONNX Runtime) feeds numbers and reads MeV.

Inputs of ``model.onnx`` (batch dimension dynamic, float32):

* ``noise`` (N, noise_size): independent standard-normal numbers;
* ``energy`` (N, 1): incident energies in MeV;
* ``conditions`` (N, k): the extra conditions in the order of the manifest's ``conditions``
  (only when the model has any), in their physical units (e.g. ``theta`` in degrees).

Output ``showers`` (N, V): voxel energies in MeV, in the CaloChallenge order (layer, then alpha,
then r fastest). The Par04 variant (``order="par04"``, geometries whose layers share one binning)
takes one row ``input`` (1, noise_size + 1 + k) = noise, then E_inc (MeV), then the conditions,
and returns the cells in Par04's loop order: r outermost, then phi, then z (layer) innermost.

A manifest ``<name>.json`` beside the graph says how to call it (inputs, noise size, conditions,
geometry, order) and, for a bundle split by incident energy, which graph serves which range.

Families whose sampling is not a fixed function of standard-normal noise (``noise_size()`` is
None, e.g. the parametric baseline's gamma-distributed fluctuations) do not export: a one-line
ConfigError says so.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor, nn

from caloforge.data.documents import read_versioned_json
from caloforge.data.geometry import Geometry
from caloforge.data.outputs import atomic_path, check_output, strict_json
from caloforge.errors import ConfigError
from caloforge.extras import require
from caloforge.models.base import GenerativeModel

__all__ = ["MANIFEST_FORMAT", "Order", "Par04Graph", "SamplingGraph", "export_onnx", "par04_order",
           "preprocessing_products", "quantize_onnx", "read_manifest"]

MANIFEST_FORMAT = "caloforge-onnx/1"
Order = Literal["calochallenge", "par04"]
_OPSET = 18


def par04_order(geometry: Geometry) -> NDArray[np.int64]:
    """For each cell in Par04's order (r outermost, then phi, then z innermost), its CaloChallenge voxel index.

    Raises:
        ConfigError: if the layers do not share one binning (Par04's mesh is the same in every layer).

    Example:
        >>> from caloforge.data.geometry import Layer
        >>> g = Geometry(tuple(Layer(i, (0.0, 1.0, 2.0), 2) for i in range(3)))  # 3 layers x 2 alpha x 2 r
        >>> par04_order(g)[:4].tolist()  # r=0, phi=0, z=0..2 then r=0, phi=1, z=0
        [0, 4, 8, 2]
    """
    first = geometry.layers[0]
    if any(layer.r_edges != first.r_edges or layer.n_alpha != first.n_alpha for layer in geometry.layers):
        msg = (f"expected a geometry whose layers share one binning for the Par04 order but '{geometry.name}' "
               "has layers with different radial or alpha bins")
        raise ConfigError(msg)
    n_z, n_phi, n_r = geometry.n_layers, first.n_alpha, first.n_r
    r, phi, z = np.meshgrid(np.arange(n_r), np.arange(n_phi), np.arange(n_z), indexing="ij")
    return (z * n_phi * n_r + phi * n_r + r).reshape(-1).astype(np.int64)


class SamplingGraph(nn.Module):
    """The exported computation: conditioning, the family's sampler on given noise, inverse preprocessing.

    Args:
        model: A model whose :meth:`~caloforge.models.base.GenerativeModel.noise_size` is not None.
        order: Voxel order of the output; ``par04`` also takes one concatenated input row.
    """

    def __init__(self, model: GenerativeModel, order: Order = "calochallenge",
                 geometry: Geometry | None = None) -> None:
        super().__init__()
        size = model.noise_size()
        if size is None:
            msg = (f"expected a family whose sampling is a fixed function of standard-normal noise but "
                   f"{type(model).__name__} is not (noise_size() is None), so it cannot be exported")
            raise ConfigError(msg)
        self.model = model.averaged_copy().eval()  # the weights sample() uses: the moving average when kept
        self.noise_dims = size
        self.condition_names = tuple(model.preprocessing.conditions.names)
        self.par04 = order == "par04"
        index = par04_order(geometry) if self.par04 and geometry is not None else np.arange(model.n_voxels)
        self.index: Tensor
        self.register_buffer("index", torch.as_tensor(index), persistent=False)

    def showers(self, noise: Tensor, energy: Tensor, conditions: Tensor | None) -> Tensor:
        """Voxel energies (N, V) in MeV for noise (N, noise_size), energies (N, 1) MeV and conditions (N, k)."""
        e = energy.reshape(-1)
        named = {name: conditions[:, i] for i, name in enumerate(self.condition_names)} if conditions is not None \
            else {}
        c = self.model.preprocessing.condition(e, named)
        x = self.model.sample_from_noise(c, noise)
        return self.model.preprocessing.showers.inverse(x, e)

    def forward(self, noise: Tensor, energy: Tensor, conditions: Tensor | None = None) -> Tensor:
        out = self.showers(noise, energy, conditions)
        return out[:, self.index] if self.par04 else out


class Par04Graph(nn.Module):
    """Par04's calling convention around a :class:`SamplingGraph`: one row (noise, E_inc, conditions) per call."""

    def __init__(self, sampler: SamplingGraph) -> None:
        super().__init__()
        self.sampler = sampler  # not "graph": torch.fx reserves that attribute name

    def forward(self, row: Tensor) -> Tensor:
        n, k = self.sampler.noise_dims, len(self.sampler.condition_names)
        conditions = row[:, n + 1 : n + 1 + k] if k else None
        out: Tensor = self.sampler(row[:, :n], row[:, n : n + 1], conditions)
        return out


def _export_one(model: GenerativeModel, geometry: Geometry, path: Path, order: Order, force: bool
                ) -> dict[str, Any]:
    """Export one model to ``path`` (atomically); returns its part of the manifest."""
    require("onnxscript", "onnx", "ONNX export")
    graph = SamplingGraph(model, order, geometry)
    k = len(graph.condition_names)
    module: nn.Module = graph
    if order == "par04":
        module = Par04Graph(graph)
        example: tuple[Tensor, ...] = (torch.ones(1, graph.noise_dims + 1 + k),)
        names, dynamic = ["input"], None
    else:
        example = (torch.zeros(2, graph.noise_dims), torch.full((2, 1), 1000.0), *([torch.ones(2, k)] if k else []))
        names = ["noise", "energy", *(["conditions"] if k else [])]
        batch = torch.export.Dim("batch")
        dynamic = tuple({0: batch} for _ in names)
    exporter_log = logging.getLogger("torch.onnx")
    level = exporter_log.level
    exporter_log.setLevel(logging.ERROR)  # "torchvision is not installed" and other chatter of the exporter
    try:
        with atomic_path(path, force=force) as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's own deprecation and tracing chatter
            torch.onnx.export(module, example, str(tmp), input_names=names, output_names=["showers"],
                              dynamic_shapes=dynamic, opset_version=_OPSET, dynamo=True, verbose=False,
                              external_data=False)
    finally:
        exporter_log.setLevel(level)
    return {"file": path.name, "inputs": names}


def export_onnx(bundle: Any, path: str | Path, order: Order = "calochallenge", force: bool = False,
                precision: str = "fp32") -> Path:
    """Export a loaded bundle (:class:`caloforge.training.bundle.Bundle`) as ONNX graph(s) plus a manifest.

    Args:
        bundle: The bundle; a split bundle gives one graph per energy range (``<stem>.range-<i>.onnx``).
        path: The graph file (``model.onnx``); the manifest is written beside it (``model.json``).
        order: ``calochallenge`` (batched, dynamic batch size) or ``par04`` (one shower per call,
            Par04's cell order).
        force: Replace existing files.
        precision: ``fp32``, or ``int8`` (the network's MatMul/Gemm weights quantised by ONNX Runtime's dynamic
            quantisation, :func:`quantize_onnx`); recorded in the manifest.

    Returns:
        The manifest's path.

    Raises:
        ConfigError: for a family that does not export, or the Par04 order on a geometry without one binning.
        OutputExistsError: if the files exist and ``force`` is false.
        MissingDependencyError: without ``caloforge[onnx]``.
    """
    path = Path(path)
    manifest_path = path.with_suffix(".json")
    n = len(bundle.models)
    files = [path] if n == 1 else [path.with_name(f"{path.stem}.range-{i}.onnx") for i in range(n)]
    for target in (*files, manifest_path):
        check_output(target, force)
    if precision not in ("fp32", "int8"):
        msg = f"expected an export precision 'fp32' or 'int8' but got {precision!r} (bf16: ONNX Runtime's CPU has none)"
        raise ConfigError(msg)
    if order == "par04":
        par04_order(bundle.geometry)  # refuse before exporting anything
    models = [m.to("cpu") for m in bundle.models]
    parts = [_export_one(model, bundle.geometry, file, order, force)
             for model, file in zip(models, files, strict=True)]
    if precision == "int8":
        for file in files:
            with atomic_path(file, force=True) as tmp:
                quantize_onnx(file, tmp)
    manifest = {
        "format": MANIFEST_FORMAT, "order": order, "family": bundle.family, "parts": parts, "precision": precision,
        "splits": list(bundle.splits), "noise_size": models[0].noise_size(),
        "conditions": list(bundle.condition_names), "geometry": bundle.geometry.to_dict(),
        "energy_range_mev": list(bundle.energy_range), "bundle": str(bundle.path),
        "inputs": ("input (1, noise_size + 1 + k): noise, E_inc [MeV], conditions" if order == "par04" else
                   "noise (N, noise_size) standard normal, energy (N, 1) MeV, conditions (N, k) when k > 0"),
        "output": "showers (N, V) MeV, " + ("Par04 order: r, phi, z innermost" if order == "par04"
                                             else "CaloChallenge order: layer, alpha, r fastest"),
    }
    with atomic_path(manifest_path, force=force) as tmp:
        tmp.write_text(strict_json(manifest), encoding="utf-8")
    return manifest_path


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The manifest written by :func:`export_onnx` (given it, or the graph beside it).

    Its graphs (``parts``) must be files in the manifest's own folder: absolute paths, ``..`` and
    symbolic links leading elsewhere are refused, so a manifest never opens a file outside its folder.

    Raises:
        ConfigError: an unreadable manifest, another format, or a graph outside the manifest's folder.
    """
    path = Path(path)
    manifest = path if path.suffix == ".json" else path.with_suffix(".json")
    data = read_versioned_json(manifest, "ONNX export manifest (written by caloforge export)", MANIFEST_FORMAT,
                               ConfigError)
    parts = data.get("parts")
    if not isinstance(parts, list) or not parts or not all(isinstance(p, dict) for p in parts):
        msg = f"expected a list of graphs in 'parts' but got {parts!r:.80}, in {manifest}"
        raise ConfigError(msg)
    folder = manifest.parent.resolve()
    for part in parts:
        name = part.get("file")
        plain = isinstance(name, str) and name not in ("", ".", "..") and not any(c in name for c in "/\\\0:")
        if not plain or (folder / name).resolve().parent != folder:
            msg = (f"expected each graph of the manifest to be a file in its folder {folder} but got "
                   f"{name!r:.80}, in {manifest}")
            raise ConfigError(msg)
    data["directory"] = str(folder)
    return data


def preprocessing_products(graph: Any) -> list[str]:
    """The names of the MatMul/Gemm nodes of an exported graph that are not the network's: no parameter in their inputs.

    The exporter keeps a parameter's qualified name (``model.generator.0.weight``); constants made in the
    forward pass, such as the inverse preprocessing's layer one-hot matrices, get an operation's name
    (``_to_copy``, ``permute``), without a dot. Those products carry per-shower energies over four decades
    (MeV to TeV): one dynamic int8 scale per call for them zeroed 9995 of 10000 ds1 showers drawn over the
    full energy range (2026-12-07), so :func:`quantize_onnx` leaves them in fp32.
    """
    import onnx  # optional dependency (the onnx extra)

    model = onnx.load(str(graph))
    parameters = {i.name for i in model.graph.initializer if "." in i.name}
    return [node.name for node in model.graph.node
            if node.op_type in ("MatMul", "Gemm") and not any(name in parameters for name in node.input)]


def quantize_onnx(graph: Any, out: Any) -> None:
    """Quantise an exported ONNX graph's network weights to int8 (ONNX Runtime dynamic quantisation).

    Only the network's MatMul/Gemm nodes: the inverse preprocessing's (:func:`preprocessing_products`) stay fp32.
    """
    require("onnxruntime", "onnx", "int8 quantisation of ONNX graphs")
    from onnxruntime.quantization import QuantType, quantize_dynamic  # optional dependency (the onnx extra)

    root = logging.getLogger()
    root.addFilter(_no_preprocessing_advice)
    try:
        quantize_dynamic(str(graph), str(out), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gemm"],
                         nodes_to_exclude=preprocessing_products(graph))
    finally:
        root.removeFilter(_no_preprocessing_advice)


def _no_preprocessing_advice(record: logging.LogRecord) -> bool:
    """Drop ONNX Runtime's root-logger advice to run its model pre-processing (shape inference) first, printed per
    call: dynamic quantisation of MatMul/Gemm needs no shapes, and the parity gate checks the result."""
    return "pre-processing before quantization" not in record.getMessage()
