"""What a run measures and logs: memory, the anatomy of each step (seconds and CUDA peak per declared phase) and,
for GRPO and DPO, learning health.

- phases.py: the phase names and the sets each kind of model declares;
- anatomy.py: StepAnatomy, the per-step phase timer a model carries;
- callback.py: StepTelemetry, the Lightning callback that logs a step's figures, reduced across ranks;
- figures.py: per-phase figures over a run and the reduction across ranks; plot.py: the step-anatomy picture;
- memory.py, oom_snapshot.py: exact memory figures and out-of-memory forensics."""


def telemetry_callbacks(settings) -> list:
    """The telemetry callback for a stage's settings (none when the stage has no telemetry block or it is off)."""
    telemetry = settings.telemetry
    if telemetry is None or not telemetry.enabled:
        return []
    from nemo_ext.telemetry.callback import StepTelemetry

    return [StepTelemetry(log_every_n_steps=telemetry.log_every_n_steps, oom_snapshot=telemetry.oom_snapshot)]
