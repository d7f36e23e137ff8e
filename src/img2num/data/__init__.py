"""Data sets: the synthetic generators (points, dust), their task metadata, and labelled array files."""

from img2num.data.arrays import Dataset, as_dataset, load_dataset, load_split_folder, save_npz, shape_text
from img2num.data.dust import dusty_cells, generate_dust, generate_dust_splits, write_dust
from img2num.data.points import generate_points, generate_points_splits, write_points
from img2num.data.splits import hold_out, resolve_splits
from img2num.data.tasks import TASK_FILE, TASK_NAMES, read_task, reference_predictions, task_info

__all__ = [
    "Dataset",
    "TASK_FILE",
    "TASK_NAMES",
    "as_dataset",
    "dusty_cells",
    "generate_dust",
    "generate_dust_splits",
    "generate_points",
    "generate_points_splits",
    "load_dataset",
    "load_split_folder",
    "hold_out",
    "read_task",
    "reference_predictions",
    "resolve_splits",
    "save_npz",
    "shape_text",
    "task_info",
    "write_dust",
    "write_points",
]
