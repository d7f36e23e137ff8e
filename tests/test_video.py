"""Video frames as data: frame times, label CSV rows naming a video and a time, their bad rows,
training on them, and `predict --every` over whole videos (tiny videos PyAV writes here)."""

import csv

import numpy as np
import pytest

from conftest import needs, one_line_error, run_cli
from img2num.config import DataConfig
from img2num.errors import Img2NumError

pytestmark = needs("av")

FPS, SECONDS, SIZE = 10, 3, 16


def brightness(index: int, frames: int = FPS * SECONDS) -> int:
    """The grey level of frame `index`: rises from 20 to 220 over the video."""
    return int(20 + 200 * index / frames)


def write_video(path, seconds=SECONDS, fps=FPS, size=SIZE):
    """A grey video whose brightness rises frame by frame (mpeg4, so every FFmpeg decodes it)."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for index in range(seconds * fps):
            pixels = np.full((size, size, 3), brightness(index, seconds * fps), np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.fixture(scope="module")
def video_folder(tmp_path_factory):
    """clip.mp4 plus labels.csv: a row every 0.1 s with the frame's brightness / 100 as label,
    and a wall-clock column for the time split."""
    folder = tmp_path_factory.mktemp("video")
    write_video(folder / "clip.mp4")
    with open(folder / "labels.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "time", "label", "taken"])
        for index in range(FPS * SECONDS):
            writer.writerow(["clip.mp4", f"00:00:{index / FPS:06.3f}", brightness(index) / 100, 1000 + index])
    return folder


def test_frame_at_reads_the_frame_shown_at_each_time(video_folder):
    from img2num.data.video import FrameReader

    with FrameReader(video_folder / "clip.mp4") as reader:
        assert reader.duration == pytest.approx(SECONDS)
        # Forward, backward (a seek) and between two frames (the earlier one shows).
        for seconds, index in ((0.0, 0), (1.0, 10), (2.95, 29), (0.5, 5), (1.25, 12), (0.04, 0)):
            frame = reader.frame_at(seconds)
            assert frame.shape == (SIZE, SIZE, 3) and frame.dtype == np.uint8
            assert abs(int(frame.mean()) - brightness(index)) <= 4, (seconds, frame.mean())
        with pytest.raises(Exception, match=r"time 3 s is past the end of the video \(3 s long\)"):
            reader.frame_at(3.0)


def test_frame_times_parse():
    from img2num.data.video import frame_ref, parse_frame_time, split_frame_ref

    assert parse_frame_time("12.5") == 12.5
    assert parse_frame_time("01:02") == 62.0
    assert parse_frame_time("1:02:03.250") == 3723.25
    assert parse_frame_time(" 00:00:00.1 ") == pytest.approx(0.1)
    for bad in ("-1", "1:60", "1:00:61", "abc", "", "1,5", "inf"):
        assert parse_frame_time(bad) is None, bad
    assert frame_ref("a/clip.mp4", 3723.25) == "a/clip.mp4#t=3723.25"
    assert split_frame_ref("a/clip.mp4#t=2") == ("a/clip.mp4", 2.0)
    assert split_frame_ref("a/photo.png") is None


def test_video_rows_read_as_images_with_their_labels(video_folder):
    from img2num.data import read_image_table

    table = read_image_table(video_folder / "labels.csv", DataConfig(workers=1))
    data = table.data
    assert len(data) == FPS * SECONDS and data.x.shape == (FPS * SECONDS, SIZE, SIZE, 3)
    assert data.paths[12] == f"{video_folder / 'clip.mp4'}#t=1.2"
    # The label encodes the frame's brightness: every decoded frame matches its own row.
    assert np.abs(data.x.mean(axis=(1, 2, 3)) - data.y * 100).max() <= 4


def test_many_rows_decode_on_worker_processes_in_row_order(video_folder, tmp_path, monkeypatch):
    from img2num.data import decoding
    from img2num.data.conforming import ImageSpec

    monkeypatch.setattr(decoding, "PARALLEL_MIN_FILES", 4)
    video = str(video_folder / "clip.mp4")
    times = [2.9, 0.0, 1.5, 0.7, 2.2, 0.1, 1.0]  # out of order: grouped and sorted, then put back
    results = decoding.decode_files([f"{video}#t={t}" for t in times], ImageSpec((SIZE, SIZE), 3), workers=2)
    means = [int(array.mean()) for array, problem, _ in results]
    assert all(abs(m - brightness(round(t * FPS))) <= 4 for m, t in zip(means, times)), means


def test_bad_video_rows_name_the_row_and_the_reason(video_folder, tmp_path):
    from img2num.data import read_image_table

    (tmp_path / "clip.mp4").write_bytes((video_folder / "clip.mp4").read_bytes())
    (tmp_path / "broken.mp4").write_bytes(b"not a video at all" * 50)
    rows = [("clip.mp4", "1.0", "1"), ("clip.mp4", "00:00:09", "2"), ("broken.mp4", "0", "3"),
            ("clip.mp4", "", "4"), ("clip.mp4", "1:75", "5"), ("clip.mp4", "00:01.0", "6"), ("clip.mp4", "2", "7")]
    with open(tmp_path / "labels.csv", "w", newline="") as handle:
        csv.writer(handle).writerows([("file", "time", "label"), *rows])
    # The CSV's own cells are checked before any video is opened, as for image rows.
    with pytest.raises(Img2NumError) as caught:
        read_image_table(tmp_path / "labels.csv", DataConfig(workers=1))
    assert str(caught.value).endswith("labels.csv row 5: clip.mp4: is a video but its 'time' cell is empty")
    table = read_image_table(tmp_path / "labels.csv", DataConfig(workers=1, skip_bad=True))
    assert [row.message.split("labels.csv ", 1)[1] for row in table.skipped] == [
        "row 3: " + f"{tmp_path / 'clip.mp4'}#t=9: time 9 s is past the end of the video (3 s long)",
        "row 4: " + f"{tmp_path / 'broken.mp4'}#t=0: not a readable video (Invalid data found when processing input)",
        "row 5: clip.mp4: is a video but its 'time' cell is empty",
        "row 6: clip.mp4: time '1:75' is not a time: seconds (12.5), MM:SS or HH:MM:SS.fff",
        "row 7: clip.mp4: duplicate of row 2",
    ]
    assert list(table.data.y) == [1.0, 7.0]


def test_frame_column_option_and_a_time_split_column_side_by_side(video_folder, tmp_path):
    from img2num.data import read_image_table

    (tmp_path / "clip.mp4").write_bytes((video_folder / "clip.mp4").read_bytes())
    with open(tmp_path / "labels.csv", "w", newline="") as handle:
        csv.writer(handle).writerows([("file", "at", "time", "label"), ("clip.mp4", "0.5", "2024-05-01", "1"), ("clip.mp4", "1.5", "2024-05-02", "2")])
    table = read_image_table(tmp_path / "labels.csv", DataConfig(workers=1, frame_column="at", time_column="time"))
    assert [p.rsplit("#", 1)[1] for p in table.data.paths] == ["t=0.5", "t=1.5"]
    assert list(table.data.times) == ["2024-05-01", "2024-05-02"]
    with pytest.raises(Img2NumError, match="has no column 'when'.*--frame-column"):
        read_image_table(tmp_path / "labels.csv", DataConfig(frame_column="when"))


def test_train_and_predict_on_video_rows_and_sample_a_video(video_folder, tmp_path, capsys):
    run = tmp_path / "run"
    status, _, err = run_cli(capsys, "train", video_folder / "labels.csv", "--model", "mlp", "--epochs", "2",
                             "--seed", "1", "--test-fraction", "0.2", "--time-column", "taken", "--run", run, "--quiet")
    assert status == 0, err

    status, out, err = run_cli(capsys, "predict", run, video_folder / "labels.csv")
    assert status == 0, err
    rows = list(csv.reader(out.splitlines()))
    assert rows[0][:2] == ["path", "prediction"] and len(rows) == 1 + FPS * SECONDS
    assert rows[4][0].endswith("clip.mp4#t=0.3")

    output, plot = tmp_path / "series.csv", tmp_path / "series.png"
    status, out, err = run_cli(capsys, "predict", run, video_folder, "--every", "0.5", "--start", "00:00.5",
                               "--end", "2.6", "--output", output, "--plot", plot)
    assert status == 0, err
    assert f"5 predictions written to {output}" in out and f"plot written to {plot}" in out
    rows = list(csv.reader(output.open()))
    assert rows[0] == ["path", "time", "prediction"]
    assert [row[1] for row in rows[1:]] == ["0.5", "1", "1.5", "2", "2.5"]
    assert all(row[0] == str(video_folder / "clip.mp4") and np.isfinite(float(row[2])) for row in rows[1:])
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "clip.mp4 [####################] 100% done, 5 frames" in err

    before = output.read_bytes()
    status, _, err = run_cli(capsys, "predict", run, video_folder / "clip.mp4", "--every", "1", "--output", output)
    assert status == 1 and "already exists" in one_line_error(err) and output.read_bytes() == before

    # To stdout, every frame to the end; a video past --start and a missing file are bad inputs.
    status, out, err = run_cli(capsys, "predict", run, video_folder / "clip.mp4", tmp_path / "none.mp4", "--every", "1")
    assert status == 1
    assert [row[1] for row in csv.reader(out.splitlines()[1:])] == ["0", "1", "2"]
    assert f"{tmp_path / 'none.mp4'}: no such file or folder" in err

    status, _, err = run_cli(capsys, "predict", run, video_folder / "clip.mp4")
    assert status == 1 and "is a video; sample its frames with --every SECONDS" in one_line_error(err)


def test_predict_video_api_reports_a_start_past_the_end(video_folder, tmp_path, image_run):
    import io

    from img2num import predict_video

    # The run takes 12x12 images: a 16x16 video's frames are bad frames, each reported.
    clip, other, wrong = (write_video(tmp_path / name, seconds=s, size=z) for name, s, z in (("clip.mp4", 3, 12), ("other.mp4", 1, 12), ("wrong.mp4", 3, 16)))
    stream = io.StringIO()
    result = predict_video(image_run, [clip, other, wrong], 0.7, start=0.6 * 2, end=2.7, stream=stream, quiet=True, interval=0.5,
                           plot=tmp_path / "p.png")
    lines = stream.getvalue().splitlines()
    assert lines[0] == "path,time,prediction,lower,upper"
    rows = [line.split(",") for line in lines[1:]]
    assert [row[1] for row in rows] == ["1.2", "1.9", "2.6"] and all(float(r[3]) < float(r[2]) < float(r[4]) for r in rows)
    assert result.rows == 3 and result.output is None and result.plot.read_bytes()[:4] == b"\x89PNG"
    assert [row.message for row in result.bad] == [f"{other}: --start 1.2 s is past the end of the video (1 s long)"] + [
        f"{wrong}#t={t}: image is 16x16; expected 12x12" for t in ("1.2", "1.9", "2.6")
    ]
