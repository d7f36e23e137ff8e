"""The commands that use a saved run: `evaluate`, `predict`, `serve` and `explain`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from img2num import interrupts
from img2num.cli.arguments import (
    add_data_options,
    add_engine_option,
    count,
    data_config,
    is_stdout,
    level,
    non_negative_float,
    positive_float,
    positive_int,
    video_time,
)
from img2num.cli.output import fail, note
from img2num.config import ServeConfig
from img2num.errors import Img2NumError

# Bad files or rows `predict` lists one per line; more are summed up in one line.
BAD_LINES_SHOWN = 10


def add_evaluate_parser(commands) -> None:
    """Add the `evaluate` command to `commands` (the subparsers of the main parser)."""
    command = commands.add_parser(
        "evaluate", help="score a run on labelled data",
        description="Print MSE, RMSE, MAE and R^2 of a run on labelled data and save them as JSON. "
        "Image files are decoded as the run's training images were.",
    )
    command.add_argument("run", type=Path, help="run folder")
    command.add_argument("data", type=Path, help="labelled data: a label CSV naming image files (or a folder holding one), or an .npz file")
    command.add_argument("--output", type=Path, help="JSON file for the metrics; - prints the JSON to stdout instead (default: RUN/evaluations/DATA.json, or DATA-2.json, ... when that holds an evaluation of other data)")
    command.add_argument("--overwrite", action="store_true", help="replace an output file that holds anything but an earlier evaluation of the same data")
    command.add_argument("--interval", metavar="LEVEL", type=level, help="also score prediction intervals at this level, such as 0.9: coverage and mean width")
    command.add_argument("--by", metavar="NAME", help="also score each group of this label CSV column (a camera, a site, a day): a table after the overall metrics, worst MSE first, saved under by_group")
    add_data_options(command, training=False)
    command.set_defaults(command=run_evaluate)


def run_evaluate(args: argparse.Namespace) -> None:
    """Score the run, print the metrics and save them (or print the JSON with `--output -`)."""
    from img2num.evaluation import evaluation_file, evaluation_record, save_evaluation
    from img2num.io import json_text
    from img2num.metrics import format_group_metrics, format_metrics

    record = evaluation_record(args.run, args.data, options=data_config(args), interval=args.interval, by=args.by)
    if is_stdout(args.output):
        sys.stdout.write(json_text(record))
        return
    # Printed before saving: a result the output file refuses is still seen.
    print(format_metrics(record))
    if "by_group" in record:
        print(f"\nper {args.by}, worst MSE first:\n" + format_group_metrics(record["by_group"]["groups"], args.by))
    output = args.output or evaluation_file(args.run, record["data"])
    save_evaluation(output, record, args.overwrite, reads=[args.data])
    skipped = record.get("skipped", [])
    if skipped:
        note(f"skipped {len(skipped)} bad row{'s' if len(skipped) != 1 else ''}; listed in {output}")
    print(f"metrics saved in {output}")


def add_predict_parser(commands) -> None:
    """Add the `predict` command to `commands` (the subparsers of the main parser)."""
    command = commands.add_parser(
        "predict", help="predict with a run",
        description="Predict one number per image. Image files and folders (searched recursively for "
        "image files, sorted) give path,prediction rows; a label CSV gives path,prediction(,label); "
        "an .npz file gives index,prediction(,label). A bad image file is reported and skipped; "
        "every good prediction is still written (exit status 1).",
    )
    command.add_argument("run", type=Path, help="run folder")
    command.add_argument("data", type=Path, nargs="+", help="image files and folders, a label CSV, or one .npz file with images in x (labels in y optional)")
    command.add_argument("--output", type=Path, help="CSV file to write; - is stdout (default: print to stdout); with --engine ray also a .parquet folder")
    command.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    command.add_argument("--interval", metavar="LEVEL", type=level, help="add lower,upper columns: a prediction interval at this level, such as 0.9, from the run's calibration")
    video = command.add_argument_group("videos (docs/video.md)")
    video.add_argument("--every", metavar="SECONDS", type=video_time, help="predict on the frame shown every SECONDS of each video (files and folders of videos): path,time,prediction rows in time order")
    video.add_argument("--start", metavar="T", type=video_time, help="with --every, the first sampled time: seconds, MM:SS or HH:MM:SS.fff (default 0)")
    video.add_argument("--end", metavar="T", type=video_time, help="with --every, sample before this time (default: each video's end)")
    video.add_argument("--plot", metavar="FILE.png", type=Path, help="with --every, draw the predictions against time (interval band, gaps at bad frames)")
    rasters = command.add_argument_group("prediction maps of GeoTIFF rasters (docs/rasters.md)")
    rasters.add_argument("--tile", metavar="N", type=positive_int, help="predict every N x N window of one raster and write a map (--output map.tif, or map.csv of window centres; a PNG preview beside it)")
    rasters.add_argument("--stride", metavar="S", type=positive_int, help="with --tile, the step between windows in pixels; the map has one pixel per S x S cell (default: N)")
    command.add_argument("--address", help="with --engine ray: the cluster's address, as `ray start --head` prints it (default: RAY_ADDRESS, else a new local cluster)")
    add_engine_option(command, ray=True)
    add_data_options(command, training=False, skip_bad=False, groups=False)
    command.set_defaults(command=run_predict)


def run_predict(args: argparse.Namespace) -> int:
    """Write the predictions CSV, then report bad files or rows; 1 when there were any."""
    sampling = args.every is not None or args.start is not None or args.end is not None or args.plot is not None
    if args.engine == "onnx" and (sampling or args.tile is not None or args.stride is not None):
        return fail("--engine onnx predicts images and label CSVs; videos (--every) and maps (--tile) run on --engine keras")
    if args.tile is not None or args.stride is not None:
        return _predict_map(args)
    from img2num.io import check_replaceable_file
    from img2num.prediction import predict_paths, predictions_csv, write_predictions

    if is_stdout(args.output):
        args.output = None
    if args.engine == "ray" or args.address:
        return _run_predict_ray(args)
    if sampling:
        return _predict_video(args)
    from img2num.data.video import is_video_file

    videos = [path for path in args.data if is_video_file(path)]
    if videos:
        return fail(f"{videos[0]}: is a video; sample its frames with --every SECONDS, or name frames in a label CSV (docs/video.md)")
    if args.output is not None:
        check_replaceable_file(args.output, args.overwrite, args.data)
    result = predict_paths(args.run, args.data, options=data_config(args), interval=args.interval, engine=args.engine)
    predictions, bad = result.predictions, result.bad
    text = predictions_csv(predictions, result.labels, result.paths, result.bounds)
    if args.output is None:
        sys.stdout.write(text)
    elif len(predictions):
        write_predictions(
            args.output, predictions, result.labels, overwrite=args.overwrite, paths=result.paths, bounds=result.bounds,
            reads=args.data,
        )
        print(f"{len(predictions)} predictions written to {args.output}")
    return _report_outcome(bad, len(predictions))


def _report_outcome(bad, count: int) -> int:
    """Report the bad files or rows beside `count` predictions; the exit status (1 with any bad)."""
    _report_bad(bad)
    if bad and (count or len(bad) > 1):
        return fail(f"{len(bad)} of {len(bad) + count} images could not be used; "
                    f"{count} predictions {'written' if count else 'made'}")
    return 1 if bad else 0


def _predict_video(args: argparse.Namespace) -> int:
    """`predict --every`: rows stream out as frames are predicted; then bad videos and frames."""
    from img2num.video_prediction import predict_video

    if args.every is None:
        return fail("--start, --end and --plot sample videos: give --every SECONDS too")
    result = predict_video(
        args.run, args.data, args.every, start=args.start or 0.0, end=args.end, output=args.output,
        interval=args.interval, plot=args.plot, overwrite=args.overwrite,
    )
    for path, what in ((result.output, f"{result.rows} predictions written to"), (result.plot, "plot written to")):
        if path is not None:
            print(f"{what} {path}", file=sys.stderr if args.output is None else sys.stdout)
    _report_bad(result.bad)
    if result.bad and (result.rows or len(result.bad) > 1):
        return fail(f"{len(result.bad)} videos or frames could not be used; {result.rows} predictions written")
    return 1 if result.bad else 0
def _predict_map(args: argparse.Namespace) -> int:
    """`predict --tile`: the prediction map of one raster (`img2num.maps.predict_map`)."""
    from img2num.maps import predict_map

    if args.tile is None:
        raise Img2NumError("--stride goes with --tile N: the window size of a prediction map")
    if len(args.data) != 1 or args.output is None or is_stdout(args.output):
        raise Img2NumError("a prediction map is made of one raster into a file: predict RUN scene.tif --tile N --output map.tif (or map.csv)")
    result = predict_map(
        args.run, args.data[0], args.output, args.tile, args.stride, interval=args.interval, overwrite=args.overwrite
    )
    print(f"{result.predicted} windows predicted, {result.nodata} nodata, a {result.shape[0]}x{result.shape[1]} map "
          f"written to {result.output} (preview {result.preview}) in {result.seconds:.1f} s")
    return 0


def _run_predict_ray(args: argparse.Namespace) -> int:
    """`predict --engine ray`: the same rows, bad-file lines and exit status as the keras engine."""
    from img2num.errors import Img2NumError
    from img2num.prediction import predictions_csv
    from img2num.ray_prediction import predict_ray

    if args.engine != "ray":
        raise Img2NumError("--address names a Ray cluster: it needs --engine ray")
    result = predict_ray(args.run, args.data, args.output, args.overwrite, args.address, args.workers, args.interval)
    if result.rows is not None:
        sys.stdout.write(predictions_csv(result.rows.predictions, None, result.rows.paths, result.rows.bounds))
    elif result.count:
        print(f"{result.count} predictions written to {args.output}")
    return _report_outcome(result.bad, result.count)


def _report_bad(bad, shown: int = BAD_LINES_SHOWN) -> None:
    """One line per bad file or row, the first `shown` of them; the rest summed up in one line
    by kind (the reason with its numbers left out), most frequent first."""
    import re
    from collections import Counter

    for row in bad[:shown]:
        fail(row.message)
    rest = Counter(re.sub(r"\d+", "N", row.reason) for row in bad[shown:])
    if rest:
        kinds = "; ".join(f"{times} x {kind}" for kind, times in rest.most_common(3))
        others = sum(rest.values()) - sum(times for _, times in rest.most_common(3))
        fail(f"and {sum(rest.values())} more not listed: {kinds}" + (f"; {others} others" if others else ""))


def add_serve_parser(commands) -> None:
    """Add the `serve` command to `commands` (the subparsers of the main parser)."""
    serve = ServeConfig()
    command = commands.add_parser(
        "serve", help="serve a run over HTTP: a JSON API and a web page",
        description="Serve a run over HTTP until Ctrl-C: POST /predict (image files as a multipart form, or one "
        "image as the body) answers one prediction per image, as `img2num predict` would; GET /info, GET /health, "
        "the web page at / and the API documentation at /docs. Concurrent requests are batched into one model call.",
    )
    command.add_argument("run", type=Path, help="run folder")
    command.add_argument("--host", default=serve.host, help="address to listen on; 0.0.0.0 opens it to other machines (default %(default)s: this machine only)")
    command.add_argument("--port", type=count, default=serve.port, help="TCP port; 0 takes a free one (default %(default)s)")
    command.add_argument("--max-upload-mb", metavar="MB", type=positive_float, default=serve.max_upload_mb, help="largest request body in MB, answered 413 beyond (default %(default)s)")
    command.add_argument("--max-pixels", metavar="N", type=positive_int, default=serve.max_pixels, help="largest image in pixels (height x width) decoded (default %(default)s)")
    command.add_argument("--max-images", metavar="N", type=positive_int, default=serve.max_images, help="most images in one request (default %(default)s)")
    command.add_argument("--max-batch", metavar="N", type=positive_int, default=serve.max_batch, help="most images in one model call (default %(default)s)")
    command.add_argument("--batch-wait-ms", metavar="MS", type=non_negative_float, default=serve.batch_wait_ms, help="how long an image waits for others to share its model call (default %(default)s)")
    command.add_argument("--queue-size", metavar="N", type=positive_int, default=serve.queue_size, help="most images waiting for the model; requests beyond are answered 503 (default %(default)s)")
    command.add_argument("--max-connections", metavar="N", type=positive_int, default=serve.max_connections, help="most connections served at once; more are answered 503 (default %(default)s)")
    command.add_argument("--units", metavar="TEXT", help="what the number is measured in, given in every answer, such as 'ug/m3' (default: none)")
    command.add_argument("--allowed-hosts", metavar="NAMES", type=_host_names, help="comma-separated host names the server answers besides localhost, 127.x.x.x and [::1], or * for any (default: on a loopback address only those; on any other address every name)")
    add_engine_option(command)
    command.set_defaults(command=run_serve)


def _host_names(text: str) -> tuple[str, ...]:
    """Argument type of --allowed-hosts: comma-separated host names."""
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    if not names:
        raise argparse.ArgumentTypeError("expected host names separated by commas, such as my-box.lan, or *")
    return names


def run_serve(args: argparse.Namespace) -> None:
    """Serve the run until Ctrl-C, which ends it cleanly."""
    from img2num.serve import serve

    names = (
        "host", "port", "max_upload_mb", "max_pixels", "max_images", "max_batch", "batch_wait_ms", "queue_size",
        "max_connections", "units", "allowed_hosts", "engine",
    )
    with interrupts.as_keyboard_interrupt():
        serve(args.run, ServeConfig(**{name: getattr(args, name) for name in names}))


def add_explain_parser(commands) -> None:
    """Add the `explain` command to `commands` (the subparsers of the main parser)."""
    command = commands.add_parser(
        "explain", help="explain a run's predictions: image beside its attribution map",
        description="Write, per image, a picture of the image beside its signed integrated-gradient "
        "attribution map (red pushes the number up, blue pulls it down; a black image is the baseline), "
        "and explanations.csv with each prediction and how far the attributions' sum is from "
        "prediction - baseline prediction.",
    )
    command.add_argument("run", type=Path, help="run folder")
    command.add_argument("images", type=Path, nargs="+", help="image files and folders, or one .npz file with images in x")
    command.add_argument("--out", type=Path, required=True, help="folder to create for the pictures")
    command.add_argument("--limit", type=positive_int, default=10, help="explain at most this many images (default %(default)s)")
    command.add_argument("--steps", type=positive_int, default=64, help="path points of the integrated gradients (default %(default)s)")
    command.add_argument("--overwrite", action="store_true", help="replace an existing folder once the new one is complete")
    command.set_defaults(command=run_explain)


def run_explain(args: argparse.Namespace) -> int:
    """Write the explanation pictures and CSV of the good images; print how many and where,
    then report bad files as `predict` does; 1 when there were any."""
    from img2num.explain import explain_paths

    result = explain_paths(args.run, args.images, args.out, steps=args.steps, limit=args.limit, overwrite=args.overwrite)
    pictures = 0
    if result.folder is not None:
        pictures = sum(1 for path in result.folder.glob("*.png"))
        print(f"{pictures} explained images in {result.folder} (one PNG each, explanations.csv)")
    _report_bad(result.bad)
    if result.bad and (pictures or len(result.bad) > 1):
        return fail(f"{len(result.bad)} of {len(result.bad) + pictures} images could not be used; "
                    f"{pictures} explained images written")
    return 1 if result.bad else 0
