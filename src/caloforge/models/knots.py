"""Tables of statistics kept at energy knots: filling the knots that no training shower reached.

Families that tabulate statistics at knots in the log-scaled incident energy (the flow's standardisation,
the parametric family's copula) leave a knot empty when no shower falls near it: an energy held out of
training, a gap in the spectrum. Such a knot takes the values interpolated linearly between the nearest
knots that have showers, and those of the nearest one beyond the first or last.

Example:
    >>> import torch
    >>> v = torch.tensor([[0.0], [9.0], [2.0], [9.0], [8.0], [9.0]])
    >>> fill_empty_knots(v, torch.tensor([False, False, True, False, True, False])).squeeze(1).tolist()
    [2.0, 2.0, 2.0, 5.0, 8.0, 8.0]
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["fill_empty_knots"]


def fill_empty_knots(values: Tensor, valid: Tensor) -> Tensor:
    """``values`` (K, ...) with the knots where ``valid`` (K,) is False filled from the valid ones (see the module).

    Returns ``values`` unchanged when no knot is valid.
    """
    if not bool(valid.any()):
        return values
    k = values.shape[0]
    index = torch.arange(k, dtype=torch.float64, device=values.device)
    known = torch.nonzero(valid).squeeze(1)
    position = torch.searchsorted(known, torch.arange(k, device=values.device))
    right = known[position.clamp(max=known.numel() - 1)]
    left = torch.where(position == 0, right, known[(position - 1).clamp(min=0)])
    t = ((index - index[left]) / (index[right] - index[left]).clamp_min(1)).clamp(0, 1)
    t = t.to(values.dtype).reshape(k, *([1] * (values.dim() - 1)))
    filled = values[left] + t * (values[right] - values[left])
    return torch.where(valid.reshape(k, *([1] * (values.dim() - 1))), values, filled)
