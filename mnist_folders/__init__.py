"""mnist_folders: train, evaluate and predict image classifiers from class-per-folder trees.

Modules, one responsibility each, grouped in the order data flows through them:

- ``data/``: ``idx`` (IDX files -> arrays), ``export`` (arrays -> PNG tree),
  ``folders`` (list and split a class-per-folder tree), ``images`` (any file
  -> model input), ``decoding`` (many files, in parallel), ``image_cache``
  (decoded images in memory, on disk or nowhere), ``pipeline`` (tf.data and
  ImageDataGenerator inputs), ``check`` and ``check_plots`` (the dataset audit).
- ``train/``: ``architectures`` and ``models`` (builders and their registry),
  ``dtype_policy``, ``schedules`` (automatic budget, stop rule, learning-rate
  schedules), ``callbacks``, ``transfer`` (warm starts), ``distribute`` and
  ``multi_worker`` (tf.distribute strategies), ``lr_finder``, ``training``.
- ``serve/``: ``evaluation``, ``prediction``, ``calibration`` (softmax
  temperature, calibration error), ``deploy`` (SavedModel, TFLite, ONNX
  exports), ``parity`` (exports against Keras), ``runtime`` (exports without
  TensorFlow), ``watch`` (the watched predict folder).
- shared, at the top: ``settings`` (the Setting, each field described once)
  and ``settings_docs`` (the tables generated from it), ``artifacts`` (the
  model directory), ``plots``, ``locking``, ``atomic``, ``names``,
  ``errors``, ``cli``.
"""

__version__ = "0.2.0"
