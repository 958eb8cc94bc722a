"""Loading Lightning checkpoints of NeMo models with torch's safe loader.

A checkpoint written by NeMo training holds its config as an OmegaConf DictConfig (`hyper_parameters.cfg`).
Since torch 2.6, `torch.load` defaults to `weights_only=True`, which refuses those classes: NeMo 3.0.0's
`maybe_init_from_pretrained_checkpoint` and its DPO reference load then fail with "Unsupported global:
omegaconf.dictconfig.DictConfig". Allowing OmegaConf's config classes keeps the safe loader on (no arbitrary
code runs) and loads such checkpoints."""

from __future__ import annotations

import collections
import contextlib
import typing

import torch
from omegaconf import DictConfig, ListConfig
from omegaconf.base import ContainerMetadata, Metadata
from omegaconf.nodes import AnyNode, BooleanNode, BytesNode, EnumNode, FloatNode, IntegerNode, PathNode, StringNode

# What a pickled OmegaConf config refers to (listed by torch.serialization.get_unsafe_globals_in_checkpoint).
OMEGACONF_GLOBALS = [
    DictConfig,
    ListConfig,
    ContainerMetadata,
    Metadata,
    AnyNode,
    BooleanNode,
    BytesNode,
    EnumNode,
    FloatNode,
    IntegerNode,
    PathNode,
    StringNode,
    typing.Any,
    collections.defaultdict,
    dict,
    list,
    int,
    float,
    bool,
    str,
]


@contextlib.contextmanager
def configs_in_checkpoints_allowed():
    """While active, `torch.load(..., weights_only=True)` (torch's default) also accepts OmegaConf configs.
    Nests: torch removes on exit what a context added, so only the globals not yet allowed are added here."""
    allowed = set(torch.serialization.get_safe_globals())
    with torch.serialization.safe_globals([g for g in OMEGACONF_GLOBALS if g not in allowed]):
        yield
