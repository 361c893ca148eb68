"""Stage 1, the data: geometries, showers, the CaloChallenge HDF5 format, safe outputs.

* :mod:`~caloforge.data.geometry` and :mod:`~caloforge.data.presets`: voxel geometries, the four
  CaloChallenge binnings; :mod:`~caloforge.data.datasets`: the facts of each official dataset
  (readout threshold, particle, energy spectrum) in one table.
* :mod:`~caloforge.data.showers`: :class:`ShowerSet`, validated showers; :mod:`~caloforge.data.checks`:
  the validators of user input (energies, seeds, dtypes).
* :mod:`~caloforge.data.io`, :mod:`~caloforge.data.writer`, :mod:`~caloforge.data.summary`: read, stream,
  subsample, write and summarise CaloChallenge files.
* :mod:`~caloforge.data.outputs`: atomic writes that never overwrite without ``force``.

Nothing here imports another stage.
"""

from __future__ import annotations

from caloforge.data.geometry import Geometry, Layer
from caloforge.data.showers import ShowerSet

__all__ = ["Geometry", "Layer", "ShowerSet"]
