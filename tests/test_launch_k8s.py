"""`twostream launch k8s`: the MPIJob (kubeflow.org/v2beta1) has what the MPI operator requires."""
import yaml

from twostream.launch import cli


def _write(tmp_path, *extra):
    out = str(tmp_path / "job.yaml")
    return cli.main(["launch", "k8s", "--out", out, "--name", "deepfake-a", "--workers", "2",
                     "--slots-per-worker", "4", "--preset", "tiny", "--set", "train.epochs=7",
                     "--data", "/mnt/twostream/videos", "--workdir", "/mnt/twostream/runs/a", "--pvc", "videos",
                     *extra]), out


def test_mpijob_fields(tmp_path):
    code, out = _write(tmp_path, "--image", "registry.example.com/twostream:0.1.0")
    assert code == 0
    config_map, job = list(yaml.safe_load_all(open(out)))
    assert (job["apiVersion"], job["kind"], job["metadata"]["name"]) == ("kubeflow.org/v2beta1", "MPIJob", "deepfake-a")
    spec = job["spec"]
    assert spec["slotsPerWorker"] == 4 and spec["mpiImplementation"] == "OpenMPI"
    assert spec["runPolicy"]["cleanPodPolicy"] == "Running" and spec["runPolicy"]["backoffLimit"] == 0
    launcher, worker = spec["mpiReplicaSpecs"]["Launcher"], spec["mpiReplicaSpecs"]["Worker"]
    assert launcher["replicas"] == 1 and worker["replicas"] == 2
    for replica in (launcher, worker):
        (container,) = replica["template"]["spec"]["containers"]
        assert container["image"] == "registry.example.com/twostream:0.1.0" and container["command"]
        volumes = {v["name"]: v for v in replica["template"]["spec"]["volumes"]}
        assert volumes["data"]["persistentVolumeClaim"]["claimName"] == "videos"
        assert volumes["twostream-config"]["configMap"]["name"] == "deepfake-a-config"
    command = launcher["template"]["spec"]["containers"][0]["command"]
    assert command[:5] == ["horovodrun", "-np", "8", "--hostfile", "/etc/mpi/hostfile"]   # 2 workers x 4 slots
    assert command[6:] == ["twostream", "train", "--config", "/etc/twostream/config.yaml",
                           "--workdir", "/mnt/twostream/runs/a"]
    assert worker["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 4
    # The same config as every other launch: the resolved tree, preset and overrides applied.
    shipped = yaml.safe_load(config_map["data"]["config.yaml"])
    assert shipped["train"]["epochs"] == 7 and shipped["clip"]["size"] == 32
    assert shipped["data"]["root"] == "/mnt/twostream/videos"


def test_missing_image_and_bad_name_are_clear_errors(tmp_path, capsys):
    assert _write(tmp_path)[0] == 2
    assert "--image is required" in capsys.readouterr().err
    assert _write(tmp_path, "--image", "x", "--name", "Bad_Name")[0] == 2
    assert "lowercase letters, digits and '-'" in capsys.readouterr().err
