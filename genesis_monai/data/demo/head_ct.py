"""The head-CT phantom: procedural non-contrast head CT volumes (HU) with hemorrhage labels (:data:`HEAD_CT`).

Made for SMART-Net (slice-level intracranial-hemorrhage learning) when no CT-ICH data is at hand.
What a volume holds (Hounsfield units, int16, axes (X, Y, Z) = (right, anterior, superior),
axial slices along Z, a diagonal RAS affine with the requested spacing, centred on the origin):

- air outside the head (-1000); the head is an ellipsoid (slightly wobbly outline, a small
  in-plane rotation) whose top and bottom may fall short of the first and last slices, which
  are then all air (work for SMART-Net's "drop empty end slices");
- scalp (+20..+40), skull (diploe +700..+900 between cortical tables up to +1500) whose
  thickness varies around the head;
- inside the skull: a thin CSF rim (0..+10), grey matter (+37..+43) in a folded cortical
  ribbon around CSF-filled sulci (the zero set of a smooth random field), white matter
  (+28..+33) with low-frequency texture, deep grey matter, lateral ventricles (frontal horns,
  bodies, atria, occipital and temporal horns) and a third ventricle (CSF), the falx cerebri (a
  thin dense midline plate in the interhemispheric fissure), sometimes calcified choroid plexus;
- hemorrhage (label 1), +50..+90 HU, in positive volumes (every index but each third, see
  :func:`is_negative_index`): one to three lesions of the kinds of :data:`HEMORRHAGE_KINDS`,
  intraparenchymal (an irregular blob, sometimes with a hypodense oedema ring), subdural (a
  crescent along the inner table, not crossing the midline), epidural (a biconvex lens against
  the skull), subarachnoid (blood in the sulci and the CSF rim of a patch of the surface) and
  intraventricular (part of a ventricle filled with blood);
- a slight in-plane blur (partial volume) and correlated Gaussian noise of about 4 HU.

In the brain window [0, 80] HU (SMART-Net's) a lesion stands 15..50 HU above the parenchyma;
the falx, the blurred inner table and calcifications are as bright, so a slice classifier has to
use shape and place. The anatomy is defined for a 204.8 x 204.8 x 140 mm field of view (the
default 128 x 128 x 28 voxels of 1.6 x 1.6 x 5 mm, thick axial slices like CT-ICH) and scaled to
the field of view of ``shape * spacing``. Everything is vectorised NumPy; a default volume takes
a fraction of a second. The random stream of volume ``index`` is
``numpy.random.default_rng(SeedSequence([seed, index]))``; its first draws are the lesion plan,
so :func:`head_ct_lesion_kinds` knows a volume's lesions without making it.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np

from genesis_monai.data.demo.checks import check_int, check_shape, check_spacing
from genesis_monai.data.demo.geometry import Grid, correlated_noise, draw_tube, random_rotation, smooth
from genesis_monai.data.demo.phantom import Phantom

__all__ = ["make_head_ct_volume", "head_ct_affine", "head_ct_lesion_kinds", "head_ct_entry_fields",
           "is_negative_index", "HEAD_CT", "HEMORRHAGE_KINDS", "HEAD_CT_SHAPE", "HEAD_CT_SPACING",
           "HEAD_CT_N_VOLUMES", "HEAD_CT_VERSION"]

#: default volume size (X, Y, Z) in voxels
HEAD_CT_SHAPE: Tuple[int, int, int] = (128, 128, 28)
#: default voxel spacing (X, Y, Z) in mm: thick axial slices, as in CT-ICH
HEAD_CT_SPACING: Tuple[float, float, float] = (1.6, 1.6, 5.0)
#: default number of volumes (18 training / 3 validation / 3 test; a third of them negative)
HEAD_CT_N_VOLUMES = 24
#: bumped whenever the generator's output changes
HEAD_CT_VERSION = 1
#: smallest volume (X, Y, Z) the anatomy fits in
MIN_SHAPE: Tuple[int, int, int] = (48, 48, 12)
#: the hemorrhage kinds (the CT-ICH subtype names, lower case)
HEMORRHAGE_KINDS: Tuple[str, ...] = ("intraparenchymal", "subdural", "epidural", "subarachnoid", "intraventricular")
#: every NEGATIVE_EVERY-th volume (index % 3 == 2) is a negative scan
NEGATIVE_EVERY = 3
MAX_LESIONS = 3
REF_FOV_MM = 204.8  # in-plane field of view the anatomy is written for
REF_HEIGHT_MM = 140.0  # and its height

# Hounsfield units
HU_AIR = -1000.0
HU_SCALP = (20.0, 40.0)
HU_DIPLOE = (700.0, 900.0)
HU_CORTEX = (1250.0, 1500.0)
HU_CSF = (2.0, 8.0)
HU_GREY = (37.0, 43.0)
HU_WHITE = (28.0, 33.0)
HU_FALX = (65.0, 80.0)
HU_CALCIFICATION = (120.0, 250.0)
HU_BLOOD = (50.0, 90.0)  # every hemorrhage voxel before blur and noise
NOISE_HU = 4.0
MIN_LESION_VOXELS = 4  # a planned lesion is redrawn until its label has at least this many voxels


def is_negative_index(index: int) -> bool:
    """Whether volume ``index`` is a negative scan (no hemorrhage): every third volume, index % 3 == 2."""
    return check_int(index, "index") % NEGATIVE_EVERY == NEGATIVE_EVERY - 1


def _plan(rng: np.random.Generator, index: int) -> Tuple[str, ...]:
    """The lesion kinds of a volume: the first draws of its stream (the same draws for negatives)."""
    n = int(rng.integers(1, MAX_LESIONS + 1))
    picks = rng.integers(0, len(HEMORRHAGE_KINDS), size=MAX_LESIONS)
    if is_negative_index(index):
        return ()
    return tuple(HEMORRHAGE_KINDS[int(k)] for k in picks[:n])


def head_ct_lesion_kinds(index: int, seed: int = 0) -> Tuple[str, ...]:
    """The kinds of the lesions of volume ``index`` in drawing order (may repeat; empty for a negative scan).

    Cheap (no volume is made) and independent of shape and spacing.
    """
    index, seed = check_int(index, "index"), check_int(seed, "seed")
    return _plan(np.random.default_rng(np.random.SeedSequence([seed, index])), index)


def head_ct_entry_fields(index: int, seed: int = 0) -> Dict[str, Any]:
    """Extra ``dataset.json`` fields of volume ``index``: ``{"hemorrhage": 0|1, "hemorrhage_kinds": [sorted]}``."""
    kinds = head_ct_lesion_kinds(index, seed)
    return {"hemorrhage": int(bool(kinds)), "hemorrhage_kinds": sorted(set(kinds))}


def _soft(distance_inside: np.ndarray, edge: float) -> np.ndarray:
    """Occupancy (0..1, float32) from a signed distance in mm (> 0 inside), ramped over one voxel ``edge``."""
    return np.clip(distance_inside / edge + 0.5, 0.0, 1.0).astype(np.float32)


class _Head:
    """The anatomy of one volume: fields on the grid that the lesion painters read."""

    def __init__(self, grid: Grid, rng: np.random.Generator):
        self.grid, self.rng = grid, rng
        u = rng.uniform
        Lx, Ly, Lz = grid.extent
        s = float(min(Lx, Ly)) / REF_FOV_MM
        sz = float(Lz) / REF_HEIGHT_MM
        self.s, self.sz, self.edge = s, sz, grid.edge
        edge = grid.edge

        # ---- head frame: centre, in-plane rotation, ellipsoid semi-axes -------------------------------
        self.cx, self.cy, self.z0 = u(-0.02, 0.02) * Lx, u(-0.03, 0.01) * Ly, u(-0.06, 0.02) * Lz
        yaw = np.deg2rad(u(-8.0, 8.0))
        self.cos, self.sin = float(np.cos(yaw)), float(np.sin(yaw))
        dx, dy = grid.x - self.cx, grid.y - self.cy
        self.xr = (self.cos * dx + self.sin * dy).astype(np.float32)  # (X, Y, 1): right in the head frame
        self.yr = (-self.sin * dx + self.cos * dy).astype(np.float32)  # anterior in the head frame
        self.dz = (grid.z - self.z0).astype(np.float32)  # (1, 1, Z)
        self.a, self.b = u(68.0, 76.0) * s, u(86.0, 94.0) * s
        self.c_top, self.c_bot = u(0.40, 0.47) * Lz, u(0.40, 0.50) * Lz
        theta = np.arctan2(self.yr, self.xr)
        wobble = 1.0 + sum(u(0.005, 0.02) * np.cos(k * theta + u(0.0, 2.0 * np.pi)) for k in (2, 3, 4))
        c = np.where(self.dz > 0, self.c_top, self.c_bot).astype(np.float32)
        self.X = self.xr / (self.a * wobble)
        self.Y = self.yr / (self.b * wobble)
        self.Z = self.dz / c
        rho = np.sqrt(self.X ** 2 + self.Y ** 2 + self.Z ** 2)
        dist = np.sqrt(self.xr ** 2 + self.yr ** 2 + self.dz ** 2)
        self.rho = np.maximum(rho, 1e-6)
        # depth below the head surface along the ray from the centre (mm): R (1 - rho), R = dist / rho
        R = np.where(rho > 1e-3, dist / self.rho, min(self.a, self.b))
        depth = (R * (1.0 - rho)).astype(np.float32)

        t_scalp = u(3.5, 6.0) * s * (1.0 + 0.2 * np.cos(theta - u(0.0, 2.0 * np.pi)))
        t_skull = u(5.0, 7.0) * s * (1.0 + 0.25 * np.cos(theta - u(0.0, 2.0 * np.pi))
                                     + 0.12 * np.cos(2.0 * theta + u(0.0, 2.0 * np.pi)))
        self.depth_in = (depth - t_scalp - t_skull).astype(np.float32)  # mm below the inner table
        self.head = depth > 0
        self.intracranial = self.depth_in >= 0
        self.skull = self.head & (depth >= t_scalp) & ~self.intracranial

        hu = np.full(grid.shape, HU_AIR, dtype=np.float32)
        hu[self.head] = u(*HU_SCALP)
        f = np.clip((depth - t_scalp) / t_skull, 0.0, 1.0)  # 0 outer, 1 inner table
        g = np.abs(2.0 * f - 1.0)
        diploe, cortex = u(*HU_DIPLOE), u(*HU_CORTEX)
        bone = diploe + (cortex - diploe) * np.clip((g - 0.35) / 0.35, 0.0, 1.0)
        hu[self.skull] = bone[self.skull]

        # ---- brain: cortex folded around sulci, white matter, texture -----------------------------------
        sig = 6.0  # mm: the gyral pattern's length scale
        field = correlated_noise(rng, grid.shape, tuple(sig / sp for sp in grid.spacing))
        self.sulcus_dist = np.abs(field) * (sig / np.sqrt(1.5))  # about the distance (mm) to the field's zero set
        self.t_rim = u(1.2, 2.2) * s
        self.t_gm = u(2.5, 3.5) * s
        self.sulcus_depth = u(10.0, 15.0) * s
        self.w_sulcus = u(1.6, 2.2) * s  # sulcal width
        near_surface = self.depth_in < self.sulcus_depth
        gm = np.maximum(_soft(self.t_rim + self.t_gm - self.depth_in, edge),
                        _soft(self.w_sulcus / 2.0 + self.t_gm - self.sulcus_dist, edge)
                        * (self.depth_in < self.sulcus_depth + self.t_gm))
        self.texture = correlated_noise(rng, grid.shape, tuple(8.0 / sp for sp in grid.spacing))
        grey, white = u(*HU_GREY), u(*HU_WHITE)
        brain = white + (grey - white) * gm + 2.0 * self.texture

        # deep grey matter (thalami, basal ganglia) either side of the third ventricle
        self.zv = self.z0 + u(0.05, 0.15) * self.c_top
        for side in (1.0, -1.0):
            q = (((self.xr - side * 0.13 * self.a) / (0.10 * self.a)) ** 2
                 + ((self.yr + 0.02 * self.b) / (0.14 * self.b)) ** 2
                 + ((self.dz - (self.zv - self.z0) + 0.10 * self.c_top) / (0.13 * self.c_top)) ** 2)
            deep = _soft((1.0 - np.sqrt(q)) * 0.1 * self.a, edge)
            brain += deep * (grey - 1.0 - brain)

        # ---- CSF: rim, sulci, interhemispheric fissure, ventricles; the falx ------------------------------
        self.x_mid = (1.5 * s * np.sin(np.pi * self.yr / self.b + u(-0.5, 0.5))).astype(np.float32)
        off_mid = np.abs(self.xr - self.x_mid)
        rel = self.yr / self.b
        z_falx = (self.zv - self.z0 + (10.0 * np.exp(-(rel / 0.35) ** 2)
                  - 30.0 * np.clip((np.abs(rel) - 0.45) / 0.2, 0.0, 1.0)) * sz)
        falx_zone = self.dz > z_falx  # the falx reaches down to the corpus callosum, lower front and back
        rim = _soft(self.t_rim - self.depth_in, edge)
        sulci = _soft(self.w_sulcus / 2.0 - self.sulcus_dist, edge) * near_surface
        fissure = _soft(u(1.5, 2.5) * s - off_mid, edge) * falx_zone
        self.vent = self._ventricles()
        self.csf = np.maximum(np.maximum(rim, sulci), np.maximum(fissure, self.vent))
        brain += self.csf * (u(*HU_CSF) - brain)
        self.falx = _soft(0.6 * s - off_mid, edge) * falx_zone * (self.depth_in > 0.5 * self.t_rim)
        brain += self.falx * (u(*HU_FALX) - brain)
        if rng.random() < 0.6:  # calcified choroid plexus in the atria
            for p in self.atria:
                self._ball_into(brain, p, u(1.5, 2.5) * s + 0.5 * edge, u(*HU_CALCIFICATION))
        self.hu = np.where(self.intracranial, brain, hu).astype(np.float32)
        self._cache: Dict[str, np.ndarray] = {}

    # ---- helpers ------------------------------------------------------------------------------------------
    def to_grid(self, xr: float, yr: float, z: float) -> np.ndarray:
        """Point (mm) in the head frame (right, anterior, height above the head centre) -> grid mm."""
        return np.array([self.cx + self.cos * xr - self.sin * yr, self.cy + self.sin * xr + self.cos * yr, self.z0 + z])

    def _ball_into(self, arr: np.ndarray, p: np.ndarray, r: float, value: float) -> None:
        box = self.grid.box(p - r - self.edge, p + r + self.edge)
        if box is None:
            return
        px, py, pz = self.grid.coords(box)
        occ = _soft(r - np.sqrt((px - p[0]) ** 2 + (py - p[1]) ** 2 + (pz - p[2]) ** 2), self.edge)
        arr[box] += occ * (value - arr[box])

    def _ventricles(self) -> np.ndarray:
        """Soft occupancy of the lateral and third ventricles (tapered tubes along a curved path)."""
        u, a, b, c = self.rng.uniform, self.a, self.b, self.c_top
        scale = u(0.8, 1.3) * self.s  # ventricle size varies (age, atrophy)
        zv = self.zv - self.z0
        occ = np.zeros(self.grid.shape, np.float32)
        self.atria: List[np.ndarray] = []
        for side in (1.0, -1.0):
            jx, jy = u(-0.02, 0.02, 5), u(-0.02, 0.02, 5)  # each landmark moves a little
            frontal = self.to_grid(side * (0.10 + jx[0]) * a, (0.38 + jy[0]) * b, zv + 0.02 * c)
            body = self.to_grid(side * (0.14 + jx[1]) * a, (0.12 + jy[1]) * b, zv + 0.13 * c)
            atrium = self.to_grid(side * (0.21 + jx[2]) * a, (-0.25 + jy[2]) * b, zv + 0.07 * c)
            occipital = self.to_grid(side * (0.17 + jx[3]) * a, (-0.48 + jy[3]) * b, zv - 0.02 * c)
            temporal = self.to_grid(side * (0.38 + jx[4]) * a, (-0.02 + jy[4]) * b, zv - 0.33 * c)
            for p, q, rp, rq in ((frontal, body, 4.5, 5.5), (body, atrium, 5.5, 7.0), (atrium, occipital, 7.0, 2.5),
                                 (atrium, temporal, 5.0, 2.5)):
                draw_tube(self.grid, occ, p, q, rp * scale, rq * scale)
            self.atria.append(atrium)
        third = (self.to_grid(0.0, 0.10 * b, zv - 0.06 * c), self.to_grid(0.0, -0.10 * b, zv - 0.10 * c))
        draw_tube(self.grid, occ, third[0], third[1], u(1.5, 2.5) * scale, u(1.5, 2.5) * scale)
        occ *= self.depth_in > 8.0 * self.s
        return occ

    def directions(self) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Unit directions of the voxels from the head centre, in the ellipsoid's normalised frame (cached)."""
        if "dirs" not in self._cache:
            self._cache["dirs"] = np.stack(np.broadcast_arrays(self.X / self.rho, self.Y / self.rho, self.Z / self.rho))
        d = self._cache["dirs"]
        return d[0], d[1], d[2]

    def patch(self, azimuth: float, elevation: float, half_angle: float) -> np.ndarray:
        """1 - (angle / half_angle)^2 (clipped at 0) of each voxel's direction to the given one: a cap of the head."""
        ux, uy, uz = self.directions()
        cd = np.array([np.cos(azimuth) * np.cos(elevation), np.sin(azimuth) * np.cos(elevation), np.sin(elevation)])
        ang = np.arccos(np.clip(ux * cd[0] + uy * cd[1] + uz * cd[2], -1.0, 1.0))
        return np.clip(1.0 - (ang / half_angle) ** 2, 0.0, 1.0).astype(np.float32)

    def voxel_point(self, candidates: np.ndarray) -> np.ndarray:
        """A random point (mm) inside a random voxel of the flat index array ``candidates``."""
        idx = np.array(np.unravel_index(candidates[self.rng.integers(candidates.size)], self.grid.shape), float)
        return self.grid.origin + (idx + self.rng.uniform(-0.5, 0.5, 3) * np.array([0.9, 0.9, 0.6])) * self.grid.spacing


class _Lesion(NamedTuple):
    """One drawn hemorrhage: soft occupancy ``occ`` and HU ``value`` in ``box`` (None: the whole grid)."""

    box: Any
    occ: np.ndarray
    value: np.ndarray
    darken: Optional[np.ndarray] = None  # HU taken off around it (oedema), same box


def _blood(head: _Head, box: Any = None) -> np.ndarray:
    """HU of fresh blood with a faint texture, inside :data:`HU_BLOOD`."""
    value = head.rng.uniform(58.0, 82.0)
    tex = head.texture if box is None else head.texture[box]
    return np.clip(value + 3.0 * tex, HU_BLOOD[0] + 2.0, HU_BLOOD[1] - 2.0).astype(np.float32)


def _intraparenchymal(head: _Head, r_min: float) -> Optional[_Lesion]:
    grid, rng, u, s = head.grid, head.rng, head.rng.uniform, head.s
    key = "deep_brain"
    if key not in head._cache:
        head._cache[key] = np.flatnonzero(head.intracranial & (head.depth_in > 12.0 * s) & (head.vent < 0.05))
    cand = head._cache[key]
    if cand.size == 0:
        return None
    r = max(r_min, u(5.0, 18.0) * s)
    c = head.voxel_point(cand)
    # a main ellipsoid and 0-3 lobes (centres inside it), their union made lumpy by smooth noise
    parts = [(np.zeros(3), r * u(0.75, 1.25, 3), random_rotation(rng))]
    for _ in range(int(rng.integers(0, 4))):
        off = rng.standard_normal(3)
        off *= 0.7 * r * u(0.4, 0.9) / max(float(np.linalg.norm(off)), 1e-9)
        parts.append((off, np.full(3, r * u(0.4, 0.7)), np.eye(3)))
    ext = max(float(np.linalg.norm(o) + ax.max()) for o, ax, _ in parts) * 1.3 + 3.0 * head.edge + 4.0 * s
    box = grid.box(c - ext, c + ext)
    if box is None:
        return None
    px, py, pz = grid.coords(box)
    q = None
    for off, ax, rot in parts:
        d = [px - c[0] - off[0], py - c[1] - off[1], pz - c[2] - off[2]]
        qp = np.sqrt(sum(((rot[0, k] * d[0] + rot[1, k] * d[1] + rot[2, k] * d[2]) / ax[k]) ** 2 for k in range(3)))
        q = qp if q is None else np.minimum(q, qp)
    shape = tuple(sl.stop - sl.start for sl in box)
    lumps = correlated_noise(rng, shape, tuple(0.35 * r / sp for sp in grid.spacing))
    q = q / (1.0 + 0.25 * np.clip(lumps, -2.5, 2.5))  # an irregular outline
    r_edge = float(min(ax.min() for _, ax, _ in parts))
    inside = (head.intracranial[box] & (head.vent[box] < 0.5) & (head.depth_in[box] > 2.0 * s))
    occ = _soft((1.0 - q) * r_edge, head.edge) * inside
    darken = None
    if rng.random() < 0.5:  # perihaematomal oedema: a hypodense ring, not part of the label
        ring = _soft(np.minimum(q - 1.0, 1.0 + u(3.0, 6.0) * s / r - q) * r, head.edge) * inside
        darken = ring * u(5.0, 9.0)
    return _Lesion(box, occ, _blood(head, box), darken)


def _extra_axial(head: _Head, kind: str, r_min: float) -> Optional[_Lesion]:
    """Subdural crescent or epidural lens: blood from the inner table inwards, thickness tapering over a cap."""
    u, s, edge = head.rng.uniform, head.s, head.edge
    side = 1.0 if head.rng.random() < 0.5 else -1.0
    if kind == "subdural":
        az = u(-65.0, 65.0) if side > 0 else u(115.0, 245.0)
        w = head.patch(np.deg2rad(az), np.deg2rad(u(-5.0, 45.0)), np.deg2rad(u(35.0, 60.0)))
        thick = max(u(4.0, 11.0) * s, 1.6 * edge) * np.sqrt(w)  # a crescent: nearly even, tapering at its ends
        same_side = _soft(side * (head.xr - head.x_mid) - 1.5 * s, edge)  # does not cross the falx
    else:
        az = u(-75.0, 75.0) if side > 0 else u(105.0, 255.0)
        w = head.patch(np.deg2rad(az), np.deg2rad(u(-5.0, 40.0)), np.deg2rad(u(15.0, 28.0)))
        thick = max(u(8.0, 18.0) * s, max(r_min, 1.6 * edge)) * w  # a lens: thickest in its middle
        same_side = np.float32(1.0)
    occ = _soft(np.minimum(thick - head.depth_in, head.depth_in + 0.5 * edge), edge) * (w > 0) * same_side
    occ *= head.intracranial
    return _Lesion(None, occ.astype(np.float32), _blood(head)) if occ.any() else None


def _subarachnoid(head: _Head, r_min: float) -> Optional[_Lesion]:
    """Blood in the sulci and the CSF rim of a cap of the convexity."""
    u, s, edge = head.rng.uniform, head.s, head.edge
    w = head.patch(np.deg2rad(u(0.0, 360.0)), np.deg2rad(u(0.0, 55.0)), np.deg2rad(u(20.0, 40.0)))
    # blood widens the sulci it fills a little; at coarse spacing they stay at least a voxel wide
    width = max(1.3 * head.w_sulcus, 1.2 * edge)
    rim = _soft(max(1.5 * head.t_rim, edge) - head.depth_in, edge)
    sulci = _soft(width / 2.0 - head.sulcus_dist, edge) * (head.depth_in < head.sulcus_depth)
    occ = np.maximum(rim, sulci) * (w > 0) * head.intracranial
    # brighter than the other kinds: thin, it loses contrast to the CSF around it in the partial volume
    value = np.clip(u(62.0, 82.0) + 3.0 * head.texture, HU_BLOOD[0] + 2.0, HU_BLOOD[1] - 2.0)
    return _Lesion(None, occ.astype(np.float32), value.astype(np.float32)) if occ.any() else None


def _intraventricular(head: _Head, r_min: float) -> Optional[_Lesion]:
    """Part of a ventricle filled with blood, often layering in an occipital horn."""
    rng, u, s = head.rng, head.rng.uniform, head.s
    key = "ventricle_voxels"
    if key not in head._cache:
        vent = head.vent >= 0.6
        head._cache[key] = np.flatnonzero(vent)
        head._cache[key + "_back"] = np.flatnonzero(vent & (head.yr < -0.1 * head.b))
    cand = head._cache[key + "_back"] if rng.random() < 0.6 else head._cache[key]
    if cand.size == 0:
        cand = head._cache[key]
    if cand.size == 0:
        return None
    c = head.voxel_point(cand)
    r = max(r_min, u(5.0, 12.0) * s)
    box = head.grid.box(c - r - head.edge, c + r + head.edge)
    if box is None:
        return None
    px, py, pz = head.grid.coords(box)
    ball = _soft(r - np.sqrt((px - c[0]) ** 2 + (py - c[1]) ** 2 + (pz - c[2]) ** 2), head.edge)
    return _Lesion(box, np.minimum(ball, head.vent[box]), _blood(head, box))


_PAINTERS: Dict[str, Callable[..., Optional[_Lesion]]] = {
    "intraparenchymal": _intraparenchymal,
    "subdural": lambda head, r_min: _extra_axial(head, "subdural", r_min),
    "epidural": lambda head, r_min: _extra_axial(head, "epidural", r_min),
    "subarachnoid": _subarachnoid,
    "intraventricular": _intraventricular,
}


def make_head_ct_volume(
    index: int,
    shape: Sequence[int] = HEAD_CT_SHAPE,
    spacing: Sequence[float] = HEAD_CT_SPACING,
    seed: int = 0,
    *,
    return_masks: bool = False,
) -> Union[Tuple[np.ndarray, np.ndarray], Tuple[np.ndarray, np.ndarray, Dict[str, np.ndarray]]]:
    """One procedural head CT volume and its hemorrhage label.

    Args:
        index: volume number (each index is an independent "patient"; index % 3 == 2 is negative).
        shape: (X, Y, Z) voxels; X, Y >= 48 and Z >= 12; Z is the axial (slice) axis.
        spacing: (X, Y, Z) voxel size in mm; with ``shape`` it sets the field of view, to which
            the anatomy is scaled.
        seed: data-set seed; ``(seed, index)`` seeds the volume's random stream.
        return_masks: also return boolean masks (for tests and pictures): ``head``, ``skull``,
            ``intracranial`` (inside the inner table), ``ventricles``, ``csf``, ``falx``, and
            ``lesion_<kind>`` for each hemorrhage kind drawn (its label voxels).

    Returns:
        ``(image, label)``: ``image`` int16 HU of shape (X, Y, Z), ``label`` uint8 (0/1, 1 =
        hemorrhage) of the same shape, all zero for a negative scan; with ``return_masks`` a third
        item, the dict of masks. Axes are (right, anterior, superior): a positive diagonal affine
        (RAS), see :func:`head_ct_affine`.
    """
    index = check_int(index, "index")
    seed = check_int(seed, "seed")
    grid = Grid(check_shape(shape, MIN_SHAPE), check_spacing(spacing))  # type: ignore[arg-type]
    rng = np.random.default_rng(np.random.SeedSequence([seed, index]))
    kinds = _plan(rng, index)
    head = _Head(grid, rng)

    # a lesion's label must hold voxels whatever the spacing: a minimum radius in voxels
    r_min = max(4.0 * head.s, 1.6 * grid.edge, 0.6 * float(grid.spacing[2]))
    occ_all = np.zeros(grid.shape, np.float32)
    lesion_masks: Dict[str, np.ndarray] = {}
    for kind in kinds:
        for _ in range(60):
            drawn = _PAINTERS[kind](head, r_min)
            if drawn is None:
                continue
            box = drawn.box if drawn.box is not None else (slice(None),) * 3
            occ = drawn.occ
            if int((occ >= 0.5).sum()) < MIN_LESION_VOXELS:
                continue
            if drawn.darken is not None:
                head.hu[box] -= drawn.darken
            head.hu[box] += occ * (drawn.value - head.hu[box])
            np.maximum(occ_all[box], occ, out=occ_all[box])
            mask = np.zeros(grid.shape, bool)
            mask[box] = occ >= 0.5
            lesion_masks[f"lesion_{kind}"] = lesion_masks.get(f"lesion_{kind}", mask) | mask
            break
        else:  # pragma: no cover - the anatomy always leaves room
            raise RuntimeError(f"could not place a {kind} hemorrhage in head-CT volume {index} (shape {grid.shape})")
    label = (occ_all >= 0.5).astype(np.uint8)

    # ---- acquisition: in-plane blur (partial volume), correlated noise ------------------------------------
    hu = smooth(head.hu, (0.5, 0.5, 0.0))  # not across slices: slices above the head stay pure air
    hu += NOISE_HU * correlated_noise(rng, grid.shape, (0.6, 0.6, 0.0))
    image = np.clip(np.rint(hu), -1024, 3071).astype(np.int16)
    if not return_masks:
        return image, label
    masks = {"head": head.head, "skull": head.skull, "intracranial": head.intracranial,
             "ventricles": head.vent >= 0.5, "csf": head.csf >= 0.5, "falx": head.falx >= 0.5, **lesion_masks}
    return image, label, masks


def head_ct_affine(shape: Sequence[int], spacing: Sequence[float]) -> np.ndarray:
    """4x4 RAS affine of a head-CT volume: diagonal ``spacing``, the volume centred on the origin."""
    return Grid(check_shape(shape, MIN_SHAPE), check_spacing(spacing)).affine()  # type: ignore[arg-type]


#: the head-CT phantom as the data-set writer sees it
HEAD_CT = Phantom(
    name="head_ct",
    generator="genesis_monai.data.demo.head_ct",
    version=HEAD_CT_VERSION,
    make=make_head_ct_volume,  # type: ignore[arg-type]
    affine=head_ct_affine,
    min_shape=MIN_SHAPE,
    default_shape=HEAD_CT_SHAPE,
    default_spacing=HEAD_CT_SPACING,
    default_n_volumes=HEAD_CT_N_VOLUMES,
    title="genesis_monai demo head CT",
    description=("Procedural non-contrast head CT volumes (HU) with scalp, skull, grey and white matter, sulci, "
                 "ventricles and falx; two in three volumes hold 1-3 hemorrhages (intraparenchymal, subdural, "
                 "epidural, subarachnoid, intraventricular; 50-90 HU); label 1 = hemorrhage. Made by "
                 "genesis_monai.data.demo.head_ct, deterministic by seed."),
    modality={"0": "CT"},
    labels={"0": "background", "1": "hemorrhage"},
    axes="X right, Y anterior, Z superior (axial slices along Z; RAS affine, centred on the origin)",
    file_prefix="head",
    entry_fields=head_ct_entry_fields,
)
