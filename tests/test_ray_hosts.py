"""`twostream launch ray` on a real Ray cluster of 2 CPUs per node: a head on host 1, worker nodes on hosts 2 and 3.

The hosts are network namespaces (tests/helpers/hosts.py): each node has its own address, and the job's ranks and
decode actors report which node they run on. Packed (the default), both ranks fill one node and their actors must
go elsewhere, and their decoded frames cross the network (counted in the epoch records); with --spread each rank has
a node and its actors stay beside it, though Ray's own scheduling would send them to the idle third node (a rank's
node is half used), and no decoded frame crosses a host.
"""

import json
import os
import re
import secrets
import shutil
import tempfile
import time

import pytest
from conftest import VENV_BIN
from helpers.hosts import make_hosts
from helpers.records import final_record

pytestmark = pytest.mark.tensorflow  # starts TensorFlow: left out of `make check`

CPUS_PER_NODE = 2  # one rank (1 CPU) and one decode actor (1 CPU) per node at most
NODES = 3
# What each rank's DecoderPool logs (every rank under launch ray), behind Ray's "(BaseHorovodWorker pid=N ...)"
PLACEMENT = re.compile(
    r"\(BaseHorovodWorker pid=(\d+).*?decode actors, \d+ of them on this process's Ray node "
    r"\w+ at ([\d.]+)[^;]*; theirs at ([\d.,]+); (\d+) write their clips into shared memory"
)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """(hosts, head address, env): a Ray head on host 1 and worker nodes on hosts 2 and 3, token authentication on."""
    logs = tmp_path_factory.mktemp("ray_hosts")
    temp_dir = tempfile.mkdtemp(prefix="tsrh", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    env = {
        "PATH": f"{os.path.abspath(VENV_BIN)}:{os.environ['PATH']}",
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(32),
        "RAY_TMPDIR": temp_dir,
        "RAY_DEDUP_LOGS": "0",
        "RAY_worker_niceness": "0",
        "PYTHONUNBUFFERED": "1",
    }
    with make_hosts(NODES) as hosts:
        head = f"{hosts.address(1)}:6379"
        common = ["--block", f"--num-cpus={CPUS_PER_NODE}", "--object-store-memory=200000000", "--disable-usage-stats"]
        hosts.start(
            1,
            [
                "ray",
                "start",
                "--head",
                f"--node-ip-address={hosts.address(1)}",
                "--port=6379",
                "--include-dashboard=false",
                f"--temp-dir={temp_dir}/head",
                *common,
            ],
            str(logs / "head.log"),
            env=env,
        )
        try:
            _wait_for_nodes(hosts, head, env, 1, logs)
            for host in range(2, NODES + 1):  # one at a time: the nodes share the head's session folder
                hosts.start(
                    host,
                    ["ray", "start", f"--address={head}", f"--node-ip-address={hosts.address(host)}", *common],
                    str(logs / f"worker{host}.log"),
                    env=env,
                )
                _wait_for_nodes(hosts, head, env, host, logs)
            yield hosts, head, env
        finally:
            hosts.down()  # the `ray start`s first (TERM), then every process left on the hosts, by PID
            shutil.rmtree(temp_dir, ignore_errors=True)


def _wait_for_nodes(hosts, head: str, env: dict, count: int, logs) -> None:
    count_nodes = (
        f"import ray; ray.init(address='{head}', log_to_driver=False); print(sum(n['Alive'] for n in ray.nodes()))"
    )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        done = hosts.run(1, [os.path.join(VENV_BIN, "python"), "-c", count_nodes], timeout=120, env=env)
        if done.returncode == 0 and done.stdout.strip().splitlines()[-1:] == [str(count)]:
            return
        time.sleep(2)
    pytest.fail(
        f"the {count}-node Ray cluster did not form: "
        + " ".join((logs / name).read_text()[-1500:] for name in sorted(os.listdir(logs)))
    )


def _launch(cluster, tiny_dataset, workdir, *flags) -> tuple[dict, dict]:
    """Runs `launch ray` on host 1; ({rank pid: (its node's IP, its actors' IPs, how many of them write into shared
    memory)}, the final record)."""
    hosts, head, env = cluster
    done = hosts.run(
        1,
        [
            os.path.join(VENV_BIN, "twostream"),
            "launch",
            "ray",
            "--address",
            head,
            "--num-workers",
            "2",
            "--cpus-per-worker",
            "1",
            *flags,
            "--preset",
            "tiny",
            "--data",
            tiny_dataset,
            "--workdir",
            str(workdir),
            "--set",
            "data.num_actors=1",
        ],
        timeout=500,
        env=env,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-5000:]
    final = final_record(output)
    places = {pid: (here, theirs.split(","), int(shared)) for pid, here, theirs, shared in PLACEMENT.findall(output)}
    assert len(places) == 2, output[-5000:]  # both ranks said where they and their actors run
    return places, final


@pytest.mark.timeout(900)
def test_packed_ranks_train_with_their_actors_on_the_node_with_room(cluster, tiny_dataset, tmp_path):
    """Both ranks fill one node's 2 CPUs; their actors wait there forever unless they spill to a node with room."""
    places, final = _launch(cluster, tiny_dataset, tmp_path / "packed")
    assert final["world_size"] == 2 and final["final"]["clips"] > 0
    (rank_node,) = {here for here, _, _ in places.values()}  # packed: one node holds both ranks
    assert all(rank_node not in theirs for _, theirs, _ in places.values()), places
    assert all(shared == 0 for _, _, shared in places.values()), places  # another node's: the object store
    crossed = _from_other_nodes(tmp_path / "packed")
    assert crossed and all(mb > 0 for mb in crossed), crossed  # their frames crossed the network


@pytest.mark.timeout(900)
def test_spread_puts_one_rank_per_node_and_its_actors_beside_it(cluster, tiny_dataset, tmp_path):
    hosts, _, _ = cluster
    places, final = _launch(cluster, tiny_dataset, tmp_path / "spread", "--spread")
    assert final["world_size"] == 2
    assert len({here for here, _, _ in places.values()}) == 2  # two nodes of the three
    assert all(theirs == [here] for here, theirs, _ in places.values()), places
    assert all(shared == 1 for _, _, shared in places.values()), places  # beside its rank: a shared-memory slot
    crossed = _from_other_nodes(tmp_path / "spread")
    assert crossed and set(crossed) == {0}  # no decoded frame crossed a host, in any epoch


def _from_other_nodes(workdir) -> list[float]:
    """Each epoch's decoded MB that came from actors on another node (the epoch records, summed over ranks)."""
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [r["decoded_mb_from_other_nodes"] for r in map(json.loads, f) if r["kind"] == "epoch"]
