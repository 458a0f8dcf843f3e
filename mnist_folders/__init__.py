"""mnist_folders: train, evaluate and predict image classifiers from class-per-folder trees.

Layers, each importing only the ones above it in this list (``tests/test_layers.py`` parses the imports):

- core, directly in the package: ``settings`` (the Setting, each field
  described once; ``option``: how one is described and checked), ``registry`` (the models as pure data, and the rules of
  ``auto``), ``layout`` (every file name of a model directory), ``artifacts``
  (the model directory's JSON and CSV, staging and promotion), ``plots``,
  ``locking``, ``atomic``, ``names``, ``errors``.
- ``data/``: ``idx`` (IDX files -> arrays), ``export`` (arrays -> PNG tree),
  ``folders`` (list and split a class-per-folder tree), ``images`` (any file
  -> model input), ``decoding`` (many files, in parallel), ``image_cache``
  (decoded images in memory, on disk or nowhere), ``pipeline`` (tf.data and
  ImageDataGenerator inputs).
- ``networks/``: what every stage shares about a network: ``architectures``,
  ``efficientnet_lite``, ``torch_pickle`` and ``pretrained_weights`` (the
  ImageNet weights read offline), ``build``, ``dtype_policy``, ``saved``
  (checkpoints written and read back), ``calibration`` (softmax temperature,
  calibration error), ``inference`` (the one loop: decode, predict, collect).
- stages, which never import each other: ``train/`` (schedules, callbacks,
  warm starts, tf.distribute, the few-shot head and fine-tuning, the
  training run, its calibration, the learning-rate finder), ``serve/``
  (evaluation, prediction, exports and their parity, runtimes without
  TensorFlow, the watched folder, the HTTP server), ``explain/`` (Grad-CAM,
  the browsable report), ``audit/`` (the dataset check and suspect labels).
- ``commands/``: what each ``--mode`` does, composed from the stages (train
  = fit, then calibrate, then export), the argument parser and the exit
  codes (``cli``), and the generated settings tables (``settings_docs``).
"""

__version__ = "0.9.0"
