"""Comparison tables of trained runs, in markdown."""

from __future__ import annotations

from img2num.bundle import Run


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
            f"| {metrics['r2']:.4f} | {last['loss']:.2f} | {last['val_loss']:.2f} "
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
