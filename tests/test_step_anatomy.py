"""StepAnatomy: each phase's own seconds (nested phases excluded), accumulation, and nothing when disabled."""

from __future__ import annotations

import time

import pytest

from nemo_ext.telemetry.anatomy import StepAnatomy
from nemo_ext.telemetry.phases import OTHER

DECLARED = ("outer", "inner", "backward", "optimizer", "reward", "asr", OTHER)


def sleep(seconds):
    time.sleep(seconds)


def test_nested_phases_are_exclusive_and_add_up_to_the_step():
    anatomy = StepAnatomy(DECLARED)
    anatomy.enabled = True
    anatomy.start_step()
    with anatomy.phase("outer"):
        sleep(0.02)
        with anatomy.phase("inner"):
            sleep(0.05)
        anatomy.wrap("inner", sleep)(0.01)  # a phase met twice accumulates
    sleep(0.01)
    figures = anatomy.end_step()
    assert figures.seconds["inner"] == pytest.approx(0.06, abs=0.02)
    assert figures.seconds["outer"] == pytest.approx(0.02, abs=0.015)
    assert figures.seconds[OTHER] == pytest.approx(0.01, abs=0.015)
    assert sum(figures.seconds.values()) == pytest.approx(figures.step_seconds, rel=1e-9)
    assert figures.step_peak is None and figures.peaks == {}  # no CUDA device: no peaks, never zeros


def test_hook_phases_and_the_phase_an_error_came_from():
    anatomy = StepAnatomy(DECLARED)
    anatomy.enabled = True
    anatomy.start_step()
    anatomy.begin("backward")
    assert anatomy.phase_in_progress == "backward"
    with pytest.raises(RuntimeError, match="phase 'optimizer' ended while \\['backward'\\] are open"):
        anatomy.end("optimizer")
    anatomy.end("backward")
    with pytest.raises(ValueError), anatomy.phase("reward"), anatomy.phase("asr"):
        raise ValueError("boom")
    assert anatomy.phase_in_progress == "asr"  # the innermost phase the error passed through
    anatomy.end_if_open("optimizer")  # not open: nothing happens
    assert set(anatomy.end_step().seconds) == {"backward", "reward", "asr", OTHER}


def test_disabled_measures_nothing():
    anatomy = StepAnatomy(DECLARED)
    anatomy.start_step()
    with anatomy.phase("reward"):
        anatomy.begin("backward")
        anatomy.end("optimizer")  # not even checked: disabled phases cost a flag test
    figures = anatomy.end_step()
    assert figures.seconds == {} and figures.step_seconds is None


def test_a_phase_the_model_did_not_declare_is_refused():
    """Timed but undeclared, a phase would be subtracted from `other` and never logged: the anatomy refuses it,
    both when a function is wrapped and when a phase opens."""
    anatomy = StepAnatomy(DECLARED)
    with pytest.raises(ValueError, match="phase 'decode' is not among the declared phases"):
        anatomy.wrap("decode", sleep)
    anatomy.enabled = True
    anatomy.start_step()
    with pytest.raises(ValueError, match="phase 'decode' is not among the declared phases"):
        anatomy.begin("decode")
    with pytest.raises(ValueError, match="'other'"):
        anatomy.begin(OTHER)  # the rest of the step is computed, never timed
    with pytest.raises(ValueError, match="end with 'other'"):
        StepAnatomy(("reward",))


@pytest.mark.parametrize("model", ["MagpieTTSOnlinePO", "EasyMagpieTTSOnlinePO", "MagpieTTSOfflinePODataGen"])
def test_every_phase_a_model_times_is_one_it_declares(model):
    """The phase names each model class passes to its anatomy, read from the source of the modules that time
    them, are all declared by that class (so all of them are logged)."""
    import ast
    import inspect

    import nemo_ext.models as models
    from nemo_ext import rollout_audio, whisper_asr
    from nemo_ext.models import grpo_step, reward_models_mixin
    from nemo_ext.telemetry import phases

    cls = getattr(models, model)
    sources = [inspect.getmodule(cls), reward_models_mixin, grpo_step, rollout_audio, whisper_asr]
    timed = set()
    for module in sources:
        for node in ast.walk(ast.parse(inspect.getsource(module))):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "phases":
                timed.add(getattr(phases, node.attr))
    timed -= {phases.GRPO_PHASES, phases.DATAGEN_PHASES, phases.ROLLOUT_PHASES}
    declared = set(cls.step_phases)
    grpo_only = {phases.REWARD, phases.POLICY_FORWARD, phases.REFERENCE_FORWARD, phases.LOSS, phases.BACKWARD}
    grpo_only |= {phases.OPTIMIZER}
    expected = timed - (grpo_only if model == "MagpieTTSOfflinePODataGen" else {phases.DATAGEN})
    assert expected <= declared


def test_the_warm_up_outlier_does_not_move_the_printed_median():
    """The demo's first step spent 6.69 s in audio_io (librosa's first resample), the next ones 0.004 s: printed over
    all steps, audio_io looked like 80% of a step. Left out (and said so), the figures are the steady state's."""
    from nemo_ext.telemetry.figures import phase_figures, phase_summary_lines

    phases = ("audio_io", "generation", OTHER)

    def row(step, audio_io):
        return {"step": step, "time/step_s": audio_io + 0.1, "time/audio_io_s": audio_io, "time/generation_s": 0.1}

    history = [row(1, 6.69)] + [row(step, 0.004) for step in range(2, 6)]
    lines = phase_summary_lines(history, phases, warmup_steps=1)
    assert lines[0] == "Step anatomy over steps 2-5 (4 logged); left out: 1 warm-up step (6.79 s, in the rank files)"
    steady = {f.phase: f for f in phase_figures(history[1:], phases)}
    assert f"median {steady['audio_io'].median_s:.4g} s" in lines[1]
    assert steady["audio_io"].share == pytest.approx(0.004 / 0.104)
    assert "80" not in lines[1]
    # Without leaving it out, the outlier is what the line shows (what the summary printed before).
    assert phase_figures(history, phases)[0].share > 0.8
    # A run of one logged step shows that step (nothing is left to show otherwise).
    assert phase_summary_lines(history[:1], phases, warmup_steps=1)[0] == "Step anatomy over steps 1-1 (1 logged)"
