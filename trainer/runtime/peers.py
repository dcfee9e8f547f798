"""Which rank's host stopped answering: every rank keeps a TCP beacon open, and after a collective fails the ranks
still running knock on the others' beacons to name the ones that are gone, and why.

A collective fails the same way whether a peer's process died, its host went down or the network between them was
cut (Gloo: "Timed out waiting 30000ms for recv", or "Connection closed by peer"); the beacon tells them apart:
a refused connection means the host answers but the rank's process is gone, a connection its process does not
answer means the process hangs (or is stopped), no answer at all means the host is down or cut off from this one.
Light: sockets and threads only, no Horovod or TensorFlow.
"""

from __future__ import annotations

import os
import re
import socket
import threading
from concurrent.futures import ThreadPoolExecutor

PROBE_TIMEOUT_S = 3.0  # a live host answers a TCP connect on its network within milliseconds
ALIVE = b"!"  # what a beacon sends to each prober


class Beacon:
    """A listening socket on every interface, accepting and closing connections until `close`."""

    def __init__(self):
        self._socket = socket.create_server(("", 0), family=socket.AF_INET, backlog=64)
        self.port = self._socket.getsockname()[1]
        self._thread = threading.Thread(target=self._accept, name="twostream-peer-beacon", daemon=True)
        self._thread.start()

    def address(self) -> tuple[str, int]:
        """(this host's name as the launcher knows it, the beacon's port): what the other ranks probe."""
        host = os.environ.get("HOROVOD_HOSTNAME") or socket.gethostname()
        return host, self.port

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._socket.accept()
                connection.sendall(ALIVE)  # from this process: a stopped one (SIGSTOP, a hang) sends nothing
            except OSError:  # closed (or the prober left)
                if self._socket.fileno() < 0:
                    return
                continue
            connection.close()

    def close(self) -> None:
        try:
            self._socket.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._socket.close()


def probe(host: str, port: int, timeout: float = PROBE_TIMEOUT_S) -> str:
    """'' when the beacon at host:port answers, else why not, in words."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as connection:
            try:
                return "" if connection.recv(1) == ALIVE else "its process closed the probe"
            except TimeoutError:  # the kernel took the connection; the process did not answer
                return f"its host answers but its process does not (no reply in {timeout:g} s: hung or stopped)"
    except ConnectionRefusedError:
        return "its host answers but its process is gone"
    except socket.gaierror:
        return f"its host name {host!r} does not resolve from here"
    except TimeoutError:
        return f"its host does not answer (no reply in {timeout:g} s: down, or cut off from this one)"
    except OSError as error:  # e.g. no route to host
        return f"its host cannot be reached ({error.strerror or error})"


def silent_ranks(beacons: list[tuple[str, int]], me: int) -> dict[int, str]:
    """{rank: why} for every other rank whose beacon does not answer, probed in parallel."""
    others = [rank for rank in range(len(beacons)) if rank != me]
    if not others:
        return {}
    with ThreadPoolExecutor(max_workers=min(len(others), 32)) as pool:
        reasons = pool.map(lambda rank: probe(*beacons[rank]), others)
    return {rank: why for rank, why in zip(others, reasons) if why}


def failure_message(beacons: list[tuple[str, int]], me: int, error: str) -> str:
    """One line for a failed collective: the ranks (and hosts) that are gone and why, what failed, what to do."""
    silent = silent_ranks(beacons, me)
    cause = first_sentence(error)
    if not silent:
        return (
            f"a collective between the ranks failed though every rank's host still answers ({cause}); "
            "see the other ranks' output for the first error, then run the same command to resume"
        )
    gone = "; ".join(f"rank {rank} on {beacons[rank][0]}: {why}" for rank, why in sorted(silent.items()))
    hosts = ", ".join(sorted({beacons[rank][0] for rank in silent}))
    return (
        f"training stopped: {gone} (Horovod: {cause}). Check {hosts}, then run the same command to resume "
        "from the last checkpoint"
    )


def first_sentence(error: str) -> str:
    """A TensorFlow op error's own words, up to the first full stop: the last line that is not part of a graph
    error's frame ('Graph execution error', 'Detected at node ...', 'File ...', '[[{{node ...}}]]')."""
    frame = re.compile(r"^\s*(File |Graph execution error|Detected at node|\[\[\{\{node)")
    lines = [line for line in error.splitlines() if line.strip() and not frame.match(line)]
    text = re.sub(r"\{\{.*?\}\}\s*", "", " ".join(lines[-1].split())) if lines else ""
    return text.split(". ")[0].rstrip(".")[:300] or "no message"
