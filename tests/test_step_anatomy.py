"""StepAnatomy: each phase's own seconds (nested phases excluded), accumulation, and nothing when disabled."""

from __future__ import annotations

import time

import pytest

from nemo_ext.step_anatomy import OTHER, StepAnatomy


def sleep(seconds):
    time.sleep(seconds)


def test_nested_phases_are_exclusive_and_add_up_to_the_step():
    anatomy = StepAnatomy()
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
    anatomy = StepAnatomy()
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
    anatomy = StepAnatomy()
    anatomy.start_step()
    with anatomy.phase("reward"):
        anatomy.begin("backward")
        anatomy.end("optimizer")  # not even checked: disabled phases cost a flag test
    figures = anatomy.end_step()
    assert figures.seconds == {} and figures.step_seconds is None
