"""parse_mnist.py on a real subset: layout, lossless PNGs, idempotent re-runs."""

from __future__ import annotations

import shutil

import numpy as np
from PIL import Image

from conftest import MNIST, REPO, run_cli
from mnist_folders.data.idx import load_split

LIMIT = 300


def _pngs(root):
    return sorted(root.rglob("*.png"))


def test_export_writes_the_tree_and_round_trips(tmp_path):
    out = tmp_path / "out"
    result = run_cli(str(REPO / "parse_mnist.py"), "--out", str(out), "--limit", str(LIMIT), "--quiet")
    assert f"{LIMIT} written" in result.stdout
    images, labels = load_split(MNIST, "train")
    for index in (0, 1, LIMIT - 1):
        path = out / "train" / str(labels[index]) / f"{index:03d}.png"
        with Image.open(path) as png:
            assert png.mode == "L" and png.size == (28, 28)
            assert np.array_equal(np.asarray(png), images[index])
    train_counts = {d.name: len(list(d.iterdir())) for d in (out / "train").iterdir()}
    assert train_counts == {str(k): int(v) for k, v in enumerate(np.bincount(labels[:LIMIT]))}
    assert len(_pngs(out / "test")) == LIMIT
    assert sorted(p.name for p in (out / "tmp").iterdir()) == [f"sample_{d}.png" for d in range(10)]
    assert not list(out.rglob(".*"))  # no temporary files left behind


def test_rerun_skips_and_force_rewrites(tmp_path):
    out = tmp_path / "out"
    run_cli(str(REPO / "parse_mnist.py"), "--out", str(out), "--limit", "100", "--quiet")
    victim = _pngs(out / "train")[5]
    victim.unlink()
    result = run_cli(str(REPO / "parse_mnist.py"), "--out", str(out), "--limit", "100", "--quiet")
    assert "1 written, 99 already there" in result.stdout
    assert victim.exists()
    result = run_cli(str(REPO / "parse_mnist.py"), "--out", str(out), "--limit", "100", "--force", "--quiet")
    assert "100 written, 0 already there" in result.stdout


def test_bad_source_is_one_line_and_exit_2(tmp_path):
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03garbage")
    shutil.copy(MNIST / "train-labels-idx1-ubyte.gz", tmp_path)
    result = run_cli(str(REPO / "parse_mnist.py"), "--source", str(tmp_path), "--out", str(tmp_path / "o"),
                     check=False)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "train-images-idx3-ubyte" in result.stderr
    assert not (tmp_path / "o").exists()
