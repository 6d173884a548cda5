"""``GenesisDegrade``: the Models Genesis / Semantic Genesis / TransVW degradation operator on whole
batches, on the device the batch is on (METHODS.md §1 "Degradations", §2).

A call checks the batch (:mod:`.validation`), picks the kernel (:mod:`.kernel_choice`), draws the
batch's plan once (:mod:`.plan`) and executes it with that kernel (:mod:`.execution`).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np
import torch
from monai.transforms import Randomizable

from . import validation
from .execution import run_c, run_torch
from .flip import FLIP_RULES
from .kernel_choice import KERNELS, KernelChoice, choose_kernel, torch_only_option
from .plan import MODES, DegradePlan, draw_plan
from .shuffle import PERMUTATION_MODES

__all__ = ["GenesisDegrade", "PRESETS", "DESCRIBE_KEYS"]

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

#: the keys of :meth:`GenesisDegrade.describe`, in order: every constructor parameter, then the
#: kernel of the latest call and why it was chosen
DESCRIBE_KEYS = ("mode", "flip_rate", "flip_rule", "local_rate", "nonlinear_rate", "paint_rate", "inpaint_rate",
                 "n_blocks", "permutations", "pool_size", "min_inpaint_boxes", "max_inpaint_boxes",
                 "min_outpaint_boxes", "max_outpaint_boxes", "box_continue_prob", "bezier_points",
                 "bezier_lut_size", "chunk", "kernel", "deform", "seed", "spatial_dims", "check_range",
                 "kernel_used", "kernel_reason")


class GenesisDegrade(Randomizable):
    """Degrade a batch of cubes for restoration pretraining: ``degraded, target = op(x)``.

    ``x``: (N, C, X, Y, Z) (``spatial_dims=3``, default) or (N, C, X, Y) (``spatial_dims=2``),
    float, values in [0, 1], any device (numpy arrays are accepted too). Returns
    ``(degraded, target)``, both like ``x`` (a numpy input gives numpy outputs; a MetaTensor gives
    plain tensors); ``x`` is never modified. ``target`` is the (flipped) original; ``degraded`` =
    the same flip, then the degradations. Every sample draws its own decisions.

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
            GPU). It changes which random numbers the torch shuffle gives to which sample, never
            the law of the degradations.
        kernel: "auto" (default: float32/float64 CPU batches go through the compiled one-pass C
            kernel, :mod:`.cpu_kernel`, when it builds - the whole plan of a sample in one pass,
            ~30x faster than the torch kernels; GPUs and other dtypes use torch; if the C kernel
            cannot build, one WARNING per process says so), "torch" or "c" (the compiled kernel
            or an error). ``permutations="pool"`` and ``bezier_lut_size`` are torch-only options.
        deform: optional ``callable(x, generator) -> x`` applied to the input only, after the
            flip and before the degradations (room for Semantic Genesis' elastic deformation:
            its target is the cube before the deformation). It gets the call's generator, after
            the plan has been drawn from it.
        seed: optional seed (same as calling :meth:`set_random_state`).
        spatial_dims: 3 (default) for (N, C, X, Y, Z) batches, 2 for (N, C, X, Y); a batch of
            another rank is an error (so a (1, X, Y, Z) cube is never read as a 2-D batch).
        check_range: reject batches with values outside [0, 1] or NaN (one pass over the batch
            per call, :func:`.validation.check_range`; ~3% of the compiled kernel's time);
            False skips the check.

    Randomness: ``generator=`` on a call wins; otherwise, after :meth:`set_random_state(seed)`,
    a private ``torch.Generator`` per device seeded from ``seed``; otherwise torch's global RNG.
    Each call draws a plan (:mod:`.plan`: flip axes, per-sample decisions, Bezier curves, boxes,
    seeds) from that generator in a fixed order, then the kernel executes it.

    What a seed reproduces: the same seed (or generator state), the same parameters, the same
    input shape and dtype, the same device and the same kernel actually used (``kernel_used`` in
    :meth:`describe`) give bit-identical outputs; for the torch kernel also the same ``chunk``.
    The C kernel's output does not depend on the number of threads. Across kernels (on the same
    device) the plan is the same, so flips, decisions, Bezier curves and boxes agree, but the
    voxel-level randomness - shuffle blocks and permutations, painting noise - differs: C draws
    it from one stream per sample, torch from one stream per batch. A CPU and a GPU generator
    give different plans. Draws are made per batch, so a sample's degradation depends on its
    position and on the batch size. Successive calls on a seeded operator continue its stream.
    """

    def __init__(self, flip_rate: float = 0.4, local_rate: float = 0.5, nonlinear_rate: float = 0.9,
                 paint_rate: float = 0.9, inpaint_rate: float = 0.2, mode: str = "sequential",
                 flip_rule: str = "reference", n_blocks: int = 10_000, permutations: str = "exact",
                 pool_size: int = 64, min_inpaint_boxes: int = 0, max_inpaint_boxes: int = 5,
                 min_outpaint_boxes: int = 1, max_outpaint_boxes: int = 5, box_continue_prob: float = 0.95,
                 bezier_points: int = 4096, bezier_lut_size: Optional[int] = None, chunk: Optional[int] = None,
                 kernel: str = "auto",
                 deform: Optional[Callable[[torch.Tensor, Optional[torch.Generator]], torch.Tensor]] = None,
                 seed: Optional[int] = None, spatial_dims: int = 3, check_range: bool = True):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if flip_rule not in FLIP_RULES:
            raise ValueError(f"flip_rule must be one of {FLIP_RULES}, got {flip_rule!r}")
        if permutations not in PERMUTATION_MODES:
            raise ValueError(f"permutations must be one of {PERMUTATION_MODES}, got {permutations!r}")
        for name, rate in dict(flip_rate=flip_rate, local_rate=local_rate, nonlinear_rate=nonlinear_rate,
                               paint_rate=paint_rate, inpaint_rate=inpaint_rate,
                               box_continue_prob=box_continue_prob).items():
            if not 0.0 <= float(rate) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {rate}")
        if not 0 <= min_inpaint_boxes <= max_inpaint_boxes or not 0 <= min_outpaint_boxes <= max_outpaint_boxes:
            raise ValueError("box counts need 0 <= min <= max")
        if kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
        self.mode = mode
        self.flip_rate, self.flip_rule = float(flip_rate), flip_rule
        self.local_rate, self.nonlinear_rate = float(local_rate), float(nonlinear_rate)
        self.paint_rate, self.inpaint_rate = float(paint_rate), float(inpaint_rate)
        self.n_blocks, self.permutations, self.pool_size = int(n_blocks), permutations, int(pool_size)
        self.min_inpaint_boxes, self.max_inpaint_boxes = int(min_inpaint_boxes), int(max_inpaint_boxes)
        self.min_outpaint_boxes, self.max_outpaint_boxes = int(min_outpaint_boxes), int(max_outpaint_boxes)
        self.box_continue_prob = float(box_continue_prob)
        self.bezier_points = int(bezier_points)
        self.bezier_lut_size = None if bezier_lut_size is None else int(bezier_lut_size)
        self.chunk = None if chunk is None else int(chunk)
        self.kernel = kernel
        # fail at construction, not at the first batch, when kernel="c" cannot run these options
        option = self._torch_only_option()
        if kernel == "c" and option is not None:
            raise ValueError(f"kernel='c' cannot run {option}; or pass kernel='torch'")
        self.deform = deform
        self.spatial_dims = validation.check_spatial_dims(spatial_dims, "GenesisDegrade")
        self.check_range = bool(check_range)
        self._seed: Optional[int] = None
        self._generators: Dict[str, torch.Generator] = {}
        self._last_choice: Optional[KernelChoice] = None
        if seed is not None:
            self.set_random_state(seed)

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> "GenesisDegrade":
        """``"models_genesis"``, ``"semantic_genesis"`` or ``"transvw"``; keyword arguments override."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})

    # -- provenance ------------------------------------------------------------------------------
    @property
    def kernel_used(self) -> Optional[str]:
        """``"c"`` or ``"torch"``: the kernel of the latest call (None before the first call)."""
        return None if self._last_choice is None else self._last_choice.name

    @property
    def kernel_reason(self) -> Optional[str]:
        """Why :attr:`kernel_used` ran (None before the first call)."""
        return None if self._last_choice is None else self._last_choice.reason

    def describe(self) -> Dict[str, Any]:
        """Every constructor parameter and the kernel that ran, as a JSON-plain dict (str, int,
        float, bool, None only) with the keys :data:`DESCRIBE_KEYS`, in that order.

        ``deform`` is ``repr(deform)`` or None; ``seed`` is the seed of :meth:`set_random_state`
        (or the constructor), None when unseeded; ``kernel`` is the kernel requested,
        ``kernel_used`` / ``kernel_reason`` the kernel of the latest call and why (e.g.
        "compiled CPU kernel built with gcc -O3 -std=c99 -shared -fPIC -march=native",
        "C kernel unavailable: ...", "tensor on cuda:0", "kernel='torch' requested"), None
        before the first call.
        """
        d = {k: getattr(self, k) for k in DESCRIBE_KEYS if k not in ("deform", "seed", "kernel_used",
                                                                      "kernel_reason")}
        d["deform"] = None if self.deform is None else repr(self.deform)
        d["seed"] = self._seed
        d["kernel_used"] = self.kernel_used
        d["kernel_reason"] = self.kernel_reason
        return {k: d[k] for k in DESCRIBE_KEYS}

    def __repr__(self) -> str:
        keys = ("mode", "flip_rate", "flip_rule", "local_rate", "nonlinear_rate", "paint_rate", "inpaint_rate",
                "n_blocks", "permutations", "kernel", "spatial_dims")
        return f"{type(self).__name__}(" + ", ".join(f"{k}={getattr(self, k)!r}" for k in keys) + ")"

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

    def randomize(self, data: Any = None) -> None:  # the plan is drawn per call, on the device
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
    def _torch_only_option(self) -> Optional[str]:
        return torch_only_option(self.permutations, self.bezier_lut_size,
                                 max(self.max_inpaint_boxes, self.max_outpaint_boxes))

    def choose_kernel(self, x: torch.Tensor) -> KernelChoice:
        """The kernel a call on ``x`` would run, and why (see :mod:`.kernel_choice`)."""
        return choose_kernel(x, self.kernel, permutations=self.permutations, bezier_lut_size=self.bezier_lut_size,
                             max_boxes=max(self.max_inpaint_boxes, self.max_outpaint_boxes))

    def draw_plan(self, x: torch.Tensor, generator: Optional[torch.Generator] = None) -> DegradePlan:
        """The per-batch plan of a call on ``x`` (N, C, *spatial), drawn from ``generator``."""
        return draw_plan(x.shape[0], x.shape[2:], x.device, generator, mode=self.mode, flip_rate=self.flip_rate,
                         flip_rule=self.flip_rule, local_rate=self.local_rate, nonlinear_rate=self.nonlinear_rate,
                         paint_rate=self.paint_rate, inpaint_rate=self.inpaint_rate,
                         inpaint_boxes=(self.min_inpaint_boxes, self.max_inpaint_boxes),
                         outpaint_boxes=(self.min_outpaint_boxes, self.max_outpaint_boxes),
                         box_continue_prob=self.box_continue_prob)

    def __call__(self, x: Any, generator: Optional[torch.Generator] = None) -> Tuple[Any, Any]:
        """``(degraded, target)`` of the batch ``x`` (class docstring); ``generator`` overrides the
        operator's own randomness for this call. Raises ValueError for a batch of the wrong rank
        or (``check_range``) with values outside [0, 1] or NaN, TypeError for non-float input."""
        is_numpy = isinstance(x, np.ndarray)
        t = torch.from_numpy(np.ascontiguousarray(x)) if is_numpy else x
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"GenesisDegrade: expected a torch.Tensor or numpy array, got {type(x).__name__}")
        if hasattr(t, "as_tensor"):
            t = t.as_tensor()  # MetaTensor: plain tensor ops are much faster and meta means little here
        validation.check_batch(t, "GenesisDegrade", self.spatial_dims)
        if self.check_range:
            validation.check_range(t, "GenesisDegrade input")
        degraded, target = self._degrade(t, generator)
        if is_numpy:
            return degraded.numpy(), target.numpy()
        return degraded, target

    def _degrade(self, t: torch.Tensor, generator: Optional[torch.Generator]) -> Tuple[torch.Tensor, torch.Tensor]:
        """Choose the kernel, draw the plan, run it (``t`` already checked)."""
        choice = self.choose_kernel(t)  # kernel="c" on an unsuitable tensor raises in here
        self._last_choice = choice
        if generator is None:
            generator = self._generator_for(t.device)
        plan = self.draw_plan(t, generator)
        if choice.name == "c":
            degraded, target = run_c(t, plan, n_blocks=self.n_blocks, bezier_points=self.bezier_points,
                                     deform=self.deform, generator=generator)
        else:
            degraded, target = run_torch(t, plan, n_blocks=self.n_blocks, bezier_points=self.bezier_points,
                                         permutations=self.permutations, pool_size=self.pool_size,
                                         bezier_lut_size=self.bezier_lut_size, chunk=self.chunk,
                                         deform=self.deform, generator=generator)
        return degraded, target
