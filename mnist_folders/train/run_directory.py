"""The run directory of one training run, and its one owner: :class:`RunDirectory`.

A training run writes into a model directory that may already hold a model,
and that readers (evaluate, predict, a server) may be reading. What keeps them
safe is here, in one place: the claim (only folders of this tool are
written), the refusal to replace a model of other classes without
``--overwrite``, the training lock (one run per directory), the staging
folder of a fresh run (the previous model stays until the first checkpoint
exists, then :func:`promote` swaps it in), and the scratch folder of a
multi-worker run's non-chief workers (thrown away at the end).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .. import artifacts, locking
from ..atomic import remove_stale_temporaries, write_text
from ..errors import CheckpointError
from ..layout import CLASS_NAMES, EXPLAINED, EXPORT, REPORTS, RUN_FILES, STAGING
from ..locking import files_lock
from ..names import display
from . import multi_worker
from .multi_worker import Role

MARKER_TEXT = "a model directory of mnist_folders (format 1): train may replace the files it wrote here\n"


def claim_for_training(model_dir: Path) -> None:
    """Make sure training may write into ``model_dir``, before anything is written; mark it as ours.

    A model directory is new, empty, or ours: it holds :data:`artifacts.MARKER` or a
    trained model (directories of versions before the marker). Any other
    folder holds a user's files, which a fresh run would replace or remove
    (``setting.json``, ``history.csv``, ``export/``): it is refused.

    Raises:
        CheckpointError: the folder holds files that are not ours (one is
            named), or cannot be written.
    """
    if model_dir.is_dir() and not (model_dir / artifacts.MARKER).exists() and not artifacts.holds_model(model_dir):
        ours_anyway = (artifacts.MARKER, ".write-test", ".train.lock", ".files.lock")
        # ... and their temporary names while being written (atomic_path: ".<name>.<random>.tmp"), e.g. another
        # worker of the same multi-worker run proving the folder writable at this moment.
        others = sorted(p.name for p in model_dir.iterdir()
                        if p.name not in ours_anyway and not p.name.startswith(tuple(f".{n}." for n in ours_anyway)))
        if others:
            raise CheckpointError(f"{display(model_dir)}: holds files that are not a model of this tool "
                                  f"(e.g. {display(others[0])}); train into a new or empty --model-dir")
    artifacts.ensure_writable(model_dir)
    if not (model_dir / artifacts.MARKER).exists():
        write_text(model_dir / artifacts.MARKER, MARKER_TEXT)


def check_same_classes(model_dir: Path, class_names: list[str]) -> None:
    """Refuse a fresh run into ``model_dir`` when it holds a model trained on other class names: that model
    would be replaced by one of another dataset (``--overwrite`` says it may).

    Raises:
        CheckpointError: naming the folder and both sets of classes; nothing is written.
    """
    if not (model_dir / CLASS_NAMES).is_file() or not artifacts.holds_model(model_dir):
        return
    try:
        trained = artifacts.load_class_names(model_dir)
    except CheckpointError:
        return  # unreadable class names: not a model another dataset could lose
    if trained != list(class_names):

        def few(names: list[str]) -> str:
            return ", ".join(display(n) for n in names[:5]) + (f", ... ({len(names)})" if len(names) > 5 else "")

        raise CheckpointError(f"{display(model_dir)}: holds a model trained on other classes ({few(trained)}; this "
                              f"run's: {few(list(class_names))}); train with --overwrite to replace it, or give "
                              "another --model-dir")


def workspace_for_fresh_run(model_dir: Path) -> Path:
    """Where a fresh (not resumed) training run writes until its first checkpoint exists.

    An empty model directory is used directly. One that holds a model keeps
    it, usable, while the new run trains in ``<model_dir>/.staging``; the
    new run replaces it only when its first epoch is saved (:func:`promote`),
    so a run stopped during its first epoch loses nothing.
    """
    staging = model_dir / STAGING
    if staging.exists():
        shutil.rmtree(staging)  # a previous fresh run killed before its first checkpoint
    remove_stale_temporaries(model_dir, RUN_FILES)
    if not artifacts.holds_model(model_dir):
        for stale in RUN_FILES + REPORTS:
            (model_dir / stale).unlink(missing_ok=True)
        for folder in (EXPORT, EXPLAINED):
            shutil.rmtree(model_dir / folder, ignore_errors=True)
        return model_dir
    staging.mkdir()
    return staging


def promote(staging: Path, model_dir: Path) -> None:
    """Replace ``model_dir``'s run files with ``staging``'s, under the exclusive files lock; remove ``staging``."""
    with files_lock(model_dir, exclusive=True):
        for name in RUN_FILES + REPORTS:
            if not (staging / name).exists():
                (model_dir / name).unlink(missing_ok=True)
        for folder in (EXPORT, EXPLAINED):  # made from the model being replaced
            shutil.rmtree(model_dir / folder, ignore_errors=True)
        for path in staging.iterdir():
            os.replace(path, model_dir / path.name)
    staging.rmdir()


@dataclass
class RunDirectory:
    """Where one training run writes, and what it may replace.

    Attributes:
        model_dir: the model directory named by the Setting.
        role: this process in a multi-worker run (``None``: one process).
        scratch: a non-chief worker's own folder (``None`` for the chief
            and a one-process run): its checkpoints, thrown away at the end.
        workdir: where checkpoints go now: ``model_dir``, its
            ``.staging/`` (a fresh run beside an existing model) or ``scratch``.
        promote_to: the model directory a staging ``workdir`` replaces once
            its first checkpoint exists (``None``: nothing to replace).
    """

    model_dir: Path
    role: Role | None = None
    scratch: Path | None = None
    workdir: Path | None = None
    promote_to: Path | None = None

    @property
    def chief(self) -> bool:
        """True where this process writes the model directory (the chief, or the only process)."""
        return self.role is None or self.role.chief

    @classmethod
    def claim(cls, model_dir: Path, role: Role | None, class_names: list[str], fresh: bool,
              overwrite: bool = False) -> RunDirectory:
        """Check that a run may write ``model_dir`` before anything is written, and mark it as ours.

        Raises:
            CheckpointError: the folder holds a user's files, or (``fresh``
                without ``overwrite``) a model of other class names.
        """
        if fresh and not overwrite:  # another dataset's model is not lost
            check_same_classes(model_dir, class_names)
        if role is None or role.chief:  # the other workers only read the shared model directory
            claim_for_training(model_dir)
        return cls(model_dir, role, workdir=model_dir)

    @contextlib.contextmanager
    def held(self) -> Iterator[RunDirectory]:
        """The run's hold on the directory: the training lock for the chief; for another worker, its scratch
        folder, removed when the run ends however it ends."""
        if self.chief:
            with locking.training_lock(self.model_dir):
                yield self
            return
        self.scratch = self.workdir = multi_worker.scratch_folder(self.model_dir, self.role)
        try:
            yield self
        finally:
            shutil.rmtree(self.scratch, ignore_errors=True)

    def begin_fresh(self) -> None:
        """A fresh run's workspace, made before the images are read (a run stopped while reading them
        leaves ``.staging`` too, which ``--resume`` then refuses)."""
        self.workdir = self.scratch or workspace_for_fresh_run(self.model_dir)
        self.promote_to = self.model_dir if self.workdir not in (self.model_dir, self.scratch) else None

    def abandon(self) -> None:
        """A fresh run refused before its first epoch (e.g. ``--strict``): its staging folder goes, the previous
        model stays resumable."""
        if self.promote_to is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
