"""Video input for twostream: manifests, decoding, optical flow, Ray actors, sharding and the tf.data bridge."""
