"""One rank of a seeded two-rank GRPO run on the tiny fixtures (tests/test_seeded_ranks.py sets srun's environment):
the real stage, with a model class that records, at each training step, the items it received and a digest of the
random stream and of the rollouts it drew. Written to <out>/rank<R>.json.

    python tests/two_rank_grpo_recorder.py <out> <online_po_tiny overrides ...>
"""

from __future__ import annotations

import hashlib
import json
import os
import sys

import torch
from magpie_testing import compose

from nemo_ext.models.online_po import MagpieTTSOnlinePO
from nemo_ext.recipes.model_config import stage_model_config
from nemo_ext.recipes.stage_run import StageRun
from nemo_ext.stages import ONLINE_PO
from nemo_ext.telemetry import telemetry_callbacks


def digest(tensor: torch.Tensor) -> str:
    return hashlib.sha256(tensor.contiguous().numpy().tobytes()).hexdigest()[:16]


class RecordingGRPO(MagpieTTSOnlinePO):
    received: list[dict] = []

    def generate_and_reward(
        self, batch, num_generations_per_item, mode="train", use_local_transformer_for_inference=False
    ):
        random_state = digest(torch.get_rng_state())
        output = super().generate_and_reward(
            batch,
            num_generations_per_item,
            mode=mode,
            use_local_transformer_for_inference=use_local_transformer_for_inference,
        )
        if mode == "train":
            self.received.append(
                {
                    "texts": list(batch["raw_texts"]),
                    "random_state": random_state,
                    "rollouts": digest(output["predicted_codes"].cpu()),
                }
            )
        return output


def main(out: str, overrides: list[str]) -> None:
    settings = ONLINE_PO.parse(compose("online_po_tiny", overrides))
    with StageRun(settings) as run:
        _, trainer = run.fit(RecordingGRPO, stage_model_config(settings), telemetry_callbacks(settings))
    with open(os.path.join(out, f"rank{trainer.global_rank}.json"), "w") as f:
        json.dump(RecordingGRPO.received, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
