"""The keras.applications networks the per-frame backbones can be (names, input sizes, weight files): plain data,
read by the config's checks without importing Keras; models/applications.py builds them."""

from __future__ import annotations

from dataclasses import dataclass, field

FREEZE_BN = ("none", "partial", "all")  # model.freeze_bn: which BatchNorm layers run on their stored statistics
KERAS_WEIGHTS = "https://storage.googleapis.com/tensorflow/keras-applications/"


@dataclass(frozen=True)
class Application:
    """One keras.applications network: how to build it and the facts about its ImageNet weights."""

    build: str  # the keras.applications constructor
    preprocessing: str  # its preprocess_input mode (models/layers.py PREPROCESSING)
    min_size: int  # the smallest frame side the constructor accepts
    weights_file: str  # Keras' cache name of its ImageNet weights without the classifier (~/.keras/models)
    weights_url: str  # where Keras downloads that file from
    block: str  # regex on layer names: group 1 names the block a convolution belongs to (TSM)
    options: dict = field(default_factory=dict)  # extra constructor arguments

    def constructor(self):
        import keras  # here, not at the top: the config reads this table without TensorFlow

        return getattr(keras.applications, self.build)


APPLICATIONS = {
    "resnet50": Application(
        "ResNet50",
        "caffe",
        32,
        "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
        KERAS_WEIGHTS + "resnet/resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
        r"(conv\d_block\d+)_[123]_conv$",
    ),  # _0_conv is the projection shortcut: it stays unshifted
    "efficientnetb0": Application(
        "EfficientNetB0",
        "torch",
        32,
        "efficientnetb0_notop.h5",
        "https://storage.googleapis.com/keras-applications/efficientnetb0_notop.h5",
        r"(block\d+[a-z])_(?:expand_conv|dwconv)$",
    ),
    "xception": Application(
        "Xception",
        "tf",
        71,
        "xception_weights_tf_dim_ordering_tf_kernels_notop.h5",
        KERAS_WEIGHTS + "xception/xception_weights_tf_dim_ordering_tf_kernels_notop.h5",
        r"(block(?:[2-9]|1[0-3]))_sepconv\d$",
    ),  # the 12 blocks with a shortcut; block1 is the stem
    "mobilenetv3small": Application(
        "MobileNetV3Small",
        "tf",
        32,
        "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5",
        KERAS_WEIGHTS + "mobilenet_v3/weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5",
        r"(expanded_conv_(?:\d+_)?)(?:expand|depthwise)$",
        {"include_preprocessing": False},
    ),
    "mobilenetv3large": Application(
        "MobileNetV3Large",
        "tf",
        32,
        "weights_mobilenet_v3_large_224_1.0_float_no_top_v2.h5",
        KERAS_WEIGHTS + "mobilenet_v3/weights_mobilenet_v3_large_224_1.0_float_no_top_v2.h5",
        r"(expanded_conv_(?:\d+_)?)(?:expand|depthwise)$",
        {"include_preprocessing": False},
    ),
}
