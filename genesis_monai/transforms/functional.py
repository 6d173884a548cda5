"""The public batched degradation kernels and samplers, in one namespace (a re-export facade).

``from genesis_monai.transforms import functional as F`` keeps working; the code lives in one
module per job:

- :mod:`.sampling`: the shared random samplers (seeds, flip parity, Bezier parameters, box
  counts and boxes);
- :mod:`.flip`, :mod:`.shuffle`, :mod:`.bezier`, :mod:`.painting`: the four degradations;
- :mod:`.kernel_choice`: whether the compiled CPU kernel (:mod:`.cpu_kernel`) or torch runs a call.

Every kernel takes a batch ``x`` (N, C, X, Y, Z) or (N, C, X, Y), float, values in [0, 1]
(checked: ``check_range=True``), on any device, and returns a NEW tensor like it.
"""

from .bezier import bezier_map, bezier_tables
from .flip import apply_flip, flip_pair
from .kernel_choice import KERNELS, KernelChoice, choose_kernel, use_cpu_kernel
from .painting import box_union_mask, in_paint, out_paint, paint_boxes
from .sampling import (flip_parity, sample_bezier_params, sample_box_counts, sample_inpaint_boxes,
                       sample_outpaint_boxes, sample_seeds, uniform_int)
from .shuffle import PERMUTATION_MODES, local_pixel_shuffle
from .validation import check_range

__all__ = [
    "PERMUTATION_MODES",
    "KERNELS",
    "KernelChoice",
    "choose_kernel",
    "use_cpu_kernel",
    "check_range",
    "uniform_int",
    "sample_seeds",
    "flip_parity",
    "flip_pair",
    "apply_flip",
    "local_pixel_shuffle",
    "bezier_tables",
    "bezier_map",
    "sample_bezier_params",
    "sample_box_counts",
    "sample_inpaint_boxes",
    "sample_outpaint_boxes",
    "box_union_mask",
    "paint_boxes",
    "in_paint",
    "out_paint",
]
