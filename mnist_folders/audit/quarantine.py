"""Moving files out of the data folders (``--quarantine DIR``) and back (``--restore DIR``), with a manifest
that lists exactly what was moved: whole files only, nothing overwritten or deleted."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
from pathlib import Path
from typing import Any

from .. import artifacts
from ..atomic import atomic_path, write_text
from ..errors import DatasetError
from ..layout import QUARANTINE_MANIFEST
from ..names import display
from .report import CheckReport



def quarantine_plan(report: CheckReport) -> list[tuple[str, str]]:
    """``(path, reason)``: unreadable files, and test/predict copies of files that are also in train."""
    plan = [(p, f"unreadable: {r}") for p, r in report.unreadable]
    for group in report.exact:
        in_train = [f for f, s in zip(group.files, group.splits) if s == "train"]
        if in_train:
            plan += [(f, f"identical pixels to {display(in_train[0])}")
                     for f, s in zip(group.files, group.splits) if s != "train"]
    return plan


def quarantine_files(plan: list[tuple[str, str]], quarantine: Path, root: Path, split_roots: list[Path]) -> None:
    """Move each planned file to ``quarantine/<its path relative to root>`` and list it in the manifest.

    The manifest (``quarantine/manifest.json``: ``data_root`` and one
    ``{path, reason}`` per file, paths relative to ``data_root``) is
    written before anything moves and keeps earlier runs' entries;
    :func:`restore_quarantine` moves the files back. Nothing is deleted.

    Raises:
        DatasetError: ``quarantine`` is inside a split folder (it would
            become a class), holds files of another data root, or a
            destination already exists (then nothing is moved).
    """
    check_quarantine_place(quarantine, split_roots)
    quarantine = Path(os.path.abspath(quarantine))
    manifest = _read_manifest(quarantine) or {"data_root": str(root), "files": []}
    if manifest["data_root"] != str(root):
        raise DatasetError(f"{display(quarantine / QUARANTINE_MANIFEST)}: holds files of "
                           f"{display(manifest['data_root'])}, not {display(root)}; choose another quarantine folder")
    moves = [(os.path.relpath(os.path.abspath(path), root), reason) for path, reason in plan]
    for relative, _ in moves:
        if (quarantine / relative).exists():
            raise DatasetError(f"{display(quarantine / relative)}: already in quarantine; nothing moved")
    earlier = list(manifest["files"])
    manifest["files"] += [{"path": relative, "reason": reason} for relative, reason in moves]
    try:
        _write_manifest(quarantine, manifest)  # first: a kill mid-way leaves every moved file listed
    except OSError as exc:
        raise DatasetError(f"{display(quarantine / QUARANTINE_MANIFEST)}: {exc.strerror or exc}; "
                           "nothing moved") from None
    moved = 0
    try:
        for relative, _ in moves:
            _move_whole(root / relative, quarantine / relative)
            moved += 1
    except OSError as exc:
        # A full disk (another filesystem): the manifest keeps only what moved, no partial copy is left.
        _shrink_manifest(quarantine, {**manifest, "files": earlier + manifest["files"][len(earlier):][:moved]})
        raise DatasetError(f"{display(quarantine)}: {exc.strerror or exc} after moving {moved} of {len(moves)} "
                           "files; the others stay where they were") from None


def _move_whole(source: Path, target: Path) -> None:
    """Move a file: a rename on one filesystem; across two, a copy to a temporary name beside ``target``,
    renamed once complete, then the source removed. An error leaves the source and no partial copy."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(source, target)
        return
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
    with atomic_path(target) as tmp:
        shutil.copy2(source, tmp)
    source.unlink()


def check_quarantine_place(quarantine: Path, split_roots: list[Path]) -> None:
    """Raise :class:`DatasetError` when ``quarantine`` lies inside a split folder (it would become a class)."""
    for split_root in split_roots:
        if Path(os.path.abspath(quarantine)).is_relative_to(os.path.abspath(split_root)):
            raise DatasetError(f"{display(quarantine)}: quarantine folder inside {display(split_root)}; "
                               "choose one outside")


def _read_manifest(quarantine: Path) -> dict[str, Any] | None:
    path = quarantine / QUARANTINE_MANIFEST
    return artifacts.read_json(path) if path.exists() else None


def _write_manifest(quarantine: Path, manifest: dict[str, Any]) -> None:
    """ASCII JSON: file names that are not valid UTF-8 survive as ``\\udcXX`` escapes."""
    write_text(quarantine / QUARANTINE_MANIFEST, json.dumps(manifest, indent=2) + "\n")


def _shrink_manifest(quarantine: Path, manifest: dict[str, Any]) -> None:
    """Rewrite the manifest with fewer entries after a failed move: atomically where the disk has room, else
    in place, the text being shorter than the file's (no new disk block needed: the disk may be full)."""
    try:
        _write_manifest(quarantine, manifest)
    except OSError:
        with contextlib.suppress(OSError), open(quarantine / QUARANTINE_MANIFEST, "r+b") as handle:
            handle.write((json.dumps(manifest, indent=2) + "\n").encode())
            handle.truncate()
            handle.flush()
            os.fsync(handle.fileno())


def restore_quarantine(quarantine: str | Path) -> tuple[list[str], int]:
    """Move the files listed in ``quarantine/manifest.json`` back to their places under its ``data_root``.

    A file whose original place is taken again, or that is no longer in
    quarantine, stays listed in the manifest; nothing is overwritten or
    deleted. Every entry is checked before anything moves: a manifest is
    a file someone could have edited, and a path leaving either folder
    (absolute, or with ``..``) would move files elsewhere.

    Returns:
        ``(paths restored, entries still listed)``.

    Raises:
        DatasetError: no manifest in ``quarantine``, a manifest that is not
            this tool's (or lists a path outside the folders), or a move
            failing (a full disk: the manifest then lists what is still in
            quarantine).
    """
    quarantine = Path(os.path.abspath(quarantine))
    path = quarantine / QUARANTINE_MANIFEST
    manifest = _read_manifest(quarantine)
    if manifest is None:
        raise DatasetError(f"{display(path)}: no quarantine manifest (written by --mode check --quarantine)")
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, list) or not isinstance(manifest.get("data_root"), str) or not all(
            isinstance(entry, dict) and isinstance(entry.get("path"), str) for entry in files):
        raise DatasetError(f"{display(path)}: not a quarantine manifest (data_root and files with a path each)")
    for entry in files:
        relative = Path(entry["path"])
        if relative.is_absolute() or ".." in relative.parts or not relative.parts:
            raise DatasetError(f"{display(path)}: {display(entry['path'])} is not a path inside the data folder; "
                               "nothing restored")
    root, kept, restored = Path(manifest["data_root"]), [], []
    try:
        for k, entry in enumerate(files):
            source, target = quarantine / entry["path"], root / entry["path"]
            if source.exists() and not target.exists():
                _move_whole(source, target)
                restored.append(str(target))
            elif source.exists() or not target.exists():  # its place is taken again, or it is lost: keep the entry
                kept.append(entry)
    except OSError as exc:
        _shrink_manifest(quarantine, {**manifest, "files": kept + files[k:]})
        raise DatasetError(f"{display(root / entry['path'])}: {exc.strerror or exc} after restoring "
                           f"{len(restored)} files; the others stay in quarantine, listed") from None
    _write_manifest(quarantine, {**manifest, "files": kept})
    return restored, len(kept)
