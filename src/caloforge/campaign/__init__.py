"""Stage 6, campaigns: many models (particle x eta slice x energy range) with hyperparameter search."""

from __future__ import annotations

__all__: list[str] = []
