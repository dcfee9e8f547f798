"""launch/jobs/k8s_entrypoint.sh, run for real: Kubernetes' SIGTERM to the pod's first process reaches the training
ranks (SIGTERM, once, never SIGKILL), the script waits for them to checkpoint and exit 75, and only then stops
the daemon; on the launcher horovodrun is never signalled and its status is the pod's.

Stand-ins, each a real process: the daemon (sshd's place) starts a rank below itself as sshd's sessions do; a rank
is a Python program run as `.../bin/twostream train`, that records each signal, takes a second to "checkpoint"
and exits 75; `ssh` runs the command on this machine, scoped to the named worker's processes."""

import os
import signal
import subprocess
import sys
import time

import pytest

ENTRYPOINT = os.path.join(os.path.dirname(__file__), "..", "launch", "jobs", "k8s_entrypoint.sh")
WAIT_S = 120  # a guard against a hang, not a measurement

RANK = r"""
import os, signal, sys, time
events = sys.argv[sys.argv.index("--events") + 1]
def note(text):
    with open(events, "a") as f:
        f.write(f"{text}\n")
def stop(number, frame):
    note(f"rank {os.getpid()} got {signal.Signals(number).name}")
    time.sleep(1)   # the checkpoint
    os.kill(helper, signal.SIGKILL)
    note(f"rank {os.getpid()} exits 75")
    sys.exit(75)
parent = os.getpid()
helper = os.fork()   # a forked helper has the rank's own command line; it must not be signalled
if helper == 0:
    signal.signal(signal.SIGTERM, lambda n, f: note(f"helper got {signal.Signals(n).name}"))
    while os.getppid() == parent:   # ends with its rank, however that ends
        time.sleep(0.1)
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
note(f"rank {os.getpid()} started")
while True:
    time.sleep(0.1)
"""

# sshd's place: once GO exists (horovodrun has started), starts one rank below itself and records how it ended.
DAEMON = r"""
import os, signal, subprocess, sys, time
name, events, go, rank = sys.argv[1:5]
def note(text):
    with open(events, "a") as f:
        f.write(f"{text}\n")
def stop(number, frame):
    note(f"daemon {name} got {signal.Signals(number).name}")
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
if len(sys.argv) > 5:   # a daemon that fails on its own
    sys.exit(int(sys.argv[5]))
while not os.path.exists(go):
    time.sleep(0.1)
child = subprocess.Popen([sys.executable, rank, "train", "--events", events, "--worker", name])
note(f"daemon {name} saw its rank exit {child.wait()}")
while True:
    time.sleep(0.1)
"""

# ssh's place: `fake_ssh HOST COMMAND...` runs COMMAND here, limited to HOST's worker (TWOSTREAM_RANKS_UNDER).
SSH = r"""
import os, subprocess, sys
host, command = sys.argv[1], sys.argv[2:]
workers = dict(item.split("=") for item in os.environ["TEST_WORKER_PIDS"].split(","))
with open(os.environ["TEST_EVENTS"], "a") as f:
    f.write(f"ssh {host} {command[-1]}\n")
sys.exit(subprocess.call(command, env={**os.environ, "TWOSTREAM_RANKS_UNDER": workers[host]}))
"""

# horovodrun's place: starts the ranks (GO), never expects SIGTERM, and ends once every rank has exited, with 1,
# as horovodrun does when a rank exits non-zero.
HOROVODRUN = r"""
import signal, sys, time
events, go, ranks = sys.argv[1], sys.argv[2], int(sys.argv[3])
def note(text):
    with open(events, "a") as f:
        f.write(f"{text}\n")
signal.signal(signal.SIGTERM, lambda n, f: note("horovodrun got SIGTERM"))
note("horovodrun started")
open(go, "w").close()
while sum("saw its rank exit" in line for line in open(events)) < ranks:
    time.sleep(0.1)
note("horovodrun exits 1")
sys.exit(1)
"""


class Job:
    """The stand-in programs in tmp_path, the events they record, and the processes the test started."""

    def __init__(self, tmp_path):
        self.dir = tmp_path
        self.events = tmp_path / "events"
        self.events.touch()
        self.go = tmp_path / "go"
        (tmp_path / "bin").mkdir()
        self.rank = tmp_path / "bin" / "twostream"
        for path, text in (
            (self.rank, RANK),
            (tmp_path / "daemon.py", DAEMON),
            (tmp_path / "ssh.py", SSH),
            (tmp_path / "horovodrun.py", HOROVODRUN),
        ):
            path.write_text(text)
        self.processes = []

    def lines(self):
        return self.events.read_text().splitlines()

    def start(self, *argv, **env):
        environment = {
            **os.environ,
            "TWOSTREAM_SIGNALLED": str(self.dir / f"signalled-{len(self.processes)}"),
            "TEST_EVENTS": str(self.events),
            **env,
        }
        process = subprocess.Popen(
            ["bash", ENTRYPOINT, *argv],
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )  # a group to end
        self.processes.append(process)
        return process

    def worker(self, name, *daemon_extra):
        daemon = f"{sys.executable} {self.dir / 'daemon.py'} {name} {self.events} {self.go} {self.rank}"
        return self.start("worker", TWOSTREAM_DAEMON=" ".join([daemon, *daemon_extra]))

    def wait_for(self, text, count=1):
        deadline = time.monotonic() + WAIT_S
        while sum(text in line for line in self.lines()) < count:
            assert time.monotonic() < deadline, f"no {count} x {text!r} in {self.lines()}"
            time.sleep(0.1)

    def finish(self, process):
        out, err = process.communicate(timeout=WAIT_S)
        return process.returncode, err

    def stop_all(self):
        """Each script still running gets SIGTERM (a worker stops its daemon), then its process group SIGKILL."""
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=WAIT_S)
                except subprocess.TimeoutExpired:
                    pass
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.communicate()


@pytest.fixture
def job(tmp_path):
    job = Job(tmp_path)
    decoy = subprocess.Popen([sys.executable, str(job.rank), "train", "--events", str(tmp_path / "decoy")])
    deadline = time.monotonic() + WAIT_S  # running, its SIGTERM handler set, before the entrypoint could act
    while "started" not in ((tmp_path / "decoy").exists() and (tmp_path / "decoy").read_text() or ""):
        assert time.monotonic() < deadline and decoy.poll() is None, "the decoy rank did not start"
        time.sleep(0.05)
    yield job
    job.stop_all()
    decoy.kill()
    decoy.wait()
    # a `twostream train` outside the job's processes is never touched (the script would signal any in a pod)
    assert "SIGTERM" not in (tmp_path / "decoy").read_text()


def _index(lines, text):
    return next(i for i, line in enumerate(lines) if text in line)


def test_worker_passes_sigterm_to_its_rank_waits_for_it_then_stops_the_daemon(job):
    worker = job.worker("w0")
    job.go.touch()
    job.wait_for("started")
    rank_pid = int(job.lines()[_index(job.lines(), "started")].split()[1])
    worker.send_signal(signal.SIGTERM)
    job.wait_for(f"rank {rank_pid} got SIGTERM")
    worker.send_signal(signal.SIGTERM)  # a second one (kubectl delete twice) changes nothing
    code, err = job.finish(worker)
    lines = job.lines()
    assert code == 143, err  # 128 + SIGTERM: stopped on request
    # the rank got SIGTERM once (no SIGKILL: it exited by itself, 75), before the daemon was stopped
    assert sum(f"rank {rank_pid} got" in line for line in lines) == 1
    assert (
        _index(lines, f"rank {rank_pid} got SIGTERM")
        < _index(lines, f"rank {rank_pid} exits 75")
        < _index(lines, "daemon w0 saw its rank exit 75")
        < _index(lines, "daemon w0 got SIGTERM")
    )
    assert not any("helper" in line for line in lines), (lines, err)  # the rank's forked child: left to it
    assert f"SIGTERM to rank process {rank_pid}" in err and "no rank left; stopping the daemon" in err


def test_a_daemon_that_ends_on_its_own_ends_the_worker_with_its_status(job):
    code, err = job.finish(job.worker("w0", "3"))
    assert code == 3 and "exited on its own with status 3" in err


def test_launcher_has_every_worker_signal_its_ranks_and_exits_with_horovodruns_status(job):
    workers = {name: job.worker(name) for name in ("w0", "w1")}
    hostfile = job.dir / "hostfile"
    hostfile.write_text("w0 slots=1\nw1 slots=1\n")
    launcher = job.start(
        "launcher",
        sys.executable,
        str(job.dir / "horovodrun.py"),
        str(job.events),
        str(job.go),
        "2",
        TWOSTREAM_HOSTFILE=str(hostfile),
        TWOSTREAM_REMOTE=f"{sys.executable} {job.dir / 'ssh.py'}",
        TWOSTREAM_RESIGNAL_S="1",
        TEST_WORKER_PIDS=",".join(f"{n}={p.pid}" for n, p in workers.items()),
    )
    job.wait_for("started", 3)  # horovodrun and both ranks
    launcher.send_signal(signal.SIGTERM)
    code, err = job.finish(launcher)
    lines = job.lines()
    assert code == 1, err  # horovodrun's own status: non-zero, so Kubernetes' Job retries the launcher
    assert "horovodrun got SIGTERM" not in lines
    for name in workers:
        assert "daemon " + name + " saw its rank exit 75" in lines
        assert _index(lines, f"ssh {name} stop-ranks") < _index(lines, "horovodrun started")  # leftovers first
        assert _index(lines, f"ssh {name} signal-ranks") < _index(lines, "horovodrun exits 1")
    assert sum(" got SIGTERM" in line and line.startswith("rank") for line in lines) == 2  # once each
    assert all(process.poll() is None for process in workers.values())  # only the ranks were stopped


def test_a_retried_launcher_stops_the_ranks_left_on_the_workers_before_it_starts(job):
    """A launcher pod that was killed leaves its ranks training on the workers; the next one must not start a
    second set beside them: it stops them (they checkpoint) and starts its command once they have exited."""
    job.go.touch()  # the previous launcher's ranks are running
    worker = job.worker("w0")
    job.wait_for("started")
    hostfile = job.dir / "hostfile"
    hostfile.write_text("# written by the operator\nw0 slots=1\n")
    code, err = job.finish(
        job.start(
            "launcher",
            "sh",
            "-c",
            f"echo command started >> {job.events}",
            TWOSTREAM_HOSTFILE=str(hostfile),
            TWOSTREAM_REMOTE=f"{sys.executable} {job.dir / 'ssh.py'}",
            TEST_WORKER_PIDS=f"w0={worker.pid}",
        )
    )
    lines = job.lines()
    assert code == 0, err
    assert (
        _index(lines, "exits 75") < _index(lines, "daemon w0 saw its rank exit 75") < _index(lines, "command started")
    )


@pytest.mark.parametrize("argv", [[], ["launcher"], ["serve"]])
def test_usage_errors(argv):
    result = subprocess.run(["bash", ENTRYPOINT, *argv], capture_output=True, text=True, timeout=WAIT_S)
    assert result.returncode == 2 and ("usage:" in result.stderr or "no command given" in result.stderr)
