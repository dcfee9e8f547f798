"""trainer/runtime/peers.py: a rank's beacon answers while it lives; after a failed collective the message names the
ranks whose beacons do not answer, their hosts and why."""

from twostream.trainer.runtime import peers


def test_a_live_beacon_answers_and_a_closed_one_is_named_gone():
    alive, gone = peers.Beacon(), peers.Beacon()
    try:
        gone.close()
        beacons = [
            ("localhost", alive.address()[1]),
            ("localhost", gone.address()[1]),
            ("localhost", alive.address()[1]),
        ]
        assert peers.probe(*beacons[0]) == ""
        assert peers.silent_ranks(beacons, me=0) == {1: "its host answers but its process is gone"}
    finally:
        alive.close()


def test_a_host_that_does_not_resolve_is_named():
    assert "does not resolve" in peers.probe("no-such-host.invalid", 9, timeout=1)


def test_the_message_names_the_rank_its_host_and_what_to_do():
    beacon = peers.Beacon()
    port = beacon.address()[1]
    beacon.close()
    error = "{{function_node __wrapped__HorovodAllgather_device_/job:localhost}} Horovod has been shut down. This was"
    message = peers.failure_message([("localhost", 1), ("localhost", port)], me=0, error=error)
    assert message == (
        "training stopped: rank 1 on localhost: its host answers but its process is gone (Horovod: Horovod has been "
        "shut down). Check localhost, then run the same command to resume from the last checkpoint"
    )


def test_when_every_host_answers_the_message_says_so():
    beacon = peers.Beacon()
    try:
        message = peers.failure_message([("localhost", 1), beacon.address()[:1] + (beacon.address()[1],)], 0, "x. y")
        assert message.startswith("a collective between the ranks failed though every rank's host still answers (x)")
    finally:
        beacon.close()


def test_a_stopped_process_is_told_from_a_gone_one(tmp_path):
    """A beacon in a SIGSTOPped process: the kernel still accepts the connection, the process sends nothing."""
    import signal
    import subprocess
    import sys

    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from twostream.trainer.runtime import peers; import time; "
            "b = peers.Beacon(); print(b.port, flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        port = int(child.stdout.readline())
        assert peers.probe("localhost", port) == ""
        child.send_signal(signal.SIGSTOP)
        _wait_until_stopped(child.pid)  # the signal is delivered asynchronously
        assert "its process does not (no reply in 1 s: hung or stopped)" in peers.probe("localhost", port, timeout=1)
    finally:
        child.kill()
        child.wait()
    assert peers.probe("localhost", port) == "its host answers but its process is gone"


def test_a_graph_errors_own_words_are_kept_and_its_frames_dropped():
    error = (
        "Graph execution error:\n\nDetected at node HorovodGroupedAllreduce_add_0 defined at (most recent call last):\n"
        '  File "fault_job.py", line 168, in <module>\n\n  File "loop.py", line 65, in run\n\n'
        "Horovod has been shut down. This was caused by an exception on one of the ranks\n"
        "\t [[{{node HorovodGroupedAllreduce_add_0}}]] [Op:__inference_step_123]"
    )
    assert peers.first_sentence(error) == "Horovod has been shut down"


def _wait_until_stopped(pid: int, timeout: float = 10) -> None:
    """Until /proc says the process is stopped (state T)."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "T":
                return
        time.sleep(0.01)
    raise AssertionError(f"process {pid} did not stop")
