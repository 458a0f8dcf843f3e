"""Audit a dataset before training on it, and point at its likely label errors after.

:func:`run_check` reads the three folders of a :class:`~mnist_folders.settings.Setting`
(``train`` and ``test``, one sub-folder per class; ``predict``, any layout)
and reports, without training anything:

- images per class and split, the imbalance ratio (largest / smallest
  non-empty train class), classes present in one of train and test only;
- folders that look unintended: hidden (training skips them), empty, very
  small (fewer images than :data:`SMALL_CLASS_SHARE` of the split's median
  class), not a class of ``Setting.class_names``;
- files that do not decode (with the reason training gives: both read
  files with :func:`~mnist_folders.data.images.decode`), and files that are not
  images by extension or are hidden (training ignores them);
- a histogram of stored image sizes and Pillow modes, and the share of
  images that will be enlarged or shrunk by more than :data:`SCALE_LIMIT`
  along an axis to reach the Setting's size;
- **exact duplicates**: identical pixels after decoding (EXIF orientation
  applied) and conversion to the Setting's ``color_mode``, at the file's own
  size, whatever the format: a PNG and a BMP of one picture match, the same
  picture resized or re-encoded as JPEG does not (that is a near duplicate).
  Key: BLAKE2b-128 of the image's size, mode and pixel bytes;
- **near duplicates**: perceptual hashes within :data:`NEAR_DISTANCE` bits,
  or within :data:`NEAR_LOOSE_DISTANCE` bits when their low frequencies
  agree closely (cosine of at least :data:`NEAR_COSINE`, see
  :func:`near_duplicate_pairs`), grouped transitively (one file stands for
  each exact group).

A group of duplicates is **leakage** when it has files in train and in test
or predict (copies only between test and predict are reported, not called
leakage: ``parse_mnist.py``'s ``tmp/`` samples are test images), and a
**label conflict** when its labelled files name more than one class.
Everything is written to ``<model_dir>/check.json`` and the worst groups
are drawn side by side in ``check_duplicates.png``.

Perceptual hash: a 256-bit DCT hash (pHash, the bits of
``imagehash.phash(image, hash_size=16)``, computed here with NumPy) within
distance 16. A 64-bit difference hash cannot tell handwritten digits from
copies of them; the measurements behind the choice are in
``bench/README.md`` (``check_speed.py``).

Images are decoded once, by :func:`inspect_files` in worker processes for
large trees (spawned, as in :mod:`mnist_folders.data.decoding`); this package
imports neither TensorFlow nor matplotlib at import time, so workers start
light.

The package, one job per module: ``fingerprints`` (digests, pHash, the
near-pair search: NumPy and Pillow only), ``listing`` (the folders as
training and prediction list them), ``report`` (duplicate groups,
statistics, ``check.json`` and the figure), ``quarantine`` (``--quarantine``
and ``--restore``), ``suspects`` (likely label errors); :func:`run_check`,
here, composes them.

:func:`find_suspect_labels` needs a trained model: it ranks the train
tree's images by the probability the model gives their label, lowest first
(confident learning's "self-confidence"), marking the validation split's
images as out of sample.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

from .. import artifacts
from ..errors import DatasetError
from ..names import display, safe_cell  # noqa: F401 - part of this package's interface (suspect CSV cells)
from ..settings import Setting
from ..data.folders import find_class_names
from ..layout import CHECK_FIGURE, CHECK_JSON, QUARANTINE_MANIFEST, SUSPECT_CSV, SUSPECT_FIGURE  # noqa: F401
from .fingerprints import (NEAR_COSINE, NEAR_DISTANCE, NEAR_LOOSE_DISTANCE, PHASH_BITS_SIDE, PHASH_SAMPLE,  # noqa: F401
                           Inspected, inspect_all, inspect_files, near_duplicate_pairs, near_pairs,
                           perceptual_hashes, pixel_digest, spectra)
from .listing import SMALL_CLASS_SHARE, Listing, SplitAudit, flag_unknown_classes, list_predict, list_tree  # noqa: F401
from .quarantine import (check_quarantine_place, quarantine_files, quarantine_plan,  # noqa: F401
                         restore_quarantine)
from .report import (SCALE_LIMIT, CheckReport, DuplicateGroup, build_report,  # noqa: F401
                     compared_color_mode, draw_duplicates)
from .suspects import SuspectLabel, find_suspect_labels, suspects_csv  # noqa: F401


def data_root(setting: Setting) -> Path:
    """The folder the train, test and predict folders hang from (``data_dir`` in the default layout).

    Quarantined files keep their path relative to it.
    """
    roots = [setting.train_path] + [p for p in (setting.test_path, setting.predict_path) if p.is_dir()]
    return Path(os.path.commonpath([os.path.dirname(os.path.abspath(root)) for root in roots]))


def run_check(setting: Setting, *, strict: bool = False, quarantine: str | Path | None = None,
              progress: bool = True, log: Callable[[str], Any] = print) -> CheckReport:
    """Audit the Setting's train, test and predict folders; write ``check.json`` and ``check_duplicates.png``.

    See the module docstring for what is checked. Each image file is
    decoded once (worker processes from
    :data:`~mnist_folders.data.decoding.PARALLEL_MIN_FILES` files on). The
    report goes to ``log`` line by line and to ``<model_dir>/check.json``.

    Args:
        setting: its ``train_path``, ``test_path``, ``predict_path``,
            ``model_path``, ``image_height``/``image_width`` (for the scale
            shares), ``color_mode`` (exact duplicates compare pixels in it;
            see :func:`compared_color_mode`) and ``class_names`` are used.
        strict: after writing the report (and quarantining), raise when an
            exact duplicate leaks from train or has conflicting labels. Near duplicates
            are reported only: on MNIST, 10 groups of distinct but
            similar 1s in train and test match.
        quarantine: a folder to move unreadable files, and the test/predict
            copies of images that are also in train, into (see
            :func:`quarantine_files`); ``None`` moves nothing.
        progress: a tqdm bar while decoding.
        log: called with each line of the report.

    Raises:
        DatasetError: the train folder is missing or holds no image; with
            ``strict``, a leak or a label conflict (naming one file); a
            quarantine that cannot be done.
        CheckpointError: the model directory is not writable.
    """
    model_dir = setting.model_path
    find_class_names(setting.train_path)  # a missing train tree is an error, before anything is written
    artifacts.ensure_writable(model_dir)
    split_roots = [p for p in (setting.train_path, setting.test_path, setting.predict_path, setting.val_path)
                   if p is not None and p.is_dir()]
    if quarantine is not None:
        check_quarantine_place(Path(quarantine), split_roots)
    listing = Listing()
    audits = {"train": list_tree("train", setting.train_path, listing),
              "test": list_tree("test", setting.test_path, listing),
              "predict": list_predict(setting.predict_path, listing)}
    if setting.val_path is not None:  # a separate validation tree: a copy of a train image there leaks too
        audits["val"] = list_tree("val", setting.val_path, listing)
    flag_unknown_classes(setting, audits, listing)
    inspected = inspect_all(listing.paths, compared_color_mode(setting), progress)
    report = build_report(setting, audits, listing, inspected)
    root = data_root(setting)
    report.figure_path = draw_duplicates(report, setting, model_dir / CHECK_FIGURE, root)
    report.json_path = model_dir / CHECK_JSON
    artifacts.write_json(report.json_path, report.to_dict())
    for line in report.summary():
        log(line)
    log(f"report: {display(report.json_path)}; figure: {display(report.figure_path)}")
    if quarantine is not None and (plan := quarantine_plan(report)):
        quarantine_files(plan, Path(quarantine), root, split_roots)
        report.quarantined = plan
        artifacts.write_json(report.json_path, report.to_dict())
        log(f"quarantined {len(plan)} files into {display(quarantine)} "
            f"(to move them back: {display(Path(quarantine) / QUARANTINE_MANIFEST)})")
    if strict and report.exact_problems:
        worst = report.exact_problems[0]
        raise DatasetError(f"{display(worst.files[1])}: same pixels as {display(worst.files[0])} "
                           f"({worst.problem()}); {len(report.exact_problems)} exact duplicate groups with "
                           f"leakage or a label conflict, listed in {display(report.json_path)}")
    return report
