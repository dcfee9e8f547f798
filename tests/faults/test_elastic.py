"""Horovod elastic on this one machine: a SIGKILLed rank is survived, an added host joins, shards re-balance.

The discovery script names this machine twice ('localhost' and '127.0.0.1', both local to Horovod), so a
killed rank blacklists only its own name, and appending a name to the hosts file adds a slot.
"""

import json

import pytest
from jobs import GLOBAL_BATCH, STEPS, batches_by_process, discovery, global_batch, horovodrun, records, tail


def _final_weights(done):
    return [json.loads(line.split("DONE ", 1)[1]) for line in done.stdout.splitlines() if "DONE {" in line]


@pytest.mark.timeout(240)
@pytest.mark.parametrize("killed", [1, 0])  # rank 0's death: the survivor becomes rank 0 and writes
@pytest.mark.tensorflow
def test_survivor_finishes_after_a_rank_is_sigkilled(tmp_path, killed):
    script, _ = discovery(tmp_path, ["localhost:1", "127.0.0.1:1"])
    workdir, ids = tmp_path / "w", tmp_path / "ids"
    ids.mkdir()
    done = horovodrun(
        ["-np", "2", "--min-np", "1", "--max-np", "2", "--host-discovery-script", script],
        [
            "--workdir",
            str(workdir),
            "--ids-dir",
            str(ids),
            "--elastic",
            "--kill-rank",
            str(killed),
            "--kill-at",
            "11",
            "--set",
            "train.elastic_commit_every=2",
        ],
    )
    assert done.returncode == 0, tail(done)
    assert "SIGKILLs itself before step 11" in done.stdout and "exit with status code 137" in done.stdout

    epochs = records(workdir)
    assert [(r["epoch"], r["step"], r["steps"], r["world_size"], r["resets"]) for r in epochs] == [
        (1, 8, 8, 2, 0),
        (2, 16, 8, 1, 1),
        (3, 24, 8, 1, 1),
    ]
    assert records(workdir, "final")[0]["step"] == 3 * STEPS

    # Rolled back to the commit at step 10, then the survivor alone trained steps 11..24 on whole global batches.
    (survivor,) = [rows for rows in batches_by_process(str(ids)).values() if rows[-1]["step"] == 3 * STEPS]
    alone = [row for row in survivor if row["size"] == 1]
    assert [row["step"] for row in alone] == list(range(11, 3 * STEPS + 1))
    for row in alone:
        assert sorted(row["ids"]) == global_batch(row["epoch"], row["step"])


@pytest.mark.timeout(240)
@pytest.mark.tensorflow
def test_added_host_joins_and_shards_rebalance_with_equal_steps(tmp_path):
    script, hosts = discovery(tmp_path, ["localhost:1"])
    workdir, ids = tmp_path / "w", tmp_path / "ids"
    ids.mkdir()
    # One host to start with: Horovod then needs the interface named (else it waits for two hosts).
    done = horovodrun(
        ["-np", "1", "--min-np", "1", "--max-np", "2", "--host-discovery-script", script, "--network-interface", "lo"],
        [
            "--workdir",
            str(workdir),
            "--ids-dir",
            str(ids),
            "--elastic",
            "--add-host",
            "127.0.0.1:1",
            "--add-at",
            "4",
            "--discovery-file",
            hosts,
            "--set",
            "train.elastic_commit_every=2",
        ],
    )
    assert done.returncode == 0, tail(done)

    epochs = records(workdir)
    assert [r["epoch"] for r in epochs] == [1, 2, 3]
    assert (epochs[-1]["world_size"], epochs[-1]["resets"], epochs[-1]["step"]) == (2, 1, 3 * STEPS)
    finals = _final_weights(done)
    assert sorted(f["rank"] for f in finals) == [0, 1]
    assert finals[0]["weights"] == finals[1]["weights"]  # the joiner got rank 0's state, in step since

    # Alone first (whole global batches, from step 1 to at least the step the host was added at) ...
    processes = list(batches_by_process(str(ids)).values())
    (alone,) = [[row for row in rows if row["size"] == 1] for rows in processes if rows[0]["size"] == 1]
    assert [row["step"] for row in alone] == list(range(1, len(alone) + 1)) and len(alone) >= 4
    assert all(sorted(row["ids"]) == global_batch(row["epoch"], row["step"]) for row in alone)
    # ... then both processes trained the same steps, each on its half of every global batch.
    pair = [[row for row in rows if row["size"] == 2] for rows in processes]
    assert len(pair) == 2 and pair[0][0]["step"] == len(alone) + 1
    steps = [[row["step"] for row in rows] for rows in pair]
    assert steps[0] == steps[1] and steps[0][-1] == 3 * STEPS
    for first, second in zip(*pair):
        assert len(first["ids"]) == len(second["ids"]) == GLOBAL_BATCH // 2
        assert sorted(first["ids"] + second["ids"]) == global_batch(first["epoch"], first["step"])


def test_launch_horovod_elastic_builds_horovodruns_elastic_command(tmp_path):
    from twostream.launch.jobs.horovod_cmd import Elastic, LaunchError, build_command

    script, _ = discovery(tmp_path, ["localhost:1"])
    elastic = Elastic(1, 2, script, "lo")
    command = build_command(2, None, None, ["--preset", "tiny", "--data", "D", "--workdir", "W"], elastic=elastic)
    assert command[1:12] == [
        "-np",
        "2",
        "--min-np",
        "1",
        "--max-np",
        "2",
        "--host-discovery-script",
        script,
        "--network-interface",
        "lo",
        "--gloo",
    ]
    assert command[-2:] == ["--set", "train.elastic=true"]
    from twostream.trainer.config import ConfigError, check_world, load

    with pytest.raises(ConfigError, match="train.global_batch=8 does not split evenly over 3 ranks"):
        check_world(load(overrides=["train.global_batch=8"]), Elastic(2, 4, script).world_sizes())
    with pytest.raises(LaunchError, match="must be an executable file"):
        build_command(2, None, None, [], elastic=Elastic(1, 2, str(tmp_path / "none")))
    with pytest.raises(LaunchError, match="not -H"):
        build_command(2, "localhost:2", None, [], elastic=elastic)
    cooled = Elastic(1, 2, script, "lo", host_cooldown_s=5).args(2)
    assert cooled[-3:] == ["--blacklist-cooldown-range", "5", "3600"]  # a failed host may come back
    with pytest.raises(LaunchError, match="--host-cooldown-s must be 0"):
        Elastic(1, 2, script, "lo", host_cooldown_s=4000).args(2)


@pytest.mark.timeout(120)
@pytest.mark.tensorflow
def test_video_inputs_reshard_to_a_new_world_with_the_same_steps(ray_session, tiny_dataset):
    """What `train` does on every elastic reset: Inputs.reshard(rank, size), then the epoch from its step."""
    import numpy as np

    from twostream.trainer import config as config_lib
    from twostream.trainer.video.inputs import Inputs

    config = config_lib.load("tiny", overrides=[f"data.root={tiny_dataset}", "data.num_actors=1"])
    inputs = Inputs(config, 0, 1, 1)
    try:
        whole = inputs.train_epoch(1)[1].plan
        halves = []
        for rank in (0, 1):
            inputs.reshard(rank, 2)
            dataset, stream = inputs.train_epoch(1, from_step=2)
            assert dataset.element_spec[1].shape == (config.train.global_batch // 2,)
            halves.append(stream.plan)
        assert [half.steps for half in halves] == [whole.steps - 2] * 2  # equal steps, none lost
        np.testing.assert_array_equal(np.concatenate([h.indices for h in halves], axis=1), whole.indices[2:])
    finally:
        inputs.close()
