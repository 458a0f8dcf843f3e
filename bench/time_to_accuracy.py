#!/usr/bin/env python3
"""Wall seconds from the PNG tree to 99.0 % accuracy on the full 10,000-image test set.

Each run is a fresh process (interpreter start included) that decodes the
PNGs (nothing cached beforehand), trains the reference model and, after every
epoch, measures the accuracy on all 10,000 test images, stopping at the target.
The test passes are timed separately and reported, since a user's run does
not need them. Default settings vs the tutorial settings (ImageDataGenerator,
RGB input, batch 32, float32, RMSprop 0.001).

    python bench/time_to_accuracy.py [--repeats 3] [--target 0.99] [--max-epochs 8]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

STARTED = time.perf_counter()

from common import REPO, fmt, machine_line, repeat, save  # noqa: E402

SETTINGS = {
    "default settings": {},
    "tutorial settings": {"pipeline": "idg", "color_mode": "rgb", "batch_size": 32, "dtype_policy": "float32",
                          "optimizer": "rmsprop", "learning_rate": 0.001, "lr_decay": 1.0},
}


def worker(name: str, target: float, max_epochs: int, data_dir: str, seed: int) -> None:
    from mnist_folders import cli

    cli.quiet_tensorflow()
    import keras
    import numpy as np

    from mnist_folders import dtype_policy
    from mnist_folders.folders import index_tree
    from mnist_folders.models import build_model
    from mnist_folders.decoding import decode_images
    from mnist_folders.images import scale
    from mnist_folders.pipeline import training_data
    from mnist_folders.settings import Setting
    from mnist_folders.callbacks import training_callbacks
    from mnist_folders.training import resolve_settings

    setting = Setting(data_dir=data_dir, epochs=max_epochs, seed=seed, **SETTINGS[name])
    keras.utils.set_random_seed(setting.seed)
    dtype_policy.apply(setting.dtype_policy)
    index = index_tree(setting.train_path)
    setting = resolve_settings(setting, index)  # the automatic batch size, as train() resolves it
    test = index_tree(setting.test_path, index.class_names)
    test_images = decode_images(test.paths, setting).images
    data = training_data(setting, index, progress=False)
    model = build_model(setting.model, setting.input_shape, 10, setting.optimizer, setting.learning_rate)
    log = {"epochs": [], "test_seconds": 0.0}

    class StopAtTarget(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            started = time.perf_counter()
            predicted = self.model.predict(scale(test_images), batch_size=512, verbose=0).argmax(axis=1)
            accuracy = float(np.mean(predicted == test.labels))
            log["test_seconds"] += time.perf_counter() - started
            log["epochs"].append({"epoch": epoch + 1, "test_accuracy": accuracy,
                                  "elapsed": time.perf_counter() - STARTED})
            if accuracy >= target:
                self.model.stop_training = True

    callbacks = training_callbacks(setting, data.set_epoch, StopAtTarget())
    model.fit(data.train, epochs=max_epochs, callbacks=callbacks, verbose=0, shuffle=False)
    last = log["epochs"][-1]
    print(json.dumps({"reached": last["test_accuracy"] >= target, "epochs": last["epoch"],
                      "accuracy": last["test_accuracy"], "seconds": last["elapsed"],
                      "test_seconds": log["test_seconds"], "per_epoch": log["epochs"]}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--target", type=float, default=0.99)
    parser.add_argument("--max-epochs", type=int, default=8)
    parser.add_argument("--data-dir", default=str(REPO / "mnist_data"))
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        name, seed = args.worker
        worker(name, args.target, args.max_epochs, args.data_dir, int(seed))
        return 0
    runs: dict[str, list[dict]] = {name: [] for name in SETTINGS}
    for r in range(args.repeats):
        for name in SETTINGS:  # interleaved, so noise spreads over both
            started = time.perf_counter()
            out = subprocess.run([sys.executable, __file__, "--worker", name, str(1337 + r), "--target",
                                  str(args.target), "--max-epochs", str(args.max_epochs), "--data-dir",
                                  args.data_dir], capture_output=True, text=True, check=True)
            result = json.loads(out.stdout.strip().splitlines()[-1])
            result["wall"] = time.perf_counter() - started
            runs[name].append(result)
            print(f"{name}: {json.dumps(result)}", flush=True)
    lines = [f"Target: {args.target:.1%} on the full 10,000-image test set; seeds 1337..{1336 + args.repeats}", "",
             "| settings | reached | epochs | wall s (median, min-max) | wall s without test passes | vs tutorial |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    stats = {name: repeat(iter([r["wall"] for r in rs]).__next__, len(rs)) for name, rs in runs.items()}
    net = {name: repeat(iter([r["wall"] - r["test_seconds"] for r in rs]).__next__, len(rs))
           for name, rs in runs.items()}
    for name, rs in runs.items():
        reached = sum(r["reached"] for r in rs)
        epochs = "/".join(str(r["epochs"]) for r in rs)
        ratio = stats["tutorial settings"]["median"] / stats[name]["median"]
        lines.append(f"| {name} | {reached}/{len(rs)} | {epochs} | {fmt(stats[name])} | {fmt(net[name])} | "
                     f"{ratio:.2f}x faster |")
    save("time_to_accuracy", machine_line(), "\n".join(lines), {"runs": runs, "wall": stats, "net": net})
    return 0


if __name__ == "__main__":
    sys.exit(main())
