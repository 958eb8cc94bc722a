"""Checks on the manifests a stage reads, run before any model is built (and by `dry_run=true`, so the SLURM
launcher refuses before queueing).

NeMo finds bad data only once its dataset is built, after the models are loaded, and some cases pass silently
(an empty DataGen manifest generates nothing and exits 0; an odd DPO manifest trains on shifted pairs). Here
every problem is one ConfigError that names the manifest key, the file and line, and what is allowed.

Only metadata is read: the JSON of every line and the existence of each audio file (no audio is decoded), so a
manifest of 100,000 lines is checked in about a second."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from nemo_ext.errors import ConfigError

# Keys MagpieTTSDataset reads from every line (NeMo 3.0.0 text_to_speech_dataset.py / tts_dataset_utils).
REQUIRED_KEYS = ("audio_filepath", "text", "duration")
# Keys that hold audio paths the PO code opens as they are: NeMo's PO reward step sf.read()s
# batch['audio_filepaths'] without the dataset's audio_dir, so they must be absolute.
AUDIO_PATH_KEYS = ("audio_filepath", "context_audio_filepath")
# MagpieTTSDatasetDPO: chosen on line 2i with reward 1, rejected on line 2i+1 with reward < 1.
CHOSEN_REWARD = 1.0


@dataclass(frozen=True)
class ManifestSummary:
    path: str
    lines: int
    kept: int  # inside data.min_duration..data.max_duration

    @property
    def dropped(self) -> int:
        return self.lines - self.kept


def check_manifest(
    key: str,
    path: str,
    min_duration: float | None,
    max_duration: float | None,
    audio_dir: str | None = None,
    preference_pairs: bool = False,
) -> ManifestSummary:
    """Validate the manifest at config key `key`. `audio_dir` None: audio paths must be absolute (GRPO and
    DataGen open them as they are); else relative paths are taken below it, as NeMo's dataset does.
    `preference_pairs`: the DPO layout (alternating chosen / rejected lines with a `reward`). Raises
    ConfigError; returns how many lines survive the duration filter."""
    if not os.path.isfile(path):
        raise ConfigError(key, path, "a path to an existing manifest file (no such file)")
    entries = list(_read_lines(key, path))
    kept = 0
    out_of_range: list[int] = []
    for line_number, entry in entries:
        _check_entry(key, path, line_number, entry, preference_pairs, audio_dir)
        duration = float(entry["duration"])
        if (min_duration is not None and duration < min_duration) or (
            max_duration is not None and duration > max_duration
        ):
            out_of_range.append(line_number)
        else:
            kept += 1
    if preference_pairs:
        _check_pairs(key, path, entries, out_of_range, min_duration, max_duration)
    if not entries:
        raise ConfigError(key, path, "a manifest with at least one line (this one is empty)")
    if kept == 0:
        raise ConfigError(
            key,
            path,
            f"a manifest with at least one line of duration in data.min_duration..data.max_duration "
            f"({min_duration}..{max_duration}); all {len(entries)} lines are outside it",
        )
    return ManifestSummary(path=path, lines=len(entries), kept=kept)


def _read_lines(key: str, path: str):
    with open(path, encoding="utf-8") as f:
        for line_number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except json.JSONDecodeError as error:
                raise ConfigError(
                    key, path, f"one JSON object per line (line {line_number} is not JSON: {error.msg})"
                ) from None
            if not isinstance(entry, dict):
                kind = type(entry).__name__
                raise ConfigError(key, path, f"one JSON object per line (line {line_number} is a {kind})")
            yield line_number, entry


def _check_entry(
    key: str, path: str, line_number: int, entry: dict, preference_pairs: bool, audio_dir: str | None
) -> None:
    where = f"line {line_number}"
    required = REQUIRED_KEYS + (("reward",) if preference_pairs else ())
    missing = [name for name in required if name not in entry]
    if missing:
        raise ConfigError(key, path, f"lines with the keys {', '.join(required)} ({where} lacks {', '.join(missing)})")
    duration = entry["duration"]
    if isinstance(duration, bool) or not isinstance(duration, int | float) or duration <= 0:
        raise ConfigError(key, path, f"a positive number in 'duration' ({where} has {duration!r})")
    for audio_key in AUDIO_PATH_KEYS:
        audio = entry.get(audio_key)
        if audio is None:
            continue
        if not isinstance(audio, str) or not audio or (audio_dir is None and not os.path.isabs(audio)):
            raise ConfigError(
                key, path, f"absolute paths in '{audio_key}' (the PO code opens them as they are; {where}: {audio!r})"
            )
        if audio_dir is not None:
            audio = os.path.join(audio_dir, audio)
        if not os.path.isfile(audio):
            raise ConfigError(key, path, f"existing files in '{audio_key}' ({where}: no such file {audio})")
    if preference_pairs:
        reward = entry["reward"]
        if isinstance(reward, bool) or not isinstance(reward, int | float):
            raise ConfigError(key, path, f"a number in 'reward' ({where} has {reward!r})")


def _check_pairs(key, path, entries, out_of_range, min_duration, max_duration) -> None:
    if len(entries) % 2:
        raise ConfigError(
            key, path, f"an even number of lines: chosen/rejected pairs on consecutive lines (it has {len(entries)})"
        )
    for index, (line_number, entry) in enumerate(entries):
        reward = float(entry["reward"])
        if index % 2 == 0 and reward != CHOSEN_REWARD:
            raise ConfigError(key, path, f"reward 1 on every chosen line (line {line_number} has {reward:g})")
        if index % 2 == 1 and not reward < CHOSEN_REWARD:
            raise ConfigError(key, path, f"reward < 1 on every rejected line (line {line_number} has {reward:g})")
    if out_of_range:
        # NeMo's DPO dataset filters single lines by duration, which shifts every later pair by one line.
        raise ConfigError(
            key,
            path,
            f"pairs whose clips all last data.min_duration..data.max_duration ({min_duration}..{max_duration}); "
            f"line {out_of_range[0]} is outside it and filtering it would split its pair "
            f"({len(out_of_range)} such lines): drop those pairs or widen the range",
        )


def write_repeated_manifest(manifest: str, out: str, group_size: int) -> int:
    """`manifest`'s lines, each repeated `group_size` times on consecutive lines, written to `out` (DataGen's input:
    the pair stage reads each run of `group_size` samples as one item's group). Returns the number of lines."""
    if group_size < 2:
        raise ValueError(f"group_size={group_size}: a group needs at least 2 samples to make a pair")
    with open(manifest) as source:
        lines = [line.rstrip("\n") for line in source if line.strip()]
    for number, line in enumerate(lines, 1):
        try:
            json.loads(line)  # a broken line is refused here, not after DataGen's models are built
        except ValueError as error:
            raise ValueError(f"{manifest} line {number} is not JSON: {error}") from None
    temporary = f"{out}.{os.getpid()}.tmp"
    with open(temporary, "w") as target:
        for line in lines:
            target.writelines(line + "\n" for _ in range(group_size))
    os.replace(temporary, out)
    return len(lines) * group_size
