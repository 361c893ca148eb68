"""Published generation times to read a bench figure against: the CaloChallenge's own timings of its submissions.

The one table of them (``caloforge bench`` prints it for the bundle's dataset, and docs/performance.md's
"Anchors" section is checked against it by ``tests/test_deploy.py``). Source: the CaloChallenge
organisers' notebook that makes the numbers of the timing plots of the challenge's paper
(arXiv:2410.21611), ``final_results/reference_creation.ipynb`` in github.com/CaloChallenge/homepage at
commit 91f715d (2025-08-05), cells 11 (CPU) and 13 (GPU): the mean of 10 runs per submission,
dataset and batch size, here to 4 significant digits. The notebook states neither the unit nor the
hardware; the magnitudes are those of milliseconds per shower, which is how caloforge reads them
(:data:`UNIT`): ratios between anchors are unit-free, absolute comparisons carry that caveat.
Geant4's own entry is NaN for every dataset, so it has no anchor (:data:`GEANT4`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["ANCHORS", "BATCH_SIZES", "CAVEAT", "GEANT4", "SOURCE", "UNIT", "Anchor", "beside", "format_ms",
           "standing", "yardsticks"]

BATCH_SIZES = (1, 100, 10_000)
"""The CaloChallenge's batch sizes, the order of :attr:`Anchor.cpu_ms` and :attr:`Anchor.gpu_ms`."""
SOURCE = ("CaloChallenge organisers, final_results/reference_creation.ipynb in github.com/CaloChallenge/homepage "
          "(commit 91f715d, cells 11 and 13: mean of 10 runs), the timings of arXiv:2410.21611")
UNIT = "ms per shower (as read: the notebook states no unit)"
CAVEAT = ("the source states neither the unit nor the hardware: the magnitudes read as ms per shower on the "
          "organisers' machines, not this one; compare orders of magnitude, and ratios between anchors")
GEANT4 = ("Geant4: no published time per CaloChallenge shower (its entry in the source is NaN); Geant4's Par04 "
          "example times each event itself (SimTime in its ntuple): that is this machine's Geant4 yardstick")


@dataclass(frozen=True)
class Anchor:
    """One submission's published times per shower at batch sizes 1, 100 and 10000 (None: not published).

    Attributes:
        submission: Its name in the source.
        cpu_ms: On the organisers' CPU, :data:`UNIT`.
        gpu_ms: On their GPU.
    """

    submission: str
    cpu_ms: tuple[float | None, float | None, float | None]
    gpu_ms: tuple[float | None, float | None, float | None]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"submission", "cpu_ms": {"1": ..., "100": ..., "10000": ...}, "gpu_ms": {...}}``."""
        return {"submission": self.submission, "cpu_ms": dict(zip(map(str, BATCH_SIZES), self.cpu_ms, strict=True)),
                "gpu_ms": dict(zip(map(str, BATCH_SIZES), self.gpu_ms, strict=True))}


ANCHORS: dict[str, tuple[Anchor, ...]] = {
    "ds1-photons": (
        Anchor("BoloGAN", (105.5, 1.728, 0.5529), (286.1, 2.259, 0.5288)),
        Anchor("CaloShower3GAN", (480.0, 55.54, 1.197), (518.8, 63.83, 1.489)),
        Anchor("CaloVAE+INN", (38.03, 1.575, 1.203), (34.04, 0.6419, 0.2566)),
        Anchor("CaloShower2GAN", (582.0, 65.62, 1.284), (611.6, 70.8, 1.709)),
        Anchor("CaloMan", (186.5, 3.196, 1.462), (76.01, 1.038, 0.3036)),
        Anchor("CaloINN", (37.92, 2.776, 2.878), (24.57, 0.5142, 0.1915)),
        Anchor("CaloFlow student", (575.9, 11.14, 6.108), (56.92, 0.7906, 0.2615)),
        Anchor("Calo-VQ", (93.62, 10.44, 14.06), (48.24, 0.807, 0.1611)),
        Anchor("CaloScore single-shot", (223.3, 20.5, 19.82), (189.4, 2.011, 0.5551)),
        Anchor("CaloForest", (28400.0, 308.1, 27.29), (None, None, None)),
        Anchor("CaloScore distilled", (2456.0, 1078.0, 1276.0), (756.6, 8.82, 4.965)),
        Anchor("CaloGraph", (3250.0, 914.4, 1382.0), (1633.0, 25.02, None)),
        Anchor("CaloFlow teacher", (42880.0, 2053.0, 1912.0), (4193.0, 45.49, 8.131)),
        Anchor("CaloDiffusion", (15680.0, 4266.0, 4500.0), (5593.0, 75.21, 24.38)),
        Anchor("CaloScore", (19320.0, 9425.0, 12870.0), (4706.0, 60.37, 36.0)),
    ),
    "ds1-pions": (
        Anchor("DNN CaloSim", (3.85, 0.4653, 0.3869), (2.348, 0.3201, 0.291)),
        Anchor("BoloGAN", (79.55, 1.381, 0.4926), (209.5, 1.593, 0.4763)),
        Anchor("CaloVAE+INN", (40.76, 1.72, 1.202), (34.19, 0.6773, 0.2747)),
        Anchor("CaloShowerGAN", (1163.0, 70.7, 1.604), (1119.0, 122.6, 2.059)),
        Anchor("CaloINN", (42.79, 3.916, 4.571), (24.75, 0.4383, 0.1994)),
        Anchor("CaloMan", (605.5, 12.14, 7.383), (181.4, 2.071, 0.2708)),
        Anchor("CaloFlow student", (620.1, 14.24, 10.2), (77.36, 0.9959, 0.2493)),
        Anchor("Calo-VQ", (108.2, 12.7, 16.54), (53.29, 0.8295, 0.1769)),
        Anchor("CaloForest", (37880.0, 432.8, 41.24), (None, None, None)),
        Anchor("CaloGraph", (3168.0, 1263.0, 2419.0), (1475.0, 28.36, None)),
        Anchor("CaloFlow teacher", (197600.0, 5430.0, 3509.0), (6166.0, 70.15, 17.69)),
        Anchor("CaloDiffusion", (15140.0, 4571.0, 4501.0), (5673.0, 76.88, 27.02)),
    ),
    "ds2": (
        Anchor("CaloVAE+INN", (64.1, 4.599, 3.384), (41.54, 1.223, 0.7664)),
        Anchor("MDMA", (14.32, 19.87, 32.44), (6.396, 1.178, None)),
        Anchor("Calo-VQ", (168.4, 26.13, 36.19), (72.81, 1.117, 0.3554)),
        Anchor("CaloINN", (387.7, 59.71, 46.18), (53.4, 1.183, 0.6474)),
        Anchor("DeepTree", (67.54, 38.26, 48.39), (37.29, 5.816, None)),
        Anchor("iCaloFlow student", (3048.0, 135.2, 77.6), (1127.0, 13.19, 1.455)),
        Anchor("conv. L2LFlows", (1969.0, 121.2, 89.24), (1409.0, 14.23, 1.637)),
        Anchor("CaloPointFlow", (154.6, 161.1, 132.6), (49.9, 3.002, None)),
        Anchor("CaloDREAM", (16940.0, 5052.0, 5727.0), (4846.0, 74.29, None)),
        Anchor("SuperCalo", (397900.0, 7988.0, 7609.0), (8508.0, 103.0, None)),
        Anchor("iCaloFlow teacher", (250200.0, 11610.0, 8179.0), (77020.0, 829.4, 56.14)),
        Anchor("CaloScore single-shot", (406.6, 280.0, None), (138.2, 2.533, None)),
        Anchor("CaloLatent", (6611.0, 541.3, None), (8497.0, 79.83, None)),
        Anchor("CaloScore distilled", (16780.0, 17990.0, None), (470.6, 31.86, None)),
        Anchor("CaloDiffusion", (36500.0, 23320.0, None), (5291.0, 99.49, None)),
        Anchor("CaloDiT", (24640.0, 33350.0, None), (1036.0, 179.0, None)),
        Anchor("CaloScore", (133500.0, 147700.0, None), (2389.0, 241.3, None)),
    ),
    "ds3": (
        Anchor("CaloVAE+INN", (90.6, 13.62, 16.18), (44.31, 3.83, 3.18)),
        Anchor("Calo-VQ", (260.0, 68.06, 58.23), (127.4, 1.83, 0.9835)),
        Anchor("GEANT4 transformer", (762.3, 179.5, 193.4), (203.2, 8.767, None)),
        Anchor("conv. L2LFlows", (2357.0, 340.2, 428.7), (1430.0, 16.02, 6.754)),
        Anchor("iCaloFlow student", (20220.0, 454.7, 446.3), (1156.0, 16.67, 6.015)),
        Anchor("Calo-VQ(norm)", (3957.0, 3635.0, 3543.0), (466.0, 26.64, None)),
        Anchor("MDMA", (32.1, 193.7, None), (9.513, 5.469, None)),
        Anchor("CaloPointFlow", (301.7, 308.5, None), (57.93, 5.522, None)),
        Anchor("CaloScore single-shot", (1416.0, 1539.0, None), (135.5, 6.518, None)),
        Anchor("CaloClouds", (2404.0, 3924.0, None), (94.85, 25.35, None)),
        Anchor("CaloDREAM", (33290.0, 32140.0, None), (5003.0, 179.6, None)),
        Anchor("CaloScore distilled", (83500.0, 96870.0, None), (473.2, 162.2, None)),
        Anchor("L2LFlows MAF", (880100.0, 141300.0, None), (235500.0, 2454.0, 3112.0)),
        Anchor("CaloDiffusion", (205200.0, 269200.0, None), (6171.0, 810.2, None)),
        Anchor("iCaloFlow teacher", (15510000.0, 438600.0, None), (470100.0, 5596.0, 1979.0)),
    ),
}
"""Per CaloChallenge dataset (``Geometry.dataset``), ordered by CPU time at batch 10000 (then at 100)."""


def format_ms(value: float | None) -> str:
    """A time in ms as bench and the docs print it: 4 significant digits, whole numbers from 1000, "-" if missing.

    Example:
        >>> format_ms(0.5529), format_ms(15680.0), format_ms(None), format_ms(float("nan"))
        ('0.5529', '15680', '-', '-')
    """
    if value is None or value != value:
        return "-"
    return f"{value:.0f}" if abs(value) >= 1000 else f"{value:.4g}"


def yardsticks(dataset: str | None) -> dict[str, Any] | None:
    """The published anchors of ``dataset`` with their source and caveat, JSON-ready (None for a custom geometry).

    Example:
        >>> table = yardsticks("ds1-photons")
        >>> table["anchors"][0]["submission"], table["anchors"][0]["cpu_ms"]["10000"]
        ('BoloGAN', 0.5529)
        >>> yardsticks(None) is None
        True
    """
    if dataset not in ANCHORS:
        return None
    return {"dataset": dataset, "source": SOURCE, "unit": UNIT, "caveat": CAVEAT, "geant4": GEANT4,
            "anchors": [a.to_dict() for a in ANCHORS[dataset]]}


def standing(us_per_shower: float, batch_size: int, dataset: str, gpu: bool = False) -> tuple[int, int] | None:
    """How many anchors of ``dataset`` a time per shower is no slower than, at their nearest batch size.

    Returns:
        ``(no_slower_than, published)``: the anchors with a published time at the CaloChallenge batch size
        nearest to ``batch_size`` (in log) that ``us_per_shower`` matches or beats, reading them as
        :data:`UNIT`; None for a dataset without anchors or a time that is not finite.

    Example:
        >>> standing(1000.0, 10_000, "ds1-photons")  # 1 ms per shower at batch 10000
        (14, 15)
    """
    if dataset not in ANCHORS or not 0 < us_per_shower < math.inf:
        return None
    column = min(range(len(BATCH_SIZES)), key=lambda i: abs(math.log(BATCH_SIZES[i]) - math.log(max(batch_size, 1))))
    times = [(a.gpu_ms if gpu else a.cpu_ms)[column] for a in ANCHORS[dataset]]
    published = [t for t in times if t is not None]
    return sum(us_per_shower / 1000 <= t for t in published), len(published)


def beside(rows: Iterable[Any], dataset: str, gpu: bool) -> dict[tuple[str, str, str], dict[int, float]]:
    """A bench run's figures to set beside the anchors: ms per shower by batch size, per model, backend, precision.

    Args:
        rows: :class:`caloforge.deploy.bench.BenchRow` s (or anything with their attributes).
        dataset: The rows of bundles on this dataset.
        gpu: The rows timed on a GPU (to compare with the GPU times), else those timed on the CPU.

    Returns:
        ``{("family (bundle folder)", backend, precision): {batch_size: ms per shower}}``, in the rows' order.
    """
    out: dict[tuple[str, str, str], dict[int, float]] = {}
    for r in rows:
        if r.dataset == dataset and (r.device != "cpu") == gpu:
            out.setdefault((f"{r.family} ({Path(r.model).name})", r.backend, r.precision), {})[r.batch_size] = (
                r.us_per_shower / 1000)
    return out
