"""What a run measures and logs: memory, the anatomy of each step (seconds and CUDA peak per declared phase) and,
for GRPO and DPO, learning health.

- phases.py: the phase names and the sets each kind of model declares;
- anatomy.py: StepAnatomy, the per-step phase timer a model carries;
- callback.py: StepTelemetry, the Lightning callback that logs a step's figures, reduced across ranks;
- figures.py: per-phase figures over a run and the reduction across ranks; plot.py: the step-anatomy picture;
- memory.py, oom_snapshot.py: exact memory figures and out-of-memory forensics."""


def telemetry_callbacks(settings) -> list:
    """The telemetry callbacks for a stage's settings: StepTelemetry (unless the stage has no telemetry block or it
    is off), and for GRPO the learning watch: the "no learning signal" warning and the reward summary (always: it
    costs nothing)."""
    telemetry = settings.telemetry
    if telemetry is None:
        return []
    callbacks = []
    if telemetry.enabled:
        from nemo_ext.telemetry.callback import StepTelemetry

        callbacks.append(
            StepTelemetry(log_every_n_steps=telemetry.log_every_n_steps, oom_snapshot=telemetry.oom_snapshot)
        )
    group_size = getattr(settings.algorithm, "n_generations_per_item", None)
    if group_size is not None:
        from nemo_ext.telemetry.learning_callback import LearningWatch

        callbacks.append(LearningWatch(telemetry.no_signal_warning_steps, group_size))
    return callbacks
