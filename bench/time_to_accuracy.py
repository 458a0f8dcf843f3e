#!/usr/bin/env python3
"""Wall seconds from the PNG tree to 99.0 % and to 99.3 % accuracy on the full 10,000-image test set.

Each run is a fresh process (interpreter start included) that decodes the
PNGs (nothing cached beforehand), trains the reference model and, after every
epoch, measures the accuracy on all 10,000 test images, stopping when the
highest target is reached or after ``--max-epochs`` epochs. The time to a
target is from the process's launch to the end of the first epoch whose test
accuracy reaches it. The test passes are timed separately and reported,
since a user's run does not need them. Default settings vs the tutorial
settings (ImageDataGenerator, RGB input, batch 32, float32, RMSprop 0.001),
interleaved, one seed per round.

    python bench/time_to_accuracy.py [--repeats 3] [--targets 0.99,0.993] [--max-epochs 10]
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
    """Train until ``target`` (the highest one) or ``max_epochs``; print every epoch's test accuracy."""
    from mnist_folders.commands import cli

    cli.quiet_tensorflow()
    import keras
    import numpy as np

    from mnist_folders.networks import dtype_policy
    from mnist_folders.data.folders import index_tree
    from mnist_folders.networks.build import build_model
    from mnist_folders.data.decoding import decode_images
    from mnist_folders.data.images import scale
    from mnist_folders.data.pipeline import training_data
    from mnist_folders.settings import Setting
    from mnist_folders.train.callbacks import training_callbacks
    from mnist_folders.train.choices import resolve_settings
    from mnist_folders.train.training import steps_per_execution

    setting = Setting(data_dir=data_dir, epochs=max_epochs, seed=seed, **SETTINGS[name])
    index = index_tree(setting.train_path)
    setting = resolve_settings(setting, index)  # the automatic model, batch size, precision, as train() resolves them
    keras.utils.set_random_seed(setting.seed)
    dtype_policy.apply(setting.dtype_policy)
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
            log["epochs"].append({"epoch": epoch + 1, "test_accuracy": accuracy, "clock": time.time(),
                                  "elapsed": time.perf_counter() - STARTED, "test_seconds": log["test_seconds"]})
            if accuracy >= target:
                self.model.stop_training = True

    callbacks = training_callbacks(setting, data.set_epoch, StopAtTarget())
    model.steps_per_execution = steps_per_execution(data.steps_per_epoch)  # as train() runs fit
    model.fit(data.train, epochs=max_epochs, callbacks=callbacks, verbose=0, shuffle=False)
    last = log["epochs"][-1]
    print(json.dumps({"model": setting.model, "batch_size": setting.batch_size, "dtype_policy": dtype_policy.resolve(
                          setting.dtype_policy), "learning_rate": setting.learning_rate,
                      "reached": last["test_accuracy"] >= target, "epochs": last["epoch"],
                      "accuracy": last["test_accuracy"], "seconds": last["elapsed"],
                      "test_seconds": log["test_seconds"], "per_epoch": log["epochs"]}))


def reached(run: dict, target: float) -> dict | None:
    """The first epoch of ``run`` whose test accuracy reaches ``target``, with its seconds from launch."""
    for row in run["per_epoch"]:
        if row["test_accuracy"] >= target:
            return {"epoch": row["epoch"], "seconds": row["clock"] - run["launched"],
                    "net_seconds": row["clock"] - run["launched"] - row["test_seconds"]}
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--targets", default="0.99,0.993", help="comma-separated test accuracies")
    parser.add_argument("--target", type=float, help=argparse.SUPPRESS)  # the worker's: the highest target
    parser.add_argument("--max-epochs", type=int, default=10)
    parser.add_argument("--tutorial-max-epochs", type=int, help="a lower cap for the tutorial settings "
                        "(default: --max-epochs)")
    parser.add_argument("--data-dir", default=str(REPO / "mnist_data"), help="the exported PNG tree")
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        name, seed = args.worker
        worker(name, args.target, args.max_epochs, args.data_dir, int(seed))
        return 0
    targets = sorted(float(t) for t in args.targets.split(","))
    caps = {name: args.max_epochs for name in SETTINGS}
    caps["tutorial settings"] = args.tutorial_max_epochs or args.max_epochs
    runs: dict[str, list[dict]] = {name: [] for name in SETTINGS}
    for r in range(args.repeats):
        for name in (SETTINGS if r % 2 == 0 else list(SETTINGS)[::-1]):  # interleaved, so noise spreads over both
            launched = time.time()
            out = subprocess.run([sys.executable, __file__, "--worker", name, str(1337 + r), "--target",
                                  str(targets[-1]), "--max-epochs", str(caps[name]), "--data-dir",
                                  args.data_dir], capture_output=True, text=True, check=True)
            result = json.loads(out.stdout.strip().splitlines()[-1])
            result.update(launched=launched, wall=time.time() - launched, seed=1337 + r)
            result["targets"] = {str(t): reached(result, t) for t in targets}
            runs[name].append(result)
            print(f"{name}, seed {1337 + r}: " + ", ".join(
                f"{row['epoch']}: {row['test_accuracy']:.4f} at {row['clock'] - launched:.1f} s"
                for row in result["per_epoch"]), flush=True)
    lines = [f"Targets: {', '.join(f'{t:.1%}' for t in targets)} on the full 10,000-image test set; seeds "
             f"1337..{1336 + args.repeats}; at most " + ", ".join(f"{caps[n]} epochs ({n})" for n in SETTINGS), "",
             "| target | settings | reached | epochs | wall s (median, min-max) | wall s without test passes | "
             "vs tutorial |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    summary: dict[str, dict] = {}
    for t in targets:
        summary[str(t)] = {}
        for name, rs in runs.items():
            hits = [r["targets"][str(t)] for r in rs]
            got = [h for h in hits if h]
            epochs = "/".join(str(h["epoch"]) if h else "-" for h in hits)
            wall = repeat(iter([h["seconds"] for h in got]).__next__, len(got)) if got else None
            net = repeat(iter([h["net_seconds"] for h in got]).__next__, len(got)) if got else None
            summary[str(t)][name] = {"reached": len(got), "runs": len(rs), "wall": wall, "net": net}
        tutorial = summary[str(t)]["tutorial settings"]["wall"]
        for name, row in summary[str(t)].items():
            if row["wall"] is None:
                best = max(max(e["test_accuracy"] for e in r["per_epoch"]) for r in runs[name])
                lines.append(f"| {t:.1%} | {name} | 0/{row['runs']} | - | not reached in {caps[name]} epochs "
                             f"(best {best:.2%}) | - | - |")
                continue
            ratio = f"{tutorial['median'] / row['wall']['median']:.2f}x faster" if tutorial else "-"
            partial = " (of the runs that reached it)" if row["reached"] < row["runs"] else ""
            epochs = "/".join(str(h["epoch"]) if h else "-" for h in (r["targets"][str(t)] for r in runs[name]))
            lines.append(f"| {t:.1%} | {name} | {row['reached']}/{row['runs']} | {epochs} | {fmt(row['wall'])}"
                         f"{partial} | {fmt(row['net'])} | {ratio} |")
    lines += ["", "Per-epoch test accuracy (%) of each run:", "",
              "| settings | seed | " + " | ".join(str(e) for e in range(1, max(caps.values()) + 1)) + " |",
              "| --- | ---: |" + " ---: |" * max(caps.values())]
    for name, rs in runs.items():
        for r in rs:
            accs = [f"{100 * e['test_accuracy']:.2f}" for e in r["per_epoch"]]
            lines.append(f"| {name} | {r['seed']} | " + " | ".join(accs + [""] * (max(caps.values()) - len(accs))) + " |")
    save("time_to_accuracy", machine_line(), "\n".join(lines), {"targets": targets, "max_epochs": caps,
                                                                "runs": runs, "summary": summary})
    return 0


if __name__ == "__main__":
    sys.exit(main())
