"""Weight averaging: an exponential moving average (EMA) of a network's parameters, sampled with instead of them.

Every trainable family may keep one (``ema_decay`` in its config, 0: none). The average is held
as buffers of a :class:`MovingAverage` submodule (``ema``), so checkpoints and bundles save and
restore it and no optimiser ever trains it; :meth:`GenerativeModel.after_step
<caloforge.models.base.GenerativeModel.after_step>` moves it after each optimiser step, and
:meth:`GenerativeModel.sample <caloforge.models.base.GenerativeModel.sample>` (hence the validation
step, the bundle and the export) generates with the averaged weights (:meth:`MovingAverage.swapped`).

The decay warms up as ``min(decay, (1 + n) / (10 + n))`` after n updates, so an average of a few
hundred steps is not dominated by the random initialisation (TensorFlow's ``ExponentialMovingAverage``
with ``num_updates``; CaloDiffusion and EDM sample with such an average).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor, nn

__all__ = ["MovingAverage"]


class MovingAverage(nn.Module):
    """An exponential moving average of ``network``'s parameters, held as buffers (saved, never trained).

    Args:
        network: The averaged network (e.g. the GAN's generator, the diffusion network, a whole VAE).

    Example:
        >>> net = nn.Linear(2, 1)
        >>> ema = MovingAverage(net)
        >>> with torch.no_grad():
        ...     _ = net.weight.add_(1.0)
        >>> ema.update(net, 0.999)  # the first update moves 90 % of the way: (1 + 0) / (10 + 0) = 0.1 kept
        >>> bool(torch.allclose(ema.averaged()["weight"], net.weight - 0.1))
        True
    """

    updates: Tensor

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.names = [name for name, _ in network.named_parameters()]
        for name, p in network.named_parameters():
            self.register_buffer(name.replace(".", "__"), p.detach().clone())
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))

    def averaged(self) -> dict[str, Tensor]:
        """The averaged parameters by the network's parameter names."""
        return {name: getattr(self, name.replace(".", "__")) for name in self.names}

    @torch.no_grad()
    def update(self, network: nn.Module, decay: float) -> None:
        """Move towards the network's parameters; the decay grows as ``(1 + n) / (10 + n)`` up to ``decay``."""
        n = float(self.updates)
        rate = 1 - min(decay, (1 + n) / (10 + n))
        for name, p in network.named_parameters():
            getattr(self, name.replace(".", "__")).lerp_(p.detach(), rate)
        self.updates += 1

    @contextlib.contextmanager
    def swapped(self, network: nn.Module) -> Iterator[None]:
        """Within the block, ``network``'s parameters hold the averaged values; restored exactly afterwards.

        In place (the parameters keep their identity, so optimisers and caches keyed on them stay valid).
        """
        averaged = self.averaged()
        params = dict(network.named_parameters())
        with torch.no_grad():
            raw = {name: p.detach().clone() for name, p in params.items()}
            for name, p in params.items():
                p.copy_(averaged[name])
        try:
            yield
        finally:
            with torch.no_grad():
                for name, p in params.items():
                    p.copy_(raw[name])
