#!/usr/bin/env python3
"""Load on ``--mode serve``: throughput, latency, errors and memory of the HTTP
server under 1, 8 and 32 concurrent clients, beside the in-process and CLI
prediction of the same images.

The script starts the server as a subprocess on 127.0.0.1 (ONNX Runtime, the
default ``--serve-*`` settings) and drives it from one asyncio process: ``c``
workers, each with its own ``httpx.AsyncClient`` (one connection, as ``c``
independent clients would have; one shared client's connection pool capped
the throughput at 32 workers, encode/httpx#3215), each send one image per request
(multipart, field ``file``) until the phase's request count is reached or its
time cap passes; each phase starts with a short untimed warm-up. Client and
server share this machine's cores, so the figures are what one machine
serving itself gives, not the server's alone; the CPU columns show the split.

Images: 500 distinct MNIST test digits as exported (28x28 grayscale PNG, about
0.3 KB) and the same digits upscaled with Pillow to 224x224 RGB JPEG (quality
90, about 4 KB), which the server decodes and shrinks back to 28x28.

Table 1 (load), one row per image set and concurrency:
- requests: requests timed (the warm-up excluded); c: concurrent clients;
- req/s: requests answered per wall second; images/s: images predicted per
  second (one image per request, so the same unless requests failed);
- p50/p95/p99 ms: request latency, send to full answer, in milliseconds;
- errors: answers other than HTTP 200 with one prediction, plus exceptions
  (timeouts, refused connections); must be 0;
- differs from predict: answers whose class is not the one the library's
  ``predict`` gives the same file (the server claims equal answers; must be 0);
- accuracy %: predictions equal to the digit's label (a check that the
  answers are real predictions, not a benchmark figure);
- server / client / other CPU %: CPU seconds of the server process, of this
  process and of everything else on the machine (``/proc/stat`` less those
  two) per wall second, in percent of one core (the machine has
  ``cores x 100``); other CPU over a few percent means the figures are
  contended by another workload.

Table 2 (malformed traffic): the 28x28 set where every 10th request is
malformed, in turn a multipart file ``junk.png`` of random bytes (expect 422),
an empty raw body with ``Content-Type: image/png`` (expect 400) and a JSON body
(expect 415). good 200: good requests answered HTTP 200 with a prediction, of
those sent (must be all); malformed as expected: malformed requests answered
with the expected status, of those sent; errors: the good requests that were
not; req/s and p99 ms over all requests; other CPU % as above.

Memory: VmRSS and VmHWM of the server process (MiB, from
``/proc/<pid>/status``) after the warm-up, after ``--rss-after`` requests
in all (an extra 28x28 phase at c=32 tops up the load table's count), and at
the end (after the malformed traffic).

Ceiling (table 3): images/s of the library's ``predict`` in this process
(runtime onnx, decoding + model + CSV; model load included, process start
excluded) and of ``mnist_keras.py --mode predict`` (process start included)
on the same 500-file folders, each the median of ``--repeats`` runs (min-max),
measured before the server starts, beside the server's images/s.

    python bench/serve_load.py                       # exports MNIST and trains a model in a temporary folder first
    python bench/serve_load.py --model-dir M [--data-dir D] [--requests 3000] [--phase-seconds 60]

``--requests N``: timed requests per phase at c=8 and c=32 (N/3 at c=1).
Loopback only; nothing is downloaded. Results: bench/results/serve_load.json
and .md.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import REPO, fmt, machine_line, repeat, save

CONCURRENCIES = (1, 8, 32)
SET_SIZE = 500
SERVING = re.compile(r"at (http://\S+/) ; Ctrl-C or SIGTERM stops")
STOPPED = re.compile(r"stopped: (\d+) images predicted in (\d+) batches")
# Idle connections expire on the client well before the server closes them (75 s, KEEP_ALIVE_SECONDS): with
# uvicorn's default of 5 s and httpx's of 5 s, a request sometimes went out on a connection being closed.
KEEPALIVE_S = 2
JUNK = random.Random(0).randbytes(2048)
MALFORMED = (  # (name, request arguments, expected status), in turn for every 10th request
    ("junk.png", {"files": {"file": ("junk.png", JUNK, "image/png")}}, 422),
    ("empty body", {"content": b"", "headers": {"content-type": "image/png"}}, 400),
    ("JSON body", {"json": {"image": "not one"}}, 415),
)


def run_quiet(args: list[str]) -> None:
    subprocess.run([sys.executable, *args], check=True, cwd=REPO, capture_output=True)


def prepare_model(model_dir: Path | None, data_dir: Path | None, work: Path) -> tuple[Path, Path]:
    """The model and data folders: exports MNIST (5,000 images per split) and trains one epoch where not given."""
    if data_dir is None:
        data_dir = work / "data"
        run_quiet(["parse_mnist.py", "--out", str(data_dir), "--limit", "5000", "--quiet"])
    if model_dir is None:
        model_dir = work / "model"
        started = time.perf_counter()
        run_quiet(["mnist_keras.py", "--mode", "train", "--data-dir", str(data_dir), "--model-dir", str(model_dir),
                   "--model", "cnn_64_128_256", "--epochs", "1", "--batch-size", "64", "--quiet"])
        print(f"trained {model_dir} in {time.perf_counter() - started:.0f} s", flush=True)
    return model_dir, data_dir


def image_sets(data_dir: Path, work: Path) -> dict[str, tuple[Path, list[tuple[str, bytes]]]]:
    """Two folders of the same ``SET_SIZE`` test digits, named ``<digit>_<index>``: the PNGs as exported and
    224x224 RGB JPEGs; each with its files' ``(name, bytes)``."""
    from PIL import Image

    tests = sorted((data_dir / "test").rglob("*.png"))
    chosen = tests[:: len(tests) // SET_SIZE][:SET_SIZE]
    png, jpeg = work / "png28", work / "jpeg224"
    png.mkdir()
    jpeg.mkdir()
    for path in chosen:
        name = f"{path.parent.name}_{path.stem}"
        shutil.copy(path, png / f"{name}.png")
        with Image.open(path) as image:
            image.convert("RGB").resize((224, 224), Image.BICUBIC).save(jpeg / f"{name}.jpg", quality=90)
    sets = {}
    for label, folder in (("28x28 PNG", png), ("224x224 JPEG", jpeg)):
        blobs = [(p.name, p.read_bytes()) for p in sorted(folder.iterdir())]
        random.Random(0).shuffle(blobs)  # the test tree is sorted by digit: mix them in every phase
        sets[label] = (folder, blobs)
    return sets


def start_server(model_dir: Path, log: Path, timeout: float = 120) -> tuple[subprocess.Popen, str, str]:
    """``--mode serve`` on a free loopback port, its output to ``log``: the process, its URL and first line."""
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, str(REPO / "mnist_keras.py"), "--mode", "serve", "--model-dir",
                                 str(model_dir), "--runtime", "onnx", "--host", "127.0.0.1", "--port", "0"],
                                stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        found = SERVING.search(text)
        if found:
            return proc, found.group(1), text.splitlines()[0]
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}:\n{text}")
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"no serving line within {timeout:.0f} s:\n{log.read_text(errors='replace')}")


def memory_mib(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM of ``pid`` in MiB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return {key: int(fields[key].split()[0]) / 1024 for key in ("VmRSS", "VmHWM")}


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid``, all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_cpu_seconds() -> float:
    """CPU seconds all cores spent busy since boot (``/proc/stat``: all but idle and iowait)."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, Path("/proc/stat").read_text().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def cpu_split(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds so far of each named process and of the whole machine (``machine``)."""
    return {**{name: cpu_seconds(pid) for name, pid in pids.items()}, "machine": machine_cpu_seconds()}


class Load:
    """Phases of requests to the server, and a count of the requests sent."""

    def __init__(self, server_pid: int, reference: dict[str, str]):
        self.reference, self.sent = reference, 0
        self.warm_ups = {"errors": 0, "unexpected": []}  # the untimed warm-ups' errors count too
        self.pids = {"server": server_pid, "client": os.getpid()}

    async def phase(self, blobs: list[tuple[str, bytes]], clients: list, count: int, cap_s: float,
                    malformed: bool = False) -> dict:
        """``count`` requests (fewer if ``cap_s`` passes first) from one worker per entry of ``clients``
        (httpx.AsyncClient; the same one repeated, or one each); every 10th malformed when ``malformed``.
        Latencies, outcomes and CPU use of the phase."""
        numbers = iter(range(count))
        latencies: list[float] = []
        good = collections.Counter()  # the unexpected outcome, or (right class?, same as predict?)
        bad = collections.Counter()  # (kind, "expected" or the outcome)
        samples: list[str] = []  # the first unexpected answers, for the report
        deadline = time.perf_counter() + cap_s

        async def worker(client) -> None:
            for i in numbers:
                if time.perf_counter() > deadline:
                    return
                if malformed and i % 10 == 9:
                    kind, request, expected = MALFORMED[(i // 10) % len(MALFORMED)]
                    label = None
                else:
                    kind, expected = "good", 200
                    name, data = blobs[i % len(blobs)]
                    request, label = {"files": {"file": (name, data)}}, name
                started = time.perf_counter()
                try:
                    answer = await client.post("/predict", **request)
                    outcome = self._outcome(answer, expected, label)
                except Exception as exc:  # noqa: BLE001 - every failure is counted and shown
                    outcome = f"{type(exc).__name__}: {exc}"
                latencies.append(time.perf_counter() - started)
                self.sent += 1
                if label is None:
                    bad[(kind, outcome)] += 1
                else:
                    good[outcome] += 1
                if isinstance(outcome, str) and outcome != "expected" and len(samples) < 5:
                    samples.append(f"{kind}: {outcome}")

        cpu = cpu_split(self.pids)
        started = time.perf_counter()
        await asyncio.gather(*map(worker, clients))
        wall = time.perf_counter() - started
        cpu = {name: (value - cpu[name]) / wall * 100 for name, value in cpu_split(self.pids).items()}
        ms = np.array(latencies) * 1e3
        answers = {key: n for key, n in good.items() if isinstance(key, tuple)}
        answered = sum(answers.values())
        return {"concurrency": len(clients), "planned": count, "requests": len(latencies), "seconds": wall,
                "capped": len(latencies) < count, "requests_per_s": len(latencies) / wall,
                "images_per_s": answered / wall,
                **{f"p{q}_ms": float(np.percentile(ms, q)) for q in (50, 95, 99)},
                "good_sent": sum(good.values()), "good_ok": answered, "errors": sum(good.values()) - answered,
                "accuracy": answered and sum(n for (right, _), n in answers.items() if right) / answered,
                "differs_from_predict": sum(n for (_, same), n in answers.items() if not same),
                "malformed_sent": sum(bad.values()),
                "malformed_expected": sum(n for (_, outcome), n in bad.items() if outcome == "expected"),
                "malformed_outcomes": {f"{kind}: {outcome}": n for (kind, outcome), n in bad.items()},
                "server_cpu_pct": cpu["server"], "client_cpu_pct": cpu["client"],
                "other_cpu_pct": cpu["machine"] - cpu["server"] - cpu["client"], "unexpected": samples}

    async def warm_up(self, blobs: list[tuple[str, bytes]], clients: list) -> None:
        result = await self.phase(blobs, clients, max(20, 2 * len(clients)), 30)
        self.warm_ups["errors"] += result["errors"]
        self.warm_ups["unexpected"] += result["unexpected"]

    def _outcome(self, answer, expected: int, name: str | None) -> str | tuple[bool, bool]:
        """For a good request (file ``name``) answered with one prediction: (its class is the digit in the
        name, it is the class --mode predict gave); ``expected`` for a malformed one answered with its status;
        else the status and the start of the body."""
        if answer.status_code == expected:
            if name is None:
                return "expected"
            predictions = answer.json().get("predictions", [])
            if len(predictions) == 1 and "class" in predictions[0]:
                found = predictions[0]["class"]
                return found == name.split("_")[0], found == self.reference[name]
        return f"HTTP {answer.status_code} {answer.text[:200]!r}"


async def drive(url: str, pid: int, sets: dict, reference: dict[str, str], counts: dict[int, int], cap_s: float,
                rss_after: int) -> dict:
    """All phases against the server at ``url``: the load table, the memory readings, the malformed table.
    ``reference``: the class ``--mode predict`` gives each file."""
    import httpx

    top = max(CONCURRENCIES)
    load = Load(pid, reference)
    png = sets["28x28 PNG"][1]
    clients = [httpx.AsyncClient(base_url=url, timeout=30, limits=httpx.Limits(keepalive_expiry=KEEPALIVE_S))
               for _ in range(top)]  # one per worker: c independent clients
    try:
        for _, blobs in sets.values():
            await load.warm_up(blobs, clients)
        memory = {"after warm-up": {"requests": load.sent, **memory_mib(pid)}}
        rows = []
        for label, (_, blobs) in sets.items():
            for c in CONCURRENCIES:
                await load.warm_up(blobs, clients[:c])
                rows.append({"set": label, **await load.phase(blobs, clients[:c], counts[c], cap_s)})
                print(_load_row(rows[-1]), flush=True)
        extra = []
        while load.sent < rss_after:  # top up to rss_after requests, c=32
            extra.append(await load.phase(png, clients, rss_after - load.sent, cap_s))
            if extra[-1]["requests"] == 0:
                break
        memory[f"after {rss_after:,} requests"] = {"requests": load.sent, **memory_mib(pid)}
        malformed = []
        for c in CONCURRENCIES:
            await load.warm_up(png, clients[:c])
            malformed.append(await load.phase(png, clients[:c], counts[c], cap_s, malformed=True))
            print(_malformed_row(malformed[-1]), flush=True)
        memory["at the end"] = {"requests": load.sent, **memory_mib(pid)}
    finally:
        await asyncio.gather(*(client.aclose() for client in clients))
    return {"load": rows, "top_up": extra, "malformed": malformed, "memory": memory, "requests_sent": load.sent,
            "warm_up": load.warm_ups}


def stop_server(proc: subprocess.Popen, log: Path) -> dict:
    """SIGTERM, then the exit status (None if it had to be killed after 60 s) and the stop line (images,
    batches) from the log."""
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        code = None
    text = log.read_text(errors="replace")
    found = STOPPED.search(text)
    images, batches = (int(found.group(1)), int(found.group(2))) if found else (0, 0)
    return {"exit_code": code, "line": found.group(0) if found else None, "images": images, "batches": batches,
            "mean_batch": images / batches if batches else None, "log_tail": text.splitlines()[-10:]}


def ceilings(model_dir: Path, sets: dict, work: Path, repeats: int) -> tuple[dict, dict[str, str]]:
    """Images/s of the library's ``predict`` (in this process) and of ``--mode predict`` (a new process) on
    each set's folder: median, min and max of ``repeats`` runs; and the class ``predict`` gives each file."""
    from mnist_folders.artifacts import setting_for_model
    from mnist_folders.serve.prediction import predict

    output = work / "predictions.csv"
    results, classes = {}, {}
    for label, (folder, blobs) in sets.items():
        setting = setting_for_model({"model_dir": str(model_dir), "predict_dir": str(folder), "runtime": "onnx"})

        def library() -> float:
            started = time.perf_counter()
            predict(setting, output, progress=False)
            return len(blobs) / (time.perf_counter() - started)

        def cli() -> float:
            started = time.perf_counter()
            run_quiet(["mnist_keras.py", "--mode", "predict", "--model-dir", str(model_dir), "--input", str(folder),
                       "--runtime", "onnx", "--output", str(output), "--quiet"])
            return len(blobs) / (time.perf_counter() - started)

        warm = predict(setting, output, progress=False)  # warms the page cache and ONNX Runtime once
        classes.update({Path(p.path).name: p.class_name for p in warm.predictions})
        results[label] = {"library": repeat(library, repeats), "cli": repeat(cli, repeats)}
    return results, classes


def _load_row(r: dict) -> str:
    capped = " (capped)" if r["capped"] else ""
    return (f"| {r['set']} | {r['concurrency']} | {r['requests']:,}{capped} | {r['requests_per_s']:.0f} | "
            f"{r['images_per_s']:.0f} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | {r['p99_ms']:.1f} | {r['errors']} | "
            f"{r['differs_from_predict']} | {r['accuracy'] * 100:.1f} | {r['server_cpu_pct']:.0f} | "
            f"{r['client_cpu_pct']:.0f} | {r['other_cpu_pct']:.0f} |")


def _malformed_row(r: dict) -> str:
    capped = " (capped)" if r["capped"] else ""
    return (f"| {r['concurrency']} | {r['requests']:,}{capped} | {r['good_ok']:,} / {r['good_sent']:,} | "
            f"{r['malformed_expected']:,} / {r['malformed_sent']:,} | {r['errors']} | {r['requests_per_s']:.0f} | "
            f"{r['p99_ms']:.1f} | {r['other_cpu_pct']:.0f} |")


def _contention(phases: list[dict], limit: float = 20) -> str:
    others = [r["other_cpu_pct"] for r in phases]
    contended = sum(other > limit for other in others)
    return (f"Other workloads used {min(others):.0f} to {max(others):.0f} % CPU (of one core) during the timed "
            f"phases" + (f"; {contended} of {len(others)} phases over {limit:g} %: their figures understate the "
                         "server and their latencies overstate it" if contended else "") + ".")


def report(results: dict, stop: dict, ceiling: dict, args: argparse.Namespace, rerun: str, wall: float) -> str:
    """The Markdown of the three tables, the memory readings and the stop line."""
    top_up = results["top_up"]
    lines = [f"Date: {time.strftime('%Y-%m-%d')}; run time {wall / 60:.1f} min; server: `--mode serve --runtime "
             "onnx`, default `--serve-batch 64 --serve-wait-ms 2`, on 127.0.0.1; client: this script on the same "
             "machine, one httpx.AsyncClient per concurrent worker.",
             f"Rerun: `{rerun}`" + ("" if args.requests == 3000 else
                                    " (counts reduced from the default 3,000 requests per phase)"), "",
             "Load: one image per request (multipart), 500 distinct MNIST test digits per set", "",
             "| set | c | requests | req/s | images/s | p50 ms | p95 ms | p99 ms | errors | differs from predict "
             "| accuracy % | server CPU % | client CPU % | other CPU % |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
             *map(_load_row, results["load"]), "",
             "Malformed traffic: 28x28 PNG set, every 10th request junk.png (422), an empty image/png body (400) "
             "or a JSON body (415), in turn", "",
             "| c | requests | good 200 | malformed as expected | errors | req/s | p99 ms | other CPU % |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |", *map(_malformed_row, results["malformed"]),
             "", _contention(results["load"] + results["malformed"]), "",
             "Server memory (MiB)", "", "| when | requests sent | VmRSS | VmHWM |", "| --- | ---: | ---: | ---: |"]
    lines += [f"| {when} | {m['requests']:,} | {m['VmRSS']:.0f} | {m['VmHWM']:.0f} |"
              for when, m in results["memory"].items()]
    first, *_, last = results["memory"].values()
    lines += ["", f"RSS growth from the warm-up to the end: {last['VmRSS'] - first['VmRSS']:+.1f} MiB "
                  f"({last['requests'] - first['requests']:,} requests). Top-up to {args.rss_after:,}: "
                  f"{sum(r['requests'] for r in top_up):,} requests, 28x28 PNG, c=32, "
                  f"{sum(r['errors'] for r in top_up)} errors. Errors in the untimed warm-ups: "
                  f"{results['warm_up']['errors']}.", "",
              f"Ceiling: images/s on the same 500-file folders, median ({args.repeats} runs, min-max), measured "
              "before the server started", "",
              "| set | server c=1 | server c=8 | server c=32 "
              "| library predict (in process) | --mode predict (CLI, process start included) "
              "| best server / library |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for label, figures in ceiling.items():
        served = [f"{r['images_per_s']:.0f}" for r in results["load"] if r["set"] == label]
        best = max(r["images_per_s"] for r in results["load"] if r["set"] == label)
        lines.append(f"| {label} | {' | '.join(served)} | "
                     f"{fmt(figures['library'], 0)} | {fmt(figures['cli'], 0)} | "
                     f"{best / figures['library']['median']:.2f}x |")
    unexpected = [f"{r.get('set', '28x28 PNG, malformed')} c={r['concurrency']}: {answer}"
                  for r in results["load"] + results["top_up"] + results["malformed"] for answer in r["unexpected"]]
    unexpected += [f"warm-up: {answer}" for answer in results["warm_up"]["unexpected"]]
    lines += ["", "Unexpected answers (the first 5 of each phase): " + ("; ".join(unexpected) or "none")]
    mean = f"{stop['mean_batch']:.2f}" if stop["mean_batch"] else "n/a"
    lines += ["", f"Server stop (SIGTERM): exit code {stop['exit_code']}; `{stop['line']}` (mean {mean} images "
                  "per forward pass over the whole run, c=1 phases and warm-ups included)"]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, help="a trained model with export/model.onnx "
                                                       "(default: train one in a temporary folder)")
    parser.add_argument("--data-dir", type=Path, help="an exported MNIST tree (default: export 5,000 per split "
                                                      "in a temporary folder)")
    parser.add_argument("--requests", type=int, default=3000, help="timed requests per phase at c=8 and 32 "
                                                                   "(a third at c=1)")
    parser.add_argument("--phase-seconds", type=float, default=60, help="time cap of each phase")
    parser.add_argument("--rss-after", type=int, default=20000, help="requests before the second memory reading")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    started = time.perf_counter()
    counts = {c: max(1, args.requests // 3) if c == 1 else args.requests for c in CONCURRENCIES}
    with tempfile.TemporaryDirectory(prefix="serve_load-") as tmp:
        work = Path(tmp)
        model_dir, data_dir = prepare_model(args.model_dir, args.data_dir, work)
        sets = image_sets(data_dir, work)
        ceiling, reference = ceilings(model_dir, sets, work, args.repeats)
        log = work / "server.log"
        proc, url, first_line = start_server(model_dir, log)
        print(first_line, flush=True)
        try:
            results = asyncio.run(drive(url, proc.pid, sets, reference, counts, args.phase_seconds,
                                        args.rss_after))
        finally:
            stop = stop_server(proc, log)
            print(f"server exit code {stop['exit_code']}; {stop['line']}", flush=True)
            if stop["exit_code"] != 0 or not stop["line"]:
                print("server log tail:", *stop["log_tail"], sep="\n", flush=True)
    wall = time.perf_counter() - started
    defaults = vars(parser.parse_args([]))
    rerun = " ".join(["python bench/serve_load.py"] + [f"--{name.replace('_', '-')} {value}" for name, value
                                                       in vars(args).items() if value != defaults[name]])
    save("serve_load", machine_line(), report(results, stop, ceiling, args, rerun, wall), {
        "date": time.strftime("%Y-%m-%d"), "wall_seconds": wall, "serving": first_line, "rerun": rerun,
        "model_dir": str(args.model_dir) if args.model_dir else "trained here (temporary)", **results,
        "stop": stop, "ceiling": ceiling})
    phases = results["load"] + results["top_up"] + results["malformed"]
    ok = stop["exit_code"] == 0 and not results["warm_up"]["errors"] and not any(r["errors"] for r in phases)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
