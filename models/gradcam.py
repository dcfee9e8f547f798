"""Grad-CAM of a two-stream model: each stream's last feature map weighted by a class score's gradient, per clip.

Selvaraju et al. 2017, on spatio-temporal maps: for the class score y and a stream's final feature map A (T', H', W',
F) before global pooling, each channel's weight is the mean of dy/dA over (T', H', W'); the map is ReLU(sum_f
w_f A_f), upsampled to the clip's (T, H, W) (linear in time and space) and divided by its largest value, so it lies
in [0, 1] (all zeros where nothing speaks for the class). Both streams get the gradient of the same fused score.
The score is the class's log-probability, not its bare logit: its gradient is the class's logit against the
others' (for two classes, (1 - p) x the difference of the two logits), so the map shows what tells the class apart.
On the bare logit, a feature both classes' logits grow with counts as evidence for each, and where the class wins by
its bias alone the whole map is negative, so zero after the ReLU (a trained two-class c3d showed both).
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf


def feature_layers(model: keras.Model) -> dict[str, str]:
    """{stream: name of the layer giving its final (B, T', H', W', F) map}: the last 5-D layer of each stream.

    Every backbone (models/backbones.py, models/applications.py) names its layers `{stream}_...` and ends on its
    feature map; what follows (pooling, heads, fusion) is 2-D or named otherwise."""
    found = {}
    for layer in model.layers:
        stream = layer.name.split("_", 1)[0]
        if isinstance(layer, keras.layers.InputLayer):  # "rgb", "flow": both are inputs of every variant
            continue
        if stream in ("rgb", "flow") and len(layer.output.shape) == 5:
            found[stream] = layer.name  # layers are in graph order: the last one wins
    if not found:
        raise ValueError(f"model {model.name!r} has no rgb_* or flow_* layer with a 5-D (B, T, H, W, F) output")
    return found


class GradCam:
    """Class scores and each stream's Grad-CAM of a built two-stream model (inputs {"rgb", "flow"} uint8)."""

    def __init__(self, model: keras.Model):
        self.streams = feature_layers(model)
        maps = [model.get_layer(name).output for name in self.streams.values()]
        self.inner = keras.Model(model.inputs, [model.output, *maps], name=f"{model.name}_gradcam")

    def probabilities(self, rgb: np.ndarray, flow: np.ndarray) -> np.ndarray:
        """(B, classes) float64 softmax of the clips' logits, as the exported `serve` gives."""
        logits = self.inner({"rgb": rgb, "flow": flow}, training=False)[0]
        return tf.nn.softmax(tf.cast(logits, tf.float32)).numpy().astype(np.float64)

    def __call__(self, rgb: np.ndarray, flow: np.ndarray, class_index: int) -> dict[str, np.ndarray]:
        """{stream: (B, T, H, W) float32 in [0, 1]}: where each clip's evidence for `class_index` lies."""
        with tf.GradientTape() as tape:
            logits, *maps = self.inner({"rgb": rgb, "flow": flow}, training=False)
            log_p = tf.nn.log_softmax(tf.cast(logits, tf.float32))  # against the other classes, see the docstring
            score = tf.reduce_sum(log_p[:, class_index])  # summed: each clip's gradient is its own
        gradients = tape.gradient(score, maps)
        shape = rgb.shape[1:4]  # (T, H, W) of the clip; flow has the same
        return {
            stream: upsample(weighted(feature, gradient), shape)
            for stream, feature, gradient in zip(self.streams, maps, gradients)
        }


def weighted(feature, gradient) -> np.ndarray:
    """(B, T', H', W') ReLU of the channels of `feature` weighted by their mean gradient."""
    feature, gradient = (tf.cast(t, tf.float32) for t in (feature, gradient))
    weights = tf.reduce_mean(gradient, axis=(1, 2, 3), keepdims=True)  # (B, 1, 1, 1, F)
    return tf.nn.relu(tf.reduce_sum(weights * feature, axis=-1)).numpy()


def upsample(cam: np.ndarray, shape) -> np.ndarray:
    """(B, T', H', W') -> (B, T, H, W), linear in space then in time, each clip divided by its maximum."""
    frames, height, width = shape
    batch, steps = cam.shape[:2]
    space = tf.image.resize(cam.reshape(batch * steps, *cam.shape[2:], 1), (height, width))  # bilinear
    space = tf.reshape(space, (batch, steps, height * width, 1))
    full = tf.reshape(tf.image.resize(space, (frames, height * width)), (batch, frames, height, width)).numpy()
    peak = full.reshape(batch, -1).max(axis=1).reshape(batch, 1, 1, 1)
    return np.where(peak > 0, full / np.maximum(peak, 1e-12), 0.0).astype(np.float32)
