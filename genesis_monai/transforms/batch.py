"""``GenesisDegrade``: the Models Genesis / Semantic Genesis / TransVW degradation operator on whole
batches, on the device the batch is on (METHODS.md §1 "Degradations", §2)."""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np
import torch
from monai.transforms import Randomizable

from . import cpu_kernel
from . import functional as F

__all__ = ["GenesisDegrade", "PRESETS"]

#: named recipes (METHODS.md): Models Genesis is sequential with 10,000 shuffle blocks and up to
#: 5 boxes; Semantic Genesis / TransVW apply exactly one of the four degradations, with 5 shuffle
#: blocks, one box, and no flip.
PRESETS: Dict[str, Dict[str, Any]] = {
    "models_genesis": dict(mode="sequential", flip_rate=0.4, local_rate=0.5, nonlinear_rate=0.9, paint_rate=0.9,
                           inpaint_rate=0.2, n_blocks=10_000, min_inpaint_boxes=0, max_inpaint_boxes=5,
                           min_outpaint_boxes=1, max_outpaint_boxes=5),
    "semantic_genesis": dict(mode="one_of", flip_rate=0.0, n_blocks=5, min_inpaint_boxes=1, max_inpaint_boxes=1,
                             min_outpaint_boxes=1, max_outpaint_boxes=1),
}
PRESETS["transvw"] = dict(PRESETS["semantic_genesis"])

MODES = ("sequential", "one_of")


class GenesisDegrade(Randomizable):
    """Degrade a batch of cubes for restoration pretraining: ``degraded, target = op(x)``.

    ``x``: (N, C, X, Y, Z) or (N, C, X, Y), float, values in [0, 1], any device (numpy arrays are
    accepted too). Returns ``(degraded, target)``, both like ``x`` (a numpy input gives numpy
    outputs; a MetaTensor gives plain tensors); ``x`` is never modified. ``target`` is the
    (flipped) original; ``degraded`` = the same flip, then the degradations. Every sample draws
    its own decisions.

    Args:
        mode: "sequential" (Models Genesis: flip, then local shuffle, non-linear map, painting,
            each with its own probability) or "one_of" (Semantic Genesis / TransVW: exactly one
            of local shuffle, non-linear, in-paint, out-paint, uniformly; the ``*_rate``
            arguments except ``flip_rate`` are ignored).
        flip_rate: per-flip coin of up to 3 flips (applied to both outputs). The "one_of"
            presets set it to 0 (their recipe has no flip); it is not implied by ``mode``.
        flip_rule: "reference" (axis among channel, X, Y: the published quirk, Z never flipped)
            or "spatial" (axis among all spatial axes).
        local_rate, nonlinear_rate, paint_rate: probabilities of the three steps.
        inpaint_rate: given painting, probability of in-painting (else out-painting).
        n_blocks: local-shuffle blocks per sample (10,000 Models Genesis, 5 Semantic Genesis).
        permutations: "exact" (fresh permutation per shuffle block, the reference law) or "pool"
            (``pool_size`` fresh permutations per block size per call, shared within the call;
            faster, not the reference law).
        min_inpaint_boxes, max_inpaint_boxes, min_outpaint_boxes, max_outpaint_boxes,
        box_continue_prob: the number of boxes is ``min`` plus one more while a coin with
            ``box_continue_prob`` succeeds, at most ``max``.
        bezier_points: samples of the Bezier curve table (the reference uses 100,000; 4,096
            stays within 1e-5 of it).
        bezier_lut_size: None (default) interpolates on the curve table itself, like the
            reference; an int uses a uniform look-up table of that size (faster; extra error up
            to ~1e-2 at 4,097 near vertical tangents: an approximation, named as such).
        chunk: samples processed together by the torch kernels (default on CPU: 2^19 voxels'
            worth, four 64x64x32 cubes, so scratch arrays stay in cache; the whole batch on a
            GPU). It changes which random numbers go where (so a seed reproduces a run only with
            the same chunk and device), never the law of the degradations.
        kernel: "auto" (default: float CPU batches go through the compiled one-pass C kernel,
            :mod:`.cpu_kernel`, when it builds - the whole recipe of a sample in one pass, ~30x
            faster than the torch kernels; GPUs and other dtypes use torch), "torch" or "c"
            (the compiled kernel or an error). ``permutations="pool"`` and ``bezier_lut_size``
            are torch-only options. The kernels draw different random numbers for one seed
            (the same laws); the C kernel's output does not depend on the number of threads.
        deform: optional ``callable(x, generator) -> x`` applied to the input only, before the
            degradations (room for Semantic Genesis' elastic deformation: its target is the
            cube before the deformation).
        seed: optional seed (same as calling :meth:`set_random_state`).

    Randomness: ``generator=`` on a call wins; otherwise, after :meth:`set_random_state(seed)`,
    a private ``torch.Generator`` per device seeded from ``seed``; otherwise torch's global RNG.
    """

    def __init__(self, flip_rate: float = 0.4, local_rate: float = 0.5, nonlinear_rate: float = 0.9,
                 paint_rate: float = 0.9, inpaint_rate: float = 0.2, mode: str = "sequential",
                 flip_rule: str = "reference", n_blocks: int = 10_000, permutations: str = "exact",
                 pool_size: int = 64, min_inpaint_boxes: int = 0, max_inpaint_boxes: int = 5,
                 min_outpaint_boxes: int = 1, max_outpaint_boxes: int = 5, box_continue_prob: float = 0.95,
                 bezier_points: int = 4096, bezier_lut_size: Optional[int] = None, chunk: Optional[int] = None,
                 kernel: str = "auto",
                 deform: Optional[Callable[[torch.Tensor, Optional[torch.Generator]], torch.Tensor]] = None,
                 seed: Optional[int] = None):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if flip_rule not in ("reference", "spatial"):
            raise ValueError(f"flip_rule must be 'reference' or 'spatial', got {flip_rule!r}")
        if permutations not in F.PERMUTATION_MODES:
            raise ValueError(f"permutations must be one of {F.PERMUTATION_MODES}, got {permutations!r}")
        for name, rate in dict(flip_rate=flip_rate, local_rate=local_rate, nonlinear_rate=nonlinear_rate,
                               paint_rate=paint_rate, inpaint_rate=inpaint_rate,
                               box_continue_prob=box_continue_prob).items():
            if not 0.0 <= float(rate) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {rate}")
        if not 0 <= min_inpaint_boxes <= max_inpaint_boxes or not 0 <= min_outpaint_boxes <= max_outpaint_boxes:
            raise ValueError("box counts need 0 <= min <= max")
        if kernel not in F.KERNELS:
            raise ValueError(f"kernel must be one of {F.KERNELS}, got {kernel!r}")
        if kernel == "c" and (permutations != "exact" or bezier_lut_size is not None):
            raise ValueError("kernel='c' implements permutations='exact' and bezier_lut_size=None only")
        if kernel == "c" and max(max_inpaint_boxes, max_outpaint_boxes) > cpu_kernel.MAX_BOX_SLOTS:
            raise ValueError(f"kernel='c' paints at most {cpu_kernel.MAX_BOX_SLOTS} boxes per sample")
        self.mode = mode
        self.flip_rate, self.flip_rule = float(flip_rate), flip_rule
        self.local_rate, self.nonlinear_rate = float(local_rate), float(nonlinear_rate)
        self.paint_rate, self.inpaint_rate = float(paint_rate), float(inpaint_rate)
        self.n_blocks, self.permutations, self.pool_size = int(n_blocks), permutations, int(pool_size)
        self.min_inpaint_boxes, self.max_inpaint_boxes = int(min_inpaint_boxes), int(max_inpaint_boxes)
        self.min_outpaint_boxes, self.max_outpaint_boxes = int(min_outpaint_boxes), int(max_outpaint_boxes)
        self.box_continue_prob = float(box_continue_prob)
        self.bezier_points, self.bezier_lut_size = int(bezier_points), bezier_lut_size
        self.chunk = chunk
        self.kernel = kernel
        self.deform = deform
        self._seed: Optional[int] = None
        self._generators: Dict[str, torch.Generator] = {}
        if seed is not None:
            self.set_random_state(seed)

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> "GenesisDegrade":
        """``"models_genesis"``, ``"semantic_genesis"`` or ``"transvw"``; keyword arguments override."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})

    # -- randomness ------------------------------------------------------------------------------
    def set_random_state(self, seed: Optional[int] = None, state: Optional[np.random.RandomState] = None
                         ) -> "GenesisDegrade":
        """Seed the private generators (MONAI style); identical seeds give identical outputs."""
        super().set_random_state(seed, state)
        if seed is None and state is not None:
            seed = int(state.randint(0, 2**31 - 1))
        self._seed = None if seed is None else int(seed) % (2**63)
        self._generators = {}
        return self

    def randomize(self, data: Any = None) -> None:  # decisions are drawn per call, on the device
        return None

    def _generator_for(self, device: torch.device) -> Optional[torch.Generator]:
        if self._seed is None:
            return None
        key = str(device)
        if key not in self._generators:
            g = torch.Generator(device=device)
            g.manual_seed(self._seed)
            self._generators[key] = g
        return self._generators[key]

    # -- the operator ----------------------------------------------------------------------------
    def __call__(self, x: Any, generator: Optional[torch.Generator] = None) -> Tuple[Any, Any]:
        is_numpy = isinstance(x, np.ndarray)
        t = torch.from_numpy(np.ascontiguousarray(x)) if is_numpy else x
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"GenesisDegrade: expected a torch.Tensor or numpy array, got {type(x).__name__}")
        if hasattr(t, "as_tensor"):
            t = t.as_tensor()  # MetaTensor: plain tensor ops are much faster and meta means little here
        F._check_batch(t, "GenesisDegrade input")
        if generator is None:
            generator = self._generator_for(t.device)
        degraded, target = self._degrade(t, generator)
        if is_numpy:
            return degraded.numpy(), target.numpy()
        return degraded, target

    def _uses_cpu_kernel(self, x: torch.Tensor) -> bool:
        if self.permutations != "exact" or self.bezier_lut_size is not None:
            return False
        if max(self.max_inpaint_boxes, self.max_outpaint_boxes) > cpu_kernel.MAX_BOX_SLOTS:
            return False
        return F.use_cpu_kernel(self.kernel, x)

    def _decide(self, N: int, device: torch.device, g: Optional[torch.Generator]) -> Tuple[torch.Tensor, ...]:
        """Per-sample (local, nonlinear, inpaint, outpaint) bool masks, each (N,)."""
        if self.mode == "sequential":
            u = torch.rand((N, 4), generator=g, device=device)
            local = u[:, 0] < self.local_rate
            nonlinear = u[:, 1] < self.nonlinear_rate
            paint = u[:, 2] < self.paint_rate
            inpaint = paint & (u[:, 3] < self.inpaint_rate)
            return local, nonlinear, inpaint, paint & ~inpaint
        choice = torch.randint(0, 4, (N,), generator=g, device=device)
        return tuple(choice == k for k in range(4))

    def _degrade_cpu_kernel(self, x: torch.Tensor, g: Optional[torch.Generator]) -> Tuple[torch.Tensor, torch.Tensor]:
        """The whole recipe in one pass per sample: decisions, curves and boxes are drawn here
        with the same samplers as the torch path, the voxel work happens in C."""
        N = x.shape[0]
        spatial = tuple(x.shape[2:])
        flags = torch.zeros(N, dtype=torch.uint8)
        if self.flip_rate > 0:
            if self.flip_rule == "reference":
                bits = (cpu_kernel.FLIP_C, cpu_kernel.FLIP_X, cpu_kernel.FLIP_Y)
            else:
                bits = (cpu_kernel.FLIP_X, cpu_kernel.FLIP_Y, cpu_kernel.FLIP_Z)[: len(spatial)]
            parity = F.flip_parity(N, self.flip_rate, len(bits), g, x.device)
            for k, bit in enumerate(bits):
                flags |= parity[:, k].to(torch.uint8) * bit
        local, nonlinear, inpaint, outpaint = self._decide(N, x.device, g)
        flags |= local.to(torch.uint8) * cpu_kernel.SHUFFLE
        flags |= nonlinear.to(torch.uint8) * cpu_kernel.BEZIER
        flags |= inpaint.to(torch.uint8) * cpu_kernel.INPAINT
        flags |= outpaint.to(torch.uint8) * cpu_kernel.OUTPAINT
        points, invert = F.sample_bezier_params(N, g, x.device)
        curves = dict(points=points, invert=invert, n_points=self.bezier_points)
        slots = max(1, self.max_inpaint_boxes, self.max_outpaint_boxes)
        in_count = F.sample_box_counts(N, self.min_inpaint_boxes, self.max_inpaint_boxes, self.box_continue_prob,
                                       g, x.device)
        in_corner, in_size = F.sample_inpaint_boxes(spatial, N, slots, g, x.device)
        out_count = F.sample_box_counts(N, self.min_outpaint_boxes, self.max_outpaint_boxes, self.box_continue_prob,
                                        g, x.device)
        out_corner, out_size = F.sample_outpaint_boxes(spatial, N, slots, g, x.device)
        sel = inpaint.view(N, 1, 1)
        boxes = dict(box_count=torch.where(inpaint, in_count, out_count),
                     box_corner=torch.where(sel, in_corner, out_corner), box_size=torch.where(sel, in_size, out_size))
        seeds = F.sample_seeds(N, g)
        if self.deform is None:
            return cpu_kernel.degrade(x, flags, seeds, target=True, n_blocks=self.n_blocks, **curves, **boxes)
        # the deformation sits between the flip (shared with the target) and the degradations
        degraded, target = cpu_kernel.degrade(x, flags & cpu_kernel.FLIP_BITS, seeds, target=True)
        degraded = self.deform(degraded, g).contiguous()
        degraded = cpu_kernel.degrade(degraded, flags & ~cpu_kernel.FLIP_BITS, seeds, n_blocks=self.n_blocks,
                                      **curves, **boxes)
        return degraded, target

    def _degrade(self, x: torch.Tensor, g: Optional[torch.Generator]) -> Tuple[torch.Tensor, torch.Tensor]:
        if self._uses_cpu_kernel(x):  # kernel="c" on an unsuitable tensor raises in here
            return self._degrade_cpu_kernel(x, g)
        N, device = x.shape[0], x.device
        if self.flip_rate > 0:
            degraded, target, _ = F.flip_pair(x, x, self.flip_rate, self.flip_rule, g)
        else:
            degraded, target = x.clone(), x.clone()
        if self.deform is not None:
            degraded = self.deform(degraded, g)
        local, nonlinear, inpaint, outpaint = self._decide(N, device, g)

        def apply(mask: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
            idx = mask.nonzero().flatten()
            if idx.numel():
                degraded.index_copy_(0, idx, fn(degraded.index_select(0, idx)))

        apply(local, lambda v: F.local_pixel_shuffle(v, self.n_blocks, g, self.permutations, self.pool_size,
                                                     self.chunk, kernel="torch"))
        apply(nonlinear, lambda v: F.bezier_map(v, *F.sample_bezier_params(v.shape[0], g, device),
                                                n_points=self.bezier_points, lut_size=self.bezier_lut_size,
                                                chunk=self.chunk, kernel="torch"))
        apply(inpaint, lambda v: F.in_paint(v, g, self.min_inpaint_boxes, self.max_inpaint_boxes,
                                            self.box_continue_prob, kernel="torch")[0])
        apply(outpaint, lambda v: F.out_paint(v, g, self.min_outpaint_boxes, self.max_outpaint_boxes,
                                              self.box_continue_prob, kernel="torch")[0])
        return degraded, target

    def __repr__(self) -> str:
        keys = ("mode", "flip_rate", "flip_rule", "local_rate", "nonlinear_rate", "paint_rate", "inpaint_rate",
                "n_blocks", "permutations", "kernel")
        return f"{type(self).__name__}(" + ", ".join(f"{k}={getattr(self, k)!r}" for k in keys) + ")"
