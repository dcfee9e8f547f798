"""Custom Keras layers: uint8 input scaling, frame folding for 2D encoders, flow stacking, a weighted blend,
the temporal shift (TSM) and the max consensus."""

from __future__ import annotations

import math

import keras
from keras import ops

from twostream.data.decode.flow_format import to_unit  # the uint8 flow format's one home (NumPy only, no OpenCV)

# keras.applications.imagenet_utils.preprocess_input's modes, the input each ImageNet network was trained on:
# caffe: RGB -> BGR, minus the ImageNet mean in 0..255 | tf: -1..1 | torch: 0..1, minus mean, over std (per channel)
PREPROCESSING = ("caffe", "tf", "torch")
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
TORCH_MEAN_RGB = (0.485, 0.456, 0.406)
TORCH_STD_RGB = (0.229, 0.224, 0.225)
# Flow (in units of its bound, -1..1) times this: the range each mode gives an RGB channel centred on its mean.
# torch: TSN's flow normalisation, (x/255 - 0.5) / mean(std) (Wang et al. 2016, tsn-pytorch).
FLOW_RANGE = {"caffe": 127.5, "tf": 1.0, "torch": 0.5 / (sum(TORCH_STD_RGB) / 3)}


@keras.saving.register_keras_serializable(package="twostream")
class UInt8ToUnit(keras.layers.Layer):
    """Maps uint8 0..255 linearly onto [-1, 1].

    For RGB this is the usual centring; for flow quantised with bound b (data/decode/flow_format.py) it is the
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
        x = ops.transpose(x, (0, 1, 3, 4, 2, 5))  # the L frames next to the channels they will join
        return ops.reshape(x, (-1, frames // self.stack, height, width, self.stack * channels))

    def compute_output_shape(self, input_shape):
        batch, frames, height, width, channels = input_shape
        return (batch, frames // self.stack, height, width, self.stack * channels)

    def get_config(self):
        return {**super().get_config(), "stack": self.stack}


@keras.saving.register_keras_serializable(package="twostream")
class Blend(keras.layers.Layer):
    """weight * a + (1 - weight) * b; with learned=True the weight is sigmoid(alpha), alpha trained from
    logit(weight)."""

    def __init__(self, weight: float = 0.5, learned: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.weight, self.learned = weight, learned

    def build(self, input_shape):
        if self.learned:
            start = math.log(self.weight / (1.0 - self.weight))  # so that sigmoid(alpha) starts at `weight`
            self.alpha = self.add_weight(shape=(), initializer=keras.initializers.Constant(start), name="alpha")

    def call(self, inputs):
        a, b = inputs
        weight = ops.sigmoid(ops.cast(self.alpha, a.dtype)) if self.learned else self.weight
        return weight * a + (1.0 - weight) * b

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {**super().get_config(), "weight": self.weight, "learned": self.learned}


@keras.saving.register_keras_serializable(package="twostream")
class ImageNetInput(keras.layers.Layer):
    """uint8 frames -> what an ImageNet-trained keras.applications network expects (`mode`, as preprocess_input).

    RGB gets exactly preprocess_input(x, mode). Flow (flow=True) has no colour statistics: zero motion maps
    to 0 and the full flow range to the range that mode gives RGB (FLOW_RANGE), as TSN normalises its flow.
    """

    def __init__(self, mode: str, flow: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.mode, self.flow = mode, flow

    def call(self, inputs):
        x = ops.cast(inputs, self.compute_dtype)
        if self.flow:
            return to_unit(x) * FLOW_RANGE[self.mode]
        if self.mode == "tf":
            return x / 127.5 - 1.0
        if self.mode == "torch":
            return (x / 255.0 - ops.array(TORCH_MEAN_RGB, x.dtype)) / ops.array(TORCH_STD_RGB, x.dtype)
        return ops.flip(x, axis=-1) - ops.array(CAFFE_MEAN_BGR, x.dtype)  # caffe: BGR, not scaled

    def get_config(self):
        return {**super().get_config(), "mode": self.mode, "flow": self.flow}


@keras.saving.register_keras_serializable(package="twostream")
class TemporalShift(keras.layers.Layer):
    """TSM (Lin et al. 2019) on folded frames (B*T, H, W, C) of T-frame clips: the first `share` of the channels
    is taken from the next frame, the next `share` from the previous frame (zeros past the clip's ends), the
    rest stay. No weights and no multiply-adds: the convolution after it mixes the neighbouring frames."""

    def __init__(self, frames: int, share: float, **kwargs):
        super().__init__(**kwargs)
        self.frames, self.share = frames, share

    def call(self, inputs):
        fold = int(inputs.shape[-1] * self.share)
        if fold == 0:
            return inputs
        clips = ops.reshape(inputs, (-1, self.frames, *inputs.shape[1:]))
        none = ops.zeros_like(clips[:, :1, ..., :fold])
        from_next = ops.concatenate([clips[:, 1:, ..., :fold], none], axis=1)
        from_previous = ops.concatenate([none, clips[:, :-1, ..., fold : 2 * fold]], axis=1)
        shifted = ops.concatenate([from_next, from_previous, clips[..., 2 * fold :]], axis=-1)
        return ops.reshape(shifted, (-1, *inputs.shape[1:]))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "frames": self.frames, "share": self.share}


@keras.saving.register_keras_serializable(package="twostream")
class MaxConsensus(keras.layers.Layer):
    """(B, T, H, W, F) -> (B, F): each frame's map averaged over space, then the maximum over frames.

    The max consensus of TSN taken on the features rather than the class scores: one frame with strong
    evidence (a manipulated moment) decides, where the average consensus dilutes it over the clip."""

    def call(self, inputs):
        return ops.max(ops.mean(inputs, axis=(2, 3)), axis=1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])
