"""Read back an offline W&B run (`wandb/offline-run-*/run-*.wandb`) without uploading it.

wandb 0.31 no longer ships a Python reader. The file is a LevelDB-style log: a 7-byte header (":W&B", magic
0xBEE1, version 0), then 32 KiB blocks of records (crc32 u32, length u16, type u8, payload) whose payloads,
joined over FIRST/MIDDLE/LAST fragments, are `wandb_internal_pb2.Record` protobufs."""

from __future__ import annotations

import glob
import json
import os
import struct
from dataclasses import dataclass, field

HEADER = b":W&B" + struct.pack("<HB", 0xBEE1, 0)
BLOCK_SIZE = 32 * 1024
RECORD_HEADER_SIZE = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


@dataclass
class OfflineRun:
    path: str
    history: list[dict] = field(default_factory=list)  # one dict per wandb.log call
    config: dict = field(default_factory=dict)
    summary: dict = field(default_factory=dict)
    group: str = ""
    run_id: str = ""
    exit_code: int | None = None  # None: the run was never finished (killed)
    preempting: bool = False

    def series(self, key: str) -> list:
        return [row[key] for row in self.history if key in row]


def _payloads(data: bytes):
    if not data.startswith(HEADER):
        raise ValueError("not a W&B run file (bad header)")
    offset, pending = len(HEADER), b""
    while offset + RECORD_HEADER_SIZE <= len(data):
        block_left = BLOCK_SIZE - offset % BLOCK_SIZE
        if block_left < RECORD_HEADER_SIZE:  # zero padding at a block's end
            offset += block_left
            continue
        _, length, kind = struct.unpack_from("<IHB", data, offset)
        if kind == 0 and length == 0:
            offset += block_left
            continue
        start = offset + RECORD_HEADER_SIZE
        chunk = data[start : start + length]
        offset = start + length
        if kind == FULL:
            yield chunk
        elif kind == FIRST:
            pending = chunk
        elif kind == MIDDLE:
            pending += chunk
        elif kind == LAST:
            yield pending + chunk
            pending = b""


def read_offline_run(run_file: str) -> OfflineRun:
    from wandb.proto import wandb_internal_pb2 as pb

    with open(run_file, "rb") as f:
        data = f.read()
    run = OfflineRun(path=run_file)
    for payload in _payloads(data):
        record = pb.Record()
        record.ParseFromString(payload)
        kind = record.WhichOneof("record_type")
        if kind == "history":
            run.history.append({_key(item): json.loads(item.value_json) for item in record.history.item})
        elif kind == "config":
            for item in record.config.update:
                run.config[_key(item)] = json.loads(item.value_json)
        elif kind == "summary":
            for item in record.summary.update:
                run.summary[_key(item)] = json.loads(item.value_json)
        elif kind == "run":
            run.group = record.run.run_group
            run.run_id = record.run.run_id
            for item in record.run.config.update:  # wandb.init(config=...) arrives with the run record
                run.config[_key(item)] = json.loads(item.value_json)
        elif kind == "exit":
            run.exit_code = record.exit.exit_code
        elif kind == "preempting":
            run.preempting = True
    return run


def _key(item) -> str:
    return item.key or "/".join(item.nested_key)


def find_offline_runs(root: str) -> list[str]:
    """Every offline run file under `root`, oldest first."""
    return sorted(glob.glob(os.path.join(root, "**", "offline-run-*", "run-*.wandb"), recursive=True))
