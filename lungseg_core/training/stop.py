"""Ctrl-C during training as a request to stop, not an exception.

A ``KeyboardInterrupt`` can be raised at any bytecode: between recording an epoch as the best and writing
``best.pt``, or between ``best.pt`` and ``last.pt``. The package, ``summary.json`` and ``last.pt`` would then name
different epochs. So while the epoch loop and the packaging run, SIGINT (Ctrl-C, Stop in the Slicer panel) and
Windows' CTRL_BREAK only set a flag; the loop checks it between batches and after each epoch's saves.
"""

from __future__ import annotations

import signal

import torch
import torch.distributed as dist

# SIGBREAK exists on Windows only: the Slicer panel's Stop reaches a Windows child as CTRL_BREAK
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGBREAK") if hasattr(signal, name))


class StopRequest:
    """A context manager: inside it the stop signals set :attr:`requested`; on exit the previous handlers return.

    Under torchrun each rank gets the signal at its own moment (torchrun forwards it): :meth:`agreed` makes all
    ranks stop at the same batch, since a rank that left the loop alone would leave the others blocked in a
    collective until the NCCL timeout."""

    def __init__(self, distributed: bool = False, device: torch.device | None = None):
        self.requested = False
        self._distributed = distributed
        self._device = device or torch.device("cpu")
        self._previous: dict = {}

    def __enter__(self) -> "StopRequest":
        for number in STOP_SIGNALS:
            previous = signal.getsignal(number)
            # a process that ignores Ctrl-C keeps ignoring it; a handler set outside Python cannot be put back
            if previous is signal.SIG_IGN or previous is None:
                continue
            try:
                signal.signal(number, self._handle)
            except ValueError:  # not the main thread: no signal reaches this loop anyway
                continue
            self._previous[number] = previous
        return self

    def __exit__(self, *exc_info) -> bool:
        for number, previous in self._previous.items():
            signal.signal(number, previous)
        self._previous.clear()
        return False

    def _handle(self, _number, _frame) -> None:
        self.requested = True

    def agreed(self) -> bool:
        """Whether any rank was asked to stop (a collective under torchrun: every rank calls it at the same point)."""
        if self._distributed:
            flag = torch.tensor([float(self.requested)], device=self._device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            self.requested = bool(flag.item())
        return self.requested
