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
)
from img2num.cli.output import fail, note
from img2num.config import ServeConfig

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
    command.add_argument("--output", type=Path, help="CSV file to write; - is stdout (default: print to stdout)")
    command.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    command.add_argument("--interval", metavar="LEVEL", type=level, help="add lower,upper columns: a prediction interval at this level, such as 0.9, from the run's calibration")
    add_engine_option(command)
    add_data_options(command, training=False, skip_bad=False, groups=False)
    command.set_defaults(command=run_predict)


def run_predict(args: argparse.Namespace) -> int:
    """Write the predictions CSV, then report bad files or rows; 1 when there were any."""
    from img2num.io import check_replaceable_file
    from img2num.prediction import predict_paths, predictions_csv, write_predictions

    if is_stdout(args.output):
        args.output = None
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
    _report_bad(bad)
    if bad and (len(predictions) or len(bad) > 1):
        return fail(f"{len(bad)} of {len(bad) + len(predictions)} images could not be used; "
                    f"{len(predictions)} predictions {'written' if len(predictions) else 'made'}")
    return 1 if bad else 0


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
