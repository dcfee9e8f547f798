"""Without elastic mode a SIGKILLed rank ends the whole job with a non-zero exit (no hang), and starting the
same job again resumes from the last checkpoint."""

import pytest
from jobs import STEPS, batches_by_process, horovodrun, records, tail

pytestmark = pytest.mark.tensorflow  # starts TensorFlow: left out of `make check`

TWO_RANKS = ["-np", "2", "-H", "localhost:2"]


@pytest.mark.timeout(300)
def test_killed_rank_fails_the_job_then_a_rerun_resumes_from_the_checkpoint(tmp_path):
    workdir, ids = tmp_path / "w", tmp_path / "ids"
    ids.mkdir()
    job = [
        "--workdir",
        str(workdir),
        "--ids-dir",
        str(ids),
        "--kill-rank",
        "1",
        "--kill-at",
        "11",
        "--set",
        "train.checkpoint_every=4",
    ]
    first = horovodrun(TWO_RANKS, job)
    assert first.returncode != 0, tail(first)
    assert "exit with status code 137" in first.stdout and "SIGKILLs itself before step 11" in first.stdout
    assert [r["epoch"] for r in records(workdir)] == [1] and records(workdir, "final") == []
    before = set(batches_by_process(str(ids)))

    second = horovodrun(TWO_RANKS, job)  # the kill is scheduled once per job: this run is clean
    assert second.returncode == 0, tail(second)
    assert "restored" in second.stdout and "ckpt-8 (step 8)" in second.stdout
    assert [(r["epoch"], r["step"], r["world_size"]) for r in records(workdir)] == [(1, 8, 2), (2, 16, 2), (3, 24, 2)]
    assert records(workdir, "final")[0]["step"] == 3 * STEPS
    rerun = [rows for pid, rows in batches_by_process(str(ids)).items() if pid not in before]
    assert [[row["step"] for row in rows] for rows in rerun] == [list(range(9, 3 * STEPS + 1))] * 2


@pytest.mark.timeout(240)
def test_hung_rank_ends_the_job_when_a_stall_shutdown_is_set(tmp_path):
    """A rank that hangs (SIGSTOP: alive, silent) would leave the other waiting in its allreduce forever;
    with `launch horovod --stall-shutdown-s 10` Gloo's timeout and Horovod's stall check shut Horovod down and
    the job exits non-zero, naming the rank that hangs."""
    from twostream.launch.jobs.horovod_cmd import stall_args

    workdir, ids = tmp_path / "w", tmp_path / "ids"
    ids.mkdir()
    done = horovodrun(
        TWO_RANKS + stall_args(10),
        ["--workdir", str(workdir), "--ids-dir", str(ids), "--stop-rank", "1", "--stop-at", "11"],
        timeout=200,
    )
    assert done.returncode != 0, tail(done)
    assert "SIGSTOPs itself (hangs) before step 11" in done.stdout
    # rank 0 names the rank that stopped answering and why (trainer/runtime/peers.py)
    assert "rank 1 on localhost: its host answers but its process does not (no reply in 3 s: hung" in done.stdout
    # rank 0 got to step 11's allreduce and waited there; rank 1 hung before step 11
    assert sorted(rows[-1]["step"] for rows in batches_by_process(str(ids)).values()) == [10, 11]
