"""Times one training step of each two-stream model on a GPU, under Keras 3's JAX backend: ms per clip.

Usage (on a machine with a GPU and JAX; TensorFlow is not needed, the models are pure Keras 3):
  KERAS_BACKEND=jax python benchmarks/gpu_step.py [--sizes 112,224] [--batch 16] [--precision mixed_bfloat16]
                                                  [--models two_stream_c3d,...] [--steps 20] [--out FILE.jsonl]
A step is what trainer/engine/step.py runs per batch: forward in training mode, softmax cross-entropy on the logits,
gradients of every trainable weight, and an SGD update (jitted as one XLA program, donated buffers).
Inputs are random uint8 clips of 8 frames ({"rgb": (B,8,S,S,3), "flow": (B,8,S,S,2)}), 101 classes (UCF101).
The first steps compile and are not timed; the median of --steps timed steps is reported, divided by the batch.
Also times keras.applications' ResNet50 on single 224 px images (--reference-batch, 256), the workload whose published
throughput benchmarks/projection.py scales from, so the two can be compared on the same card.
Prints one JSON line per model and size (and appends it to --out): benchmarks/projection.py --gpu-ms reads them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "jax")

import numpy as np  # noqa: E402

try:  # --help works without them
    import jax
    import keras

    from twostream.models.precision import dtype_policy
    from twostream.models.registry import MODELS, build_model, spec_problem
    from twostream.models.two_stream import ModelSpec
except ImportError as missing:
    jax = keras = MODELS = None
    MISSING = missing

NUM_FRAMES = 8
NUM_CLASSES = 101


def make_step(model, lr: float = 1e-3):
    """A jitted SGD training step over the model's variables (Keras stateless_call)."""

    def loss_of(trainable, non_trainable, inputs, labels):
        logits, non_trainable = model.stateless_call(trainable, non_trainable, inputs, training=True)
        loss = keras.ops.mean(keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True))
        return loss, non_trainable

    def step(trainable, non_trainable, inputs, labels):
        (loss, non_trainable), grads = jax.value_and_grad(loss_of, has_aux=True)(
            trainable, non_trainable, inputs, labels
        )
        trainable = [w - lr * g.astype(w.dtype) for w, g in zip(trainable, grads)]
        return trainable, non_trainable, loss

    return jax.jit(step, donate_argnums=(0, 1))


def time_steps(model, inputs, labels, warmup: int, steps: int) -> tuple[float, float]:
    """(seconds to compile and run the warm-up steps, median seconds per timed step)."""
    step = make_step(model)
    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]
    start = time.perf_counter()
    for _ in range(warmup):
        trainable, non_trainable, loss = step(trainable, non_trainable, inputs, labels)
    loss.block_until_ready()
    compile_s = time.perf_counter() - start
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        trainable, non_trainable, loss = step(trainable, non_trainable, inputs, labels)
        loss.block_until_ready()
        times.append(time.perf_counter() - start)
    if not np.isfinite(float(loss)):
        raise RuntimeError("the loss is not finite")
    return compile_s, statistics.median(times)


def clip_batch(batch: int, size: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    inputs = {
        "rgb": rng.integers(0, 256, (batch, NUM_FRAMES, size, size, 3), dtype=np.uint8),
        "flow": rng.integers(0, 256, (batch, NUM_FRAMES, size, size, 2), dtype=np.uint8),
    }
    labels = rng.integers(0, NUM_CLASSES, (batch,), dtype=np.int32)
    return jax.device_put(inputs), jax.device_put(labels)


def measure_model(name: str, size: int, args) -> dict:
    spec = ModelSpec(name=name, precision=args.precision)
    problem = spec_problem(spec, size)
    if problem:
        return {"model": name, "size": size, "skipped": problem}
    model = build_model(spec, NUM_CLASSES, (NUM_FRAMES, size, size, 3), (NUM_FRAMES, size, size, 2))
    inputs, labels = clip_batch(args.batch, size)
    compile_s, step_s = time_steps(model, inputs, labels, args.warmup, args.steps)
    keras.backend.clear_session()
    return {
        "model": name,
        "size": size,
        "batch": args.batch,
        "precision": args.precision,
        "ms_per_clip": step_s * 1000 / args.batch,
        "ms_per_step": step_s * 1000,
        "compile_s": compile_s,
    }


def measure_resnet50_images(args) -> dict:
    """keras.applications ResNet50 on 224 px images, --reference-batch of them: images/s of a training step on this
    card."""
    with dtype_policy(args.precision):
        model = keras.applications.ResNet50(
            weights=None, input_shape=(224, 224, 3), classes=1000, classifier_activation=None
        )
    rng = np.random.default_rng(0)
    batch = args.reference_batch
    images = jax.device_put(rng.standard_normal((batch, 224, 224, 3), dtype=np.float32))
    labels = jax.device_put(rng.integers(0, 1000, (batch,), dtype=np.int32))
    compile_s, step_s = time_steps(model, images, labels, args.warmup, args.steps)
    keras.backend.clear_session()
    return {
        "model": "keras.applications.ResNet50 (images)",
        "size": 224,
        "batch": batch,
        "precision": args.precision,
        "images_per_s": batch / step_s,
        "ms_per_step": step_s * 1000,
        "compile_s": compile_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="112,224")
    parser.add_argument("--batch", type=int, default=16, help="clips per step")
    parser.add_argument("--precision", default="mixed_bfloat16", help="float32 | mixed_bfloat16 | mixed_float16")
    parser.add_argument("--models", default="", help="comma-separated; default: every two_stream_* model")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--out", default="", help="append each result as a JSON line to this file")
    parser.add_argument("--reference-batch", type=int, default=256, help="images per ResNet50 reference step")
    parser.add_argument("--no-reference", action="store_true", help="skip the ResNet50 images/s reference")
    args = parser.parse_args()
    if jax is None:
        sys.exit(
            f"gpu_step.py needs JAX and Keras 3 ({MISSING}); run it with KERAS_BACKEND=jax where both are "
            "installed (e.g. pip install jax[cuda12] keras)"
        )
    names = args.models.split(",") if args.models else [m for m in MODELS if m.startswith("two_stream_")]
    print(
        json.dumps(
            {
                "device": str(jax.devices()[0]),
                "device_kind": jax.devices()[0].device_kind,
                "jax": jax.__version__,
                "keras": keras.__version__,
            }
        ),
        flush=True,
    )
    jobs = ([] if args.no_reference else [measure_resnet50_images]) + [
        lambda a, n=n, s=s: measure_model(n, s, a) for s in map(int, args.sizes.split(",")) for n in names
    ]
    for job in jobs:
        try:
            result = job(args)
        except Exception as error:  # one model's failure (e.g. out of memory) must not lose the others
            result = {"error": f"{type(error).__name__}: {str(error)[:300]}"}
        print(json.dumps(result), flush=True)
        if args.out:
            with open(args.out, "a") as out:
                out.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    sys.exit(main())
