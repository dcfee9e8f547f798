"""Real daemons on the test hosts (tests/helpers/hosts.py): an sshd on every host that takes a key this test made,
and a SLURM with slurmctld on node1 and a slurmd per host (scripts/slurm_local.sh).

    with make_hosts(2) as hosts:
        ssh = SshAccess(folder)            # keys, sshd_config, the client's ssh_config
        ssh.start(hosts)                   # must come before anything that uses ssh is started on a host
        conf = start_slurm(hosts, folder)  # SLURM_CONF; stop_slurm(hosts, folder) stops exactly its daemons

Nothing of the machine's own SSH set-up is used or changed: the client's config (naming the test's key, no known
hosts kept) is bind-mounted over /etc/ssh/ssh_config for what runs on the hosts only (hosts.sh's HOSTS_BIND).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SLURM_LOCAL = os.path.join(REPO, "scripts", "slurm_local.sh")
SSHD = "/usr/sbin/sshd"
PRIVSEP_DIR = "/run/sshd"  # sshd refuses to start without it (Debian's service creates it the same way)


class SshAccess:
    """A client key and a host key in `folder`, and the files sshd and ssh read, for root on every host."""

    def __init__(self, folder: str):
        if not os.path.exists(SSHD) or shutil.which("ssh") is None:
            pytest.skip("no sshd/ssh here: apt-get install openssh-server openssh-client (scripts/test_system_deps.sh)")
        self.folder = folder
        os.makedirs(folder, exist_ok=True)
        self.key = os.path.join(folder, "id_ed25519")
        for key in (self.key, os.path.join(folder, "host_key")):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key], check=True)
        shutil.copy(f"{self.key}.pub", os.path.join(folder, "authorized_keys"))
        self.client_config = self._write(
            "ssh_config",
            f"Host *\n  IdentityFile {self.key}\n  UserKnownHostsFile /dev/null\n  StrictHostKeyChecking no\n"
            "  LogLevel ERROR\n  ConnectTimeout 10\n",
        )
        self.server_config = self._write(
            "sshd_config",
            f"Port 22\nHostKey {folder}/host_key\nAuthorizedKeysFile {folder}/authorized_keys\n"
            "PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
            "UsePAM no\nStrictModes no\nPidFile none\nSubsystem sftp internal-sftp\n",
        )
        self._made_privsep = False
        self.listeners: dict[int, int] = {}  # host -> its sshd's PID (the sessions are its children)

    def _write(self, name: str, text: str) -> str:
        path = os.path.join(self.folder, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def start(self, hosts) -> None:
        """sshd -D on every host (stopped by hosts.down, by PID), the client config bound on every later `run`."""
        hosts.bind(self.client_config, "/etc/ssh/ssh_config")
        if not os.path.isdir(PRIVSEP_DIR):
            os.makedirs(PRIVSEP_DIR, mode=0o755)
            self._made_privsep = True
        for host in range(1, hosts.count + 1):
            log = os.path.join(self.folder, f"sshd{host}.log")
            self.listeners[host] = hosts.start(host, [SSHD, "-D", "-e", "-f", self.server_config], log).pid
        for host in range(1, hosts.count + 1):  # every sshd answers from every host before a test relies on it
            self.wait_for(hosts, 1, f"node{host}")

    def wait_for(self, hosts, source: int, target: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while True:
            done = hosts.run(source, ["ssh", "-o", "BatchMode=yes", target, "hostname"], timeout=30)
            if done.returncode == 0 and done.stdout.strip() == target:
                return
            if time.monotonic() > deadline:
                pytest.fail(f"ssh node{source} -> {target} failed: {done.stderr.strip()}")
            time.sleep(0.5)

    def logins(self, host: int) -> int:
        """Root logins by key that `host`'s sshd accepted so far (its log)."""
        with open(os.path.join(self.folder, f"sshd{host}.log")) as f:
            return f.read().count("Accepted publickey for root")

    def cleanup(self) -> None:
        if self._made_privsep:
            shutil.rmtree(PRIVSEP_DIR, ignore_errors=True)


def start_slurm(hosts, folder: str) -> str:
    """slurmctld on node1 and a slurmd on each host; the SLURM_CONF path (run SLURM's commands on a host)."""
    env = _slurm_env(hosts, folder)
    started = subprocess.run([SLURM_LOCAL, "start"], capture_output=True, text=True, env=env, timeout=300)
    if started.returncode != 0:
        subprocess.run([SLURM_LOCAL, "stop"], env=env, timeout=60)
        pytest.skip(f"SLURM's daemons did not start on the hosts: {started.stderr.strip()[-500:]}")
    return os.path.join(folder, "slurm.conf")


def stop_slurm(hosts, folder: str) -> None:
    subprocess.run([SLURM_LOCAL, "stop"], env=_slurm_env(hosts, folder), timeout=60)


def _slurm_env(hosts, folder: str) -> dict:
    return {**hosts.env, "TWOSTREAM_SLURM_DIR": folder, "TWOSTREAM_SLURM_HOSTS": str(hosts.count)}
