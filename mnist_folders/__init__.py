"""mnist_folders: train, evaluate and predict image classifiers from class-per-folder trees.

Modules, one responsibility each:

- ``idx``: read IDX files (MNIST's format) into NumPy arrays.
- ``export``: write arrays as a ``<split>/<label>/<index>.png`` tree.
- ``settings``: the :class:`Setting` dataclass, TOML and flag overrides.
- ``folders``: index a class-per-folder tree and split it for validation.
- ``pipeline``: the tf.data and ImageDataGenerator input pipelines.
- ``models``: the model registry.
- ``training``, ``evaluation``, ``prediction``: the three CLI verbs.
- ``artifacts``: what a model directory holds and how it is read back.
"""

__version__ = "0.1.0"
