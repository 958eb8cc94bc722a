"""Capturing and restoring every random stream a MagpieTTS forward draws from (Python's `random`, NumPy,
torch on the CPU and on the current CUDA device), so a second forward can replay the first one's draws."""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class RandomState:
    python: object
    numpy: dict
    torch_cpu: torch.Tensor
    torch_cuda: torch.Tensor | None

    @classmethod
    def capture(cls) -> RandomState:
        cuda = torch.cuda.get_rng_state() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
        return cls(random.getstate(), np.random.get_state(), torch.get_rng_state(), cuda)

    def restore(self) -> None:
        random.setstate(self.python)
        np.random.set_state(self.numpy)
        torch.set_rng_state(self.torch_cpu)
        if self.torch_cuda is not None:
            torch.cuda.set_rng_state(self.torch_cuda)
