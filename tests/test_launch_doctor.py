"""`twostream doctor`: reports versions, Horovod's build, flow methods and GPUs; fails with fixes when broken."""

import json

import pytest
from conftest import run_cli

from twostream.launch.commands import doctor


@pytest.mark.tensorflow
def test_doctor_on_this_machine():
    result = run_cli("doctor", "--json", timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    checks = {c["name"]: c for c in json.loads(result.stdout)}
    for name in ["tensorflow", "keras", "horovod", "ray", "opencv", "numpy"]:
        assert checks[name]["ok"] and checks[name]["detail"][0].isdigit(), checks[name]
    assert checks["horovod"]["detail"] == "0.28.1"
    assert "TensorFlow" in checks["horovod: frameworks"]["detail"]
    assert "gloo" in checks["horovod: controllers"]["detail"]
    assert "gloo" in checks["horovod: tensor operations"]["detail"]
    assert checks["optical flow: methods"]["detail"].startswith("dis, farneback")
    import tensorflow as tf

    gpus = len(tf.config.list_physical_devices("GPU"))  # what this process sees, as the doctor's own process does
    assert checks["GPUs"]["ok"] == (gpus > 0) and checks["GPUs"]["detail"].startswith(f"{gpus} visible")
    assert checks["GPUs"]["required"] is False  # a CPU machine trains too: a warning, never a failure


def test_a_broken_requirement_fails_with_its_fix(monkeypatch, capsys):
    broken = [
        doctor.Check("horovod: controllers", False, "none", "rebuild with HOROVOD_WITH_GLOO=1"),
        doctor.Check("GPUs", False, "0 visible", "install tensorflow[and-cuda]", required=False),
    ]
    monkeypatch.setattr(doctor, "run_checks", lambda: broken)
    assert doctor.run(type("Args", (), {"json": False})()) == 1
    out = capsys.readouterr().out
    assert "[FAIL] horovod: controllers: none\n       fix: rebuild with HOROVOD_WITH_GLOO=1" in out
    assert "[warn] GPUs" in out and "1 required problem(s)" in out
    monkeypatch.setattr(doctor, "run_checks", lambda: broken[1:])
    assert doctor.run(type("Args", (), {"json": False})()) == 0
