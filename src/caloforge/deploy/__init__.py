"""Stage 5, deployment: generation speed (``caloforge bench``) and export (ONNX) of trained bundles."""

from __future__ import annotations

__all__: list[str] = []
