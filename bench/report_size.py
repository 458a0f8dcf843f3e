#!/usr/bin/env python3
"""Report size: what ``report.html`` costs (time, bytes, thumbnails) at 10 and at 100 classes.

Two cases, each with its own briefly trained model (one training run each):
- mnist10: the full MNIST test set (10,000 images, 10 classes); the reference model
  cnn_64_128_256 trained for 1 epoch on the first 10,000 training images
  (``parse_mnist.py --limit 10000``: MNIST has exactly 10,000 test images, so all of them).
- pairs100: 100 classes "00".."99", each image two MNIST digits side by side, 28 x 56 grayscale
  (not resized: the model input is 28 x 56); 60 train and 20 test images per class (6,000 / 2,000),
  digits drawn at random (seed 0) from MNIST's train split for train/ and its test split for test/;
  cnn_32_64_64 trained ``--epochs100`` epochs: enough for a confusion matrix with many non-empty cells.

Per case (seconds are medians (min-max) of ``--repeats`` in-process runs, interleaved, after one warm-up):
- evaluate with report: ``evaluate()`` wall seconds as ``--mode evaluate`` runs it (model load included);
- evaluate without report: the same with ``write_report`` replaced by a no-op; also, steadier on a noisy
  machine, the with-report runs less their own write_report seconds;
- write_report: its own seconds inside the with-report runs (a timing wrapper), and its share;
- report.html size (MiB = 2^20 bytes) and what it is made of, from the page's JSON
  (``<script id="report-data">``): thumbnails in the confusion-matrix cells (count and bytes), the per-cell
  cap (``confusion.cap``), non-empty cells out of K^2, Grad-CAM pictures (the 24 + 24 extremes, each an
  input and an overlay);
- browser load: milliseconds from navigationStart to loadEventEnd (``performance.timing``) of the page
  opened from disk in headless Chromium (tests/browser.py), median of 3 loads after one warm-up load;
- hot spots: one ``write_report`` call under cProfile: the report's own functions (report.py, gradcam.py)
  by cumulative time, and all functions by own time.

Also: ``--mode explain`` seconds per image on 100 test images of mnist10 (the figure it prints, model load
excluded; median of ``--repeats`` CLI runs). And the usability check of the 100-class page: click one
off-diagonal cell of the 100 x 100 matrix (the most frequent confusion), check its images appear, measure
the drawn matrix against its scroll box (how much of it is in view at once), and save a screenshot of the
matrix section (window 1280 x 1500) to ``bench/results/report_100_classes.png``.

Data and models go to ``--work`` (default bench/tmp_report_size, git-ignored), removed at the end unless
``--keep``; a kept folder is reused by the next run (training seconds then say "reused"), ``--fresh`` rebuilds
it. About 3-5 minutes on 2 cores.

    python bench/report_size.py [--repeats 3] [--epochs100 6] [--work bench/tmp_report_size] [--keep] [--fresh]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import REPO, RESULTS, fmt, machine_line, repeat, save

MIB = 2**20
PAIRS_TRAIN, PAIRS_TEST = 60, 20  # images per class of the 100-class tree
EXPLAIN_IMAGES = 100
SCREENSHOT = RESULTS / "report_100_classes.png"
PAGE_DATA = re.compile(r'<script id="report-data" type="application/json">(.*?)</script>', re.S)
EXPLAINED = re.compile(r"(\d+) explained in ([\d.]+) s")


# ---------------------------------------------------------------- data and models

def run_cli(*args: str) -> tuple[float, str]:
    """Run ``python <args>`` from the repository root; (wall seconds, stdout)."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, *args], cwd=REPO, check=True, capture_output=True, text=True)
    return time.perf_counter() - started, done.stdout


def export_mnist10(root: Path) -> None:
    """10,000 train and all 10,000 test MNIST PNGs under ``root``/{train,test}."""
    if not (root / "test").is_dir():
        run_cli("parse_mnist.py", "--out", str(root), "--limit", "10000", "--quiet")


def build_pairs100(root: Path, seed: int = 0) -> None:
    """The 100-class tree: ``root/{train,test}/<ab>/<n>.png``, digit a left of digit b, 28 x 56."""
    if (root / "test").is_dir():
        return
    from PIL import Image

    from mnist_folders.data.idx import load_split

    rng = np.random.default_rng(seed)
    for split, per_class in (("train", PAIRS_TRAIN), ("test", PAIRS_TEST)):
        images, labels = load_split(REPO / "data" / "mnist", split)
        by_digit = [np.flatnonzero(labels == d) for d in range(10)]
        for a in range(10):
            for b in range(10):
                folder = root / split / f"{a}{b}"
                folder.mkdir(parents=True, exist_ok=True)
                left, right = rng.choice(by_digit[a], per_class), rng.choice(by_digit[b], per_class)
                for n, (i, j) in enumerate(zip(left, right)):
                    Image.fromarray(np.hstack([images[i], images[j]])).save(folder / f"{n:03d}.png")


def train(data: Path, model_dir: Path, model: str, epochs: int, batch: int, *extra: str) -> float | None:
    """Train once with the CLI; its wall seconds, or None when ``model_dir`` already holds a model."""
    if (model_dir / "best.weights.h5").exists():
        return None
    seconds, _ = run_cli("mnist_keras.py", "--mode", "train", "--data-dir", str(data), "--model-dir", str(model_dir),
                         "--model", model, "--epochs", str(epochs), "--batch-size", str(batch), "--quiet",
                         "--format", "none", *extra)
    return seconds


# ---------------------------------------------------------------- timing evaluate and write_report

class ReportTimer:
    """Stands in for ``report.write_report``: times the real one (or skips it) and keeps its last arguments."""

    def __init__(self, real):
        self.real, self.enabled, self.seconds, self.args = real, True, 0.0, None

    def __call__(self, *args):
        self.args = args
        if not self.enabled:
            self.seconds = 0.0
            return None
        started = time.perf_counter()
        path = self.real(*args)
        self.seconds = time.perf_counter() - started
        return path


def time_evaluations(model_dir: Path, test_dir: Path, repeats: int) -> tuple[dict, ReportTimer, object]:
    """``evaluate()`` with and without the report, interleaved, after one warm-up with it."""
    from mnist_folders.artifacts import setting_for_model
    from mnist_folders.explain import report as report_module
    from mnist_folders.serve.evaluation import evaluate

    timer = ReportTimer(report_module.write_report)
    report_module.write_report = timer  # evaluate() imports it from the module at each call
    try:
        setting = setting_for_model({"model_dir": str(model_dir), "test_dir": str(test_dir)})
        evaluation = evaluate(setting, progress=False)  # warm-up: TensorFlow, page cache
        runs = {"with_report": [], "without_report": [], "write_report": [], "with_minus_report": []}
        for _ in range(repeats):
            for enabled in (True, False):
                timer.enabled = enabled
                started = time.perf_counter()
                evaluate(setting, progress=False)
                runs["with_report" if enabled else "without_report"].append(time.perf_counter() - started)
                if enabled:
                    runs["write_report"].append(timer.seconds)
                    runs["with_minus_report"].append(runs["with_report"][-1] - timer.seconds)
        timer.enabled = True
        return {name: stats(values) for name, values in runs.items()}, timer, evaluation
    finally:
        report_module.write_report = timer.real


def stats(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": values}


def profile_report(timer: ReportTimer, top: int = 8) -> dict:
    """One ``write_report`` call under cProfile: its seconds, the ``top`` functions by own time, and the
    report's own functions (report.py, gradcam.py) by cumulative time."""
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.runcall(timer.real, *timer.args)
    seconds = time.perf_counter() - started
    table = pstats.Stats(profiler, stream=io.StringIO()).stats
    own_total = sum(row[2] for row in table.values())

    def rows(items):
        return [{"function": f"{Path(file).name}:{line}({name})", "calls": calls, "own_s": round(own, 3),
                 "cumulative_s": round(cumulative, 3), "share_of_own_time": round(own / own_total, 3)}
                for (file, line, name), (_, calls, own, cumulative, _) in items]

    ours = [item for item in table.items() if Path(item[0][0]).name in ("report.py", "gradcam.py")]
    return {"seconds_profiled": seconds,
            "by_own_time": rows(sorted(table.items(), key=lambda item: -item[1][2])[:top]),
            "report_functions": rows(sorted(ours, key=lambda item: -item[1][3])[:top])}


# ---------------------------------------------------------------- the page

def page_contents(page: Path) -> dict:
    """Bytes of report.html and what they are made of, from the page's JSON."""
    text = page.read_text(encoding="utf-8")
    data = json.loads(PAGE_DATA.search(text).group(1))
    cells = data["confusion"]["cells"]
    thumbs = [image["src"] for cell in cells.values() for image in cell["images"] if image["src"]]
    extremes = [entry.get(key) for group in ("mistakes", "unsure") for entry in data["extremes"][group]
                for key in ("src", "cam") if entry.get(key)]
    figures = [uri for uri in data["figures"].values() if uri]
    size = page.stat().st_size
    k = len(data["evaluation"]["class_names"])
    parts = {"cell_thumbnails": sum(map(len, thumbs)), "gradcam": sum(map(len, extremes)),
             "figures": sum(map(len, figures))}
    return {"bytes": size, "mib": size / MIB, "classes": k, "cells_nonempty": len(cells), "cells_total": k * k,
            "cap": data["confusion"]["cap"], "thumbnails": len(thumbs), "gradcam_pictures": len(extremes),
            "parts_bytes": {**parts, "rest": size - sum(parts.values())},
            "offdiagonal": sorted(((cell["count"], key) for key, cell in cells.items()
                                   if len(set(key.split(","))) == 2), reverse=True)}


def load_ms(driver, url: str) -> float:
    """Open ``url``; navigationStart -> loadEventEnd in milliseconds."""
    driver.get(url)
    for _ in range(200):
        timing = driver.execute_script("const t = performance.timing; return [t.navigationStart, t.loadEventEnd];")
        if timing[1]:
            return float(timing[1] - timing[0])
        time.sleep(0.05)
    raise RuntimeError(f"{url}: no loadEventEnd")


def click_cell(driver, key: str, expected: int) -> dict:
    """Click matrix cell ``key`` ("t,p"); wait for its ``expected`` images to be decoded in the panel."""
    from selenium.webdriver.common.by import By

    t, p = key.split(",")
    td = driver.find_element(By.CSS_SELECTOR, f'#confusion td[data-true="{t}"][data-pred="{p}"]')
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", td)
    td.click()
    loaded = 0
    for _ in range(100):
        loaded = driver.execute_script("return [...document.querySelectorAll('#cell-images img')]"
                                       ".filter((i) => i.complete && i.naturalWidth > 0).length;")
        if loaded >= expected:
            break
        time.sleep(0.05)
    return {"cell": key, "title": driver.find_element(By.ID, "cell-title").text, "images_expected": expected,
            "images_loaded": loaded, "chosen": "chosen" in td.get_attribute("class")}


def matrix_geometry(driver) -> dict:
    """How big the drawn matrix is against the scroll box that shows it (CSS pixels)."""
    return driver.execute_script("""
        const table = document.getElementById("confusion"), box = table.parentElement;
        const cell = table.querySelector("tbody td").getBoundingClientRect();
        return {cell_w: cell.width, cell_h: cell.height, table_w: table.scrollWidth, table_h: table.scrollHeight,
                box_w: box.clientWidth, box_h: box.clientHeight};""")


def browse(pages: dict[str, Path], click: dict[str, tuple[str, int]], loads: int = 3) -> dict[str, dict]:
    """Per page: its browser load time (median of ``loads``); for the pages in ``click``, that cell clicked
    and a screenshot of the matrix section."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("browser", REPO / "tests" / "browser.py")  # the tests' helper
    browser = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(browser)
    open_browser = browser.open_browser
    from selenium.webdriver.common.by import By

    found = {}
    with tempfile.TemporaryDirectory() as tmp:
        driver = open_browser(Path(tmp), width=1280, height=1500)
        try:
            for name, page in pages.items():
                url = page.resolve().as_uri()
                load_ms(driver, url)  # warm-up: the first load of a fresh browser is slower
                found[name] = {"load_ms": repeat(lambda: load_ms(driver, url), loads)}
                if name in click:
                    found[name]["matrix_cells_drawn"] = driver.execute_script(
                        "return document.querySelectorAll('#confusion td').length;")
                    found[name]["geometry"] = matrix_geometry(driver)
                    found[name]["click"] = click_cell(driver, *click[name])
                    driver.find_element(By.ID, "matrix").screenshot(str(SCREENSHOT))
                    found[name]["screenshot"] = str(SCREENSHOT.relative_to(REPO))
        finally:
            driver.quit()
    return found


# ---------------------------------------------------------------- explain

def explain_per_image(model_dir: Path, test_dir: Path, work: Path, repeats: int) -> dict:
    """``--mode explain`` on the first EXPLAIN_IMAGES test images (10 per class): seconds per image as printed
    (model load excluded), and the CLI's wall seconds (process start included)."""
    folder = work / "explain_in"
    if not folder.is_dir():
        folder.mkdir(parents=True)
        per_class = EXPLAIN_IMAGES // 10
        for class_dir in sorted(p for p in test_dir.iterdir() if p.is_dir()):
            for path in sorted(class_dir.glob("*.png"))[:per_class]:
                shutil.copy(path, folder / f"{class_dir.name}_{path.name}")
    per_image, wall = [], []
    for _ in range(repeats):
        output = work / "explain_out"
        shutil.rmtree(output, ignore_errors=True)
        seconds, out = run_cli("mnist_keras.py", "--mode", "explain", "--model-dir", str(model_dir),
                               "--input", str(folder), "--output", str(output))
        count, total = EXPLAINED.search(out).groups()
        per_image.append(float(total) / int(count))
        wall.append(seconds)
    return {"images": int(count), "seconds_per_image": stats(per_image), "cli_wall_s": stats(wall)}


# ---------------------------------------------------------------- tables

def results_table(cases: dict[str, dict]) -> str:
    lines = ["| case | classes | test images | accuracy | evaluate with report s | without report s | "
             "same runs less write_report s | "
             "write_report s (share) | report.html MiB | thumbnails in cells | cap per cell | non-empty cells "
             "| Grad-CAM pictures | browser load ms | training s |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
             "| ---: |"]
    for name, c in cases.items():
        page, t = c["page"], c["timing"]
        share = t["write_report"]["median"] / t["with_report"]["median"]
        training = "reused" if c["training_s"] is None else f"{c['training_s']:.0f}"
        lines.append(f"| {name} | {page['classes']} | {c['images']:,} | {c['accuracy']:.3f} | "
                     f"{fmt(t['with_report'], 2)} | {fmt(t['without_report'], 2)} | "
                     f"{fmt(t['with_minus_report'], 2)} | "
                     f"{fmt(t['write_report'], 2)} ({share:.0%}) | {page['mib']:.2f} | {page['thumbnails']:,} | "
                     f"{page['cap']} | {page['cells_nonempty']:,} / {page['cells_total']:,} | "
                     f"{page['gradcam_pictures']} | {fmt(c['browser']['load_ms'], 0)} | {training} |")
    return "\n".join(lines)


def parts_table(cases: dict[str, dict]) -> str:
    lines = ["| case | cell thumbnails MiB (bytes each) | Grad-CAM pictures MiB | figures MiB | rest MiB |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for name, c in cases.items():
        parts, page = c["page"]["parts_bytes"], c["page"]
        each = parts["cell_thumbnails"] / max(1, page["thumbnails"])
        lines.append(f"| {name} | {parts['cell_thumbnails'] / MIB:.2f} ({each:.0f}) | {parts['gradcam'] / MIB:.2f} "
                     f"| {parts['figures'] / MIB:.2f} | {parts['rest'] / MIB:.2f} |")
    return "\n".join(lines)


def profile_table(cases: dict[str, dict]) -> str:
    lines = []
    for name, c in cases.items():
        profile = c["profile"]
        for key, title in (("report_functions", "the report's functions by cumulative time"),
                           ("by_own_time", "all functions by own time")):
            lines += [f"write_report under cProfile, {name} ({profile['seconds_profiled']:.2f} s profiled), "
                      f"{title}:", "", "| function | calls | own s | cumulative s | share of own time |",
                      "| --- | ---: | ---: | ---: | ---: |"]
            lines += [f"| `{r['function']}` | {r['calls']:,} | {r['own_s']:.3f} | {r['cumulative_s']:.3f} | "
                      f"{r['share_of_own_time']:.0%} |" for r in profile[key]]
            lines.append("")
    return "\n".join(lines)


# ---------------------------------------------------------------- main

def measure_case(name: str, model_dir: Path, test_dir: Path, training_s: float | None, repeats: int) -> dict:
    print(f"{name}: timing evaluate ...", flush=True)
    timing, timer, evaluation = time_evaluations(model_dir, test_dir, repeats)
    print(f"{name}: profiling write_report ...", flush=True)
    hot = profile_report(timer)
    page = page_contents(model_dir / "report.html")  # written again by the profiled call, same content
    return {"model_dir": str(model_dir.relative_to(REPO)), "images": evaluation.images,
            "accuracy": evaluation.accuracy, "training_s": training_s, "timing": timing, "profile": hot,
            "page": page}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs100", type=int, default=6, help="epochs of the 100-class model")
    parser.add_argument("--work", type=Path, default=REPO / "bench" / "tmp_report_size")
    parser.add_argument("--keep", action="store_true", help="keep --work (data, models) for the next run")
    parser.add_argument("--fresh", action="store_true", help="rebuild the data and retrain the models")
    args = parser.parse_args()
    from mnist_folders.commands import cli

    cli.quiet_tensorflow()
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")  # each evaluate() loads a new model: TensorFlow warns of retracing
    work = args.work.resolve()
    if args.fresh:
        shutil.rmtree(work, ignore_errors=True)
    mnist10, pairs100 = work / "mnist10", work / "pairs100"
    print("data ...", flush=True)
    export_mnist10(mnist10)
    build_pairs100(pairs100)
    print("training ...", flush=True)
    trained = {"mnist10": train(mnist10, work / "model10", "cnn_64_128_256", 1, 128),
               "pairs100": train(pairs100, work / "model100", "cnn_32_64_64", args.epochs100, 64,
                                 "--image-height", "28", "--image-width", "56", "--color-mode", "grayscale")}
    cases = {"mnist10": measure_case("mnist10", work / "model10", mnist10 / "test", trained["mnist10"], args.repeats),
             "pairs100": measure_case("pairs100", work / "model100", pairs100 / "test", trained["pairs100"],
                                      args.repeats)}
    print("explain ...", flush=True)
    explain = explain_per_image(work / "model10", mnist10 / "test", work, args.repeats)
    print("browser ...", flush=True)
    biggest = cases["pairs100"]["page"]["offdiagonal"][0]  # (count, "t,p"): the most frequent confusion
    cell = json.loads(PAGE_DATA.search((work / "model100" / "report.html").read_text()).group(1))
    shown = len(cell["confusion"]["cells"][biggest[1]]["images"])
    browser = browse({name: work / f"model{n}" / "report.html" for name, n in (("mnist10", 10), ("pairs100", 100))},
                     {"pairs100": (biggest[1], shown)})
    for name in cases:
        cases[name]["browser"] = browser[name]
        cases[name]["page"]["offdiagonal"] = cases[name]["page"]["offdiagonal"][:5]
    click, geometry = browser["pairs100"]["click"], browser["pairs100"]["geometry"]
    seen = min(1, geometry["box_w"] / geometry["table_w"]) * min(1, geometry["box_h"] / geometry["table_h"])
    ok = click["images_loaded"] >= click["images_expected"] and click["chosen"]
    lines = [f"Date: {time.strftime('%Y-%m-%d %H:%M')}. Rerun: `python bench/report_size.py` (see its docstring).",
             "mnist10: full MNIST test set, cnn_64_128_256, 1 epoch on 10,000 training images. pairs100: 100 "
             f"classes of two digits side by side (28 x 56, not resized), {PAIRS_TRAIN} train / {PAIRS_TEST} test "
             f"per class, cnn_32_64_64, {args.epochs100} epochs. Seconds: median (min-max) of {args.repeats} "
             "in-process `evaluate()` runs, model load included; MiB = 2^20 bytes.", "",
             results_table(cases), "", "What report.html is made of (data-URI bytes):", "", parts_table(cases), "",
             f"`--mode explain`, {explain['images']} mnist10 test images: "
             f"{fmt(explain['seconds_per_image'], 3)} s per image (as printed, model load excluded); "
             f"CLI wall {fmt(explain['cli_wall_s'], 1)} s.", "",
             f"100-class page in headless Chromium: {browser['pairs100']['matrix_cells_drawn']:,} matrix cells drawn; "
             f"clicked cell {click['cell']} (the most frequent confusion): \"{click['title']}\"; "
             f"{click['images_loaded']} / {click['images_expected']} images shown -> {'OK' if ok else 'FAILED'}; "
             f"screenshot {browser['pairs100']['screenshot']}. Each cell is {geometry['cell_w']:.0f} x "
             f"{geometry['cell_h']:.0f} px, the table {geometry['table_w']:,} x {geometry['table_h']:,} px in a "
             f"{geometry['box_w']:,} x {geometry['box_h']:,} px scroll box: {seen:.0%} of the matrix in view at "
             "once.", "", profile_table(cases)]
    save("report_size", machine_line(), "\n".join(lines),
         {"date": time.strftime("%Y-%m-%d %H:%M"), "repeats": args.repeats, "epochs100": args.epochs100,
          "cases": cases, "explain": explain, "browser_check_ok": ok})
    if not args.keep:
        shutil.rmtree(work)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
