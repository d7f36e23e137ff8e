"""Comparison tables of trained runs (markdown), and the leaderboard, results per group and HTML
report of `compare` (and of its cross-validation by groups)."""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path

from img2num.bundle import Run
from img2num.metrics import r2_text
from img2num.intervals import COVERAGE_TEXT, coverage_cells, coverage_markdown
from img2num.io import records_csv
from img2num.registry import model_folder_name


def comparison_table(runs: dict[str, Run], split: str = "test") -> str:
    """A markdown table of each run's metrics on `split`, best MSE first.

    Args:
        runs: Trained runs keyed by name.
        split: The split whose metrics are compared.

    Returns:
        The table, one row per run.
    """
    header = (
        f"| model | {split} MSE | {split} RMSE | {split} MAE | {split} R^2 | final train loss "
        "| final val loss | best val loss (epoch) | parameters | train seconds |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    )
    rows = []
    for name, run in sorted(runs.items(), key=lambda item: item[1].metrics[split]["mse"]):
        metrics = run.metrics[split]
        last = run.history[-1]
        best = min(run.history, key=lambda row: row["val_loss"])
        rows.append(
            f"| {name} | {metrics['mse']:.2f} | {metrics['rmse']:.2f} | {metrics['mae']:.2f} "
            f"| {r2_text(metrics['r2'])} | {last['loss']:.2f} | {last['val_loss']:.2f} "
            f"| {best['val_loss']:.2f} ({best['epoch']}) | {run.config['parameters']:,} "
            f"| {run.config['train_seconds']:.1f} |"
        )
    return header + "\n".join(rows) + "\n"


def verdict(runs: dict[str, Run], split: str = "test") -> str:
    """One sentence naming the best run on `split` and how far behind the others are."""
    ranked = sorted(runs.items(), key=lambda item: item[1].metrics[split]["mse"])
    best_name, best = ranked[0]
    best_mse = best.metrics[split]["mse"]
    others = ", ".join(
        f"{name} {run.metrics[split]['mse']:.2f} ({run.metrics[split]['mse'] / best_mse:.2f}x)"
        for name, run in ranked[1:]
    )
    sentence = f"Lowest {split} MSE: **{best_name}** ({best_mse:.2f})"
    return sentence + (f"; then {others}." if others else ".")


def overfitting_note(runs: dict[str, Run]) -> str:
    """One sentence comparing each run's final validation loss with its final training loss."""
    parts = []
    for name, run in runs.items():
        last = run.history[-1]
        ratio = last["val_loss"] / last["loss"] if last["loss"] > 0 else float("inf")
        parts.append(f"{name} {last['val_loss']:.2f} vs {last['loss']:.2f} ({ratio:.3g}x)")
    return (
        "Final validation loss against final training loss: " + ", ".join(parts) + ". "
        "A large multiple means the model memorised its training images (overfitting)."
    )


def reference_note(runs: dict[str, Run], reference_mse: float | None, split: str = "test") -> str:
    """One paragraph giving each run's MSE on `split` as a multiple of the best possible MSE ("" if unknown)."""
    if not reference_mse:
        return ""
    ratios = ", ".join(f"{name} {run.metrics[split]['mse'] / reference_mse:.2f}x" for name, run in runs.items())
    return (
        f"No model can do better than an expected MSE of {reference_mse:.2f} on this task (its Bayes "
        f"reference). {split.capitalize()} MSE as a multiple of it: {ratios}.\n\n"
    )


# --- `img2num compare`: the leaderboard, the markdown summary and the self-contained HTML report.

_KIND_NOTE = {"model": "model", "baseline": "baseline", "reference": "best possible"}


def leaderboard_cells(summary: dict) -> tuple[list[str], list[list[str]]]:
    """The leaderboard as text cells: the header and one row per model, baseline and reference.

    Args:
        summary: What `img2num.comparison.compare` returns.

    Returns:
        Column names and rows, in leaderboard order.
    """
    reference = summary["reference_mse"]
    several = len(summary["seeds"]) > 1
    header = ["rank", "model", "kind", "test MSE" + (" (mean ± sd)" if several else ""), "RMSE", "MAE", "R^2"]
    header += ["MSE / Bayes"] if reference else []
    header += ["parameters", "train seconds", "epochs run", "best epoch"]
    rows, rank = [], 0
    for row in summary["leaderboard"]:
        ranked = row["kind"] != "reference"
        rank += ranked
        mse = _number(row["test_mse"])
        if several and row["kind"] == "model":
            mse += f" ± {_number(row['test_mse_sd'])}"
        cells = [str(rank) if ranked else "", row["name"], _KIND_NOTE[row["kind"]], mse]
        cells += [_number(row["test_rmse"]), _number(row["test_mae"]), r2_text(row["test_r2"])]
        cells += [f"{row['mse_over_reference']:.3f}"] if reference else []
        cells += [
            "" if row["parameters"] is None else f"{row['parameters']:,.0f}",
            "" if row["train_seconds"] is None else f"{row['train_seconds']:.1f}",
            "" if row["epochs_run"] is None else _count(row["epochs_run"]),
            "" if row["best_epoch"] is None else _count(row["best_epoch"]),
        ]
        rows.append(cells)
    return header, rows


def leaderboard_markdown(summary: dict) -> str:
    """The leaderboard as a markdown table, with a line on what its columns mean."""
    header, rows = leaderboard_cells(summary)
    align = ["---:" if index == 0 or index >= 3 else "---" for index in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return "\n".join(lines) + "\n\n" + _leaderboard_note(summary) + "\n"


def leaderboard_csv(rows: list[dict]) -> str:
    """The leaderboard rows (`img2num.comparison.leaderboard`) as CSV with full precision."""
    return records_csv(rows)


def seed_cells(summary: dict) -> tuple[list[str], list[list[str]]]:
    """Test MSE of every trained model on every seed: the header and one row per model."""
    seeds = summary["seeds"]
    table: dict[str, dict] = {}
    for entry in summary["entries"]:
        if entry["kind"] == "model":
            table.setdefault(entry["name"], {})[entry["seed"]] = entry["metrics"]["test"]["mse"]
    header = ["model", *(f"seed {seed}" for seed in seeds)]
    return header, [[name, *(_number(values[seed]) for seed in seeds)] for name, values in table.items()]


def run_notes(summary: dict) -> list[str]:
    """One sentence per trained model entry that needs one: the model `auto` chose, and the
    warning of a model that barely beats the mean (`evaluation.weak_fit_warning`); first the
    warning of held-out images with near-copies in training (`data.near_copies`), if any."""
    near_copies = summary["data"].get("near_copies") or {}
    notes = [f"Warning: {near_copies['warning']}."] if near_copies.get("warning") else []
    for entry in summary["entries"]:
        if entry["kind"] != "model":
            continue
        where = f"{entry['name']} (seed {entry['seed']})"
        if entry.get("chosen"):
            notes.append(f"{where} chose {entry['chosen']}.")
        if entry.get("warning"):
            notes.append(f"Warning, {where}: {entry['warning']}.")
    return notes


def compare_markdown(summary: dict) -> str:
    """The comparison as a markdown summary beside its pictures (`loss_curves.png`, `pictures/`)."""
    parts = [f"# {_title(summary)}\n", _data_text(summary) + "\n", "## Leaderboard\n", leaderboard_markdown(summary)]
    parts += [f"- {note}\n" for note in run_notes(summary)]
    samples = "## Training samples\n\nThe first 25 training images, titled R (true value).\n\n![training samples](samples.png)\n"
    if len(summary["seeds"]) > 1:
        header, rows = seed_cells(summary)
        parts += [
            "Test MSE per seed:\n",
            "| " + " | ".join(header) + " |\n|---|" + "---:|" * (len(header) - 1) + "\n"
            + "".join("| " + " | ".join(cells) + " |\n" for cells in rows),
        ]
    parts += [
        coverage_markdown(summary),
        group_markdown(summary),
        samples,
        f"## Loss curves\n\n{_loss_text(summary)}\n\n![loss curves](loss_curves.png)\n",
        f"## Each model on the test split\n\n{_DIAGNOSTICS_TEXT}\n",
    ]
    for row in summary["leaderboard"]:
        if row["kind"] != "reference":
            name = row["name"]
            parts.append(
                f"### {name}\n\n![{name} diagnostics](pictures/{model_folder_name(name)}-diagnostics.png)\n\n"
                f"![{name} worst predictions](pictures/{model_folder_name(name)}-worst.png)\n"
            )
    return "\n".join(parts)


def compare_html(summary: dict, folder: str | Path) -> str:
    """The comparison as one self-contained HTML page: every picture is embedded as base64 PNG.

    Args:
        summary: What `img2num.comparison.compare` returns.
        folder: The results folder holding `loss_curves.png` and `pictures/`.

    Returns:
        The HTML text.
    """
    folder = Path(folder)
    esc = html.escape
    body = [f"<h1>{esc(_title(summary))}</h1>", f"<p>{esc(_data_text(summary))}</p>", "<h2>Leaderboard</h2>"]
    body.append(_html_table(*leaderboard_cells(summary), summary["leaderboard"]))
    body.append(f"<p class='note'>{esc(_leaderboard_note(summary))}</p>")
    body += [f"<p><strong>{esc(note)}</strong></p>" for note in run_notes(summary)]
    if len(summary["seeds"]) > 1:
        body += ["<h3>Test MSE per seed</h3>", _html_table(*seed_cells(summary))]
    if coverage_cells(summary):
        body += ["<h2>Prediction intervals</h2>", f"<p>{esc(COVERAGE_TEXT)}</p>", _html_table(*coverage_cells(summary))]
    body += group_html(summary, folder)
    body += ["<h2>Training samples</h2>", "<p>The first 25 training images, titled R (true value).</p>"]
    body.append(_html_image(folder / "samples.png", "training samples"))
    body += ["<h2>Loss curves</h2>", f"<p>{esc(_loss_text(summary))}</p>", _html_image(folder / "loss_curves.png", "loss curves")]
    body += ["<h2>Each model on the test split</h2>", f"<p>{esc(_DIAGNOSTICS_TEXT)}</p>"]
    for row in summary["leaderboard"]:
        if row["kind"] != "reference":
            name = row["name"]
            body += [
                f"<h3 id='{esc(name)}'>{esc(name)}</h3>",
                _html_image(folder / "pictures" / f"{model_folder_name(name)}-diagnostics.png", f"{name} diagnostics"),
                _html_image(folder / "pictures" / f"{model_folder_name(name)}-worst.png", f"{name} worst predictions"),
            ]
    return (
        "<!DOCTYPE html>\n<html lang='en'>\n<head>\n<meta charset='utf-8'>\n"
        f"<title>{esc(_title(summary))}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


# Groups listed in a report's table; results.json holds them all.
GROUPS_SHOWN = 50


def group_cells(summary: dict) -> tuple[list[str], list[list[str]]]:
    """Results per group (`summary["by_group"]`) as text cells: one row per group, worst first,
    with its samples and each model's and baseline's MSE and R^2 (the first `GROUPS_SHOWN`)."""
    by_group = summary["by_group"]
    names = [row["name"] for row in summary["leaderboard"] if row["name"] in by_group["scores"]]
    header = [by_group["column"], "samples", *(f"{name} {metric}" for name in names for metric in ("MSE", "R^2"))]
    rows = []
    for group in by_group["groups"][:GROUPS_SHOWN]:
        cells = [group, str(by_group["samples"][group])]
        for name in names:
            score = by_group["scores"][name].get(group)
            cells += ["", ""] if score is None else [_number(score["mse"]), r2_text(score["r2"])]
        rows.append(cells)
    return header, rows


def group_text(summary: dict) -> str:
    """What the table and picture of results per group show."""
    by_group = summary["by_group"]
    count = len(by_group["groups"])
    where = "in the fold that tested it" if "cv" in summary else "on the test split"
    text = (
        f"Each {by_group['column']} scored {where}, worst first by {summary['best']}'s MSE; trained models show "
        "the mean over seeds. R^2 is n/a where a group's labels are all the same."
    )
    if count > GROUPS_SHOWN:
        text += f" The table lists the {GROUPS_SHOWN} worst of {count} groups; results.json holds every one."
    return text


def group_markdown(summary: dict) -> str:
    """The section of results per group, or "" without a group column."""
    if "by_group" not in summary:
        return ""
    header, rows = group_cells(summary)
    return (
        f"## Results per {summary['by_group']['column']}\n\n{group_text(summary)}\n\n{_markdown_table(header, rows, 2)}\n"
        f"![test MSE per group](pictures/by-group.png)\n"
    )


def group_html(summary: dict, folder: str | Path) -> list[str]:
    """The HTML of the results per group, or nothing without a group column."""
    if "by_group" not in summary:
        return []
    return [
        f"<h2>Results per {html.escape(summary['by_group']['column'])}</h2>",
        f"<p>{html.escape(group_text(summary))}</p>",
        _html_table(*group_cells(summary)),
        _html_image(Path(folder) / "pictures" / "by-group.png", "test MSE per group"),
    ]


def cv_cells(summary: dict) -> tuple[list[str], list[list[str]]]:
    """The cross-validation leaderboard as text cells: test MSE and R^2 as mean ± sd over
    folds, then each fold's MSE."""
    folds = len(summary["cv"]["folds"])
    header = ["rank", "model", "kind", f"test MSE (mean ± sd over {folds} folds)", "test R^2 (mean ± sd)"]
    header += [f"fold {index} MSE" for index in range(1, folds + 1)]
    rows = []
    for rank, row in enumerate(summary["leaderboard"], start=1):
        r2 = r2_text(row["test_r2"])
        cells = [str(rank), row["name"], _KIND_NOTE[row["kind"]], f"{_number(row['test_mse'])} ± {_number(row['test_mse_sd'])}"]
        cells.append(r2 if r2 == "n/a" else f"{r2} ± {row['test_r2_sd']:.4f}")
        cells += [_number(value) for value in row["fold_mse"]]
        rows.append(cells)
    return header, rows


def fold_cells(summary: dict) -> tuple[list[str], list[list[str]]]:
    """One row per fold: the groups it tests and its split sizes."""
    header = ["fold", f"test {summary['cv']['column']}", "train", "validation", "test"]
    rows = [
        [str(fold["fold"]), ", ".join(fold["test_groups"]), *(str(fold["splits"][name]) for name in ("train", "val", "test"))]
        for fold in summary["cv"]["folds"]
    ]
    return header, rows


def cv_table_markdown(summary: dict) -> str:
    """The cross-validation leaderboard as a markdown table, with a line on what it shows."""
    return _markdown_table(*cv_cells(summary), 3) + "\n" + _cv_text(summary) + "\n"


def cv_markdown(summary: dict) -> str:
    """The cross-validation by groups as a markdown summary beside `pictures/by-group.png`."""
    column = summary["cv"]["column"]
    return "\n".join([
        f"# img2num compare, cross-validated by {column}\n",
        _cv_data_text(summary) + "\n",
        "## Leaderboard\n",
        cv_table_markdown(summary),
        "## Folds\n",
        _markdown_table(*fold_cells(summary), 2),
        group_markdown(summary),
    ])  # fmt: skip


def cv_html(summary: dict, folder: str | Path) -> str:
    """The cross-validation by groups as one self-contained HTML page."""
    esc = html.escape
    title = f"img2num compare, cross-validated by {summary['cv']['column']}"
    body = [f"<h1>{esc(title)}</h1>", f"<p>{esc(_cv_data_text(summary))}</p>", "<h2>Leaderboard</h2>"]
    body += [_html_table(*cv_cells(summary)), f"<p class='note'>{esc(_cv_text(summary))}</p>"]
    body += ["<h2>Folds</h2>", _html_table(*fold_cells(summary)), *group_html(summary, folder)]
    return (
        "<!DOCTYPE html>\n<html lang='en'>\n<head>\n<meta charset='utf-8'>\n"
        f"<title>{esc(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n" + "\n".join(body) + "\n</body>\n</html>\n"
    )


def _cv_data_text(summary: dict) -> str:
    data, cv = summary["data"], summary["cv"]
    groups = sum(len(fold["test_groups"]) for fold in cv["folds"])
    training = ", ".join(f"{key} {value}" for key, value in summary["training"].items() if key != "val_fraction")
    return (
        f"Data: {data['source']}, images {'x'.join(map(str, data['image_shape']))}, {data['samples']} samples in "
        f"{groups} groups of column {cv['column']}. {len(cv['folds'])} folds: each tests whole groups that no other "
        "fold tests and trains on the rest, validation drawn by group from them; every model and baseline trained "
        f"once per fold and seed ({', '.join(map(str, summary['seeds']))}) with {training}."
    )


def _cv_text(summary: dict) -> str:
    return (
        "Sorted by mean test MSE over folds; ± is the sample standard deviation over folds (each fold's value the "
        "mean over seeds). R^2 is averaged over the folds where it is defined (n/a where a fold's test labels are "
        "all the same). Folds test different groups, so the spread shows how much the score depends on which "
        "groups are new."
    )


def _markdown_table(header: list[str], rows: list[list[str]], text_columns: int) -> str:
    align = ["---" if index < text_columns else "---:" for index in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    return "\n".join(lines + ["| " + " | ".join(cells) + " |" for cells in rows]) + "\n"


_DIAGNOSTICS_TEXT = (
    "Left: predicted against true value (the line is a perfect prediction). Middle: residuals against the "
    "true value. Right: RMSE within ten equal-width ranges of the true value, with the best possible "
    "predictor's on the same images where the task is known. Below: the 25 test images with the largest "
    "errors, worst first, titled R (true) and P (predicted). Trained models are shown on the first seed."
)
_CSS = (
    "body{font-family:system-ui,sans-serif;max-width:1300px;margin:2em auto;padding:0 1em;color:#222}"
    "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px}"
    "th{background:#f0f0f0}td.num{text-align:right;font-variant-numeric:tabular-nums}"
    "tr.baseline{color:#555}tr.reference{font-style:italic;background:#f8f8f0}"
    "img{max-width:100%;display:block;margin:0.5em 0}.note{color:#555;font-size:0.9em}"
)


def _html_table(header: list[str], rows: list[list[str]], kinds: list[dict] | None = None) -> str:
    """An HTML table; with `kinds` (leaderboard rows) each row gets its kind as class, and each
    model's name links to its pictures further down the page."""
    esc = html.escape
    lines = ["<table>", "<tr>" + "".join(f"<th>{esc(cell)}</th>" for cell in header) + "</tr>"]
    for index, cells in enumerate(rows):
        kind = kinds[index]["kind"] if kinds else None
        tds = []
        for column, cell in enumerate(cells):
            text = esc(cell)
            if kind in ("model", "baseline") and column == 1:
                text = f"<a href='#{text}'>{text}</a>"
            tds.append(f"<td class='num'>{text}</td>" if _numeric(cell) else f"<td>{text}</td>")
        lines.append(f"<tr class='{kind}'>" if kind else "<tr>")
        lines[-1] += "".join(tds) + "</tr>"
    return "\n".join(lines + ["</table>"])


def _html_image(path: Path, alt: str) -> str:
    encoded = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f"<img alt='{html.escape(alt)}' src='data:image/png;base64,{encoded}'>"


def _title(summary: dict) -> str:
    task = summary["data"]["task"]
    what = f"the {task['task']} task" if task else summary["data"]["source"]
    return f"img2num compare on {what}"


def _validation_text(validation: dict, seed: int) -> str:
    """One sentence: how validation (and test) were drawn, from the splits' record."""
    drawn = validation.get("drawn")
    groups = validation.get("groups") or {}
    counts = f" ({', '.join(f'{count} {name}' for name, count in groups.items())})" if groups else ""
    if drawn == "random":
        return f" Held-out shares were drawn at random with seed {validation.get('seed', seed)}."
    if drawn == "groups":
        return f" Held-out shares are whole groups of column '{validation['group_column']}'{counts}, seed {validation.get('seed', seed)}."
    if drawn in ("time", "groups and time"):
        by = f"whole groups of column '{validation['group_column']}'{counts}, " if drawn == "groups and time" else ""
        gap = f", gap {validation['gap']}" if validation.get("gap") is not None else ""
        return f" Held-out shares are {by}the latest by column '{validation['time_column']}'{gap}."
    if drawn == "split column":
        return " The label CSV's split column assigned the splits."
    return ""


def _data_text(summary: dict) -> str:
    data = summary["data"]
    sizes = ", ".join(f"{split['samples']} {name}" for name, split in data["splits"].items())
    text = f"Data: {data['source']}, images {'x'.join(map(str, data['image_shape']))}, {sizes} samples."
    text += _validation_text(data.get("validation") or {}, summary["seeds"][0])
    task = data["task"]
    if task:
        options = ", ".join(f"{key} {value}" for key, value in task.get("options", {}).items())
        text += f" Task: {task['task']} ({task.get('label', '')}); generator options: {options}."
    training = {key: value for key, value in summary["training"].items() if key != "val_fraction"}
    text += (
        f" Every model trained with {', '.join(f'{key} {value}' for key, value in training.items())} "
        f"(img2num's defaults except epochs) on seed{'s' if len(summary['seeds']) > 1 else ''} "
        f"{', '.join(map(str, summary['seeds']))}; all entries share the same splits."
    )
    reference = summary["reference_mse"]
    if reference:
        how = f" ({task['reference']})" if task and task.get("reference") else ""
        text += f" Best possible test MSE (Bayes reference): {_number(reference)}{how}."
    return text


def _leaderboard_note(summary: dict) -> str:
    test = summary["data"]["splits"]["test"]["samples"]
    note = f"Sorted by test MSE on {test} test samples"
    if len(summary["seeds"]) > 1:
        note += f"; trained models show mean ± sample standard deviation over {len(summary['seeds'])} seeds"
    note += (
        ". Baselines: the training mean, and ridge regression on block-averaged pixels (penalty chosen on the "
        "validation split); they need no seed."
    )
    if summary["reference_mse"]:
        note += (
            " MSE / Bayes divides test MSE by the expected error of the best possible predictor; with "
            f"{test} test samples the test MSE itself is uncertain by about sqrt(2/{test}) = "
            f"{math.sqrt(2 / test):.0%} of its value (for roughly normal errors)."
        )
    if any(row["kind"] == "reference" for row in summary["leaderboard"]):
        note += " The bayes-rule row is that best predictor applied to these test images (it knows how the data was made)."
    return note


def _loss_text(summary: dict) -> str:
    text = f"Training and validation loss per epoch, seed {summary['seeds'][0]}, log scale"
    if len(summary["seeds"]) > 1:
        text += "; thin lines: validation loss on the other seeds"
    if summary["reference_mse"]:
        text += "; the dashed line is the best possible MSE"
    return text + "."


def _number(value: float) -> str:
    return f"{value:#.4g}" if abs(value) < 1000 else f"{value:,.0f}"


def _count(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.1f}"


def _numeric(cell: str) -> bool:
    return bool(cell) and (cell[0].isdigit() or cell[0] in "-.") and any(ch.isdigit() for ch in cell)
