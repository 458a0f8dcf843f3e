"""--mode serve: the HTTP service answers as predict does, without TensorFlow, under bad input and load."""

from __future__ import annotations

import asyncio
import base64
import csv
import hashlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from browser import needs_browser
from conftest import EXPORT_TEMPERATURE, REPO, run_cli

CLI = str(REPO / "mnist_keras.py")
SERVING = re.compile(r"at (http://\S+/) ; Ctrl-C or SIGTERM stops")


class Server:
    """``mnist_keras.py --mode serve`` in its own process on a free port; its output goes to a file (a pipe
    could fill up and block it). ``url``: where it answers, read from its first line."""

    def __init__(self, model_dir: Path, tmp_path: Path, *args: str, env: dict | None = None):
        self.log = tmp_path / f"serve-{time.monotonic_ns()}.txt"
        environment = {**os.environ, **(env or {})}
        with open(self.log, "w") as out:
            self.process = subprocess.Popen([sys.executable, CLI, "--mode", "serve", "--model-dir", str(model_dir),
                                             "--port", "0", *args], cwd=REPO, env=environment, stdout=out,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 120
        while not SERVING.search(self.output()):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop(signal.SIGKILL)
                raise AssertionError(f"the server did not start:\n{self.output()}")
            time.sleep(0.05)
        self.url = SERVING.search(self.output()).group(1)
        self.client = httpx.Client(base_url=self.url, timeout=60)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, how=signal.SIGTERM) -> int:
        if self.process.poll() is None:
            os.killpg(self.process.pid, how)
        code = self.process.wait(timeout=60)
        if hasattr(self, "client"):
            self.client.close()
        return code

    def loaded_libraries(self) -> str:
        return Path(f"/proc/{self.process.pid}/maps").read_text()

    def __enter__(self):
        return self

    def __exit__(self, *_exc):
        if self.process.poll() is None:
            self.stop(signal.SIGKILL)


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _csv_rows(path: Path) -> dict[str, list[str]]:
    with open(path, newline="") as f:
        return {Path(row[0]).name: row for row in list(csv.reader(f))[1:]}


@pytest.fixture(scope="module")
def served(exported, tmp_path_factory) -> Path:
    """A copy of the exported fixture model (temperature 2.5 in its graph) that tests may serve."""
    model_dir = tmp_path_factory.mktemp("served") / "mnist"
    shutil.copytree(exported, model_dir)
    return model_dir


@pytest.fixture(scope="module")
def mixed_images(small_data, tmp_path_factory) -> Path:
    """Real MNIST samples, the same digits dark on light (the inversion rule), and a colour, non-square copy
    (colour conversion and resizing): the decoding paths an upload goes through."""
    folder = tmp_path_factory.mktemp("mixed")
    for path in sorted((small_data / "tmp").glob("*.png")):
        shutil.copy(path, folder / path.name)
        digit = np.asarray(Image.open(path).convert("L"))
        Image.fromarray(255 - digit).save(folder / f"inverted_{path.name}")
    one = np.asarray(Image.open(sorted((small_data / "tmp").glob("*.png"))[3]).convert("RGB").resize((40, 28)))
    Image.fromarray((one * np.array([1.0, 0.6, 0.3])).astype(np.uint8)).save(folder / "colour_wide.jpg", quality=95)
    return folder


def test_answers_equal_predict_and_the_process_never_loads_tensorflow(served, mixed_images, tmp_path):
    run_cli(CLI, "--mode", "predict", "--model-dir", str(served), "--input", str(mixed_images), "--runtime", "onnx",
            "--min-confidence", "0.5", "--output", str(tmp_path / "predict.csv"), "--quiet")
    expected = _csv_rows(tmp_path / "predict.csv")
    files = sorted(mixed_images.iterdir())
    with Server(served, tmp_path, "--min-confidence", "0.5") as server:
        response = server.client.post("/predict", files=[("file", (p.name, p.read_bytes())) for p in files])
        assert response.status_code == 200, response.text
        answers = response.json()["predictions"]
        assert [a["file"] for a in answers] == [p.name for p in files]  # in the order sent
        for answer in answers:
            row = expected[answer["file"]]
            assert [answer["class"], f"{answer['confidence']:.6f}"] == row[1:3]
            assert [x for t in answer["top_k"][1:] for x in (t["class"], f"{t['confidence']:.6f}")] == row[3:]
            assert answer["uncertain"] == (row[1] == "uncertain")
        assert sum(a["uncertain"] for a in answers) not in (0, len(answers))  # --min-confidence took effect
        # One image as the raw body: the same answer.
        raw = server.client.post("/predict", content=files[0].read_bytes(), headers={"content-type": "image/png"})
        assert raw.json()["predictions"][0] | {"file": files[0].name} == answers[0]
        # /health names the weights the export was built from; /metadata the model's inputs and classes.
        digest = hashlib.sha256((served / "best.weights.h5").read_bytes()).hexdigest()
        health = server.client.get("/health").json()
        assert health["status"] == "ready" and health["weights_sha256"] == digest and health["runtime"] == "onnx"
        meta = server.client.get("/metadata").json()
        assert meta["classes"] == json.loads((served / "class_names.json").read_text())
        assert meta["temperature"] == EXPORT_TEMPERATURE and meta["input"]["height"] == 28
        assert "/predict" in server.client.get("/openapi.json").json()["paths"]
        page = server.client.get("/")
        assert page.status_code == 200 and "<script>" in page.text and "http" not in page.text.split("<script>")[1]
        assert "tensorflow" not in server.loaded_libraries()  # ONNX Runtime only
        assert server.stop() == 0
    assert "stopped: " in server.output()


def test_bad_input_is_a_4xx_for_that_request_and_the_server_keeps_serving(served, small_data, tmp_path):
    good = sorted((small_data / "tmp").glob("*.png"))[7].read_bytes()
    bomb = io.BytesIO()
    Image.new("1", (20000, 20000)).save(bomb, format="PNG")  # 400 million pixels in a few kB
    truncated = good[: len(good) // 2]
    with Server(served, tmp_path, "--serve-max-files", "4", "--serve-max-mb", "1") as server:
        c = server.client

        def still_serving():
            answer = c.post("/predict", files={"file": ("seven.png", good)})
            assert answer.status_code == 200 and answer.json()["predictions"][0]["class"] == "7"

        still_serving()
        for name, data, why in (("junk.png", b"not an image at all", "not an image file"),
                                ("cut.png", truncated, "truncated"), ("bomb.png", bomb.getvalue(), "refused"),
                                ("empty.png", b"", "empty file")):
            answer = c.post("/predict", files={"file": (name, data)})
            assert answer.status_code == 422, (name, answer.text)
            assert answer.json()["predictions"][0]["file"] == name and why in answer.json()["predictions"][0]["error"]
            still_serving()
        # One bad file among good ones: the good ones are answered, the bad one named.
        mixed = c.post("/predict", files=[("file", ("a.png", good)), ("file", ("b.png", b"junk")),
                                          ("file", ("c.png", good))]).json()["predictions"]
        assert [m.get("class") for m in mixed] == ["7", None, "7"] and "error" in mixed[1]
        checks = [
            (c.post("/predict", files=[("file", (f"{i}.png", good)) for i in range(5)]), 400, "too many files"),
            (c.post("/predict", content=b"", headers={"content-type": "image/png"}), 400, "empty body"),
            (c.post("/predict", data={"note": "no file"}), 415, "content type"),
            (c.post("/predict", files={"note": (None, "text")}), 400, "no file"),
            (c.post("/predict", content=b"{}", headers={"content-type": "application/json"}), 415, "content type"),
            (c.post("/predict", content=b"\0" * (2 * 2**20), headers={"content-type": "image/png"}), 413, "1 MiB"),
            # The same without a Content-Length (chunked): stopped once the bytes read pass the limit.
            (c.post("/predict", content=iter([b"\0" * 2**16] * 32), headers={"content-type": "image/png"}), 413,
             "1 MiB"),
            (c.post("/predict", content=b"--x\r\nbroken", headers={"content-type": "multipart/form-data; boundary=x"}),
             400, "no file"),
        ]
        for answer, status, words in checks:
            assert answer.status_code == status and words in answer.json()["error"], (status, answer.text)
            still_serving()
        # A file name is only echoed, never used as a path.
        sneaky = c.post("/predict", files={"file": ("../../escaped.png", good)}).json()["predictions"][0]
        assert sneaky["file"] == "../../escaped.png" and not (served.parent.parent / "escaped.png").exists()
        assert server.stop() == 0
    assert "Traceback" not in server.output()


def test_a_token_guards_every_endpoint_but_health(served, small_data, tmp_path):
    good = sorted((small_data / "tmp").glob("*.png"))[1].read_bytes()
    with Server(served, tmp_path, env={"MNIST_FOLDERS_TOKEN": "s3cret"}) as server:
        c = server.client
        assert c.get("/health").status_code == 200
        for path in ("/metadata", "/openapi.json", "/"):
            assert c.get(path).status_code == 401
            assert c.get(path, headers={"authorization": "Bearer wrong"}).status_code == 401
            assert c.get(path, headers={"authorization": "Bearer s3cret"}).status_code == 200
        assert c.get("/").headers["www-authenticate"].startswith("Basic")  # a browser asks for it
        assert c.post("/predict", files={"file": ("1.png", good)}).status_code == 401
        basic = "Basic " + base64.b64encode(b"anyone:s3cret").decode()
        answer = c.post("/predict", files={"file": ("1.png", good)}, headers={"authorization": basic})
        assert answer.status_code == 200 and answer.json()["predictions"][0]["class"] == "1"
        assert server.stop() == 0


def test_concurrent_requests_are_batched_and_sigterm_finishes_them(served, small_data, tmp_path):
    files = sorted((small_data / "tmp").glob("*.png"))
    # The first image of a batch waits up to 1 s for others: 16 requests sent together share few batches,
    # and a SIGTERM sent meanwhile finds them in flight.
    with Server(served, tmp_path, "--serve-wait-ms", "1000") as server:
        results: list = [None] * 16

        def send(i):
            with httpx.Client(base_url=server.url, timeout=60) as client:
                results[i] = client.post("/predict", files={"file": (files[i % 10].name, files[i % 10].read_bytes())})

        threads = [threading.Thread(target=send, args=(i,)) for i in range(16)]
        for t in threads:
            t.start()
        time.sleep(0.5)
        os.killpg(server.process.pid, signal.SIGTERM)
        for t in threads:
            t.join(60)
        assert server.process.wait(timeout=60) == 0
        assert [r.status_code for r in results] == [200] * 16
        assert [r.json()["predictions"][0]["class"] for r in results] == [str(i % 10) for i in range(16)]
        batches = int(re.search(r"16 images predicted in (\d+) batches", server.output()).group(1))
        assert batches <= 3, server.output()
        with pytest.raises(httpx.ConnectError):  # stopped: no longer listening
            httpx.get(server.url + "health", timeout=5)


def test_a_new_training_run_is_served_without_a_restart_and_never_half_read(served, small_data, tmp_path):
    model_dir = tmp_path / "m"
    shutil.copytree(served, model_dir)
    good = sorted((small_data / "tmp").glob("*.png"))[4].read_bytes()
    old = hashlib.sha256((model_dir / "best.weights.h5").read_bytes()).hexdigest()
    with Server(model_dir, tmp_path) as server:
        seen, failures, done = [], [], threading.Event()

        def hammer():
            with httpx.Client(base_url=server.url, timeout=60) as client:
                while not done.is_set():
                    answer = client.post("/predict", files={"file": ("4.png", good)})
                    if answer.status_code != 200:
                        failures.append(answer.text)
                    else:
                        seen.append(answer.json()["weights_sha256"])
                    time.sleep(0.02)

        thread = threading.Thread(target=hammer)
        thread.start()
        try:  # a real training run replaces the model in place (staging, promote, export), while served
            run_cli(CLI, "--mode", "train", "--data-dir", str(small_data), "--model-dir", str(model_dir),
                    "--model", "cnn_64_128_256", "--epochs", "1", "--batch-size", "64", "--seed", "7", "--quiet",
                    export=True)
            new = hashlib.sha256((model_dir / "best.weights.h5").read_bytes()).hexdigest()
            deadline = time.monotonic() + 30
            while server.client.get("/health").json()["weights_sha256"] != new and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(0.3)
        finally:
            done.set()
            thread.join(60)
        assert new != old and not failures
        assert seen[0] == old and seen[-1] == new and set(seen) == {old, new}
        assert seen.index(new) > seen.count(old) - 1  # once the new model answers, the old one never again
        assert "serving the new model" in server.output()
        assert server.stop() == 0


def test_without_an_export_it_serves_with_keras_and_says_so(trained_model, small_data, tmp_path):
    with Server(trained_model, tmp_path) as server:
        assert "serving with Keras (TensorFlow); run --mode export" in server.output()
        answer = server.client.post("/predict", files={"file": ("2.png", sorted((small_data / "tmp").glob("*.png"))[2]
                                                               .read_bytes())})
        assert answer.json()["predictions"][0]["class"] == "2"
        assert server.client.get("/health").json()["runtime"] == "keras"
        assert server.stop() == 0


def test_a_taken_port_or_a_missing_model_is_one_line(served, tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli(CLI, "--mode", "serve", "--model-dir", str(served), "--port", str(port), check=False,
                         process=True)
    assert result.returncode == 2 and result.stderr.strip() == f"error: 127.0.0.1:{port}: Address already in use"
    result = run_cli(CLI, "--mode", "serve", "--model-dir", str(tmp_path / "none"), check=False)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "train first" in result.stderr


def test_the_batcher_groups_concurrent_images_and_bounds_its_queue():
    from mnist_folders.serve.batcher import Batcher, Overloaded

    sizes = []

    def run(images):
        sizes.append(len(images))
        return images.reshape(len(images), -1).sum(axis=1), {"batch": len(images)}

    async def scenario():
        batcher = Batcher(run, max_batch=8, max_wait=0.2, max_queue=12)
        await batcher.start()
        requests = [np.full((n, 2, 2, 1), i, dtype=np.uint8) for i, n in enumerate([1, 2, 3, 1, 5])]
        answers = await asyncio.gather(*(batcher.submit(r) for r in requests))
        with pytest.raises(Overloaded):  # 13 images would wait where 12 may
            await asyncio.gather(batcher.submit(np.zeros((6, 2, 2, 1), np.uint8)),
                                 batcher.submit(np.zeros((7, 2, 2, 1), np.uint8)))
        await batcher.stop()
        return requests, answers

    requests, answers = asyncio.run(scenario())
    for request, (rows, _) in zip(requests, answers):  # each caller gets its own rows back, in order
        assert rows.tolist() == request.reshape(len(request), -1).sum(axis=1).tolist()
    assert sizes[:2] == [7, 5]  # 1+2+3+1 fit a batch of 8; the request of 5 opens the next


@needs_browser
def test_the_page_in_a_real_browser_shows_the_class_of_a_chosen_image(served, mixed_images, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    seven, inverted_two = mixed_images / "sample_7.png", mixed_images / "inverted_sample_2.png"
    with Server(served, tmp_path) as server:
        browser.get(server.url)
        wait = WebDriverWait(browser, 30)
        wait.until(lambda b: "10 classes" in b.find_element(By.ID, "model").text)  # /metadata was read
        browser.find_element(By.ID, "files").send_keys(f"{seven}\n{inverted_two}")  # as a person choosing two
        wait.until(lambda b: len(b.find_elements(By.CSS_SELECTOR, ".result")) == 2)
        rows = browser.find_elements(By.CSS_SELECTOR, ".result")
        assert [r.find_element(By.CLASS_NAME, "name").text for r in rows] == [seven.name, inverted_two.name]
        results = {r.find_element(By.CLASS_NAME, "name").text: r for r in rows}
        expected = {p["file"]: p for p in server.client.post("/predict", files=[
            ("file", (p.name, p.read_bytes())) for p in (seven, inverted_two)]).json()["predictions"]}
        for name, row in results.items():
            labels = [e.text for e in row.find_elements(By.CSS_SELECTOR, ".bar .label")]
            values = [e.text for e in row.find_elements(By.CSS_SELECTOR, ".bar .value")]
            assert labels[0] == expected[name]["class"] == {"sample_7.png": "7", "inverted_sample_2.png": "2"}[name]
            assert values[0] == f"{100 * expected[name]['confidence']:.1f} %"
            assert len(labels) == 3  # the top 3, best first
        assert browser.find_element(By.ID, "status").text == "done: 2 images"
        shot = tmp_path / "serve_page.png"
        browser.save_screenshot(str(shot))
        with Image.open(shot) as picture:
            assert picture.size[0] == 1280
        if os.environ.get("MNIST_FOLDERS_SCREENSHOTS"):  # where a person looks at it (docs/serve_page.png)
            shutil.copy(shot, os.environ["MNIST_FOLDERS_SCREENSHOTS"])
        assert server.stop() == 0
