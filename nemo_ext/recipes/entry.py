"""Turns a recipe function into a Hydra command-line program with clean failures for bad configs."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from nemo_ext.errors import ConfigError


def hydra_entry_point(run: Callable[[DictConfig], object], config_name: str, config_dir: str) -> Callable[[], None]:
    import hydra

    @hydra.main(config_path=os.path.abspath(config_dir), config_name=config_name, version_base="1.3")
    def main(cfg: DictConfig) -> None:
        try:
            run(cfg)
        except (ConfigError, OmegaConfBaseException) as error:
            # Exit 2 with one readable line, before any model was built.
            print(f"config error: {error}", file=sys.stderr, flush=True)
            sys.exit(2)

    return main
