"""Input layers that turn the uint8 tensors shipped by the data pipeline into float features in the graph."""
from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="twostream")
class UInt8ToUnit(keras.layers.Layer):
    """Maps uint8 0..255 linearly onto [-1, 1].

    For RGB this is the usual centring; for flow quantised with bound b (data.flow.quantize) it is the
    dequantised flow divided by b, i.e. flow in units of the clipping bound, so no bound is needed here.
    """

    def call(self, inputs):
        return ops.cast(inputs, self.compute_dtype) * (2.0 / 255.0) - 1.0
