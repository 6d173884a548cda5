"""Batched torch kernels for the Models Genesis degradations (METHODS.md §1, "Degradations").

Every kernel takes a batch ``x`` of shape (N, C, X, Y, Z) or (N, C, X, Y), float, values in
[0, 1], on any device, draws its randomness per sample from ``generator`` (a ``torch.Generator``
on ``x.device``, or None for torch's global generator), and returns a NEW tensor of the same
shape, dtype and device; the input is never written to. There are no per-voxel, per-block or
per-sample Python loops: the few loops left run over block-size classes (at most
``prod(max block size)``, 108 for 64x64x32) or over box slots (at most 5).

The per-sample MONAI transforms (:mod:`.array`, :mod:`.dictionary`) and the batch operator
(:mod:`.batch`) all call these kernels, so there is one implementation of each degradation.

On CPU, float32/float64 batches go by default (``kernel="auto"``) through the compiled one-pass
kernel of :mod:`.cpu_kernel` (the same laws; the randomness of boxes, curves and decisions is
drawn here, in torch, and the per-voxel work - shuffle blocks, interpolation, noise - in C with a
random stream per sample seeded from ``generator``). ``kernel="torch"`` forces the vectorised torch
code below (always used on GPUs); ``kernel="c"`` requires the compiled kernel. The two kernels
give different random numbers for the same seed, never different laws.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch

from . import cpu_kernel

__all__ = [
    "PERMUTATION_MODES",
    "KERNELS",
    "use_cpu_kernel",
    "sample_seeds",
    "flip_pair",
    "flip_parity",
    "local_pixel_shuffle",
    "bezier_tables",
    "bezier_map",
    "sample_bezier_params",
    "sample_box_counts",
    "sample_inpaint_boxes",
    "sample_outpaint_boxes",
    "box_union_mask",
    "in_paint",
    "out_paint",
]

#: ``"exact"``: a fresh uniform permutation for every shuffle block (the reference's law).
#: ``"pool"``: ``pool_size`` fresh permutations per block size per call, shared by the blocks of
#: that size in the call (faster; each block's permutation is still uniform, but blocks of one
#: size are no longer independent of each other).
PERMUTATION_MODES = ("exact", "pool")

#: ``"auto"``: the compiled CPU kernel for float CPU tensors when it builds, else torch;
#: ``"torch"``: always the vectorised torch kernels; ``"c"``: the compiled kernel or an error.
KERNELS = ("auto", "torch", "c")

_RAND_BITS = 40  # random bits of a sort key; ties (probability ~n^2 / 2^41) would order by index


def _check_batch(x: torch.Tensor, name: str = "x") -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    if x.ndim not in (4, 5):
        raise ValueError(f"{name}: expected shape (N, C, X, Y[, Z]) with 2 or 3 spatial dims, got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{name}: expected a floating-point tensor with values in [0, 1], got {x.dtype}")


def use_cpu_kernel(kernel: str, x: torch.Tensor) -> bool:
    """Whether ``x`` goes through the compiled CPU kernel for the given ``kernel`` choice."""
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
    if kernel == "torch":
        return False
    suitable = x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64)
    if kernel == "c":
        if not suitable:
            raise ValueError(f"kernel='c' runs on float32/float64 CPU tensors, got {x.dtype} on {x.device}")
        cpu_kernel.load(required=True)
        return True
    return suitable and cpu_kernel.available()


def sample_seeds(n: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """(n,) int64 seeds of the per-sample random streams of the compiled kernel."""
    device = generator.device if generator is not None else "cpu"
    return torch.randint(-(2**63), 2**63 - 1, (n,), generator=generator, device=device, dtype=torch.int64).cpu()


_CPU_CHUNK_VOXELS = 1 << 19  # four 64x64x32 cubes (measured best of 2, 4, 8 at N=32)


def _default_chunk(chunk: Optional[int], device: torch.device, n_voxels: int,
                   budget: int = _CPU_CHUNK_VOXELS) -> int:
    """Samples processed together. On CPU small chunks win: the kernels are memory-bound and
    scratch arrays of a few MB stay in cache and in malloc's heap (fresh large allocations cost
    a page fault per 4 KiB); on a GPU the whole batch goes at once."""
    if chunk is not None:
        return max(1, int(chunk))
    if torch.device(device).type == "cpu":
        return max(1, budget // max(1, n_voxels))
    return 1 << 30


def _uniform_int(low: torch.Tensor, high: torch.Tensor, generator: Optional[torch.Generator]) -> torch.Tensor:
    """Integers uniform in [low, high] (inclusive, elementwise). float64 keeps the bias < 2^-40."""
    u = torch.rand(low.shape, generator=generator, device=low.device, dtype=torch.float64)
    span = (high - low + 1).clamp(min=1)
    return low + (u * span).long().clamp(max=span - 1)


# ----------------------------------------------------------------------------------------------
# Flip
# ----------------------------------------------------------------------------------------------

def flip_parity(n: int, prob: float, n_axes: int, generator: Optional[torch.Generator] = None,
                device: torch.device | str = "cpu", max_flips: int = 3) -> torch.Tensor:
    """Per-sample flip decisions: up to ``max_flips`` flips while a coin with ``prob`` succeeds,
    each along one of ``n_axes`` candidate axes drawn uniformly. Returns (n, n_axes) bool: whether
    each axis ends up flipped (two flips along one axis cancel)."""
    coins = torch.rand((n, max_flips), generator=generator, device=device) < prob
    done = coins.long().cumprod(dim=1).bool()  # flip k happens only if coins 0..k all succeeded
    axes = torch.randint(0, n_axes, (n, max_flips), generator=generator, device=device)
    counts = torch.zeros((n, n_axes), dtype=torch.long, device=device)
    counts.scatter_add_(1, axes, done.long())
    return counts % 2 == 1


def flip_pair(x: torch.Tensor, y: torch.Tensor, prob: float = 0.4, rule: str = "reference",
              generator: Optional[torch.Generator] = None, max_flips: int = 3
              ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Flip ``x`` and ``y`` (same shape (N, C, *spatial)) alike, per sample.

    ``rule="reference"``: axes drawn from the first three axes of a sample (C, X, Y) - the
    published quirk: a channel flip is a no-op for C=1 and Z is never flipped.
    ``rule="spatial"``: axes drawn from all spatial axes. Returns (x, y, parity (N, n_axes) bool).
    """
    _check_batch(x)
    if rule == "reference":
        dims = [1, 2, 3]
    elif rule == "spatial":
        dims = list(range(2, x.ndim))
    else:
        raise ValueError(f"flip rule must be 'reference' or 'spatial', got {rule!r}")
    parity = flip_parity(x.shape[0], prob, len(dims), generator, x.device, max_flips)
    x, y = x.clone(), y.clone()
    for k, dim in enumerate(dims):
        idx = parity[:, k].nonzero().flatten()
        if idx.numel():
            x[idx] = x[idx].flip(dim)
            y[idx] = y[idx].flip(dim)
    return x, y, parity


# ----------------------------------------------------------------------------------------------
# Local pixel shuffling
# ----------------------------------------------------------------------------------------------

class _ShufflePlan:
    """Static tables of the block-size classes of one spatial shape (3-D; 2-D gets Z=1)."""

    def __init__(self, spatial: Tuple[int, int, int], device: torch.device):
        X, Y, Z = spatial
        self.spatial = spatial
        self.n_voxels = X * Y * Z
        self.max_size = tuple(max(1, d // 10) for d in spatial)
        mx, my, mz = self.max_size
        grid = torch.stack(torch.meshgrid(torch.arange(1, mx + 1), torch.arange(1, my + 1),
                                          torch.arange(1, mz + 1), indexing="ij"), -1).reshape(-1, 3)
        self.sizes = grid.to(device)  # (M, 3) block size of each class
        self.n_classes = grid.shape[0]
        self.volume = grid.prod(1).to(device)  # (M,)
        # number of corner positions per axis and in all
        ranges = torch.tensor(spatial) - grid + 1
        self.ranges = ranges.to(device)
        self.n_positions = ranges.prod(1).to(device, torch.float64)
        # Window offsets of each class, in cube strides (for writes/reads) and in "max-box
        # strides" (the row layout of the permutation tables). A voxel v inside a block with
        # corner c has max-box index w(v) - w(c), where w(p) = px*my*mz + py*mz + pz is linear:
        # that is what lets the per-voxel pass find its table entry with one add.
        self.offsets: List[torch.Tensor] = []
        self.span_index: List[torch.Tensor] = []
        self.span = []
        for bx, by, bz in grid.tolist():
            lx, ly, lz = torch.meshgrid(torch.arange(bx), torch.arange(by), torch.arange(bz), indexing="ij")
            self.offsets.append((lx * Y * Z + ly * Z + lz).reshape(-1).to(device))
            self.span_index.append((lx * my * mz + ly * mz + lz).reshape(-1).to(device))
            self.span.append((bx - 1) * my * mz + (by - 1) * mz + bz)
        self.span_t = torch.tensor(self.span, device=device)
        vx, vy, vz = torch.meshgrid(torch.arange(X), torch.arange(Y), torch.arange(Z), indexing="ij")
        w_voxel = (vx * my * mz + vy * mz + vz).reshape(-1)
        # an offset that keeps packed (row - w(corner)) non-negative
        self.w_shift = int(w_voxel.max()) + 1
        self.w_voxel_shifted = (self.w_shift - w_voxel).to(device)  # entry = packed_hi - this
        # packed info of the identity blocks: table row 0 (a zero entry), corner = the voxel
        self._identity_hi = (self.w_shift - w_voxel).to(device) << 32
        self._identity = {}
        self.stride_w = (my * mz, mz, 1)
        self.stride_v = (Y * Z, Z, 1)

    def identity_packed(self, n: int) -> torch.Tensor:
        """(n * V,) packed infos of the virtual identity blocks of n samples (cached)."""
        if n not in self._identity:
            v_glob = torch.arange(n * self.n_voxels, device=self._identity_hi.device)
            self._identity[n] = self._identity_hi.repeat(n) | v_glob
        return self._identity[n]


@lru_cache(maxsize=16)
def _shuffle_plan(spatial: Tuple[int, int, int], device: str) -> _ShufflePlan:
    return _ShufflePlan(spatial, torch.device(device))


def _permuted_values(n_rows: int, values: torch.Tensor, generator: Optional[torch.Generator],
                     device: torch.device) -> torch.Tensor:
    """(n_rows, len(values)): row i is ``values[perm_i]`` for independent uniform permutations
    ``perm_i``; ``values`` are distinct non-negative integers (a block class's offsets).

    On CPU: keys ``random bits << value_bits | value`` (distinct, so no ties and no index array)
    and only the VALUES are sorted, with NumPy's vectorised quicksort (~3x faster than
    ``torch.sort`` here); row by row for rows of 5+ keys, else as one flat sort with the row
    number in the top bits. The sorted keys' low bits are the permuted values. Elsewhere (or if
    fewer than 40 random bits would fit): :func:`_permutation_rows`."""
    length = values.numel()
    val_bits = max(1, int(values.max()).bit_length())
    flat_sort = length < 5
    row_bits = max(1, (n_rows - 1).bit_length()) if flat_sort else 0
    rand_bits = min(63 - val_bits - row_bits, 48)
    if torch.device(device).type != "cpu" or rand_bits < _RAND_BITS:
        return values[_permutation_rows_sorted(n_rows, length, generator, device)]
    keys = torch.randint(0, 1 << rand_bits, (n_rows, length), generator=generator, device=device)
    keys <<= val_bits
    keys |= values
    a = keys.numpy()
    if flat_sort:
        keys |= (torch.arange(n_rows, device=device) << (rand_bits + val_bits)).unsqueeze(1)
        a.reshape(-1).sort(kind="quicksort")  # in place
    else:
        a.sort(axis=1, kind="quicksort")  # in place, row by row
    return keys.bitwise_and_((1 << val_bits) - 1)


def _permutation_rows(n_rows: int, length: int, generator: Optional[torch.Generator],
                      device: torch.device) -> torch.Tensor:
    """(n_rows, length) independent uniform permutations of range(length), by one flat sort of
    int64 keys (row << 40 | random bits) - much faster on CPU than a row-wise argsort."""
    if torch.device(device).type == "cpu" and n_rows > 0 and length > 0:
        return _permuted_values(n_rows, torch.arange(length, device=device), generator, device)
    return _permutation_rows_sorted(n_rows, length, generator, device)


def _permutation_rows_sorted(n_rows: int, length: int, generator: Optional[torch.Generator],
                             device: torch.device) -> torch.Tensor:
    """:func:`_permutation_rows` by ``torch.sort`` (any device)."""
    keys = torch.randint(0, 1 << _RAND_BITS, (n_rows, length), generator=generator, device=device)
    keys += torch.arange(n_rows, device=device).unsqueeze(1) << _RAND_BITS
    order = torch.sort(keys.view(-1)).indices.view(n_rows, length)
    return order - (torch.arange(n_rows, device=device) * length).unsqueeze(1)


def local_pixel_shuffle(x: torch.Tensor, n_blocks: int = 10_000, generator: Optional[torch.Generator] = None,
                        permutations: str = "exact", pool_size: int = 64, chunk: Optional[int] = None,
                        kernel: str = "auto") -> torch.Tensor:
    """Models Genesis local pixel shuffling of every sample in ``x`` (N, C, X, Y[, Z]).

    Per sample, ``n_blocks`` blocks: size per axis uniform in [1, max(1, D//10)], corner uniform
    inside the sample. Each block reads its window from the ORIGINAL sample, permutes the voxels
    and writes them to the output; later blocks overwrite earlier ones. One permutation moves all
    channels of a voxel together (the reference shuffles channel 0 of its single channel).

    How (no per-block loop): blocks are drawn class by class (a class = one block size); each
    block gets a random priority and the last writer of every voxel is resolved first, with one
    ``scatter_reduce(amax)`` of the priorities over the voxels each block covers. Only then is the
    source of each voxel computed - once per voxel, not once per write - from its last writer's
    corner and permutation. Exchanging "N iid blocks in order" for "multinomial class counts +
    random priorities" leaves the law unchanged.

    Args:
        permutations: "exact" (fresh permutation per block, the reference's law) or "pool"
            (``pool_size`` fresh permutations per block size, drawn once per call and shared by
            all blocks of that size in the call; faster).
        chunk: samples processed together (default: ~2^19 voxels' worth on CPU, i.e. four
            64x64x32 cubes; all on a GPU); small chunks keep
            the scratch arrays in cache (the work is memory-bound), at a fixed Python cost each.
        kernel: see :data:`KERNELS`. The compiled kernel runs the reference loop itself (blocks
            in order, a fresh permutation each); ``permutations="pool"`` always uses torch.
    Returns:
        tensor like ``x``; voxels outside every block are unchanged.
    """
    _check_batch(x)
    if permutations not in PERMUTATION_MODES:
        raise ValueError(f"permutations must be one of {PERMUTATION_MODES}, got {permutations!r}")
    if x.shape[0] == 0 or n_blocks <= 0:
        return x.clone()
    if permutations == "exact" and use_cpu_kernel(kernel, x):
        flags = torch.full((x.shape[0],), cpu_kernel.SHUFFLE, dtype=torch.uint8)
        return cpu_kernel.degrade(x, flags, sample_seeds(x.shape[0], generator), n_blocks=int(n_blocks))
    if kernel == "c":
        raise ValueError("kernel='c' has no permutation pool; use permutations='exact' or kernel='torch'")
    two_d = x.ndim == 4
    x3 = x.unsqueeze(-1) if two_d else x  # a 2-D sample is a 3-D one with Z=1 (block depth 1)
    plan = _shuffle_plan(tuple(int(s) for s in x3.shape[2:]), str(x.device))
    pool = _permutation_pool(plan, pool_size, generator) if permutations == "pool" else None
    chunk = _default_chunk(chunk, x.device, math.prod(x3.shape[2:]))
    out = torch.empty_like(x3)
    for start in range(0, x3.shape[0], chunk):
        out[start: start + chunk] = _shuffle_chunk(x3[start: start + chunk], plan, int(n_blocks), generator, pool)
    return out.view(x.shape)


def _permutation_pool(plan: _ShufflePlan, pool_size: int, generator: Optional[torch.Generator]
                      ) -> Tuple[torch.Tensor, torch.Tensor, int]:
    """``pool_size`` permutation rows per block class (layout as in :func:`_shuffle_chunk`)."""
    device = plan.sizes.device
    pool_rows = plan.span_t * pool_size
    pool_start = torch.cumsum(pool_rows, 0) - pool_rows + 1  # table[0] stays 0: the identity row
    table = torch.zeros(int(pool_rows.sum()) + 1, dtype=torch.long, device=device)
    for s in range(plan.n_classes):
        offs = plan.offsets[s]
        if offs.numel() == 1:
            continue  # a 1-voxel block is its own permutation; the entry stays 0
        rows = pool_start[s] + torch.arange(pool_size, device=device) * plan.span[s]
        table[(rows.unsqueeze(1) + plan.span_index[s]).view(-1)] = _permuted_values(
            pool_size, offs, generator, device).view(-1)
    return table, pool_start, pool_size


def _shuffle_chunk(x: torch.Tensor, plan: _ShufflePlan, K: int, generator: Optional[torch.Generator],
                   pool: Optional[Tuple[torch.Tensor, torch.Tensor, int]]) -> torch.Tensor:
    N, C = x.shape[:2]
    device = x.device
    V, M = plan.n_voxels, plan.n_classes
    n_total = N * K
    # block index (or, for the virtual identity blocks of uncovered voxels, n_total + voxel) in
    # the low bits of a priority, random bits above it
    f_bits = max(1, int(n_total + N * V).bit_length())
    rand_bits = 62 - f_bits
    if rand_bits < 24:
        raise ValueError(f"local_pixel_shuffle: chunks of {N} samples of {V} voxels are too large; lower chunk")

    # --- blocks, laid out class-major: the blocks of class s occupy one contiguous segment
    cls = torch.randint(0, M, (n_total,), generator=generator, device=device)
    if N > 1:
        cube = torch.arange(N, device=device).repeat_interleave(K)
        counts = torch.bincount(cls * N + cube, minlength=M * N)  # (class, cube) pairs
        pair = torch.repeat_interleave(torch.arange(M * N, device=device), counts)
        b_cls, b_cube = pair // N, pair % N
        seg_end = torch.cumsum(counts.view(M, N).sum(1), 0).tolist()
    else:
        b_cls = torch.sort(cls).values
        b_cube = torch.zeros_like(b_cls)
        seg_end = torch.cumsum(torch.bincount(cls, minlength=M), 0).tolist()
    seg_start = [0] + seg_end[:-1]

    # corner: one float64 draw over all positions of the class, split into per-axis coordinates
    pos = (torch.rand(n_total, generator=generator, device=device, dtype=torch.float64)
           * plan.n_positions[b_cls]).long()
    r = plan.ranges[b_cls]
    cz = pos % r[:, 2]
    pos = pos // r[:, 2]
    cy = pos % r[:, 1]
    cx = pos // r[:, 1]
    c_glob = b_cube * V + cx * plan.stride_v[0] + cy * plan.stride_v[1] + cz
    c_w = cx * plan.stride_w[0] + cy * plan.stride_w[1] + cz

    # priority: random high bits, the block's own index in the low bits (so the amax also says
    # WHICH block won); the random part is >= 1 so every block beats the "uncovered" marker
    prio = torch.randint(1, 1 << rand_bits, (n_total,), generator=generator, device=device)
    prio = (prio << f_bits) | torch.arange(n_total, device=device)

    # --- permutation table rows (max-box strides; entries = source offset from the corner)
    span = plan.span_t[b_cls]
    if pool is None:
        row_start = torch.cumsum(span, 0) - span + 1  # table[0] stays 0: the identity row
        table = torch.zeros(int(span.sum()) + 1, dtype=torch.long, device=device)
    else:
        table, pool_start, pool_size = pool
        seg_start_t = torch.tensor(seg_start, device=device)
        # blocks of a class are exchangeable: handing out pool rows cyclically is as good as
        # drawing a row per block
        row_start = pool_start[b_cls] + (torch.arange(n_total, device=device) - seg_start_t[b_cls]) % pool_size * span

    # every voxel starts as written by a virtual 1-voxel "identity" block of priority 0 that
    # reads the voxel itself: uncovered voxels then need no special case below
    last = torch.arange(n_total, n_total + N * V, device=device)
    # all (voxel, priority) writes of the chunk go into two buffers, then ONE scatter_reduce
    # (each call costs a pass over ``last`` on CPU, so one call per class was ~2x slower)
    seg_len = [(e - a) * plan.offsets[s].numel() for s, (a, e) in enumerate(zip(seg_start, seg_end))]
    n_writes = sum(seg_len)
    w_idx = torch.empty(n_writes, dtype=torch.long, device=device)
    w_prio = torch.empty(n_writes, dtype=torch.long, device=device)
    p = 0
    for s in range(M):
        a, e = seg_start[s], seg_end[s]
        if e == a:
            continue
        offs = plan.offsets[s]
        vol = offs.numel()
        q = p + seg_len[s]
        torch.add(offs.unsqueeze(1), c_glob[a:e], out=w_idx[p:q].view(vol, e - a))
        w_prio[p:q].view(vol, e - a).copy_(prio[a:e].expand(vol, -1))
        p = q
        if pool is None and vol > 1:
            dest = row_start[a:e].unsqueeze(1) + plan.span_index[s]
            table[dest.view(-1)] = _permuted_values(e - a, offs, generator, device).view(-1)
    last.scatter_reduce_(0, w_idx, w_prio, "amax")

    # --- one pass over voxels: who wrote last, and where its value came from. A voxel v in a
    # block with corner c reads table[row + w(v) - w(c)]: (row - w(c)) and the corner are packed
    # into one int64 per block so that a single gather fetches both.
    packed = torch.cat([((row_start - c_w + plan.w_shift) << 32) | c_glob, plan.identity_packed(N)])
    winner = last.bitwise_and_((1 << f_bits) - 1)
    info = torch.index_select(packed, 0, winner)
    entry = torch.bitwise_right_shift(info, 32, out=winner)  # reuse: winner is not needed again
    entry = entry.view(N, V).sub_(plan.w_voxel_shifted).view(-1)
    src = torch.index_select(table, 0, entry)
    src.add_(info.bitwise_and_(0xFFFFFFFF))
    if C == 1:
        return torch.index_select(x.reshape(-1), 0, src).view(x.shape)
    flat = x.transpose(0, 1).reshape(C, N * V)
    return torch.index_select(flat, 1, src).view(C, N, *x.shape[2:]).transpose(0, 1).contiguous()


# ----------------------------------------------------------------------------------------------
# Non-linear intensity transform (Bezier)
# ----------------------------------------------------------------------------------------------

def sample_bezier_params(n: int, generator: Optional[torch.Generator] = None, device: torch.device | str = "cpu",
                         invert_prob: float = 0.5) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per sample: inner control points (a, b, c, d) uniform in [0, 1) -> (n, 4) float64, and
    whether the map is the intensity-inverting branch -> (n,) bool."""
    points = torch.rand((n, 4), generator=generator, device=device, dtype=torch.float64)
    invert = torch.rand(n, generator=generator, device=device) < invert_prob
    return points, invert


def bezier_tables(points: torch.Tensor, invert: torch.Tensor, n_points: int = 4096
                  ) -> Tuple[torch.Tensor, torch.Tensor]:
    """The curve through (0,0), (a,b), (c,d), (1,1) sampled at ``n_points`` equally spaced t
    (Bernstein weight of point i: C(3,i) t^(3-i) (1-t)^i), x-samples sorted; y-samples sorted
    too unless ``invert``. Returns (xs, ys), each (n, n_points) float64."""
    t = torch.linspace(0.0, 1.0, n_points, device=points.device, dtype=torch.float64)
    w1 = 3.0 * t * t * (1 - t)
    w2 = 3.0 * t * (1 - t) * (1 - t)
    w3 = (1 - t) ** 3
    a, b, c, d = (points[:, k: k + 1] for k in range(4))
    xs = a * w1 + c * w2 + w3
    ys = b * w1 + d * w2 + w3
    xs = _sort_rows(xs)
    ys = torch.where(invert.unsqueeze(1), ys, _sort_rows(ys))
    return xs, ys


def _sort_rows(a: torch.Tensor) -> torch.Tensor:
    """Sorted copy of each row; on CPU NumPy's SIMD sort (measured ~8x faster than torch.sort
    on (32, 4096) float64 here; the sorted values are the same)."""
    if a.device.type == "cpu":
        return torch.from_numpy(np.sort(a.numpy(), axis=1))
    return torch.sort(a, dim=1).values


def bezier_map(x: torch.Tensor, points: torch.Tensor, invert: torch.Tensor, n_points: int = 4096,
               lut_size: Optional[int] = None, chunk: Optional[int] = None, kernel: str = "auto") -> torch.Tensor:
    """Map each sample of ``x`` (N, C, ...) through its Bezier curve by piecewise-linear
    interpolation on the ``n_points`` curve table (values outside the table's x-range clamp to
    its ends, like ``np.interp``); ``points`` (N, 4), ``invert`` (N,) as from
    :func:`sample_bezier_params`. Returns a tensor like ``x``.

    ``lut_size=None`` (default) interpolates on the table itself (the reference law; measured
    within 3e-6 of the 100,000-point reference): a per-voxel search, kept short by first bucketing
    the table on a uniform grid. An integer instead interpolates a uniform look-up table of that
    many intensities (faster, but the error reaches ~1e-2 at 4,097 and ~1e-4 at 16,385 near a
    vertical tangent of the curve; a named approximation). ``chunk``: as in
    :func:`local_pixel_shuffle`. ``kernel``: see :data:`KERNELS` (the compiled kernel interpolates
    on the curve table; ``lut_size`` always uses torch).
    """
    _check_batch(x)
    N = x.shape[0]
    if N == 0:
        return x.clone()
    if lut_size is None and use_cpu_kernel(kernel, x):
        flags = torch.full((N,), cpu_kernel.BEZIER, dtype=torch.uint8)
        return cpu_kernel.degrade(x, flags, torch.zeros(N, dtype=torch.int64), points=points, invert=invert,
                                  n_points=n_points)
    if kernel == "c":
        raise ValueError("kernel='c' interpolates on the curve table; use lut_size=None or kernel='torch'")
    # the Bezier kernel measured best at ~2^18 voxels (two 64x64x32 cubes) per chunk on CPU
    chunk = _default_chunk(chunk, x.device, math.prod(x.shape[2:]), budget=1 << 18)
    if N > chunk:
        return torch.cat([_bezier_chunk(x[i: i + chunk], points[i: i + chunk], invert[i: i + chunk], n_points,
                                        lut_size) for i in range(0, N, chunk)])
    return _bezier_chunk(x, points, invert, n_points, lut_size)


def _bezier_chunk(x: torch.Tensor, points: torch.Tensor, invert: torch.Tensor, n_points: int,
                  lut_size: Optional[int]) -> torch.Tensor:
    N = x.shape[0]
    xs, ys = bezier_tables(points.to(x.device, torch.float64), invert.to(x.device), n_points)
    flat = x.reshape(N, -1)
    if lut_size is not None:
        grid = torch.linspace(0.0, 1.0, lut_size, device=x.device, dtype=torch.float64).expand(N, -1).contiguous()
        lut = _interp(grid, xs, ys).to(torch.float32)  # (N, G)
        lut = torch.cat([lut, lut[:, -1:]], 1).view(-1)  # a pad column so "lo + 1" never runs off a row
        pos = torch.clamp(flat, 0.0, 1.0).to(torch.float32).mul_(lut_size - 1)
        lo = pos.to(torch.long)
        frac = pos.sub_(lo)
        lo += (torch.arange(N, device=x.device) * (lut_size + 1)).unsqueeze(1)
        lo = lo.view(-1)
        v0 = torch.index_select(lut, 0, lo)
        v1 = torch.index_select(lut, 0, lo.add_(1))
        return v0.lerp_(v1, frac.view(-1)).to(x.dtype).view(x.shape)
    return _bucketed_interp(flat, xs, ys).to(x.dtype).view(x.shape)


def _bucketed_interp(v: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor, cells_per_point: int = 4) -> torch.Tensor:
    """Row-wise ``np.interp(v[i], xs[i], ys[i])`` (v (N, P), xs/ys (N, T), xs sorted in [0, 1]).

    A uniform grid of G cells over [0, 1] is laid over each table; counting table points per
    cell gives, for every cell, the range of table intervals a value in it can fall into. Each
    voxel then binary-searches only that range: ceil(log2(most points in a cell + 1)) gathers
    instead of log2(T), and no per-voxel ``searchsorted`` call.
    """
    N, T = xs.shape
    device = v.device
    G = 1 << (cells_per_point * T - 1).bit_length()  # a power of two: v * G is exact in float
    xs32 = xs.to(torch.float32)
    # cells from the float32 values that the search compares against, so the bounds are exact
    cell_of_point = (xs32.double() * G).floor_().long().clamp_(0, G - 1)
    counts = torch.zeros((N, G), dtype=torch.long, device=device)
    counts.scatter_add_(1, cell_of_point, torch.ones_like(cell_of_point))
    hi_of_cell = torch.cumsum(counts, 1) - 1  # last index with cell <= g
    lo_of_cell = hi_of_cell - counts  # last index with cell < g (-1 if none)
    vf = v.to(torch.float32)
    cell = (vf.clamp(0.0, 1.0) * G).long().clamp_(max=G - 1)
    if int(counts.max()) <= 1:
        return _one_step_interp(vf, xs32, ys.to(torch.float32), lo_of_cell, cell)
    steps = int(counts.max()).bit_length()
    lo = torch.gather(lo_of_cell, 1, cell)
    hi = torch.gather(hi_of_cell, 1, cell)
    # invariant: the answer (last index with xs <= v, or -1) lies in [lo, hi]
    xs_flat = xs32.reshape(-1)
    base = (torch.arange(N, device=device) * T).unsqueeze(1)
    for _ in range(steps):
        mid = (lo + hi + 1) >> 1
        ok = torch.index_select(xs_flat, 0, (mid.clamp(min=0) + base).view(-1)).view(N, -1) <= vf
        lo = torch.where(ok, mid, lo)
        hi = torch.where(ok, hi, mid - 1)
    lo = lo.clamp_(0, T - 2).add_(base).view(-1)
    x0 = torch.index_select(xs_flat, 0, lo)
    y0 = torch.index_select(ys.to(torch.float32).reshape(-1), 0, lo)
    lo += 1
    x1 = torch.index_select(xs_flat, 0, lo)
    y1 = torch.index_select(ys.to(torch.float32).reshape(-1), 0, lo)
    w = (vf.view(-1) - x0).div_((x1 - x0).clamp_min_(1e-30)).clamp_(0.0, 1.0)
    return y0.lerp_(y1, w).view(N, -1)


def _one_step_interp(vf: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor, lo_of_cell: torch.Tensor,
                     cell: torch.Tensor) -> torch.Tensor:
    """The common case of :func:`_bucketed_interp`: at most one table point per cell, so a value
    falls in interval lo_of_cell or the next one, decided by one comparison. Per-cell (threshold,
    interval) and per-interval (x0, y0, slope) rows are fetched with one gather each."""
    N, T = xs.shape
    device = vf.device
    G = lo_of_cell.shape[1]
    nxt = (lo_of_cell + 1).clamp_(max=T - 1)
    thr = torch.gather(xs, 1, nxt)
    thr = torch.where(lo_of_cell + 1 <= T - 1, thr, torch.full_like(thr, float("inf")))
    cell_rows = torch.stack([thr, lo_of_cell.to(torch.float32)], -1).view(N * G, 2)
    slope = (ys[:, 1:] - ys[:, :-1]) / (xs[:, 1:] - xs[:, :-1]).clamp_min(1e-30)
    interval_rows = torch.stack([xs[:, :-1], ys[:, :-1], slope], -1).view(N * (T - 1), 3)
    # values outside the table clamp to its ends (np.interp)
    v = torch.minimum(torch.maximum(vf, xs[:, :1]), xs[:, -1:])
    cell += (torch.arange(N, device=device) * G).unsqueeze(1)
    c = torch.index_select(cell_rows, 0, cell.view(-1))
    j = c[:, 1].add_((v.view(-1) >= c[:, 0]).to(torch.float32)).clamp_(0, T - 2).to(torch.long)
    j = j.view(N, -1).add_((torch.arange(N, device=device) * (T - 1)).unsqueeze(1)).view(-1)
    r = torch.index_select(interval_rows, 0, j)
    out = v.view(-1).sub(r[:, 0]).mul_(r[:, 2]).add_(r[:, 1])
    return out.view(N, -1)


def _interp(v: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    """Row-wise ``np.interp(v[i], xs[i], ys[i])``: v (N, P), xs/ys (N, T), xs sorted."""
    T = xs.shape[1]
    hi = torch.searchsorted(xs, v, right=True).clamp_(1, T - 1)
    lo = hi - 1
    x0, x1 = xs.gather(1, lo), xs.gather(1, hi)
    y0, y1 = ys.gather(1, lo), ys.gather(1, hi)
    w = ((v - x0) / (x1 - x0).clamp_min(torch.finfo(xs.dtype).tiny)).clamp_(0.0, 1.0)
    out = y0 + w * (y1 - y0)
    # np.interp clamps outside the table to the end values
    out = torch.where(v <= xs[:, :1], ys[:, :1], out)
    return torch.where(v >= xs[:, -1:], ys[:, -1:], out)


# ----------------------------------------------------------------------------------------------
# In-painting and out-painting
# ----------------------------------------------------------------------------------------------

def sample_box_counts(n: int, min_boxes: int, max_boxes: int, continue_prob: float = 0.95,
                      generator: Optional[torch.Generator] = None, device: torch.device | str = "cpu") -> torch.Tensor:
    """``min_boxes`` for sure, then one more while a coin with ``continue_prob`` succeeds, up to
    ``max_boxes``. Returns (n,) long. (0, 5): the in-painting law; (1, 5): out-painting."""
    extra = max(0, max_boxes - min_boxes)
    coins = torch.rand((n, extra), generator=generator, device=device) < continue_prob
    return min_boxes + coins.long().cumprod(1).sum(1)


def _boxes(spatial: Sequence[int], n: int, n_slots: int, size_low: List[int], size_high: List[int],
           generator: Optional[torch.Generator], device) -> Tuple[torch.Tensor, torch.Tensor]:
    d = len(spatial)
    dims = torch.tensor(list(spatial), device=device)
    lo = torch.tensor(size_low, device=device).expand(n, n_slots, d)
    hi = torch.tensor(size_high, device=device).expand(n, n_slots, d)
    size = _uniform_int(lo, hi, generator)
    size = torch.minimum(size, dims)
    # corner in [3, D - size - 3]; on axes too short for that margin, the widest valid range
    c_lo = torch.full_like(size, 3)
    c_hi = dims - size - 3
    short = c_hi < c_lo
    c_lo = torch.where(short, torch.zeros_like(size), c_lo)
    c_hi = torch.where(short, dims - size, c_hi)
    corner = _uniform_int(c_lo, c_hi, generator)
    return corner, size


def sample_inpaint_boxes(spatial: Sequence[int], n: int, n_slots: int, generator: Optional[torch.Generator] = None,
                         device: torch.device | str = "cpu") -> Tuple[torch.Tensor, torch.Tensor]:
    """In-painting boxes: size per axis uniform in [D//6, D//3], corner in [3, D - size - 3].
    Returns (corner, size), each (n, n_slots, n_spatial) long."""
    return _boxes(spatial, n, n_slots, [max(1, s // 6) for s in spatial], [max(1, s // 3) for s in spatial],
                  generator, device)


def sample_outpaint_boxes(spatial: Sequence[int], n: int, n_slots: int, generator: Optional[torch.Generator] = None,
                          device: torch.device | str = "cpu") -> Tuple[torch.Tensor, torch.Tensor]:
    """Out-painting boxes: size D - U[3D//7, 4D//7] per axis, corner in [3, D - size - 3]."""
    return _boxes(spatial, n, n_slots, [s - 4 * s // 7 for s in spatial], [s - 3 * s // 7 for s in spatial],
                  generator, device)


def box_union_mask(spatial: Sequence[int], corner: torch.Tensor, size: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """Union of the first ``count[i]`` boxes of each sample: (n, *spatial) bool."""
    n, n_slots, d = corner.shape
    device = corner.device
    active = (torch.arange(n_slots, device=device) < count.unsqueeze(1)).float()  # (n, slots)
    inside = []
    for axis in range(d):
        ar = torch.arange(spatial[axis], device=device)
        lo = corner[:, :, axis: axis + 1]
        inside.append(((ar >= lo) & (ar < lo + size[:, :, axis: axis + 1])).float())  # (n, slots, D)
    # how many boxes cover each voxel, as a small batched matrix product over box slots
    first = inside[0] * active.unsqueeze(2)
    if d == 2:
        cover = torch.bmm(first.transpose(1, 2), inside[1])
    else:
        xy = (first.unsqueeze(3) * inside[1].unsqueeze(2)).view(n, n_slots, -1)  # (n, slots, X*Y)
        cover = torch.bmm(xy.transpose(1, 2), inside[2])
    return (cover > 0.5).view(n, *spatial)


def _paint_on_cpu_kernel(x: torch.Tensor, flag: int, count: torch.Tensor, corner: torch.Tensor, size: torch.Tensor,
                         generator: Optional[torch.Generator]) -> torch.Tensor:
    flags = torch.full((x.shape[0],), flag, dtype=torch.uint8)
    return cpu_kernel.degrade(x, flags, sample_seeds(x.shape[0], generator), box_count=count.cpu(),
                              box_corner=corner.cpu(), box_size=size.cpu())


def in_paint(x: torch.Tensor, generator: Optional[torch.Generator] = None, min_boxes: int = 0, max_boxes: int = 5,
             continue_prob: float = 0.95, kernel: str = "auto") -> Tuple[torch.Tensor, torch.Tensor]:
    """Fill up to ``max_boxes`` boxes per sample with independent U[0,1) noise per voxel (shared
    by the channels). Returns (painted, mask (N, *spatial) bool). ``kernel``: see :data:`KERNELS`."""
    _check_batch(x)
    N, C = x.shape[:2]
    spatial = tuple(x.shape[2:])
    count = sample_box_counts(N, min_boxes, max_boxes, continue_prob, generator, x.device)
    corner, size = sample_inpaint_boxes(spatial, N, max(1, max_boxes), generator, x.device)
    mask = box_union_mask(spatial, corner, size, count)
    if use_cpu_kernel(kernel, x):
        return _paint_on_cpu_kernel(x, cpu_kernel.INPAINT, count, corner, size, generator), mask
    # full-cube noise and one select: measured faster on CPU than drawing noise for the masked
    # voxels only (a boolean index_put costs more than the RNG it saves); same law
    noise = torch.rand((N, 1, *spatial), generator=generator, device=x.device, dtype=x.dtype)
    return torch.where(mask.unsqueeze(1), noise, x), mask


def out_paint(x: torch.Tensor, generator: Optional[torch.Generator] = None, min_boxes: int = 1, max_boxes: int = 5,
              continue_prob: float = 0.95, kernel: str = "auto") -> Tuple[torch.Tensor, torch.Tensor]:
    """Replace each sample by U[0,1) noise (shared by the channels) except inside 1..``max_boxes``
    boxes, which keep the original. Returns (painted, kept mask (N, *spatial) bool).
    ``kernel``: see :data:`KERNELS`."""
    _check_batch(x)
    N, C = x.shape[:2]
    spatial = tuple(x.shape[2:])
    count = sample_box_counts(N, min_boxes, max_boxes, continue_prob, generator, x.device)
    corner, size = sample_outpaint_boxes(spatial, N, max(1, max_boxes), generator, x.device)
    mask = box_union_mask(spatial, corner, size, count)
    if use_cpu_kernel(kernel, x):
        return _paint_on_cpu_kernel(x, cpu_kernel.OUTPAINT, count, corner, size, generator), mask
    noise = torch.rand((N, 1, *spatial), generator=generator, device=x.device, dtype=x.dtype)
    return torch.where(mask.unsqueeze(1), x, noise), mask
