"""What the tiny GRPO benchmarks in scripts/ share: their command line, and a tiny GRPO run with extra callbacks."""

from __future__ import annotations

import argparse
import os
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_arguments(doc: str, default_out: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--tiny-root", default=os.environ.get("MAGPIE_TINY_ROOT", os.path.join(REPO, ".tiny")))
    parser.add_argument("--out", default=os.path.join(REPO, "benchmarks", default_out))
    return parser.parse_args()


def run_tiny_grpo(tiny_root: str, steps: int, callbacks: list, *overrides: str) -> None:
    """`steps` GRPO steps on the tiny fixtures (built under `tiny_root` when missing), W&B offline, in a
    temporary experiment folder."""
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from hydra import compose, initialize_config_dir

    from nemo_ext.stages import ONLINE_PO
    from nemo_ext_tools.tiny_fixtures import build_tiny_fixtures

    tiny = build_tiny_fixtures(tiny_root)
    with tempfile.TemporaryDirectory() as runs, initialize_config_dir(os.path.join(REPO, "conf"), version_base="1.3"):
        cfg = compose(
            "online_po_tiny",
            [f"tiny_root={tiny.root}", f"exp_manager.exp_dir={runs}", f"trainer.max_steps={steps}", *overrides],
        )
        ONLINE_PO.run(cfg, callbacks=callbacks)


def write_report(text: str, path: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    print(text)
