"""Turns a stage into a Hydra command-line program with clean failures for bad configs."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable

from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from nemo_ext.errors import ConfigError
from nemo_ext.recipes.early_signals import STOP_SIGNALS, record_signals_from_now
from nemo_ext.recipes.run_stopped import EXIT_STOPPED, RunStopped


def hydra_entry_point(stage, config_name: str, config_dir: str) -> Callable[[], None]:
    """`main()` for `stage` (nemo_ext.stages): compose the config with Hydra, then run_stage(stage, cfg)."""
    record_signals_from_now()  # before Hydra and NeMo are imported: a SIGTERM/SIGUSR1 in set-up is kept
    import hydra

    @hydra.main(config_path=os.path.abspath(config_dir), config_name=config_name, version_base="1.3")
    def main(cfg: DictConfig) -> None:
        try:
            stage.run(cfg)
        except (ConfigError, OmegaConfBaseException) as error:
            # Exit 2 with one readable line, before any model was built.
            print(f"config error: {str(error).splitlines()[0]}", file=sys.stderr, flush=True)
            sys.exit(2)
        except RunStopped as stop:
            # Leaving now, with the progress saved: a further stop signal changes nothing. Under srun
            # --kill-on-bad-exit, the first rank to exit 75 makes srun SIGTERM the others; during interpreter
            # shutdown Python resets its own handlers to the default (terminate), so such a rank died
            # "Terminated", srun's code was no longer 75 and the job was not requeued. SIG_IGN survives
            # shutdown.
            for signum in STOP_SIGNALS:
                signal.signal(signum, signal.SIG_IGN)
            # Unfinished work never exits 0; say where it continues.
            print(
                f"[magpie] {stop}. Continue with the same command and resume={stop.run_folder}",
                file=sys.stderr,
                flush=True,
            )
            sys.exit(EXIT_STOPPED)

    return main
