"""The published-size step benchmark's bookkeeping (scripts/benchmark_grpo_step.py), on rows shaped as the
telemetry writes them: the warm-up cycle is left out, each variant gets its own steps, and a missed target names
the phase that dominates. The benchmark itself runs the real recipe at the published size: never in the suite."""

from __future__ import annotations

from nemo_ext_tools.grpo_step_benchmark import CT2_INT8, KV_CACHE, NEMO, OURS, VARIANTS, report, summarize, targets


def rows_for(seconds: dict[str, dict[str, float]], cycles: int):
    steps, rank_rows = [], []
    for step in range(1, cycles * len(VARIANTS) + 1):
        variant = VARIANTS[(step - 1) % len(VARIANTS)]
        warm = 100.0 if step <= len(VARIANTS) else 0.0  # the warm-up cycle is slow and must not count
        phases = {f"time/{name}_s": value + warm for name, value in seconds[variant.name].items()}
        rank_rows.append({"step": step, "time/step_s": sum(phases.values()), **phases})
        steps.append({"step": step, "variant": variant.name, "rss_reset": True, "peak_rss_bytes": 2e9 + step})
    return steps, rank_rows


def test_the_warm_up_cycle_is_left_out_and_each_variant_keeps_its_own_steps():
    seconds = {
        NEMO.name: {"generation": 60.0, "asr": 4.0, "policy_forward": 6.0},
        KV_CACHE.name: {"generation": 12.0, "asr": 4.0, "policy_forward": 6.0},
        CT2_INT8.name: {"generation": 60.0, "asr": 1.0, "policy_forward": 6.0},
        OURS.name: {"generation": 12.0, "asr": 1.0, "policy_forward": 6.0},
    }
    steps, rank_rows = rows_for(seconds, cycles=3)
    measured = summarize(steps, rank_rows, VARIANTS)
    by_name = {m.variant: m for m in measured}
    assert by_name[NEMO.name].steps == [5, 9] and by_name[OURS.name].steps == [8, 12]
    assert by_name[KV_CACHE.name].phase_seconds == seconds[KV_CACHE.name]
    assert by_name[NEMO.name].step_seconds == 70.0 and by_name[OURS.name].step_seconds == 19.0
    text = report(
        measured,
        {
            "command": "python scripts/benchmark_grpo_step.py",
            "machine": "test",
            "model": "test",
            "batch_size": 1,
            "n_generations": 6,
            "max_decoder_steps": 64,
            "cycles": 3,
            "wall_seconds": 1.0,
        },
    )
    assert "| KV-cache rollouts | 5.00x | 1.00x |" in text
    verdicts = targets(measured)
    assert verdicts[0].startswith("- rollout generation, KV cache against NeMo's: 5.00x (target 3x): met")
    assert verdicts[1].startswith("- ASR, CTranslate2 int8 against transformers fp32: 4.00x (target 2x): met")
    assert verdicts[2].startswith("- whole step, ours against NeMo's: 3.68x (target 2x): met")


def test_a_missed_target_says_by_how_much_and_which_phase_dominates():
    seconds = {name: {"generation": 10.0, "asr": 2.0, "policy_forward": 30.0} for name in (v.name for v in VARIANTS)}
    seconds[OURS.name] = {"generation": 5.0, "asr": 2.0, "policy_forward": 30.0}
    steps, rank_rows = rows_for(seconds, cycles=2)
    verdicts = targets(summarize(steps, rank_rows, VARIANTS))
    assert "missed by 3.00x" in verdicts[0]
    assert verdicts[2].startswith("- whole step, ours against NeMo's: 1.14x (target 2x): missed by 1.76x")
    assert "dominated by `policy_forward` (30.0 s of 37.0 s)" in verdicts[2]


def test_the_rollout_decoder_report_compares_each_length_with_nemos_default():
    from nemo_ext_tools.rollout_decoder_benchmark import report

    measured = []
    for frames, (nemo, cached, ours) in {
        48: (30.0, 20.0, 6.0),
        96: (100.0, 70.0, 12.5),
        192: (400.0, 250.0, 40.0),
    }.items():
        for decoder, seconds in (("nemo", nemo), ("nemo_cached", cached), ("incremental", ours)):
            measured.append(
                {
                    "frames": frames,
                    "decoder": decoder,
                    "frames_decoded": frames,
                    "generation_s": seconds,
                    "step_s": seconds + 20,
                }
            )
    context = {
        "command": "python scripts/benchmark_grpo_step.py --rollout-decoders 48,96,192",
        "machine": "test",
        "model": "test",
        "batch_size": 1,
        "n_generations": 6,
        "wall_seconds": 1.0,
        "datagen_frames": 96,
    }
    text = report(
        {"context": context, "measured": measured, "datagen_seconds_per_item": {"nemo": 9.0, "incremental": 3.0}}
    )
    assert "| 96 | ours (incremental) | 96 | 12.50 | 32.50 | 130 | 8.00x | 3.69x |" in text  # 100 / 12.5, 120 / 32.5
    assert "- generation at 96 frames against NeMo's default: 8.00x (target 5x): met" in text
    assert "- generation at 96 frames against NeMo's cache: 5.60x (target 3x): met" in text
    assert "- generation at 192 frames against NeMo's default: 10.00x (target 8x): met" in text
    assert "- whole step at 96 frames against NeMo's default: 3.69x (target 3x): met" in text
    assert "Speed-up: 3.00x" in text
    assert measured[-1]["frames"] == 192 and measured[-1]["decoder"] == "incremental"
    measured[-1]["generation_s"], measured[-1]["step_s"] = 64.0, 84.0  # 400 / 64 = 6.25x
    for m in measured:
        m["phases_s"] = {"step": m["step_s"], "generation": m["generation_s"], "backward": 5.0, "asr": 4.0}
    text = report(
        {"context": context, "measured": measured, "datagen_seconds_per_item": {"nemo": 9.0, "incremental": 3.0}}
    )
    assert (
        "- generation at 192 frames against NeMo's default: 6.25x (target 8x): missed by 1.28x; ours is dominated "
        "by `generation` (64.00 s of 84.00 s; generation 333 ms per frame)"
    ) in text
    # The phase section: every phase over 0.1 s, and ours' share of generation and its longest other phase.
    assert "| 96 | ours (incremental) | 12.50 | 5.00 | 4.00 |" in text
    assert "- 96 frames, ours: generation 38% of the step; the longest other phase is `backward` (5.00 s)." in text
