"""What the machine offers and how long work behaves on it, for every stage.

* :mod:`~caloforge.runtime.hardware`: CPU model and capability, native bfloat16, measured
  throughput, the thread count (the one place that decides them).
* :mod:`~caloforge.runtime.resources`: memory and disk checks before large allocations and writes.
* :mod:`~caloforge.runtime.progress`: progress of long stages (a bar on a terminal, lines in a log).
* :mod:`~caloforge.runtime.interrupts`: Ctrl-C and SIGTERM at safe points.
"""

from __future__ import annotations

__all__: list[str] = []
