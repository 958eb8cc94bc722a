"""TRL's `disable_dropout`: every dropout module of a model (the policy and, inside it, the frozen reference) at
p = 0 for the run. NeMo's PO documentation asks for p_dropout 0 in every module when a reference is used ("dropout
causes the KL divergence loss to become unstable"); a checkpoint's architecture fixes p_dropout, so this is the
switch that gets there without editing it. Functional dropouts (a Hugging Face backbone's `attention_dropout`)
follow their own config, 0 in Llama's and Qwen's by default."""

from __future__ import annotations

import torch


def disable_dropout(model: torch.nn.Module) -> int:
    """Set p = 0 on every dropout module of `model`; returns how many there are."""
    modules = [m for m in model.modules() if isinstance(m, torch.nn.modules.dropout._DropoutNd)]
    for module in modules:
        module.p = 0.0
    return len(modules)
