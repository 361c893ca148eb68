"""What every benchmark prints beside its figures: the machine they were measured on.

Imported by the scripts of this folder (run as ``python benchmarks/<script>.py``, which puts this folder
on ``sys.path``).
"""

from __future__ import annotations

import os
import platform

from caloforge.runtime.hardware import cpu_info


def machine() -> str:
    """``lscpu``'s model name, the 1-minute load average and the Python version, in one line."""
    return f"{cpu_info().model}; load average {os.getloadavg()[0]:.2f}; {platform.python_version()}"
