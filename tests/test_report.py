"""evaluate's report.html (checked against evaluation.json and in a real browser) and --mode explain."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import pytest
from PIL import Image

from browser import needs_browser
from conftest import REPO, run_cli

CLI = str(REPO / "mnist_keras.py")


def report_data(path: Path) -> dict:
    """The JSON object the page is drawn from."""
    text = path.read_text(encoding="utf-8")
    found = re.search(r'<script id="report-data" type="application/json">(.*?)</script>', text, re.S)
    return json.loads(found.group(1))


@pytest.fixture(scope="module")
def reported(trained_model, registry_data, tmp_path_factory) -> tuple[Path, Path, dict]:
    """The fixture model evaluated on 200 test images plus a corrupt file; ``(model_dir, test_dir,
    predict's class of each test file)``."""
    root = tmp_path_factory.mktemp("report")
    model_dir, test_dir = root / "model", root / "test"
    shutil.copytree(trained_model, model_dir)
    shutil.copytree(registry_data / "test", test_dir)
    (test_dir / "3" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    result = run_cli(CLI, "--mode", "evaluate", "--model-dir", str(model_dir), "--test-dir", str(test_dir),
                     "--quiet")
    assert f"browse it: {model_dir / 'report.html'}" in result.stdout
    run_cli(CLI, "--mode", "predict", "--model-dir", str(model_dir), "--input", str(test_dir), "--output",
            str(root / "predicted.csv"), "--quiet")
    with open(root / "predicted.csv", newline="") as f:
        predicted = {Path(row["path"]).relative_to(test_dir).as_posix(): row["class"] for row in csv.DictReader(f)}
    return model_dir, test_dir, predicted


def test_the_report_holds_the_numbers_of_evaluation_json_and_each_cells_images(reported):
    model_dir, test_dir, predicted = reported
    data, evaluation = report_data(model_dir / "report.html"), json.loads((model_dir / "evaluation.json").read_text())
    assert data["evaluation"] == evaluation  # every number of the page comes from here
    for row, p, r, n in zip(data["per_class"], evaluation["precision"], evaluation["recall"], evaluation["support"]):
        assert (row["precision"], row["recall"], row["support"]) == (p, r, n)
        assert row["f1"] == pytest.approx(2 * p * r / (p + r))
    names = evaluation["class_names"]
    cells = data["confusion"]["cells"]
    for t, row in enumerate(evaluation["confusion"]):
        for p, count in enumerate(row):
            cell = cells.get(f"{t},{p}")
            assert (cell["count"] if cell else 0) == count
            if not cell:
                continue
            assert len(cell["images"]) == min(count, data["confusion"]["cap"])
            confidences = [image["confidence"] for image in cell["images"]]
            assert confidences == sorted(confidences, reverse=True)
            for image in cell["images"]:  # the file's folder is its true class; predict gives the column
                assert image["file"].split("/")[0] == names[t] and predicted[image["file"]] == names[p]
                assert image["src"].startswith("data:image/png;base64,")
    assert evaluation["skipped"][0][0].endswith("broken.png")  # a corrupt file: said, not fatal
    mistakes = data["extremes"]["mistakes"]
    assert mistakes and all("cam" in m and m["true"] != m["predicted"] for m in mistakes)
    assert [m["confidence"] for m in mistakes] == sorted((m["confidence"] for m in mistakes), reverse=True)
    assert all(data["figures"].values())  # curves and the reliability diagram, inside the file
    html = (model_dir / "report.html").read_text()
    assert not re.search(r"""(src|href)=["']?https?:""", html)  # opens with no network


def test_the_report_escapes_names_and_caps_thumbnails():
    from mnist_folders.explain.report import THUMBNAILS_MAX, cell_cap

    import numpy as np

    assert cell_cap(np.array([5] * 100)) == 12  # 100 cells of 5: all shown
    many = np.array([40] * 400)  # 400 busy cells (e.g. 100 classes): fewer per cell, within the budget
    assert np.minimum(many, cell_cap(many)).sum() <= THUMBNAILS_MAX and cell_cap(many) >= 7


def click(browser, element) -> None:
    """Click ``element`` as a person would: scrolled to the middle of the window (not under the sticky bar)."""
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
    element.click()


@needs_browser
def test_the_report_in_a_real_browser(reported, browser, tmp_path):
    from selenium.webdriver.common.by import By

    model_dir, _, predicted = reported
    evaluation = json.loads((model_dir / "evaluation.json").read_text())
    names = evaluation["class_names"]
    browser.get((model_dir / "report.html").as_uri())
    card = browser.find_element(By.CSS_SELECTOR, '[data-card="accuracy"] b').text
    assert card == f"{100 * evaluation['accuracy']:.2f} %"
    # A click on an off-diagonal cell shows exactly that cell's images.
    confusion = evaluation["confusion"]
    t, p = max(((t, p) for t in range(len(names)) for p in range(len(names)) if t != p), key=lambda c: confusion[c[0]][c[1]])
    click(browser, browser.find_element(By.CSS_SELECTOR, f'#confusion td[data-true="{t}"][data-pred="{p}"]'))
    shown = browser.find_elements(By.CSS_SELECTOR, "#cell-images .thumb")
    assert len(shown) == confusion[t][p] > 0
    files = [s.find_element(By.CLASS_NAME, "file").text for s in shown]
    assert all(f.split("/")[0] == names[t] and predicted[f] == names[p] for f in files)
    assert browser.find_element(By.ID, "cell-title").text.startswith(
        f"true {names[t]}, predicted {names[p]}: {confusion[t][p]} image")
    # Sorting the per-class table by recall (descending, then ascending).
    header = browser.find_element(By.CSS_SELECTOR, '#per-class th[data-key="recall"] button')
    click(browser, header)
    rows = [r.get_attribute("data-class") for r in browser.find_elements(By.CSS_SELECTOR, "#per-class tbody tr")]
    by_recall = sorted(range(len(names)), key=lambda c: -evaluation["recall"][c])
    assert [evaluation["recall"][names.index(r)] for r in rows] == [evaluation["recall"][c] for c in by_recall]
    click(browser, header)
    rows = [r.get_attribute("data-class") for r in browser.find_elements(By.CSS_SELECTOR, "#per-class tbody tr")]
    assert [evaluation["recall"][names.index(r)] for r in rows] == sorted(evaluation["recall"])
    # The heatmaps toggle on and off.
    first = browser.find_element(By.CSS_SELECTOR, "#mistakes img")
    plain = first.get_attribute("src")
    toggle = browser.find_element(By.ID, "toggle-cam")
    click(browser, toggle)
    assert first.get_attribute("src") == first.get_attribute("data-cam") != plain
    click(browser, toggle)
    assert first.get_attribute("src") == plain
    assert "broken.png" in browser.find_element(By.ID, "skipped").text
    browser.execute_script("window.scrollTo(0, 0)")
    shot = tmp_path / "report.png"
    browser.save_screenshot(str(shot))
    with Image.open(shot) as picture:  # the page rendered (docs/report_*.png were taken the same way)
        assert picture.size[0] == 1280


def test_explain_writes_a_picture_per_image_with_the_top_classes(trained_model, registry_data, tmp_path):
    folder = tmp_path / "in"
    shutil.copytree(registry_data / "tmp", folder / "digits")
    (folder / "notes.txt").write_text("not an image")
    result = run_cli(CLI, "--mode", "explain", "--model-dir", str(trained_model), "--input", str(folder),
                     "--output", str(tmp_path / "out"))
    lines = [line.split("\t") for line in result.stdout.splitlines() if "\t" in line]
    assert len(lines) == 10 and "notes.txt" in result.stderr
    run_cli(CLI, "--mode", "predict", "--model-dir", str(trained_model), "--input", str(folder), "--output",
            str(tmp_path / "p.csv"), "--quiet", check=False)
    with open(tmp_path / "p.csv", newline="") as f:
        predicted = {row["path"]: (row["class"], float(row["confidence"])) for row in csv.DictReader(f)}
    for source, name, probability, picture in lines:
        assert predicted[source][0] == name and float(probability) == pytest.approx(predicted[source][1], abs=1e-2)  # bfloat16 model, float32 head
        with Image.open(picture) as image:
            assert image.size[0] > 300
        assert Path(picture).name == f"digits__{Path(source).name}.gradcam.png"
    # Inside the input folder, the pictures would be explained again next time: refused.
    inside = run_cli(CLI, "--mode", "explain", "--model-dir", str(trained_model), "--input", str(folder),
                     "--output", str(folder / "out"), check=False)
    assert inside.returncode == 2 and "inside the input folder" in inside.stderr and not (folder / "out").exists()


def test_explain_with_a_model_without_convolutions_is_one_line(registry_data, tmp_path):
    run_cli(CLI, "--mode", "train", "--data-dir", str(registry_data), "--model-dir", str(tmp_path / "mlp"),
            "--model", "mlp", "--epochs", "1", "--quiet")
    result = run_cli(CLI, "--mode", "explain", "--model-dir", str(tmp_path / "mlp"), "--data-dir",
                     str(registry_data), check=False)
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "no convolutional layer" in result.stderr
    evaluated = run_cli(CLI, "--mode", "evaluate", "--model-dir", str(tmp_path / "mlp"), "--data-dir",
                        str(registry_data), "--quiet")  # its report says why there are no heatmaps
    assert "no convolutional layer" in report_data(tmp_path / "mlp" / "report.html")["extremes"]["gradcam"]
    assert evaluated.returncode == 0


def test_the_report_shows_the_dataset_audit_when_check_ran(trained_model, registry_data, tmp_path):
    tree, model_dir = tmp_path / "data", tmp_path / "model"
    shutil.copytree(registry_data, tree)
    shutil.copytree(trained_model, model_dir)
    zero = sorted((tree / "train" / "0").iterdir())[0]
    shutil.copy(zero, tree / "train" / "1" / "planted.png")  # a 0 labelled 1
    leaked = sorted((tree / "train" / "5").iterdir())[0]
    shutil.copy(leaked, tree / "test" / "5" / "leaked.png")  # a training image in the test set
    run_cli(CLI, "--mode", "check", "--data-dir", str(tree), "--model-dir", str(model_dir), "--quiet")
    run_cli(CLI, "--mode", "evaluate", "--data-dir", str(tree), "--model-dir", str(model_dir), "--quiet")
    audit = report_data(model_dir / "report.html")["audit"]
    check = json.loads((model_dir / "check.json").read_text())
    assert audit["check"] == check and check["exact_duplicates"]["leakage"] >= 1
    first = audit["suspects"][0]  # the lowest probability of its given class: the planted one
    assert first["path"].endswith("planted.png") and first["given_class"] == "1"
    assert first["src"].startswith("data:image/png;base64,")
