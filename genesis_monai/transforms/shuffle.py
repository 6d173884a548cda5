"""Models Genesis local pixel shuffling (METHODS.md §1, step 2), vectorised torch kernel.

Per sample, ``n_blocks`` blocks: size per axis uniform in [1, max(1, D//10)], corner uniform
inside the sample; each block reads its window from the ORIGINAL sample, permutes the voxels and
writes them to the output, later blocks overwriting earlier ones. :func:`local_pixel_shuffle` is
the public kernel (it routes float CPU batches to the compiled kernel through
:mod:`.kernel_choice`); :func:`shuffle_torch` is the torch implementation, which draws the blocks
and permutations from the generator it is given.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import List, Optional, Tuple

import torch

from . import cpu_kernel, validation
from .chunking import default_chunk
from .kernel_choice import choose_kernel
from .sampling import sample_seeds

__all__ = ["PERMUTATION_MODES", "local_pixel_shuffle", "shuffle_torch"]

#: ``"exact"``: a fresh uniform permutation for every shuffle block (the reference's law).
#: ``"pool"``: ``pool_size`` fresh permutations per block size per call, shared by the blocks of
#: that size in the call (faster; each block's permutation is still uniform, but blocks of one
#: size are no longer independent of each other).
PERMUTATION_MODES = ("exact", "pool")

_RAND_BITS = 40  # random bits of a sort key; ties (probability ~n^2 / 2^41) would order by index


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
    fewer than 40 random bits would fit): :func:`_permutation_rows_sorted`."""
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


def _permutation_rows_sorted(n_rows: int, length: int, generator: Optional[torch.Generator],
                             device: torch.device) -> torch.Tensor:
    """(n_rows, length) independent uniform permutations of range(length), by one flat sort of
    int64 keys (row << 40 | random bits) with ``torch.sort`` (any device)."""
    keys = torch.randint(0, 1 << _RAND_BITS, (n_rows, length), generator=generator, device=device)
    keys += torch.arange(n_rows, device=device).unsqueeze(1) << _RAND_BITS
    order = torch.sort(keys.view(-1)).indices.view(n_rows, length)
    return order - (torch.arange(n_rows, device=device) * length).unsqueeze(1)


def local_pixel_shuffle(x: torch.Tensor, n_blocks: int = 10_000, generator: Optional[torch.Generator] = None,
                        permutations: str = "exact", pool_size: int = 64, chunk: Optional[int] = None,
                        kernel: str = "auto", check_range: bool = True) -> torch.Tensor:
    """Models Genesis local pixel shuffling of every sample in ``x`` (N, C, X, Y[, Z]), values in [0, 1].

    Per sample, ``n_blocks`` blocks: size per axis uniform in [1, max(1, D//10)], corner uniform
    inside the sample. Each block reads its window from the ORIGINAL sample, permutes the voxels
    and writes them to the output; later blocks overwrite earlier ones. One permutation moves all
    channels of a voxel together (the reference shuffles channel 0 of its single channel).

    Args:
        permutations: "exact" (fresh permutation per block, the reference's law) or "pool"
            (``pool_size`` fresh permutations per block size, drawn once per call and shared by
            all blocks of that size in the call; faster; torch only).
        chunk: samples the torch kernel processes together (see :func:`shuffle_torch`).
        kernel: "auto", "torch" or "c" (:mod:`.kernel_choice`). The compiled kernel runs the
            reference loop itself (blocks in order, a fresh permutation each).
        check_range: reject values outside [0, 1] and NaN (one pass over the batch,
            :func:`.validation.check_range`).
    Returns:
        a new tensor like ``x``; voxels outside every block are unchanged.
    """
    validation.check_batch(x, "local_pixel_shuffle x")
    if permutations not in PERMUTATION_MODES:
        raise ValueError(f"permutations must be one of {PERMUTATION_MODES}, got {permutations!r}")
    if check_range:
        validation.check_range(x, "local_pixel_shuffle x")
    if x.shape[0] == 0 or n_blocks <= 0:
        return x.clone()
    if choose_kernel(x, kernel, permutations=permutations).name == "c":
        flags = torch.full((x.shape[0],), cpu_kernel.SHUFFLE, dtype=torch.uint8)
        return cpu_kernel.degrade(x, flags, sample_seeds(x.shape[0], generator), n_blocks=int(n_blocks))
    return shuffle_torch(x, n_blocks, generator, permutations, pool_size, chunk)


def shuffle_torch(x: torch.Tensor, n_blocks: int, generator: Optional[torch.Generator] = None,
                  permutations: str = "exact", pool_size: int = 64, chunk: Optional[int] = None) -> torch.Tensor:
    """The vectorised torch shuffle of ``x`` (N, C, X, Y[, Z]) (no checks, any device).

    How (no per-block loop): blocks are drawn class by class (a class = one block size); each
    block gets a random priority and the last writer of every voxel is resolved first, with one
    ``scatter_reduce(amax)`` of the priorities over the voxels each block covers. Only then is the
    source of each voxel computed - once per voxel, not once per write - from its last writer's
    corner and permutation. Exchanging "N iid blocks in order" for "multinomial class counts +
    random priorities" leaves the law unchanged.

    ``chunk``: samples processed together (default: ~2^19 voxels' worth on CPU, i.e. four
    64x64x32 cubes; all on a GPU); small chunks keep the scratch arrays in cache (the work is
    memory-bound), at a fixed Python cost each. The chunk decides which random numbers go to which
    sample, so a seed reproduces the output only with the same chunk.
    """
    if x.shape[0] == 0 or n_blocks <= 0:
        return x.clone()
    x3 = x.unsqueeze(-1) if x.ndim == 4 else x  # a 2-D sample is a 3-D one with Z=1 (block depth 1)
    plan = _shuffle_plan(tuple(int(s) for s in x3.shape[2:]), str(x.device))
    pool = _permutation_pool(plan, pool_size, generator) if permutations == "pool" else None
    chunk = default_chunk(chunk, x.device, math.prod(x3.shape[2:]))
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
