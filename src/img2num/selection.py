"""The automatic choice's record: made from the search's trials, and read back as the candidates
table `train` prints, `candidates.csv`, the saved model's own score, and the search's timeline
picture (`search.png`)."""

from __future__ import annotations

from pathlib import Path

from img2num.config import AUTO_MODEL
from img2num.io import atomic_path, records_csv

# Colours of the timeline's stages; rungs after the first share one.
_STAGE_COLOURS = {"probe": "#9ecae1", "fitted": "#fdae6b", "alone": "#31a354"}
_RUNG_COLOUR = "#3182bd"


def selection_record(
    trials: list, winner, time_limit: float | None, reserve: float | None, variance: float, rungs: int,
    skipped: list[tuple[str, str]],
) -> dict:
    """The record of a search (`selection` in a run's config): every candidate tried, with its
    epochs, seconds, best validation MSE and R^2, epochs after each rung, outcome and timeline;
    those not tried and why; the choice and why it won.

    Args:
        trials: The search's trials (`autoselect._Trial`: name, epochs, seconds, epoch_seconds,
            best_val, rungs, dropped, stopped_early, spans).
        winner: The trial chosen.
        time_limit: The `train` call's limit in seconds, or None.
        reserve: Seconds kept for what follows training, or None without a limit.
        variance: The validation targets' variance, for R^2.
        rungs: How many rungs the schedule had.
        skipped: (name, reason) of each candidate not tried.
    """
    rows = []
    for trial in trials:
        rows.append(
            {
                "model": trial.name,
                "epochs": trial.epochs,
                "seconds": round(trial.seconds, 3),
                "epoch_seconds": round(trial.epoch_seconds, 4),
                "val_mse": trial.best_val,
                "val_r2": 1.0 - trial.best_val / variance if variance > 0 else 0.0,
                "epochs_after_rung": trial.rungs,
                "outcome": "chosen" if trial is winner else trial.dropped,
                "stopped_early": trial.stopped_early,
                "timeline": trial.spans,
            }
        )
    for name, reason in skipped:
        rows.append(
            {
                "model": name,
                "epochs": 0,
                "seconds": 0.0,
                "epoch_seconds": None,
                "val_mse": None,
                "val_r2": None,
                "epochs_after_rung": [],
                "outcome": f"not tried: {reason}",
                "stopped_early": False,
                "timeline": [],
            }
        )
    others = [row for row in rows if row["model"] != winner.name and row["val_mse"] is not None]
    why = f"lowest validation MSE, {winner.best_val:.4g}"
    if others:
        why += " against " + ", ".join(f"{row['model']} {row['val_mse']:.4g} ({row['outcome']})" for row in others)
    if late := [name for name, reason in skipped if reason == "no time left"]:
        why += f"; not tried for lack of time: {', '.join(late)}"
    return {
        "requested": AUTO_MODEL,
        "time_limit": time_limit,
        "reserve_seconds": None if reserve is None else round(reserve, 3),
        "rungs": rungs,
        "candidates": rows,
        "chosen": winner.name,
        "why": why,
    }


def saved_record(config: dict, val_metrics: dict) -> dict:
    """What the saved model is and its own validation score, for the selection record: the
    choice was made on the winner's best epoch, and the saved weights may be another epoch's,
    an average of epochs or an ensemble."""
    train = config["train"]
    if "ensemble" in config:
        weights = "ensemble of " + " + ".join(f"{name} {w:.2f}" for name, w in zip(config["ensemble"]["members"], config["ensemble"]["weights"]))
    elif train.get("average_epochs"):
        last = config["weights_epoch"]
        weights = f"average of epochs {max(1, last - train['average_epochs'] + 1)}-{last}"
    else:
        weights = f"epoch {config['weights_epoch']}"
    return {"model": train["model"], "weights": weights, "val_mse": val_metrics["mse"], "val_r2": val_metrics["r2"]}


def selection_lines(record: dict) -> list[str]:
    """The candidates table of a run's selection record, a few lines for a terminal."""
    rows = record["candidates"]
    width = max(len(row["model"]) for row in rows)
    lines = [f"{'candidate':<{width}}  {'val MSE':>10}  {'val R^2':>7}  {'epochs':>6}  {'seconds':>7}  outcome"]
    for row in rows:
        if row["val_mse"] is None:
            lines.append(f"{row['model']:<{width}}  {'-':>10}  {'-':>7}  {0:>6}  {0:>7.1f}  {row['outcome']}")
            continue
        lines.append(
            f"{row['model']:<{width}}  {row['val_mse']:>10.4g}  {row['val_r2']:>7.3f}  {row['epochs']:>6}  "
            f"{row['seconds']:>7.1f}  {row['outcome']}"
        )
    lines.append(f"chose {record['chosen']}: {record['why']}")
    if "saved" in record:
        saved, chosen = record["saved"], next(row for row in rows if row["outcome"] == "chosen")
        lines.append(
            f"saved {saved['model']} ({saved['weights']}): validation MSE {saved['val_mse']:.4g} "
            f"(R^2 {saved['val_r2']:.3f}); the choice was made on {chosen['model']}'s best, {chosen['val_mse']:.4g}"
        )
    return lines


def candidates_csv(record: dict) -> str:
    """The candidates of a selection record as CSV text."""
    keys = ("model", "val_mse", "val_r2", "epochs", "seconds", "epoch_seconds", "stopped_early", "outcome")
    return records_csv([{key: row[key] for key in keys} for row in record["candidates"]])


def search_timeline(record: dict, path: str | Path) -> Path:
    """Draw which candidate trained when: one row per candidate, a bar per stretch of training
    (probe, rung, alone, or fitted at once), the seconds since `train` began, and each row's
    outcome (chosen, or why it stopped) at its end.

    Args:
        record: A run's `selection` record.
        path: PNG file to write.

    Returns:
        The path written.
    """
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    rows = record["candidates"]
    height = 1.7 + 0.55 * len(rows)
    fig = Figure(figsize=(9, height), dpi=80)
    left = (0.3 + 0.08 * max(len(row["model"]) for row in rows)) / 9  # room for the longest name
    ax = fig.add_axes([left, 1.2 / height, 0.96 - left, 1 - 1.6 / height])  # 1.2 inches below, 0.4 above
    end = max((span["end"] for row in rows for span in row["timeline"]), default=1.0)
    for index, row in enumerate(rows):
        level = len(rows) - 1 - index
        for span in row["timeline"]:
            colour = _STAGE_COLOURS.get(span["stage"], _RUNG_COLOUR)
            ax.barh(level, span["end"] - span["start"], left=span["start"], height=0.6, color=colour, edgecolor="white")
        last = max((span["end"] for span in row["timeline"]), default=0.0)
        outcome = row["outcome"].split(":")[0]  # the reason is in the table and candidates.csv
        ax.text(last + 0.01 * end, level, f" {outcome}", va="center", fontsize="small")
    ax.set_yticks(range(len(rows)), [row["model"] for row in reversed(rows)])
    ax.set_xlim(0, end * 1.45)
    ax.set_xlabel("seconds since train began")
    limit = record.get("time_limit")
    if limit is not None and limit <= end * 1.45:
        ax.axvline(limit, color="black", linestyle="--", linewidth=1)
    stages = [Patch(color=c, label=name) for name, c in (("probe", _STAGE_COLOURS["probe"]), ("rung", _RUNG_COLOUR),
                                                          ("alone", _STAGE_COLOURS["alone"]), ("fitted at once", _STAGE_COLOURS["fitted"]))]
    ax.legend(handles=stages, loc="upper center", bbox_to_anchor=(0.5, -0.75 / (height - 1.6)), fontsize="small", ncol=4, frameon=False)
    ensemble = record.get("ensemble", {})
    saved = f"; saved: an ensemble of {len(ensemble['members'])}" if ensemble.get("kept") else ""
    ax.set_title(f"auto chose {record['chosen']}{saved}", fontsize="medium")
    with atomic_path(path) as temporary:
        fig.savefig(temporary, format="png")
    return Path(path)
