"""Online PO (GRPO) of MagpieTTS: `trainer.fit` of MagpieTTSOnlinePO."""

from nemo_ext.errors import ConfigError
from nemo_ext.grpo.losses import MAGPIETTS as MAGPIETTS_FAMILY
from nemo_ext.settings.grpo import GRPOSettings
from nemo_ext.settings.model_keys import GRPO_KEYS, MAGPIETTS
from nemo_ext.settings.rollout_decoder import rollout_decoder_fits
from nemo_ext.stages.stage import MAGPIETTS_DATASET, TRAINING_MANIFESTS, TRAINING_PATHS, Loop, Stage


def _budgets_in_whole_rollout_batches(settings) -> None:
    """With several updates per rollout batch, a batch is num_iterations optimizer steps: the step budget and the
    checkpoint cadence are counted in optimizer steps and fall on batch boundaries only in multiples of it."""
    iterations = settings.algorithm.num_iterations
    if iterations == 1:
        return
    max_steps = settings.trainer.arguments.get("max_steps", -1)
    if max_steps > 0 and max_steps % iterations:
        raise ConfigError(
            "trainer.max_steps", max_steps, f"-1 or a multiple of model.num_iterations ({iterations}): optimizer steps"
        )
    every = settings.exp_manager.every_n_train_steps
    if every is not None and every % iterations:
        raise ConfigError(
            "exp_manager.checkpoint_callback_params.every_n_train_steps",
            every,
            f"null or a multiple of model.num_iterations ({iterations}): checkpoints fall between rollout batches",
        )


def _accumulation_it_can_serve(settings) -> None:
    """Gradient accumulation where it cannot be made right, refused before anything is built: several updates per
    rollout batch step the optimizer themselves (Lightning refuses accumulation for manual optimization only once
    every model is built), and `dapo`'s normalizer is the token count of the whole optimizer step, which would
    include rollout batches not generated yet (TRL counts them because it generates them ahead)."""
    accumulate = settings.trainer.arguments.get("accumulate_grad_batches", 1)
    if accumulate == 1:
        return
    algorithm = settings.algorithm
    if algorithm.num_iterations > 1:
        raise ConfigError(
            "trainer.accumulate_grad_batches",
            accumulate,
            f"1 with model.num_iterations={algorithm.num_iterations} (each rollout batch steps the optimizer itself)",
        )
    if algorithm.loss_type == "dapo":
        raise ConfigError(
            "trainer.accumulate_grad_batches",
            accumulate,
            "1 with model.loss_type=dapo (its per-token mean spans the whole optimizer step; use bnpo or grpo to "
            "accumulate)",
        )


ONLINE_PO = Stage(
    name="online_po",
    summary="GRPO of MagpieTTS: rollouts scored by Whisper / NeMo ASR and a speaker model",
    loop=Loop.FIT,
    parse_algorithm=lambda model: GRPOSettings.parse(model, MAGPIETTS_FAMILY),
    family=MAGPIETTS,
    nemo_class="MagpieTTSModelOnlinePO",
    nemo_keys=GRPO_KEYS,
    our_keys=frozenset(
        {
            "reference_policy_mode",
            "rollout_audio_files",
            "num_iterations",
            "epsilon",
            "epsilon_high",
            "skip_zero_std_groups",
            "replay_random_draws",
            "disable_dropout",
            "empty_cuda_cache_every_step",
            "rollout_decoder",
            "logprob_temperature",
            "importance_sampling_correction",
            "importance_sampling_cap",
        }
    ),
    deliberate_defaults={
        "reward_asr_model": (
            "whisper (NeMo: nemo). The CER reward for every language MagpieTTS speaks, in the dtype `whisper.dtype` "
            "sets; NeMo's default is an English-only CTC model (parakeet-ctc-0.6b)"
        ),
        "inference_cfg_scale": (
            "2.5 (NeMo's GRPO: 1.0). Only used when inference_cfg_prob > 0, and at 1.0 CFG changes nothing; 2.5 is "
            "MagpieTTS's own inference default (ModelInferenceParameters.cfg_scale)"
        ),
        "grpo_beta": "0.01 (NeMo: no default, a missing key fails at the first step). The weight of the KL term",
    },
    model_class="nemo_ext.models.online_po:MagpieTTSOnlinePO",
    dataset=MAGPIETTS_DATASET,
    data_keys=("train_manifest", "val_manifest"),
    required_paths=TRAINING_PATHS,
    manifests=TRAINING_MANIFESTS,
    reference_policy=True,
    reward_terms=True,
    cross_checks=(_budgets_in_whole_rollout_batches, _accumulation_it_can_serve, rollout_decoder_fits),
)
