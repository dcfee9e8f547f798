"""benchmarks/projection.py reads benchmarks/gpu_step.py's measurements: measured GPU ms replace FLOP-scaled ones."""

import importlib.util
import json
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def load_projection():
    spec = importlib.util.spec_from_file_location("projection", ROOT / "benchmarks" / "projection.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_measured_gpu_ms_replace_the_scaled_estimate_and_set_the_reference_rate(tmp_path):
    projection = load_projection()
    lines = [
        {"device": "cuda:0"},
        {"model": "keras.applications.ResNet50 (images)", "size": 224, "images_per_s": 5000.0},
        {"model": "two_stream_c3d", "size": 224, "ms_per_clip": 0.35},
        {"error": "OOM"},
    ]
    path = tmp_path / "gpu.jsonl"
    path.write_text("\n".join(map(json.dumps, lines)) + "\n\n")
    measured, images_per_s = projection.load_gpu_ms([str(path)])
    assert measured == {("two_stream_c3d", 224): 0.35} and images_per_s == 5000.0
    rate = 1e12  # FLOP/s: 3 x 1e9 FLOPs take 3 ms
    assert projection.gpu_ms_per_clip("two_stream_c3d", 224, 1e9, rate, measured) == 0.35
    assert projection.gpu_ms_per_clip("two_stream_c3d", 112, 1e9, rate, measured) == 3.0


def test_the_committed_h200_measurements_cover_the_models_the_docs_name():
    projection = load_projection()
    measured, images_per_s = projection.load_gpu_ms([str(ROOT / "benchmarks" / "results" / "gpu_step_h200.jsonl")])
    assert images_per_s > 0
    for model in ("two_stream_c3d", "two_stream_r2plus1d", "two_stream_tsn", "two_stream_resnet50"):
        assert (model, 112) in measured and (model, 224) in measured
    assert ("two_stream_xception", 224) in measured
