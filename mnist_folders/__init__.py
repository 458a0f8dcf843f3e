"""mnist_folders: train, evaluate and predict image classifiers from class-per-folder trees.

Modules, one responsibility each, in the order data flows through them:

- data: ``idx`` (IDX files -> arrays), ``export`` (arrays -> PNG tree),
  ``folders`` (list and split a class-per-folder tree), ``images`` (any file
  -> model input), ``decoding`` (many files, in parallel), ``pipeline``
  (tf.data and ImageDataGenerator inputs), ``check`` and ``check_plots``
  (the dataset audit).
- training: ``architectures`` and ``models`` (builders and their registry),
  ``dtype_policy``, ``schedules`` (automatic budget, stop rule, learning-rate
  schedules), ``callbacks``, ``transfer`` (warm starts), ``lr_finder``,
  ``training``.
- serving: ``evaluation``, ``prediction``, ``plots``.
- shared: ``settings`` (the Setting, each field described once) and
  ``settings_docs`` (the tables generated from it), ``artifacts`` (the model
  directory), ``locking``, ``atomic``, ``names``, ``errors``, ``cli``.
"""

__version__ = "0.2.0"
