"""Every flow method (DIS, Farneback and the cv2.optflow ones: TV-L1, DeepFlow, PCAFlow) finds a known translation
with finite values; methods this OpenCV lacks fail with a message that names the fix; the doctor lists what exists."""

import cv2
import numpy as np
import pytest

from twostream.data.decode.clip_spec import CONTRIB_METHODS, FLOW_METHODS
from twostream.data.decode.flow import FlowEngine, available_methods, check_method
from twostream.data.make.synthetic import random_texture
from twostream.launch.commands import doctor

HAS_OPTFLOW = hasattr(cv2, "optflow")


def _translated_pair(dx: int, dy: int, size: int = 96) -> np.ndarray:
    world = random_texture(np.random.default_rng(3), size + 40, size + 40)
    a = world[20 : 20 + size, 20 : 20 + size]
    b = world[20 - dy : 20 + size - dy, 20 - dx : 20 + size - dx]  # content moves by (+dx, +dy) on screen
    return np.stack([a, b])


@pytest.mark.parametrize("method", FLOW_METHODS)
@pytest.mark.parametrize("dx,dy", [(2, 0), (-1, 2), (0, 3)])
def test_each_method_finds_a_known_translation(method, dx, dy):
    if method not in available_methods():
        pytest.skip(f"{method} needs cv2.optflow (opencv-contrib-python-headless), not installed here")
    # 96 px: pcaflow's smallest reliable size (data/decode/flow.py)
    flow = FlowEngine(method, "medium").between_frames(_translated_pair(dx, dy))
    assert flow.shape == (1, 96, 96, 2) and flow.dtype == np.float32 and np.isfinite(flow).all()
    median = np.median(flow[0, 16:-16, 16:-16].reshape(-1, 2), axis=0)  # borders: content enters or leaves
    assert np.allclose(median, [dx, dy], atol=0.3), (method, median)


def test_the_pinned_opencv_has_every_contrib_method():
    # requirements.txt pins opencv-contrib-python-headless; with the plain wheel this fails and says so.
    assert HAS_OPTFLOW, "cv2.optflow missing: install opencv-contrib-python-headless (see requirements.txt)"
    assert available_methods() == FLOW_METHODS


def test_unknown_method_and_preset_name_the_choices():
    with pytest.raises(ValueError, match="unknown flow method 'magic'.*tvl1"):
        check_method("magic")
    with pytest.raises(ValueError, match="unknown DIS preset"):
        FlowEngine("dis", "slowest")


def test_contrib_method_without_optflow_names_the_wheel(monkeypatch):
    monkeypatch.delattr(cv2, "optflow", raising=False)
    assert available_methods() == ("dis", "farneback")
    for method in CONTRIB_METHODS:
        with pytest.raises(ValueError, match="opencv-contrib-python-headless"):
            FlowEngine(method)
    checks = {c.name: c for c in doctor.check_flow()}
    assert checks["optical flow: methods"].ok and checks["optical flow: methods"].detail == "dis, farneback"
    contrib = checks["optical flow: contrib methods"]
    assert not contrib.ok and not contrib.required and "tvl1" in contrib.detail and "contrib" in contrib.fix


def test_doctor_lists_the_methods_that_exist():
    checks = {c.name: c for c in doctor.check_flow()}
    assert checks["optical flow: methods"].detail == ", ".join(available_methods())
    assert ("optical flow: contrib methods" in checks) == (not HAS_OPTFLOW)


def test_doctor_fails_when_two_opencv_wheels_share_cv2(monkeypatch):
    monkeypatch.setattr(
        doctor, "_installed", lambda name: name in ("opencv-python-headless", "opencv-contrib-python-headless")
    )
    check = {c.name: c for c in doctor.check_flow()}["optical flow: OpenCV wheels"]
    assert not check.ok and check.required and "pip uninstall -y opencv-python-headless" in check.fix
