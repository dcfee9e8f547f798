"""horovodrun -np 2 with corrupt files in one rank's shard: both ranks finish the same steps; rank 0 reports them."""
import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import REPO, VENV_BIN
from twostream.data.manifest import load_manifest, split_by_video
from twostream.data.sharding import plan_epoch

HELPER = os.path.join(REPO, "tests", "helpers", "train_and_dump.py")
GLOBAL_BATCH = 4


def _corrupt_rank1_clips(root: str) -> list[str]:
    """Corrupts two non-adjacent clips of rank 1's epoch-0 shard (each is replaced by its loadable neighbour)."""
    train, _ = split_by_video(load_manifest(root), 0.2)
    plan = plan_epoch(len(train.records), GLOBAL_BATCH, 1, 2, seed=0, epoch=0, train=True)
    positions = plan.indices.reshape(-1)
    broken = [train.records[int(positions[0])].path, train.records[int(positions[2])].path]
    open(broken[0], "wb").close()                                  # zero bytes
    with open(broken[1], "r+b") as f:                               # a header, then garbage: corrupt
        f.seek(64)
        f.write(os.urandom(os.path.getsize(broken[1]) - 64))
    return broken


@pytest.mark.timeout(600)
def test_corrupt_files_on_one_rank_are_replaced_and_reported(tiny_dataset, tmp_path):
    root = str(tmp_path / "data")
    shutil.copytree(tiny_dataset, root)
    broken = _corrupt_rank1_clips(root)
    overrides = ["train.epochs=1", f"train.global_batch={GLOBAL_BATCH}", "data.num_actors=1",
                 "data.object_store_mb=128", "data.max_failed_fraction=0.5", f"data.root={root}"]
    run = subprocess.run(
        [os.path.join(VENV_BIN, "horovodrun"), "-np", "2", "-H", "localhost:2", "--gloo",
         sys.executable, HELPER, str(tmp_path / "two"), str(tmp_path / "w"), *overrides],
        capture_output=True, text=True, timeout=540, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    assert run.stdout.count("METRICS") == 2                         # both ranks returned: no hang, no crash
    with open(tmp_path / "two" / "rank0" / "run" / "metrics.jsonl") as f:
        records = [json.loads(line) for line in f]
    epoch = next(r for r in records if r["kind"] == "epoch")
    final = next(r for r in records if r["kind"] == "final")
    train, _ = split_by_video(load_manifest(root), 0.2)
    assert epoch["step"] == final["step"] == len(train.records) // GLOBAL_BATCH   # every step on both ranks
    assert epoch["clips_failed"] == 2 and epoch["clips_replaced"] == 2
    assert epoch["clips_read"] == epoch["step"] * GLOBAL_BATCH
    assert sorted(os.path.basename(f.split(":")[0]) for f in epoch["failed"]) == sorted(map(os.path.basename, broken))
