"""Data sets: synthetic generators (points, dust) and their task metadata, real-image tasks
(digits, counting, haze), labelled array files, image files and label CSVs, the splits a job
trains on, and the near-copies between them."""

# points before dust: each registers its task on import, and TASK_NAMES keeps that order.
from img2num.data.points import generate_points, generate_points_splits, write_points  # isort: skip
from img2num.data.dust import dusty_cells, generate_dust, generate_dust_splits, write_dust  # isort: skip
from img2num.data.arrays import Dataset, as_dataset, load_dataset, load_split_folder, save_npz, shape_text
from img2num.data.files import ImageFiles, list_image_files, read_image_paths, read_image_table, write_image_folder
from img2num.data.conforming import ImageSpec
from img2num.data.images import read_image
from img2num.data.near_copies import measure_near_copies, near_copy_record
from img2num.data.real import REAL_TASK_NAMES, build_real_task, write_real_task
from img2num.data.grouping import draw_held_out, require_columns
from img2num.data.splits import Splits, hold_out, label_csv, resolve_splits, split_records, validation_record
from img2num.data.table import BadRow, read_label_table
from img2num.data.tasks import TASK_FILE, read_task, reference_predictions, task_info, task_names

TASK_NAMES = task_names()

__all__ = [
    "BadRow",
    "Dataset",
    "REAL_TASK_NAMES",
    "ImageFiles",
    "ImageSpec",
    "Splits",
    "TASK_FILE",
    "TASK_NAMES",
    "as_dataset",
    "build_real_task",
    "draw_held_out",
    "dusty_cells",
    "generate_dust",
    "generate_dust_splits",
    "generate_points",
    "generate_points_splits",
    "hold_out",
    "label_csv",
    "list_image_files",
    "load_dataset",
    "load_split_folder",
    "measure_near_copies",
    "near_copy_record",
    "read_image",
    "read_image_paths",
    "read_image_table",
    "read_label_table",
    "read_task",
    "reference_predictions",
    "require_columns",
    "resolve_splits",
    "save_npz",
    "shape_text",
    "split_records",
    "task_info",
    "validation_record",
    "write_dust",
    "write_image_folder",
    "write_points",
    "write_real_task",
]
