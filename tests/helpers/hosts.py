"""Several hosts on this machine for a test (scripts/hosts.sh): make them, run processes on them, tear down what was
made.

    with make_hosts(2) as hosts:              # pytest.skip when network namespaces cannot be made here
        head = hosts.start(1, ["ray", "start", "--head", ...], log_path)
        hosts.run(1, ["hostname"])             # a CompletedProcess
    # every process still on the hosts stopped by its PID (TERM, then KILL), then the namespaces removed

Each set of hosts has a prefix of its own (namespaces `<prefix>w`, `<prefix>n1`, ...), so a test never touches the
namespaces of another test or of a person's `scripts/hosts.sh up`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess

import pytest

HOSTS_SH = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "scripts", "hosts.sh"
)


def why_no_hosts() -> str | None:
    """Why this machine cannot make hosts here, or None when it can."""
    if os.geteuid() != 0:
        return "making hosts needs root (network namespaces)"
    if shutil.which("ip") is None or shutil.which("nsenter") is None or shutil.which("unshare") is None:
        return "making hosts needs ip (iproute2), nsenter and unshare"
    probe = f"tsprobe{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"`ip netns add` fails here: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


class Hosts:
    """Hosts node1..nodeN, host i at `address(i)`, made by scripts/hosts.sh with this set's own prefix."""

    def __init__(self, count: int, prefix: str):
        self.count, self.prefix = count, prefix
        self.env = {**os.environ, "HOSTS_PREFIX": prefix}
        self._started: list[subprocess.Popen] = []

    def bind(self, source: str, target: str) -> None:
        """`source` mounted over the existing file `target` in every process `run` or `start` begins after this."""
        self.env["HOSTS_BIND"] = f"{self.env.get('HOSTS_BIND', '')} {source}:{target}".strip()

    def address(self, host: int) -> str:
        return subprocess.run(
            [HOSTS_SH, "addr", str(host)], capture_output=True, text=True, env=self.env, check=True
        ).stdout.strip()

    def run(self, host: int, command: list[str], timeout: float = 300, env: dict | None = None):
        """Runs `command` on `host` to its end: a CompletedProcess with text output."""
        return subprocess.run(
            [HOSTS_SH, "run", str(host), *command],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**self.env, **(env or {})},
        )

    def start(self, host: int, command: list[str], log_path: str, env: dict | None = None) -> subprocess.Popen:
        """Starts `command` on `host` in the background, its output to `log_path`; stopped by `down`."""
        with open(log_path, "w") as log:
            process = subprocess.Popen(
                [HOSTS_SH, "run", str(host), *command],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**self.env, **(env or {})},
                start_new_session=True,
            )
        self._started.append(process)
        return process

    def down(self) -> None:
        """TERM to what `start` started (so `ray start --block` stops its own processes), then hosts.sh down:
        every process left in the hosts' namespaces, by PID, and the namespaces."""
        for process in self._started:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        for process in self._started:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=30)
        subprocess.run([HOSTS_SH, "down"], env=self.env, capture_output=True, timeout=120)
        for process in self._started:  # hosts.sh run exec's the command: its PID was in a host, now ended
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            process.wait()


@contextlib.contextmanager
def make_hosts(count: int):
    """`count` hosts for the duration of the block; pytest.skip, with the reason, where they cannot be made."""
    reason = why_no_hosts()
    if reason:
        pytest.skip(reason)
    hosts = Hosts(count, prefix=f"tst{os.getpid()}")
    made = subprocess.run([HOSTS_SH, "up", str(count)], capture_output=True, text=True, env=hosts.env)
    try:
        assert made.returncode == 0, made.stderr
        yield hosts
    finally:
        hosts.down()
