"""Serving a run over HTTP (img2num.serve, img2num.intake, img2num.batching): the API through a
real client on a loopback port, its limits and bad input, a bounded load, and the command. The
web page in headless Chromium is tests/test_serve_page.py."""

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

from conftest import one_line_error, run_cli
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
        (multipart_body([(f"{i}.png", good) for i in range(9)]), 400, "more than 8 files in one request (option --max-images)"),
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


def summing_model():
    """A stand-in model for the batcher: each image's pixel sum; and the list of batch sizes it saw."""
    calls = []

    def predict(x):
        calls.append(len(x))
        return x.reshape(len(x), -1).sum(axis=1).astype(np.float32)

    return calls, predict


def test_batcher_gathers_concurrent_requests_into_one_call():
    calls, predict = summing_model()
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
    run = dataclasses.replace(image_run, metrics={"test": {"mse": 1.0, "r2": float("nan")}}, calibration=None)
    run.predict = lambda x, source="images": np.full(len(x), np.inf, np.float32)
    with serving(run, dataclasses.replace(LIMITS, max_batch=1, max_images=1)) as url:
        assert call(url + "/info")[1]["metrics"] == {"test": {"mse": 1.0, "r2": None}}
        status, answer, _ = post_files(url, [("a.png", photos[0].read_bytes())])
        assert status == 200 and answer["results"] == [{"file": "a.png", "prediction": None}]
        assert call(url + "/info")[1]["intervals"] is None
        status, answer, _ = call(url + "/predict?interval=0.5", *multipart_body([("a.png", photos[0].read_bytes())]))
        assert status == 422 and answer["error"].endswith("this run has no interval calibration (trained before intervals "
                                                          "existed, or with too small a validation split); retrain it to get intervals")


def test_bad_serve_options_are_one_line_errors(capsys, image_run, tmp_path):
    with pytest.raises(Img2NumError, match="--max-images \\(20\\) must not exceed --queue-size \\(10\\)"):
        ServeConfig(max_images=20, queue_size=10)
    status, _, err = run_cli(capsys, "serve", tmp_path / "missing")
    assert status == 1 and "no such run folder" in one_line_error(err)
    status, _, err = run_cli(capsys, "serve", image_run.path, "--max-images", "5000")
    assert status == 1 and "--max-images (5000) must not exceed --queue-size (1024)" in one_line_error(err)
    status, _, err = run_cli(capsys, "serve", image_run.path, "--queue-size", "8")
    assert status == 1 and "--max-images (256) must not exceed --queue-size (8)" in one_line_error(err)
    with pytest.raises(SystemExit) as caught:
        run_cli(capsys, "serve", image_run.path, "--allowed-hosts", " , ")
    assert caught.value.code == 2 and "argument --allowed-hosts: expected host names" in capsys.readouterr().err
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


def tiff_pages(pages: int, size: int = 12) -> bytes:
    import tifffile

    buffer = io.BytesIO()
    tifffile.imwrite(buffer, np.zeros((pages, size, size), np.uint8), compression="zlib")
    return buffer.getvalue()


def test_uploads_are_refused_from_their_header_and_never_decoded_on_the_event_loop(server, photos, monkeypatch):
    import tifffile

    import img2num.data.images as images

    decoded, threads = [], []
    original_series, original_pillow = tifffile.TiffPageSeries.asarray, images.pil_to_array
    monkeypatch.setattr(tifffile.TiffPageSeries, "asarray", lambda *a, **k: decoded.append("tiff") or original_series(*a, **k))
    monkeypatch.setattr(images, "pil_to_array", lambda *a, **k: decoded.append("pillow") or original_pillow(*a, **k))
    original_read = images.read_image_bytes
    monkeypatch.setattr(images, "read_image_bytes", lambda *a, **k: threads.append(threading.current_thread().name) or original_read(*a, **k))
    # 200 pages of 12x12: its header says 200 bands, which a 3-channel run cannot take.
    status, answer, _ = post_files(server, [("stack.tif", tiff_pages(200))])
    assert status == 422 and answer["results"] == [{"file": "stack.tif", "error": "has 200 bands; this data takes 3"}]
    # 50x50 is under the pixel limit but not the run's 12x12: refused from the header too.
    status, answer, _ = post_files(server, [("w.png", png(np.zeros((50, 50, 3), np.uint8)))])
    assert status == 422 and answer["results"][0]["error"] == "image is 50x50; expected 12x12"
    assert decoded == []
    status, _, _ = post_files(server, [("a.png", photos[0].read_bytes())])  # a small upload
    assert status == 200 and decoded == ["pillow"]
    assert threads and "img2num-server" not in threads  # the event loop's thread never decodes


def test_long_file_names_are_cut_not_refused(server, photos):
    name = "a" * 6000 + ".png"
    status, answer, _ = post_files(server, [(name, photos[0].read_bytes())])
    assert status == 200 and answer["results"][0]["file"] == "a" * 200


def test_a_client_that_disconnects_mid_upload_writes_at_most_one_log_line(server, photos):
    import logging

    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record):
            lines.extend(logging.Formatter().format(record).splitlines())

    handler = Collect()
    loggers = [logging.getLogger(), logging.getLogger("uvicorn"), logging.getLogger("uvicorn.error")]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        host, port = server.removeprefix("http://").split(":")
        for _ in range(2):
            with socket.create_connection((host, int(port)), timeout=TIMEOUT) as sock:
                head = (b"--x\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n"
                        b"Content-Type: image/png\r\n\r\n")
                sock.sendall(b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=x\r\n"
                             b"Content-Length: 40000\r\n\r\n" + head + photos[0].read_bytes()[:200])
                time.sleep(0.2)
        time.sleep(0.5)
        assert call(server + "/health")[1]["status"] == "ok"
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
    # One line per disconnected client, naming it, and no traceback.
    assert len(lines) == 2 and all("a client disconnected before its request was complete" in line for line in lines), "\n".join(lines)


def test_max_batch_bounds_every_model_call(image_run, photos):
    calls, predict = summing_model()
    batcher = MicroBatcher(predict, max_batch=2, wait_s=0, capacity=8)
    try:
        images = np.arange(5, dtype=np.float32).reshape(5, 1, 1, 1)
        assert list(batcher.submit(images).result(TIMEOUT)) == [0, 1, 2, 3, 4]
        assert calls == [2, 2, 1]
    finally:
        batcher.close()
    config = dataclasses.replace(LIMITS, max_batch=2, max_images=8)
    with serving(image_run, config) as url:
        before = call(url + "/health")[1]
        status, answer, _ = post_files(url, [(path.name, path.read_bytes()) for path in photos])
        after = call(url + "/health")[1]
    assert status == 200 and len(answer["results"]) == 8
    assert (after["model_calls"] - before["model_calls"], after["images"] - before["images"]) == (4, 8)


def test_predict_serves_intervals_from_the_runs_calibration(server, image_run, photos):
    files = [(path.name, path.read_bytes()) for path in photos[:3]]
    status, answer, _ = call(server + "/predict?interval=0.8", *multipart_body(files))
    assert status == 200 and answer["interval"] == 0.8
    x = np.stack([np.asarray(Image.open(path)) for path in photos[:3]])
    prediction, lower, upper = image_run.interval(image_run.predict(x), 0.8)
    np.testing.assert_allclose([item["prediction"] for item in answer["results"]], prediction, rtol=1e-5)
    np.testing.assert_allclose([item["lower"] for item in answer["results"]], lower, rtol=1e-5)
    np.testing.assert_allclose([item["upper"] for item in answer["results"]], upper, rtol=1e-5)
    scores = len(image_run.calibration.scores)  # 8: every validation image gives one
    assert scores == 8 and call(server + "/info")[1]["intervals"] == {"level": 0.8, "calibration_images": scores}
    for query, message in [
        ("0.9", f"interval level 0.9 needs at least 10 calibration images; this run has {scores} (use a lower level or a "
                "larger validation split)"),
        ("1.5", "interval level must be a number between 0 and 1 (such as 0.9), got 1.5"),
        ("abc", "interval level must be a number between 0 and 1 (such as 0.9), got 'abc'"),
    ]:
        status, answer, _ = call(server + f"/predict?interval={query}", *multipart_body(files))
        assert (status, answer) == (422, {"error": message})


def raw_get(url: str, host: str) -> tuple[int, dict]:
    address, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(address, int(port), timeout=TIMEOUT)
    connection.putrequest("GET", "/health", skip_host=True)
    connection.putheader("Host", host)
    connection.endheaders()
    response = connection.getresponse()
    try:
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def test_a_loopback_server_answers_only_loopback_host_names(server):
    from img2num.serve import host_allowed

    port = server.rsplit(":", 1)[1]
    for host in ("localhost", f"localhost:{port}", "LocalHost", "127.0.0.1", f"127.0.0.1:{port}", "127.8.9.10:80", "[::1]", f"[::1]:{port}"):
        assert raw_get(server, host)[0] == 200, host
    for host in ("evil.example", f"evil.example:{port}", "127.0.0.1.evil.example", "localhost.evil.example", "0.0.0.0", "[::2]:80"):
        status, answer = raw_get(server, host)
        assert status == 421 and answer["error"].startswith(f"Host {host} is not allowed"), (host, answer)
        assert "--allowed-hosts" in answer["error"] and "\n" not in answer["error"]
    assert not host_allowed("my.lan:8000", ServeConfig())
    assert host_allowed("my.lan:8000", ServeConfig(allowed_hosts=("my.lan",)))
    assert host_allowed("anything.example", ServeConfig(allowed_hosts=("*",)))
    assert host_allowed("anything.example", ServeConfig(host="0.0.0.0"))  # open to the network: as before
    assert not host_allowed("anything.example", ServeConfig(host="0.0.0.0", allowed_hosts=("my.lan",)))


def test_the_onnx_engine_serves_what_keras_serves(image_run, photos, tmp_path):
    from conftest import require

    from img2num.bundle import load_run

    require("onnxruntime")
    import shutil

    shutil.copytree(image_run.path, tmp_path / "run")  # the graph is kept in the run folder
    run = load_run(tmp_path / "run")
    files = [(path.name, path.read_bytes()) for path in photos[:4]]
    with serving(run, LIMITS) as url:
        _, on_keras, _ = post_files(url, files)
    with serving(run, dataclasses.replace(LIMITS, engine="onnx")) as url:
        status, on_onnx, _ = post_files(url, files)
    assert status == 200 and [item["file"] for item in on_onnx["results"]] == [name for name, _ in files]
    np.testing.assert_allclose(
        [item["prediction"] for item in on_onnx["results"]], [item["prediction"] for item in on_keras["results"]], rtol=1e-4, atol=1e-6
    )
    assert (tmp_path / "run" / "model.onnx").is_file()
