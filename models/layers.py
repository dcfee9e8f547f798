"""Custom Keras layers: uint8 input scaling, frame folding for 2D encoders, flow stacking, a weighted blend."""
from __future__ import annotations

import math

import keras
from keras import ops

from twostream.data.flow_format import to_unit   # the uint8 flow format's one home (NumPy only, no OpenCV)


@keras.saving.register_keras_serializable(package="twostream")
class UInt8ToUnit(keras.layers.Layer):
    """Maps uint8 0..255 linearly onto [-1, 1].

    For RGB this is the usual centring; for flow quantised with bound b (data/flow_format.py) it is the
    dequantised flow divided by b, i.e. flow in units of the clipping bound, so no bound is needed here.
    """

    def call(self, inputs):
        return to_unit(ops.cast(inputs, self.compute_dtype))


@keras.saving.register_keras_serializable(package="twostream")
class FoldTime(keras.layers.Layer):
    """(B, T, H, W, C) -> (B*T, H, W, C): every frame becomes an independent image for a 2D encoder."""

    def call(self, inputs):
        return ops.reshape(inputs, (-1, *inputs.shape[2:]))

    def compute_output_shape(self, input_shape):
        return (None, *input_shape[2:])


@keras.saving.register_keras_serializable(package="twostream")
class UnfoldTime(keras.layers.Layer):
    """(B*T, H, W, C) -> (B, T, H, W, C), the inverse of FoldTime for a known number of frames T."""

    def __init__(self, frames: int, **kwargs):
        super().__init__(**kwargs)
        self.frames = frames

    def call(self, inputs):
        return ops.reshape(inputs, (-1, self.frames, *inputs.shape[1:]))

    def compute_output_shape(self, input_shape):
        return (None, self.frames, *input_shape[1:])

    def get_config(self):
        return {**super().get_config(), "frames": self.frames}


@keras.saving.register_keras_serializable(package="twostream")
class StackFrames(keras.layers.Layer):
    """(B, T, H, W, C) -> (B, T/L, H, W, L*C): L consecutive frames stacked as channels (TSN's flow input)."""

    def __init__(self, stack: int, **kwargs):
        super().__init__(**kwargs)
        self.stack = stack

    def call(self, inputs):
        frames, height, width, channels = inputs.shape[1:]
        x = ops.reshape(inputs, (-1, frames // self.stack, self.stack, height, width, channels))
        x = ops.transpose(x, (0, 1, 3, 4, 2, 5))   # the L frames next to the channels they will join
        return ops.reshape(x, (-1, frames // self.stack, height, width, self.stack * channels))

    def compute_output_shape(self, input_shape):
        batch, frames, height, width, channels = input_shape
        return (batch, frames // self.stack, height, width, self.stack * channels)

    def get_config(self):
        return {**super().get_config(), "stack": self.stack}


@keras.saving.register_keras_serializable(package="twostream")
class Blend(keras.layers.Layer):
    """weight * a + (1 - weight) * b; with learned=True the weight is sigmoid(alpha), alpha trained from logit(weight)."""

    def __init__(self, weight: float = 0.5, learned: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.weight, self.learned = weight, learned

    def build(self, input_shape):
        if self.learned:
            start = math.log(self.weight / (1.0 - self.weight))   # so that sigmoid(alpha) starts at `weight`
            self.alpha = self.add_weight(shape=(), initializer=keras.initializers.Constant(start), name="alpha")

    def call(self, inputs):
        a, b = inputs
        weight = ops.sigmoid(ops.cast(self.alpha, a.dtype)) if self.learned else self.weight
        return weight * a + (1.0 - weight) * b

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {**super().get_config(), "weight": self.weight, "learned": self.learned}
