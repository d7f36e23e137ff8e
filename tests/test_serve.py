"""Serving a run over HTTP (img2num.serve, img2num.batching): the API through a real client on a
loopback port, its limits and bad input, a bounded load, the command, and the web page in
headless Chromium."""

from __future__ import annotations

import dataclasses
import http.client
import io
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import chromium, needs, one_line_error, run_cli
from img2num.config import ServeConfig
from img2num.errors import Img2NumError
from img2num.batching import MicroBatcher, QueueFull
from img2num.serve import multipart_body, serving

# Small limits, so that each can be passed with small requests.
LIMITS = ServeConfig(port=0, max_upload_mb=0.05, max_pixels=10_000, max_images=8, max_batch=8, queue_size=16, units="tenths")
TIMEOUT = 20


def call(url: str, body: bytes | None = None, content_type: str | None = None, method: str | None = None):
    """(status, JSON answer, headers) of one request; 4xx and 5xx answers are returned too."""
    request = urllib.request.Request(url, data=body, method=method)
    if content_type:
        request.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            return response.status, json.loads(response.read()), response.headers
    except urllib.error.HTTPError as error:
        text = error.read().decode()
        assert "Traceback" not in text
        return error.code, json.loads(text), error.headers


def post_files(url: str, files: list[tuple[str, bytes]]):
    return call(url + "/predict", *multipart_body(files))


def png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def cli_predictions(capsys, run, paths) -> dict[str, float]:
    status, out, _ = run_cli(capsys, "predict", run.path, *paths)
    assert status == 0
    return {Path(row.split(",")[0]).name: float(row.split(",")[1]) for row in out.splitlines()[1:]}


@pytest.fixture(scope="module")
def photos(photo_csv) -> list[Path]:
    return sorted((photo_csv.parent / "img").glob("*.png"))[:8]


@pytest.fixture(scope="module")
def server(image_run):
    with serving(image_run, LIMITS) as url:
        yield url


def test_predictions_equal_img2num_predict(server, image_run, photos, capsys):
    expected = cli_predictions(capsys, image_run, photos[:5])
    status, answer, _ = post_files(server, [(path.name, path.read_bytes()) for path in photos[:5]])
    assert status == 200 and (answer["run"], answer["model"], answer["units"]) == ("mlp", "mlp", "tenths")
    assert {item["file"]: item["prediction"] for item in answer["results"]} == expected
    # One image as the raw body, named by ?name=.
    status, answer, _ = call(server + "/predict?name=one.png", photos[2].read_bytes(), "image/png")
    assert status == 200 and answer["results"] == [{"file": "one.png", "prediction": expected[photos[2].name]}]


def test_bad_images_are_answered_beside_good_ones(server, photos):
    files = [("a.png", photos[0].read_bytes()), ("notes.txt", b"hello"), ("b.png", photos[1].read_bytes())]
    status, answer, _ = post_files(server, files)
    assert status == 200
    assert [sorted(item) for item in answer["results"]] == [["file", "prediction"], ["error", "file"], ["file", "prediction"]]
    assert answer["results"][1] == {"file": "notes.txt", "error": "not an image file (Pillow cannot identify it)"}


def test_every_bad_request_is_a_json_4xx_and_the_server_goes_on(server, photos):
    good = photos[0].read_bytes()
    wrong_size = png(np.zeros((10, 10, 3), np.uint8))
    over_pixels = png(np.zeros((120, 120, 3), np.uint8))  # 14,400 pixels, over the limit of 10,000
    too_large = np.random.default_rng(0).integers(0, 256, 60_000, dtype=np.uint8).tobytes()  # over 0.05 MB
    bad = [
        (multipart_body([("x.txt", b"not an image")]), 422, "x.txt: not an image file"),
        (multipart_body([("t.png", good[:80])]), 422, "t.png: unreadable or truncated image"),
        (multipart_body([("w.png", wrong_size)]), 422, "w.png: image is 10x10; expected 12x12"),
        (multipart_body([("p.png", over_pixels)]), 422, "p.png: image is 120x120 = 14400 pixels, over the limit of 10000"),
        (multipart_body([("e.png", b"")]), 422, "e.png: empty file"),
        (multipart_body([("x.txt", b"a"), ("y.txt", b"b")]), 422, "none of the 2 images could be used"),
        (multipart_body([("../../etc/passwd", b"x")]), 422, "../../etc/passwd: not an image file"),
        ((too_large, "application/octet-stream"), 413, "over the upload limit of 52428 bytes"),
        (multipart_body([("big.bin", too_large)]), 413, "over the upload limit"),
        (multipart_body([(f"{i}.png", good) for i in range(9)]), 400, "Too many files"),
        ((b"", "image/png"), 422, "empty request"),
        ((b"--x\r\nnonsense", "multipart/form-data; boundary=x"), 422, "no image file in the form"),
        ((b"field=1", "multipart/form-data"), 400, "boundary"),
    ]
    for (body, content_type), expected_status, message in bad:
        status, answer, _ = call(server + "/predict", body, content_type)
        assert status == expected_status and message in answer["error"], (message, status, answer)
        assert call(server + "/health")[1]["status"] == "ok"
    # A chunked body states no length: it is cut off as soon as it passes the limit.
    host, port = server.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=TIMEOUT)
    connection.request("POST", "/predict", (too_large[i : i + 8192] for i in range(0, len(too_large), 8192)),
                       {"Content-Type": "image/png"}, encode_chunked=True)
    response = connection.getresponse()
    assert response.status == 413 and "over the upload limit" in json.loads(response.read())["error"]
    connection.close()
    assert call(server + "/predict", method="GET")[0] == 405
    assert call(server + "/nowhere")[:2] == (404, {"error": "Not Found"})
    status, answer, _ = post_files(server, [("good.png", good)])
    assert status == 200 and np.isfinite(answer["results"][0]["prediction"])


def test_info_health_page_and_api_documentation(server):
    status, info, _ = call(server + "/info")
    assert status == 200 and (info["model"], info["run"], info["units"]) == ("mlp", "mlp", "tenths")
    assert info["input"] == {"height": 12, "width": 12, "channels": 3, "dtype": "uint8", "resize": "none"}
    assert set(info["metrics"]) >= {"train", "val"} and info["versions"]["img2num"] == "0.1.0"
    assert info["limits"]["max_images"] == 8 and info["limits"]["host"] == "127.0.0.1"
    assert call(server + "/health")[:2][0] == 200
    with urllib.request.urlopen(server + "/", timeout=TIMEOUT) as response:
        page = response.read().decode()
        assert "<title>img2num</title>" in page and "default-src 'self'" in response.headers["Content-Security-Policy"]
    assert "http://" not in page and "https://" not in page  # nothing loaded from elsewhere
    schema = call(server + "/openapi.json")[1]
    assert {"/predict", "/info", "/health"} <= set(schema["paths"])
    with urllib.request.urlopen(server + "/docs", timeout=TIMEOUT) as response:
        assert response.status == 200 and b"swagger" in response.read().lower()


def test_bounded_load_loses_no_request(server, image_run, photos):
    expected = dict(zip([path.name for path in photos], image_run.predict(np.stack([np.asarray(Image.open(path)) for path in photos]))))
    rng = np.random.default_rng(7)
    plan = [[photos[i] for i in rng.choice(len(photos), size=rng.integers(1, 3), replace=False)] for _ in range(160)]
    start = time.monotonic()

    def send(paths):
        return post_files(server, [(path.name, path.read_bytes()) for path in paths])

    with ThreadPoolExecutor(4) as pool:  # 4 concurrent clients, 160 requests
        answers = list(pool.map(send, plan, timeout=120))
    assert time.monotonic() - start < 120
    for paths, (status, answer, _) in zip(plan, answers):
        assert status == 200 and [item["file"] for item in answer["results"]] == [path.name for path in paths]
        got = [item["prediction"] for item in answer["results"]]
        # Another batch shape may change the last bits; a mix-up would change far more.
        np.testing.assert_allclose(got, [expected[path.name] for path in paths], rtol=1e-5, atol=1e-5)


def test_a_full_queue_answers_503_and_then_serves(image_run, photos):
    entered, release = threading.Event(), threading.Event()
    blocking = False
    original = image_run.predict

    def slow_predict(x, source="images"):
        if blocking:
            entered.set()
            release.wait(TIMEOUT)
        return original(x, source)

    run = dataclasses.replace(image_run)
    run.predict = slow_predict
    config = dataclasses.replace(LIMITS, max_batch=1, batch_wait_ms=0, queue_size=2, max_images=2)
    image = photos[0].read_bytes()
    with serving(run, config) as url, ThreadPoolExecutor(2) as pool:
        blocking = True
        first = pool.submit(post_files, url, [("a.png", image)])  # held inside the model call
        assert entered.wait(TIMEOUT)
        second = pool.submit(post_files, url, [("b.png", image), ("c.png", image)])  # fills the queue
        deadline = time.monotonic() + TIMEOUT
        while call(url + "/health")[1]["waiting"] < 2:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        status, answer, headers = post_files(url, [("d.png", image)])
        assert status == 503 and "server busy: 2 images are waiting" in answer["error"]
        assert headers["Retry-After"] == "1"
        release.set()
        assert first.result(TIMEOUT)[0] == 200 and second.result(TIMEOUT)[0] == 200
        assert post_files(url, [("e.png", image)])[0] == 200


def test_batcher_gathers_concurrent_requests_into_one_call():
    calls = []

    def predict(x):
        calls.append(len(x))
        return x.reshape(len(x), -1).sum(axis=1).astype(np.float32)

    batcher = MicroBatcher(predict, max_batch=8, wait_s=0.5, capacity=8)
    try:
        futures = [batcher.submit(np.full((n, 1, 1, 1), n, np.float32)) for n in (1, 2, 3)]
        with pytest.raises(QueueFull, match="6 images are waiting"):
            batcher.submit(np.zeros((3, 1, 1, 1), np.float32))
        assert [list(future.result(TIMEOUT)) for future in futures] == [[1], [2, 2], [3, 3, 3]]
        assert calls == [6]  # one model call for the three requests
    finally:
        batcher.close()


def test_non_finite_numbers_are_answered_as_null(image_run, photos):
    run = dataclasses.replace(image_run, metrics={"test": {"mse": 1.0, "r2": float("nan")}})
    run.predict = lambda x, source="images": np.full(len(x), np.inf, np.float32)
    with serving(run, dataclasses.replace(LIMITS, max_batch=1, max_images=1)) as url:
        assert call(url + "/info")[1]["metrics"] == {"test": {"mse": 1.0, "r2": None}}
        status, answer, _ = post_files(url, [("a.png", photos[0].read_bytes())])
        assert status == 200 and answer["results"] == [{"file": "a.png", "prediction": None}]


def test_bad_serve_options_are_one_line_errors(capsys, image_run, tmp_path):
    with pytest.raises(Img2NumError, match="max_images \\(20\\) must not exceed queue_size \\(10\\)"):
        ServeConfig(max_images=20, queue_size=10)
    status, _, err = run_cli(capsys, "serve", tmp_path / "missing")
    assert status == 1 and "no such run folder" in one_line_error(err)
    status, _, err = run_cli(capsys, "serve", image_run.path, "--max-images", "5000")
    assert status == 1 and "must not exceed queue_size" in one_line_error(err)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        status, _, err = run_cli(capsys, "serve", image_run.path, "--port", port)
        assert status == 1 and f"cannot listen on 127.0.0.1:{port} (" in one_line_error(err)


def test_serve_command_says_where_and_stops_on_ctrl_c(image_run):
    import signal

    command = [sys.executable, "-m", "img2num", "serve", str(image_run.path), "--port", "0", "--max-batch", "2"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = process.stdout.readline()
        assert first.startswith("img2num: serving run mlp (mlp, 12x12x3) at http://127.0.0.1:"), first + process.stderr.read()
        assert "only this machine can connect" in process.stdout.readline()
        url = first.split(" at ")[1].strip().rstrip("/")
        assert call(url + "/health")[1]["status"] == "ok"
        process.send_signal(signal.SIGINT)
        assert process.wait(TIMEOUT) == 0 and process.stdout.read().splitlines()[-1] == "img2num: stopped"
    finally:
        process.kill()
        process.wait()


@needs("chromium", "selenium")
def test_web_page_in_headless_chromium(server, image_run, photos, capsys, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser, driver_path = chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions"):
        options.add_argument(flag)
    # With the driver's path given, Selenium Manager (which would look for one online) never runs.
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    try:
        driver.set_page_load_timeout(TIMEOUT)
        driver.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(tmp_path)})
        driver.get(server + "/")
        wait = WebDriverWait(driver, TIMEOUT)
        wait.until(lambda d: "model mlp" in d.find_element(By.ID, "about").text)
        chosen = [photos[3], photos[6]]
        driver.find_element(By.ID, "files").send_keys("\n".join(str(path) for path in chosen))
        wait.until(lambda d: "2 image(s) predicted" in d.find_element(By.ID, "status").text)
        rows = driver.find_elements(By.CSS_SELECTOR, "#results tbody tr")
        shown = {row.find_element(By.CLASS_NAME, "file").text: float(row.find_element(By.CLASS_NAME, "prediction").text) for row in rows}
        assert shown == cli_predictions(capsys, image_run, chosen)
        assert len(driver.find_elements(By.CSS_SELECTOR, "#cards .card img")) == 2
        driver.find_element(By.ID, "download").click()
        csv = tmp_path / "predictions.csv"
        wait.until(lambda d: csv.exists() and csv.read_text().count("\n") == 3)
        lines = csv.read_text().splitlines()
        assert lines[0] == "file,prediction,error"
        assert {line.split(",")[0]: float(line.split(",")[1]) for line in lines[1:]} == shown
    finally:
        driver.quit()
