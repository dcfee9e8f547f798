"""horovodrun -np 2 with corrupt files in one rank's shard: both ranks finish the same steps; rank 0 reports them; each
broken slot holds its replacement's record, label and pixels."""

import hashlib
import json
import os
import shutil
import subprocess
import sys

import pytest
from conftest import REPO, VENV_BIN

from twostream.data.decode.clips import ClipLoader
from twostream.data.decode.sampling import TrainView
from twostream.data.distributed.pipeline import clip_seed
from twostream.data.distributed.sharding import plan_epoch
from twostream.data.manifest import load_manifest, split_by_video
from twostream.trainer import config as config_lib

pytestmark = pytest.mark.tensorflow  # starts TensorFlow: left out of `make check`

HELPER = os.path.join(REPO, "tests", "helpers", "train_and_dump.py")
GLOBAL_BATCH = 4


RECORDER = """
import hashlib, json, os, runpy, sys
from twostream.data.distributed import pipeline

out, helper = sys.argv[1], sys.argv[2]
original = pipeline.EpochStream._batches


def recording(self, results):   # what each rank trains on: (record, view), label, a digest of each clip's pixels
    for batch in original(self, results):
        if self.train:
            rgb, flow, labels, _, where = batch
            digests = [hashlib.sha1(r.tobytes() + f.tobytes()).hexdigest() for r, f in zip(rgb, flow)]
            with open(f"{out}{os.environ['HOROVOD_RANK']}.jsonl", "a") as f:
                f.write(json.dumps({"where": where.tolist(), "labels": labels.tolist(), "pixels": digests}) + "\\n")
        yield batch


pipeline.EpochStream._batches = recording
sys.argv = sys.argv[2:]
runpy.run_path(helper, run_name="__main__")
"""


def _rank1_plan(root: str):
    train, _ = split_by_video(load_manifest(root), 0.2)
    return train.records, plan_epoch(len(train.records), GLOBAL_BATCH, 1, 2, seed=0, epoch=0, train=True)


def _corrupt_rank1_clips(root: str) -> list[int]:
    """Corrupts two non-adjacent clips of rank 1's epoch-0 shard, each followed in the shard by a clip of the other
    class (its replacement: the next loadable clip), so a replacement that kept the failed clip's label shows."""
    records, plan = _rank1_plan(root)
    order = plan.indices.reshape(-1)
    slots = []
    for slot in range(len(order) - 1):
        if records[order[slot]].label != records[order[slot + 1]].label and (not slots or slot > slots[-1] + 1):
            slots.append(slot)
    slots = slots[:2]
    assert len(slots) == 2
    open(records[order[slots[0]]].path, "wb").close()  # zero bytes
    with open(records[order[slots[1]]].path, "r+b") as f:  # a header, then garbage: corrupt
        f.seek(64)
        f.write(os.urandom(os.path.getsize(f.name) - 64))
    return slots


@pytest.mark.timeout(600)
def test_corrupt_files_on_one_rank_are_replaced_and_reported(tiny_dataset, tmp_path):
    root = str(tmp_path / "data")
    shutil.copytree(tiny_dataset, root)
    slots = _corrupt_rank1_clips(root)
    train_records, plan = _rank1_plan(root)
    order, positions = plan.indices.reshape(-1), plan.positions.reshape(-1)
    broken = [train_records[order[s]].path for s in slots]
    recorder = tmp_path / "recorder.py"
    recorder.write_text(RECORDER)
    overrides = [
        "train.epochs=1",
        f"train.global_batch={GLOBAL_BATCH}",
        "data.num_actors=1",
        "data.object_store_mb=128",
        "data.max_failed_fraction=0.5",
        f"data.root={root}",
    ]
    run = subprocess.run(
        [
            os.path.join(VENV_BIN, "horovodrun"),
            "-np",
            "2",
            "-H",
            "localhost:2",
            "--gloo",
            sys.executable,
            str(recorder),
            str(tmp_path / "batches_rank"),
            HELPER,
            str(tmp_path / "two"),
            str(tmp_path / "w"),
            *overrides,
        ],
        capture_output=True,
        text=True,
        timeout=540,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    assert run.stdout.count("METRICS") == 2  # both ranks returned: no hang, no crash
    with open(tmp_path / "two" / "rank0" / "run" / "metrics.jsonl") as f:
        records = [json.loads(line) for line in f]
    epoch = next(r for r in records if r["kind"] == "epoch")
    final = next(r for r in records if r["kind"] == "final")
    train, _ = split_by_video(load_manifest(root), 0.2)
    assert epoch["step"] == final["step"] == len(train.records) // GLOBAL_BATCH  # every step on both ranks
    assert epoch["clips_failed"] == 2 and epoch["clips_replaced"] == 2
    assert epoch["clips_read"] == epoch["step"] * GLOBAL_BATCH
    assert sorted(os.path.basename(f.split(":")[0]) for f in epoch["failed"]) == sorted(map(os.path.basename, broken))
    # Rank 1 trained, in each broken slot, on the next clip of its shard: that clip's record, label and pixels.
    with open(tmp_path / "batches_rank1.jsonl") as f:
        steps = [json.loads(line) for line in f]
    where = [w for step in steps for w in step["where"]]
    labels = [label for step in steps for label in step["labels"]]
    pixels = [digest for step in steps for digest in step["pixels"]]
    assert len(where) == len(order)
    loader = ClipLoader(config_lib.load("tiny").clip)
    for slot in slots:
        replacement = train_records[order[slot + 1]]
        assert where[slot] == [order[slot + 1], 0]
        assert labels[slot] == replacement.label != train_records[order[slot]].label
        rgb, flow = loader.load(replacement.path, TrainView(clip_seed(0, 0, int(positions[slot]))))
        assert pixels[slot] == hashlib.sha1(rgb.tobytes() + flow.tobytes()).hexdigest()
    others = [s for s in range(len(order)) if s not in slots]
    assert [where[s][0] for s in others] == [order[s] for s in others]
    assert [labels[s] for s in others] == [train_records[order[s]].label for s in others]
