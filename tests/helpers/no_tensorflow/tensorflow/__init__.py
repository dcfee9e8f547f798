"""Stands in for TensorFlow under `make check` (on PYTHONPATH): any process that imports it fails, naming the fix."""

raise ImportError(
    "`make check` runs only the tests that start no TensorFlow process, and this one imported "
    "TensorFlow (directly, or through Keras or Horovod): mark its module `pytestmark = "
    "pytest.mark.tensorflow`, which leaves it to `make test`"
)
