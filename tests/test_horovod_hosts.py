"""`twostream launch horovod` across two network-namespace hosts, each with its own address, hostname and a real sshd
(tests/helpers/hosts.py, host_services.py): horovodrun starts node2's rank over SSH, training gives the same result
over a link limited to 100 Mbit/s (tc tbf), a host cut off mid-run (its link down) stops the job within Gloo's
timeout with one line naming that host, not a hang; and an elastic job whose second host loses every process goes on
on the first host and takes the second back after its cooldown, every epoch recorded.
"""

import json
import os
import signal
import subprocess
import time

import pytest
from conftest import VENV_BIN
from helpers.host_services import SshAccess
from helpers.hosts import make_hosts
from helpers.records import final_record

pytestmark = pytest.mark.tensorflow  # starts TensorFlow: left out of `make check`

STALL_S = 15  # --stall-shutdown-s: Horovod's stall check and Gloo's timeout


@pytest.fixture(scope="module")
def bed(tmp_path_factory):
    """Two hosts with an sshd each; the Hosts, whose env has the venv on PATH."""
    folder = tmp_path_factory.mktemp("horovod_hosts")
    with make_hosts(2) as hosts:
        ssh = SshAccess(str(folder / "ssh"))
        try:
            ssh.start(hosts)
            hosts.env["PATH"] = f"{os.path.abspath(VENV_BIN)}:{os.environ['PATH']}"
            hosts.ssh = ssh
            yield hosts
        finally:
            ssh.cleanup()


def _launch(dataset: str, workdir, epochs: int, *extra: str) -> list[str]:
    """`launch horovod` with two ranks, on node1 and node2 unless `extra` says --elastic (a discovery script)."""
    where = [] if "--elastic" in extra else ["-H", "node1:1,node2:1"]
    return [
        os.path.join(VENV_BIN, "twostream"),
        "launch",
        "horovod",
        *("-np", "2", *where, *extra),
        *("--preset", "tiny", "--data", dataset, "--workdir", str(workdir)),
        *("--set", "data.num_actors=1", "--set", "data.object_store_mb=128", "--set", f"train.epochs={epochs}"),
    ]


def _final(output: str) -> dict:
    return final_record(output)["final"]


def _epochs(workdir) -> list[dict]:
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [r for r in map(json.loads, f) if r["kind"] == "epoch"]


def _sent_through_tbf(bed, host: int) -> int:
    """Bytes the host's tbf qdisc on eth0 has sent (tc -s)."""
    shown = bed.run(host, ["tc", "-s", "qdisc", "show", "dev", "eth0"]).stdout
    words = shown.split()
    return int(words[words.index("Sent") + 1])


@pytest.mark.timeout(600)
def test_ranks_on_two_hosts_train_the_same_over_a_100_mbit_link(bed, tiny_dataset, tmp_path):
    results = {}
    for link in ("unlimited", "100mbit"):
        if link == "100mbit":  # both ends: what node1 sends to node2 and back
            for host in (1, 2):
                limit = ["tc", "qdisc", "add", "dev", "eth0", "root", "tbf", "rate", "100mbit", "burst", "32kb"]
                assert bed.run(host, [*limit, "latency", "50ms"]).returncode == 0
        logins = bed.ssh.logins(2)
        started = time.monotonic()
        done = bed.run(1, _launch(tiny_dataset, tmp_path / link, 2), timeout=400)
        output = done.stdout + done.stderr
        assert done.returncode == 0, output[-4000:]
        assert bed.ssh.logins(2) > logins  # horovodrun reached node2's rank through its sshd
        assert [r["world_size"] for r in _epochs(tmp_path / link)] == [2, 2]
        results[link] = (_final(output), time.monotonic() - started)
    assert _sent_through_tbf(bed, 2) > 100_000  # the gradients and the rendezvous did cross the limited link
    (plain, plain_s), (limited, limited_s) = results["unlimited"], results["100mbit"]
    assert limited["loss"] == pytest.approx(plain["loss"], rel=1e-5), results
    print(f"2 epochs across hosts: {plain_s:.1f} s unlimited, {limited_s:.1f} s at 100 Mbit/s")
    for host in (1, 2):
        bed.run(host, ["tc", "qdisc", "del", "dev", "eth0", "root"])


@pytest.mark.timeout(600)
def test_a_host_cut_off_stops_the_job_within_the_timeout_naming_it(bed, tiny_dataset, tmp_path):
    workdir, log = tmp_path / "run", tmp_path / "launch.log"
    job = bed.start(1, _launch(tiny_dataset, workdir, 200, "--stall-shutdown-s", str(STALL_S)), str(log))
    try:
        deadline = time.monotonic() + 300
        while not _epochs(workdir):
            assert job.poll() is None and time.monotonic() < deadline, log.read_text()[-4000:]
            time.sleep(0.5)
        assert bed.run(2, ["ip", "link", "set", "eth0", "down"]).returncode == 0
        cut = time.monotonic()
        job.wait(timeout=STALL_S + 60)  # Gloo's timeout, the probe (3 s) and horovodrun's teardown: no hang
        stopped_after = time.monotonic() - cut
    finally:
        bed.run(2, ["ip", "link", "set", "eth0", "up"])
    output = log.read_text()
    assert job.returncode != 0 and 0 < len(_epochs(workdir)) < 200, output[-4000:]
    stopped = "twostream train: error: training stopped: rank 1 on node2"
    named = [line for line in output.splitlines() if stopped in line]
    assert named and "its host does not answer" in named[0], output[-4000:]
    assert "Check node2, then run the same command to resume" in named[0]
    print(f"stopped {stopped_after:.1f} s after node2 was cut off (Gloo timeout {STALL_S} s)")


@pytest.mark.timeout(600)
def test_elastic_job_survives_a_host_losing_every_process_and_takes_it_back(bed, tiny_dataset, tmp_path):
    hosts_file, script = tmp_path / "hosts", tmp_path / "discover.sh"
    hosts_file.write_text("node1:1\nnode2:1\n")
    script.write_text(f"#!/bin/sh\ncat {hosts_file}\n")
    script.chmod(0o755)
    workdir, log, epochs = tmp_path / "run", tmp_path / "launch.log", 120  # ~0.3 s each: time for node2 to return
    elastic = ["--elastic", "--min-np", "1", "--max-np", "2", "--host-discovery-script", str(script)]
    elastic += ["--network-interface", "eth0", "--host-cooldown-s", "1"]  # back 2-3 s after it failed
    job = bed.start(1, _launch(tiny_dataset, workdir, epochs, *elastic), str(log))
    _wait_for(lambda: len(_epochs(workdir)) >= 2, job, log)
    killed = _kill_every_process_but_sshd(bed, 2)
    assert killed  # node2's rank, its Ray and its ssh session
    job.wait(timeout=480)
    output = log.read_text()
    assert job.returncode == 0, output[-4000:]
    records = _epochs(workdir)
    assert [r["epoch"] for r in records] == list(range(1, epochs + 1))  # none lost, none twice
    assert [r["step"] for r in records] == [5 * e for e in range(1, epochs + 1)]  # every global batch trained
    sizes = [r["world_size"] for r in records]
    assert sizes[:2] == [2, 2] and 1 in sizes and sizes[-1] == 2, sizes  # alone on node1, then node2 back
    assert records[-1]["resets"] >= 2  # the loss of node2, its return


def _wait_for(condition, job, log, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert job.poll() is None and time.monotonic() < deadline, log.read_text()[-4000:]
        time.sleep(0.5)


def _kill_every_process_but_sshd(bed, host: int) -> list[int]:
    """SIGKILL to every process in `host`'s namespaces except its sshd listener (so the host can come back)."""
    listed = subprocess.run(["ip", "netns", "pids", f"{bed.prefix}n{host}"], capture_output=True, text=True).stdout
    pids = [int(pid) for pid in listed.split() if int(pid) != bed.ssh.listeners[host]]
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return pids
