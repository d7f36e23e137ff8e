"""Data sets: the synthetic points generator and labelled array files."""

from img2num.data.arrays import Dataset, as_dataset, load_dataset, load_split_folder, save_npz, shape_text
from img2num.data.points import generate_points, generate_points_splits, write_points
from img2num.data.splits import hold_out, resolve_splits

__all__ = [
    "Dataset",
    "as_dataset",
    "generate_points",
    "generate_points_splits",
    "load_dataset",
    "load_split_folder",
    "hold_out",
    "resolve_splits",
    "save_npz",
    "shape_text",
    "write_points",
]
