"""The names of a step's phases: the vocabulary every timed place uses, and the sets each kind of model declares.
A model's StepAnatomy refuses a phase its class did not declare (telemetry/anatomy.py), so every timed phase is
also logged. docs/telemetry.md maps these names to verl's."""

GENERATION = "generation"  # the policy's autoregressive decode (infer_batch), without the codec
CODEC_DECODE = "codec_decode"
AUDIO_IO = "audio_io"  # writing / reading clips (and codes)
ASR = "asr"
SPEAKER_VERIFICATION = "speaker_verification"
REWARD = "reward"  # NeMo's reward arithmetic (it encloses the rollout phases)
POLICY_FORWARD = "policy_forward"
REFERENCE_FORWARD = "reference_forward"
LOSS = "loss"  # NeMo's loss arithmetic and logging, up to the backward
BACKWARD = "backward"
OPTIMIZER = "optimizer"
DATAGEN = "datagen"  # DataGen's metrics files (it encloses the rollout phases)
OTHER = "other"  # the rest of the step: Lightning's own work between hooks

ROLLOUT_PHASES = (GENERATION, CODEC_DECODE, AUDIO_IO, ASR, SPEAKER_VERIFICATION)
# One GRPO step, in order.
GRPO_PHASES = (*ROLLOUT_PHASES, REWARD, POLICY_FORWARD, REFERENCE_FORWARD, LOSS, BACKWARD, OPTIMIZER, OTHER)
# One DataGen batch.
DATAGEN_PHASES = (*ROLLOUT_PHASES, DATAGEN, OTHER)
