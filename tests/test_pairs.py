"""The pair stage: NeMo's selection on hand-made metrics (expected pairs worked out here), reading DataGen output
from any rank layout, and the errors before any work."""

import json
import math
import os
import random

import pytest
from magpie_testing import compose

from nemo_ext.datagen_layout import ITEM_ID_KEY
from nemo_ext.errors import ConfigError
from nemo_ext.pairs import PairSettings, Sample, pareto_order, select_pairs, split_train_validation
from nemo_ext.stages import OFFLINE_PO_PAIRS

LOOSE = PairSettings(group_size=4, cer_threshold=1.0, min_duration=0.0, max_duration=100.0, val_pairs=0)


def sample(name, cer, similarity, duration=2.0, transcript="text", item_id=0):
    return Sample(item_id, name, None, cer, cer, similarity, duration, transcript, "text")


def names(samples):
    return [s.audio_filepath for s in samples]


def pair_names(pairs):
    return [(p.chosen.audio_filepath, p.rejected.audio_filepath) for p in pairs]


def phi(z):
    return 0.5 * (1 + math.erf(z / math.sqrt(2)))


# A: first front, lowest CER. B: first front (best similarity). C: dominated by A only. D: dominated by all.
GROUP = [sample("D", 0.5, 0.1), sample("B", 0.3, 0.9), sample("C", 0.1, 0.4), sample("A", 0.0, 0.5)]


def test_pareto_order_is_fronts_then_cer():
    assert names(pareto_order(GROUP)) == ["A", "B", "C", "D"]
    # Ties on CER inside a front: higher similarity first.
    assert names(pareto_order([sample("x", 0.2, 0.3), sample("y", 0.2, 0.6)])) == ["y", "x"]


def test_best_vs_worst_and_the_two_by_two_cross():
    best_worst, report = select_pairs([GROUP], LOOSE)
    assert pair_names(best_worst) == [("A", "D")]
    assert (report.candidate_pairs, report.kept) == (1, 1)

    cross, report = select_pairs([GROUP], PairSettings(**{**vars(LOOSE), "chosen_per_group": 2}))
    # (A,D) (A,C) (B,D) kept; (B,C) dropped: C has a better CER than B.
    assert pair_names(cross) == [("A", "D"), ("A", "C"), ("B", "D")]
    assert report.dropped == {"rejected_better_cer": 1}


def test_each_drop_rule():
    groups = [
        [sample("a", 0.0, 0.5), sample("b", 0.1, 0.9)],  # two fronts of one: b has the better similarity
        [sample("c", 0.2, 0.5), sample("d", 0.2, 0.5)],  # identical: no gap
        [sample("e", 0.5, 0.9), sample("f", 0.6, 0.1)],  # chosen CER 0.5 not under 0.3
        [sample("g", 0.0, 0.9, duration=1.0), sample("h", 0.2, 0.1)],  # chosen too short
        [sample("i", 0.0, 0.9), sample("j", 0.2, 0.1, duration=25.0)],  # rejected too long
        [sample("k", 0.0, 0.9), sample("l", 0.2, 0.1)],  # kept
    ]
    settings = PairSettings(group_size=2, cer_threshold=0.3, min_duration=1.5, max_duration=19.0, val_pairs=0)
    pairs, report = select_pairs(groups, settings)
    assert pair_names(pairs) == [("k", "l")]
    assert report.dropped == {
        "rejected_better_similarity": 1,
        "no_gap": 1,
        "chosen_cer_above_threshold": 1,
        "duration": 2,
    }
    assert (report.groups, report.candidate_pairs, report.kept) == (6, 6, 1)


def test_rejected_rewards_follow_nemos_formula():
    groups = [
        [sample("a", 0.0, 0.9), sample("b", 0.4, 0.5)],  # gaps: CER 0.4, similarity 0.4
        [sample("c", 0.0, 0.8), sample("d", 0.1, 0.7)],  # 0.1, 0.1
        [sample("e", 0.1, 0.6), sample("f", 0.3, 0.6)],  # 0.2, 0.0
    ]
    pairs, _ = select_pairs(groups, PairSettings(**{**vars(LOOSE), "group_size": 2}))
    cer_gaps, similarity_gaps = [0.4, 0.1, 0.2], [0.4, 0.1, 0.0]

    def z(values):
        mean = sum(values) / 3
        std = math.sqrt(sum((v - mean) ** 2 for v in values) / 3)
        return [(v - mean) / std for v in values]

    expected = [1 - (phi(zc) + phi(zs)) for zc, zs in zip(z(cer_gaps), z(similarity_gaps))]
    assert [p.rejected_reward for p in pairs] == pytest.approx(expected, abs=1e-12)
    assert all(-1 < r < 1 for r in expected)
    # The largest gaps give the lowest reward.
    assert pairs[0].rejected_reward == min(p.rejected_reward for p in pairs)


def test_zero_spread_gives_z_zero_instead_of_nemos_division_by_zero():
    [pair], _ = select_pairs(
        [[sample("a", 0.0, 0.9), sample("b", 0.4, 0.5)]], PairSettings(**{**vars(LOOSE), "group_size": 2})
    )
    assert pair.rejected_reward == pytest.approx(0.0)  # 1 - (0.5 + 0.5)


def test_a_group_with_an_invalid_transcript_is_skipped():
    invalid = [sample("x", 0.0, 0.9), sample("y", 1.0, 0.0, transcript="<INVALID>")]
    pairs, report = select_pairs(
        [invalid, [sample("a", 0.0, 0.9), sample("b", 0.4, 0.5)]], PairSettings(**{**vars(LOOSE), "group_size": 2})
    )
    assert pair_names(pairs) == [("a", "b")]
    assert (report.skipped_invalid, report.candidate_pairs) == (1, 1)


@pytest.mark.parametrize("val_pairs", [0, 1, 3, 7, 50])
def test_validation_takes_whole_pairs_and_the_split_is_seeded(val_pairs):
    groups = [[sample(f"c{i}", 0.0, 0.9, item_id=i), sample(f"r{i}", 0.5, 0.1, item_id=i)] for i in range(7)]
    settings = PairSettings(**{**vars(LOOSE), "group_size": 2, "val_pairs": val_pairs})
    pairs, _ = select_pairs(groups, settings)
    train, validation = split_train_validation(pairs, settings)
    assert len(validation) == min(val_pairs, 7) and len(train) + len(validation) == 7
    assert {p.chosen.audio_filepath[1:] for p in train} & {p.chosen.audio_filepath[1:] for p in validation} == set()
    assert split_train_validation(pairs, settings) == (train, validation)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("val_pairs", [1, 3, 5, 8])
def test_each_items_pairs_stay_on_one_side_of_the_split(val_pairs, seed):
    """top-2 x bottom-2 gives 4 pairs per item: a per-pair split put one item's pairs on both sides, and the
    validation reward accuracy then measured items the policy had trained on."""
    groups = [
        [sample(f"{i}-{k}", 0.05 * k, 0.9 - 0.1 * k, item_id=i) for k in range(4)] for i in range(6)
    ]  # each sample better than the next on both CER and similarity: 4 pairs per item
    settings = PairSettings(**{**vars(LOOSE), "chosen_per_group": 2, "val_pairs": val_pairs, "seed": seed})
    pairs, _ = select_pairs(groups, settings)
    assert len(pairs) == 24
    train, validation = split_train_validation(pairs, settings)
    train_items = {p.chosen.item_id for p in train} | {p.rejected.item_id for p in train}
    validation_items = {p.chosen.item_id for p in validation} | {p.rejected.item_id for p in validation}
    assert train_items & validation_items == set()
    assert sorted(train + validation, key=id) == sorted(pairs, key=id)  # every pair on exactly one side
    # Whole items, as few as reach val_pairs: 4 pairs each.
    assert len(validation) == 4 * -(-val_pairs // 4)


# ---- reading DataGen output ----
GROUP_SIZE = 3
TEXTS = ["first text.", "second text.", "third text.", "fourth text."]


def datagen_folder(root, layout: str, seed: int = 0):
    """A DataGen run folder as the recipe writes it, with metrics made by hand. `layout`: how the samples were
    spread over ranks and named: one rank in order, two ranks round-robin (DistributedSampler), or shuffled."""
    items = []
    for t, text in enumerate(TEXTS):
        items += [
            {"text": text, "audio_filepath": f"/gt/{t}.wav", "duration": 3.0, "context_audio_filepath": f"/ctx/{t}.wav"}
        ] * GROUP_SIZE
    metrics = {}
    rng = random.Random(1234)  # the same scores whatever the layout
    for line in range(len(items)):
        metrics[line] = {
            "cer_gt": round(rng.random() * 0.1, 3),
            "wer_gt": 0.0,
            "duration": 2.0 + rng.random(),
            "spk_similarity": round(rng.random(), 3),
            "pred_transcript": "x",
            "gt_transcript": "x",
            "item_id": line,
        }
    order = list(range(len(items)))
    if layout == "shuffled":
        random.Random(seed).shuffle(order)
    names = {}
    for position, line in enumerate(order):
        rank, index = (position % 2, position // 2) if layout == "two_ranks" else (0, position)
        names[line] = f"predicted_audioRank{rank}_{index}"
    audios = root / "audios"
    audios.mkdir(parents=True)
    (root / "state").mkdir()
    with open(root / "state" / "items.json", "w") as f:
        f.writelines(json.dumps({**item, ITEM_ID_KEY: i}) + "\n" for i, item in enumerate(items))
    for line, name in names.items():
        (audios / f"{name}.wav").write_bytes(b"RIFF")
        (audios / f"{name}_codes.pt").write_bytes(b"")
        (audios / f"{name}_metrics.json").write_text(json.dumps(metrics[line]))
    return root


def pairs_config(folder, *overrides):
    return compose(
        "offline_po_pairs",
        [
            f"datagen_run={folder}",
            f"pairs.group_size={GROUP_SIZE}",
            "pairs.cer_threshold=0.2",
            "pairs.min_duration=1.0",
            "pairs.val_pairs=1",
            "pairs.chosen_per_group=1",
            *overrides,
        ],
    )


def pair_content(path):
    """What a pair manifest says, independent of file names: item, text, scores and reward per line."""
    with open(path) as f:
        rows = [json.loads(line) for line in f]
    return [(r["text"], r["cer_gts"], r["pred_context_similarity"], r["duration"], r["reward"]) for r in rows]


def test_one_rank_two_ranks_and_any_file_order_give_the_same_pairs(tmp_path):
    runs = {
        layout: OFFLINE_PO_PAIRS.run(pairs_config(datagen_folder(tmp_path / layout, layout)))
        for layout in ("one_rank", "two_ranks", "shuffled")
    }
    reference = runs["one_rank"]
    assert reference.train_pairs + reference.val_pairs == reference.report.kept > 0
    for layout, run in runs.items():
        assert pair_content(run.train_manifest) == pair_content(reference.train_manifest), layout
        assert pair_content(run.val_manifest) == pair_content(reference.val_manifest), layout
    # The rank layout changes which file holds which sample: the files differ, the pairs do not.
    with open(runs["two_ranks"].train_manifest) as f:
        assert any("Rank1" in json.loads(line)["audio_filepath"] for line in f)


def test_manifests_alternate_chosen_and_rejected_as_nemos_dpo_dataset_asserts(tmp_path):
    run = OFFLINE_PO_PAIRS.run(pairs_config(datagen_folder(tmp_path / "d", "shuffled")))
    for manifest in (run.train_manifest, run.val_manifest):
        with open(manifest) as f:
            rows = [json.loads(line) for line in f]
        assert len(rows) % 2 == 0 and rows
        for i in range(0, len(rows), 2):
            chosen, rejected = rows[i], rows[i + 1]
            assert chosen["reward"] == 1.0 and rejected["reward"] < 1.0
            assert (
                chosen["text"] == rejected["text"]
                and chosen["context_audio_filepath"] == rejected["context_audio_filepath"]
            )
            assert chosen["audio_filepath"] != rejected["audio_filepath"]
            assert chosen["target_audio_codes_path"].endswith("_codes.pt")
            assert ITEM_ID_KEY not in chosen
    scored = [json.loads(line) for line in open(run.scored_manifest)]
    assert len(scored) == len(TEXTS) * GROUP_SIZE
    summary = json.loads(open(os.path.join(run.output_dir, "pair_yield.json")).read())
    assert summary["groups"] == len(TEXTS) and summary["kept"] == run.report.kept


def test_use_codes_false_leaves_the_codes_out(tmp_path):
    run = OFFLINE_PO_PAIRS.run(pairs_config(datagen_folder(tmp_path / "d", "one_rank"), "use_codes=false"))
    with open(run.train_manifest) as f:
        assert not any("target_audio_codes_path" in json.loads(line) for line in f)


def test_the_yield_is_printed(tmp_path, capsys):
    OFFLINE_PO_PAIRS.run(pairs_config(datagen_folder(tmp_path / "d", "one_rank")))
    out = capsys.readouterr().out
    assert f"[magpie] pair yield: {len(TEXTS)} groups, 0 skipped (<INVALID>), {len(TEXTS)} candidate pairs" in out
    assert "data.train_manifest=" in out and "data.val_manifest=" in out


def break_folder(folder, how):
    audios = folder / "audios"
    if how == "no_metrics":
        for path in audios.glob("*_metrics.json"):
            path.unlink()
    elif how == "metrics_without_audio":
        next(iter(sorted(audios.glob("*.wav")))).unlink()
    elif how == "old_metrics":
        path = next(iter(sorted(audios.glob("*_metrics.json"))))
        metrics = json.loads(path.read_text())
        del metrics["item_id"]
        path.write_text(json.dumps(metrics))
    elif how == "missing_sample":
        path = next(iter(sorted(audios.glob("*_metrics.json"))))
        path.unlink()
        path.with_name(path.name.replace("_metrics.json", ".wav")).unlink()
    return folder


@pytest.mark.parametrize(
    ("how", "override", "message"),
    [
        ("no_metrics", None, r"no \*_metrics\.json in"),
        ("metrics_without_audio", None, r"an audio file for each metrics file \(no .*\.wav\)"),
        ("old_metrics", None, r"has none: rerun DataGen"),
        ("missing_sample", None, r"a sample for every manifest line \(1 missing"),
        (None, "pairs.group_size=5", r"a divisor of the manifest's 12 lines"),
        (None, "pairs.group_size=6", r"lines 1\.\.6 are not one repeated text/context item"),
        (None, "pairs.chosen_per_group=3", r"1 \(best vs worst\) or 2"),
        (None, "+pairs.cer_treshold=0.1", r"^pairs\.cer_treshold=0\.1 is invalid; allowed: a key of the pairs block: "),
    ],
)
def test_bad_input_fails_before_any_pair_is_written(tmp_path, how, override, message):
    folder = datagen_folder(tmp_path / "d", "one_rank")
    if how:
        break_folder(folder, how)
    with pytest.raises(ConfigError, match=message):
        OFFLINE_PO_PAIRS.run(pairs_config(folder, *([override] if override else [])))
    assert not (folder / "pairs").exists()


def test_a_missing_datagen_folder_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"^datagen_run='.*nope' is invalid; allowed: an existing DataGen run folder"):
        OFFLINE_PO_PAIRS.run(pairs_config(tmp_path / "nope"))
    with pytest.raises(ConfigError, match=r"written by recipes/offline_po_datagen\.py"):
        OFFLINE_PO_PAIRS.run(pairs_config(tmp_path))


def test_the_yield_is_logged_to_wandb_when_enabled(tmp_path):
    from nemo_ext_tools.wandb_offline import find_offline_runs, read_offline_run

    run = OFFLINE_PO_PAIRS.run(
        pairs_config(
            datagen_folder(tmp_path / "d", "one_rank"),
            "wandb.enabled=true",
            "wandb.offline=true",
            f"wandb.save_dir={tmp_path / 'wandb_runs'}",
        )
    )
    [run_file] = find_offline_runs(str(tmp_path / "wandb_runs"))
    logged = read_offline_run(run_file)
    assert logged.series("pairs/kept") == [run.report.kept]
    assert logged.series("pairs/groups") == [len(TEXTS)]
    assert logged.config["group_size"] == GROUP_SIZE
