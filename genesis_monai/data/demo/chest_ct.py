"""The chest-CT phantom: procedural chest CT volumes (HU) with lung-nodule labels (:data:`CHEST_CT`).

What a volume holds (Hounsfield units, int16, axes (X, Y, Z) = (right, anterior, superior),
a diagonal RAS affine with the requested spacing, centred on the origin):

- air outside the body (-1000);
- an elliptical body: subcutaneous fat (about -100), a chest-wall muscle layer (about +45),
  mediastinal fat (about -85);
- two lungs (about -850, denser towards the back, with smooth texture) filling most of the
  thoracic cavity, with apices at the top and diaphragm domes at the bottom (liver and upper
  abdomen below them, the right dome higher);
- the heart (about +40) anterior-left above the diaphragm, the descending aorta, the oesophagus;
- the trachea (air lumen with a soft-tissue wall) splitting at the carina into main bronchi
  and a branching airway tree inside the lungs;
- pulmonary vessel trees (about +40, radius narrowing at each bifurcation) from each hilum;
- bone (cancellous about +250, cortex about +800): ribs as sloping arcs around the cavity, the
  vertebral column with discs, spinal canal and posterior arch, the sternum, costal cartilage;
- one to four nodules inside the lungs, spherical / ellipsoidal or lobulated (the union of a
  few overlapping spheres), radius about 5-20 mm (2-8 voxels at 2.5 mm), +20..+80 HU: the same
  range as the vessels, so that a segmenter has to use shape (a compact blob, not a tube);
  the nodules' union (occupancy >= 0.5) is the label;
- a slight blur (partial volume) and correlated Gaussian noise of about 20 HU.

The anatomy is defined for a 320 mm field of view and scaled to the field of view of the
requested ``shape * spacing``, so small test volumes hold the same chest at a coarser
resolution. Everything is vectorised numpy (no per-voxel loops); a 128x128x64 volume takes a
fraction of a second. The random stream of volume ``index`` is
``numpy.random.default_rng(SeedSequence([seed, index]))``: the same (index, shape, spacing, seed)
gives byte-identical arrays, and the NIfTI files are byte-identical too (gzip without time
stamps).
"""

from __future__ import annotations

from typing import Dict, List, Sequence, Tuple, Union

import numpy as np

from genesis_monai.data.demo.checks import check_int, check_shape, check_spacing
from genesis_monai.data.demo.geometry import (
    Grid,
    component_containing,
    correlated_noise,
    draw_tube,
    ellipse_radius,
    grow_tree,
    random_rotation,
    smooth,
    unit,
)
from genesis_monai.data.demo.phantom import Phantom

__all__ = ["make_demo_volume", "chest_ct_affine", "CHEST_CT", "DEMO_SHAPE", "DEMO_SPACING", "DEMO_N_VOLUMES",
           "GENERATOR_VERSION"]

#: default volume size (X, Y, Z) in voxels
DEMO_SHAPE: Tuple[int, int, int] = (128, 128, 64)
#: default voxel spacing (X, Y, Z) in mm (a 320 mm cube)
DEMO_SPACING: Tuple[float, float, float] = (2.5, 2.5, 5.0)
#: default number of volumes (8 training / 2 validation / 2 test)
DEMO_N_VOLUMES = 12
#: bumped whenever the generator's output changes: a stored data set of another version is regenerated
GENERATOR_VERSION = 1
#: smallest volume (X, Y, Z) the anatomy fits in
MIN_SHAPE: Tuple[int, int, int] = (32, 32, 16)
REF_FOV_MM = 320.0  # the anatomy below is written for this field of view

# Hounsfield units of the tissues
HU_AIR = -1000.0
HU_FAT = -100.0
HU_MEDIASTINAL_FAT = -85.0
HU_MUSCLE = 45.0
HU_BLOOD = 40.0
HU_LUNG = -850.0
HU_LIVER = 58.0
HU_ABDOMEN = 38.0
HU_AIRWAY_WALL = 10.0
HU_MARROW = 250.0
HU_CORTEX = 800.0
HU_CARTILAGE = 120.0
HU_DISC = 80.0
HU_CSF = 15.0
HU_NODULE = (20.0, 80.0)
NOISE_HU = 20.0


def make_demo_volume(
    index: int,
    shape: Sequence[int] = DEMO_SHAPE,
    spacing: Sequence[float] = DEMO_SPACING,
    seed: int = 0,
    *,
    return_masks: bool = False,
) -> Union[Tuple[np.ndarray, np.ndarray], Tuple[np.ndarray, np.ndarray, Dict[str, np.ndarray]]]:
    """One procedural chest CT volume and its nodule label.

    Args:
        index: volume number (each index is an independent "patient").
        shape: (X, Y, Z) voxels; X, Y >= 32 and Z >= 16.
        spacing: (X, Y, Z) voxel size in mm; with ``shape`` it sets the field of view, to which
            the anatomy is scaled.
        seed: data-set seed; ``(seed, index)`` seeds the volume's random stream.
        return_masks: also return boolean masks of the structures (for tests and pictures):
            ``body``, ``lungs`` (parenchyma, vessels and airways inside it included), ``bone``,
            ``vessels`` and ``airways`` (occupancy >= 0.5).

    Returns:
        ``(image, label)``: ``image`` int16 HU of shape (X, Y, Z), ``label`` uint8 (0/1) of the
        same shape (the union of the nodules); with ``return_masks`` a third item, the dict of masks.
        Axes are (right, anterior, superior): a positive diagonal affine (RAS), see
        :meth:`genesis_monai.data.demo.geometry.Grid.affine`.
    """
    index = check_int(index, "index")
    seed = check_int(seed, "seed")
    grid = Grid(check_shape(shape, MIN_SHAPE), check_spacing(spacing))  # type: ignore[arg-type]
    rng = np.random.default_rng(np.random.SeedSequence([seed, index]))
    gx, gy, gz = grid.x, grid.y, grid.z
    # anatomy is written in mm for a 320 mm field of view; s rescales it to this one
    Lx, Ly, Lz = grid.extent
    s = float(min(Lx, Ly)) / REF_FOV_MM
    sz = float(Lz) / REF_FOV_MM
    u = rng.uniform

    # ---- body and chest wall ------------------------------------------------------------------
    cx = u(-0.01, 0.01) * Lx
    cy = u(-0.04, 0.0) * Ly
    a_body = u(0.41, 0.45) * Lx
    b_ant = u(0.32, 0.35) * Ly
    b_post = b_ant * u(0.9, 0.96)
    breathe = 1.0 + 0.03 * np.sin(gz / (Lz / 2.0) * np.pi * u(0.5, 1.0) + u(0, 2 * np.pi))  # slow change along z
    a_z = a_body * breathe
    b_z = np.where(gy >= cy, b_ant, b_post) * breathe
    t_fat = u(5.0, 14.0) * s
    t_muscle = u(5.0, 9.0) * s
    t_rib = 9.0 * s
    t_wall = t_fat + t_muscle + t_rib + 2.0 * s
    body = ellipse_radius(gx, gy, cx, cy, a_z, b_z) < 1.0
    muscle_in = ellipse_radius(gx, gy, cx, cy, a_z - t_fat, b_z - t_fat)
    rib_out = ellipse_radius(gx, gy, cx, cy, a_z - t_fat - t_muscle, b_z - t_fat - t_muscle)
    rib_in = ellipse_radius(gx, gy, cx, cy, a_z - t_fat - t_muscle - t_rib, b_z - t_fat - t_muscle - t_rib)
    a_cav, b_cav_ant, b_cav_post = a_body - t_wall, b_ant - t_wall, b_post - t_wall

    hu = np.full(grid.shape, HU_AIR, dtype=np.float32)
    hu[body] = HU_FAT
    hu[muscle_in < 1.0] = HU_MUSCLE
    y_back = cy - b_post

    # ---- lungs: cavity minus mediastinum, apex taper, diaphragm domes -----------------------------
    z_apex = u(0.38, 0.44) * Lz
    taper = np.sqrt(np.clip((z_apex - gz) / (95.0 * sz), 0.0, 1.0))  # cavity shrinks towards the apex
    cav_a = np.maximum(a_cav * taper * breathe, 1e-3)
    cav_b = np.maximum(np.where(gy >= cy, b_cav_ant, b_cav_post) * taper * breathe, 1e-3)
    cavity = ellipse_radius(gx, gy, cx, cy, cav_a, cav_b) < 1.0
    full_cavity = rib_in < 1.0

    y_vert = y_back + t_fat + t_muscle + 45.0 * s  # vertebral body centre
    r_vert = u(15.0, 18.0) * s
    x_trachea = cx + u(0.0, 6.0) * s
    y_trachea = y_vert + r_vert + u(18.0, 24.0) * s
    r_trachea = u(7.5, 9.5) * s
    z_carina = u(0.02, 0.12) * Lz
    x_aorta, y_aorta, r_aorta = cx - u(20.0, 28.0) * s, y_vert + u(4.0, 10.0) * s, u(10.0, 13.0) * s
    x_oes, y_oes, r_oes = cx - 8.0 * s, y_vert + r_vert + 6.0 * s, 6.0 * s

    dome_h = u(50.0, 65.0) * sz
    z_dome_r = u(-0.11, -0.05) * Lz - dome_h  # the right dome (liver) is higher
    z_dome_l = z_dome_r - u(10.0, 25.0) * sz
    side_r = gx >= cx
    dome_x = np.where(side_r, cx + 0.5 * a_cav, cx - 0.5 * a_cav)
    dome_r2 = ((gx - dome_x) / (0.6 * a_cav)) ** 2 + ((gy - cy) / (1.1 * b_cav_ant)) ** 2
    z_base = (np.where(side_r, z_dome_r, z_dome_l) + dome_h * (1.0 - np.minimum(dome_r2, 2.0))
              + 0.35 * (gy - cy) * sz / s)  # posterior recesses reach lower
    below_diaphragm = gz < z_base

    heart_c = np.array([cx - u(15.0, 25.0) * s, cy + u(0.25, 0.4) * b_cav_ant, z_dome_l + dome_h + u(22.0, 32.0) * sz])
    heart_ax = np.array([u(46.0, 54.0) * s, u(36.0, 42.0) * s, u(44.0, 52.0) * sz])
    heart_q = (((gx - heart_c[0]) / heart_ax[0]) ** 2 + ((gy - heart_c[1]) / heart_ax[1]) ** 2
               + ((gz - heart_c[2]) / heart_ax[2]) ** 2)
    heart = heart_q < 1.0
    # the mediastinal band between the lungs: wider at the spine/trachea, narrow behind the sternum
    band_w = (4.0 + 11.0 * np.exp(-(((gy - (y_vert + 25.0 * s)) / (40.0 * s)) ** 2))) * s
    mediastinum = (np.abs(gx - cx) < band_w) | (heart_q < 1.25) | (
        (gx - cx) ** 2 + (gy - y_vert) ** 2 < (r_vert + 9.0 * s) ** 2) | (
        (gx - x_aorta) ** 2 + (gy - y_aorta) ** 2 < (r_aorta + 4.0 * s) ** 2) | (
        (gz > z_carina) & ((gx - x_trachea) ** 2 + (gy - y_trachea) ** 2 < (r_trachea + 7.0 * s) ** 2))
    lungs = cavity & ~mediastinum & ~below_diaphragm & (gz < z_apex)

    # contents of the cavity: mediastinal fat, organs below the diaphragm, heart, vessels, oesophagus
    inner = full_cavity & body
    hu[inner] = HU_MEDIASTINAL_FAT
    hu[inner & below_diaphragm & (gx > cx - 25.0 * s)] = HU_LIVER
    hu[inner & below_diaphragm & (gx <= cx - 25.0 * s)] = HU_ABDOMEN
    hu[heart] = HU_BLOOD + 8.0 * np.clip(1.0 - heart_q[heart] * 1.5, 0.0, 1.0)  # a faint centre-to-edge gradient
    hu[inner & ((gx - x_aorta) ** 2 + (gy - y_aorta) ** 2 < r_aorta ** 2)] = HU_BLOOD
    hu[inner & ((gx - x_oes) ** 2 + (gy - y_oes) ** 2 < r_oes ** 2)] = 30.0

    # lung parenchyma: denser posteriorly (gravity), smooth texture
    texture = correlated_noise(rng, grid.shape, (2.0 * 2.5 / grid.spacing[0], 2.0 * 2.5 / grid.spacing[1],
                                                  2.0 * 2.5 / grid.spacing[2]))
    gradient = 45.0 * np.clip(1.0 - (gy - y_back) / (b_ant + b_post), 0.0, 1.0)
    lung_hu = HU_LUNG + u(-25.0, 25.0) + gradient + 18.0 * texture
    hu[lungs] = lung_hu[lungs]

    # ---- airways and vessels --------------------------------------------------------------------
    occ_vessel = np.zeros(grid.shape, np.float32)
    occ_wall = np.zeros(grid.shape, np.float32)
    occ_lumen = np.zeros(grid.shape, np.float32)
    carina = np.array([x_trachea, y_trachea, z_carina])
    top = np.array([x_trachea, y_trachea + 4.0 * s, Lz])

    def wall(r: float) -> float:  # airway wall thickness (mm) for lumen radius r
        return 0.6 * s + 0.2 * r

    draw_tube(grid, occ_lumen, top, carina, r_trachea, r_trachea)
    draw_tube(grid, occ_wall, top, carina, r_trachea, r_trachea, extra=wall(r_trachea))
    lung_grow = lungs | (~below_diaphragm & cavity & ~heart)  # trees may cross the hilum
    airway_roots, vessel_roots = [], []
    for side in (1.0, -1.0):
        hilum = np.array([cx + side * (band_w.max() + 12.0 * s), y_trachea + u(-5.0, 5.0) * s, z_carina - u(5.0, 20.0) * sz])
        bronchus_r = r_trachea * (0.75 if side > 0 else 0.65)
        bronchus_end = carina + unit(hilum - carina) * (np.linalg.norm(hilum - carina) + 6.0 * s)
        draw_tube(grid, occ_lumen, carina, bronchus_end, bronchus_r, bronchus_r * 0.9)
        draw_tube(grid, occ_wall, carina, bronchus_end, bronchus_r, bronchus_r * 0.9, extra=wall(bronchus_r))
        for d in ((0.4, 0.2, 1.0), (1.0, 0.1, 0.0), (0.5, 0.3, -1.0), (0.4, -0.6, -0.8)):
            airway_roots.append((bronchus_end, np.array([side * d[0], d[1], d[2]]) + rng.normal(0, 0.15, 3)))
        for d in ((0.3, 0.4, 1.0), (1.0, 0.6, 0.3), (1.0, -0.4, 0.2), (0.6, 0.5, -1.0), (0.5, -0.6, -1.0),
                  (1.0, 0.0, -0.5), (0.2, -0.9, 0.6)):
            p = hilum + np.array([side * u(0.0, 6.0), u(-8.0, 8.0), u(-10.0, 10.0)]) * s
            vessel_roots.append((p, np.array([side * d[0], d[1], d[2]]) + rng.normal(0, 0.2, 3)))
    min_r = 0.4 * grid.edge
    for a, b, ra, rb in grow_tree(rng, grid, lung_grow, airway_roots, radius=4.5 * s, length_per_radius=6.0,
                                   min_radius=max(1.2 * s, min_r), max_depth=5, angle_deg=(25.0, 45.0)):
        draw_tube(grid, occ_lumen, a, b, ra, rb)
        draw_tube(grid, occ_wall, a, b, ra, rb, extra=wall(ra))
    for a, b, ra, rb in grow_tree(rng, grid, lung_grow, vessel_roots, radius=5.0 * s, length_per_radius=7.0,
                                   min_radius=max(0.9 * s, min_r), max_depth=8, angle_deg=(20.0, 45.0)):
        draw_tube(grid, occ_vessel, a, b, ra, rb)
    keep = (lungs | mediastinum) & ~below_diaphragm & body  # nothing drawn into the chest wall or abdomen
    for occ in (occ_vessel, occ_wall, occ_lumen):
        occ *= keep
    hu += occ_vessel * (HU_BLOOD + 5.0 * texture - hu)
    hu += occ_wall * (HU_AIRWAY_WALL - hu)
    hu += occ_lumen * (HU_AIR - hu)

    # ---- bone -------------------------------------------------------------------------------------
    bone_hu = np.zeros(grid.shape, np.float32)
    bone = np.zeros(grid.shape, bool)
    # ribs: the band between rib_out and rib_in, cut into sloping arcs along z
    in_band = (rib_out < 1.0) & (rib_in >= 1.0)
    across = np.clip((1.0 - rib_out) / np.maximum((1.0 - rib_out) + (rib_in - 1.0), 1e-6), 0.0, 1.0)
    period, thick = u(30.0, 36.0) * sz, u(9.0, 12.0) * sz
    slope = u(0.45, 0.7) * sz / s
    phase = np.mod(gz + slope * (gy - y_back) + u(0.0, period), period) / thick
    q = (2.0 * across - 1.0) ** 2 + (2.0 * phase - 1.0) ** 2
    anterior = (gy > cy + 0.45 * b_ant) & (np.abs(gx - cx) < 0.42 * a_body)
    near_spine = (np.abs(gx - cx) < 28.0 * s) & (gy < cy)
    rib = in_band & (q < 1.0) & ~near_spine & (gz < z_apex + 15.0 * sz)
    cartilage = rib & anterior
    rib_bone = rib & ~anterior
    bone_hu[rib_bone] = np.where(q[rib_bone] > 0.35, HU_CORTEX, HU_MARROW)
    bone_hu[cartilage] = HU_CARTILAGE
    bone |= rib
    # vertebral column: body with discs, spinal canal, posterior arch and spinous process
    rv = np.sqrt((gx - cx) ** 2 + (gy - y_vert) ** 2) * np.ones_like(gz)
    disc = np.mod(gz + u(0.0, 28.0), 28.0 * sz) < 6.0 * sz
    vbody = rv < r_vert
    bone_hu[vbody] = np.where(rv[vbody] > r_vert - 2.5 * s, HU_CORTEX * 0.8, HU_MARROW)
    bone_hu[vbody & disc] = HU_DISC
    y_canal = y_vert - r_vert - 8.0 * s
    rc = np.sqrt((gx - cx) ** 2 + (gy - y_canal) ** 2) * np.ones_like(gz)
    arch = (rc >= 8.0 * s) & (rc < 14.0 * s) & (gy < y_vert - r_vert + 2.0 * s) & ~disc
    spinous = (np.abs(gx - cx) < 3.5 * s) & (gy < y_canal - 10.0 * s) & (gy > y_back + t_fat + 4.0 * s) & ~disc
    transverse = (np.abs(gy - y_canal - 2.0 * s) < 3.0 * s) & (np.abs(gx - cx) < 24.0 * s) & ~disc & (rc >= 14.0 * s)
    bone_hu[rc < 8.0 * s] = HU_CSF
    posterior = arch | spinous | transverse
    bone_hu[posterior] = HU_CORTEX * 0.75
    bone |= vbody | (rc < 8.0 * s) | posterior
    # sternum
    y_st = cy + b_ant - t_fat - 0.6 * t_muscle
    st = (((gx - cx) / (16.0 * s)) ** 2 + ((gy - y_st) / (6.5 * s)) ** 2 < 1.0) & (gz > z_dome_l + dome_h - 10.0 * sz)
    st_q = np.broadcast_to(((gx - cx) / (16.0 * s)) ** 2 + ((gy - y_st) / (6.5 * s)) ** 2, grid.shape)
    bone_hu[st] = np.where(st_q[st] > 0.45, HU_CORTEX * 0.8, HU_MARROW)
    bone |= st
    bone &= body
    hu[bone] = bone_hu[bone]

    # ---- nodules ------------------------------------------------------------------------------------
    occ_nodule = np.zeros(grid.shape, np.float32)
    nodule_hu = np.zeros(grid.shape, np.float32)
    n_target = int(rng.integers(1, 5))
    lung_idx = np.flatnonzero(lungs)
    if lung_idx.size == 0:  # pragma: no cover - the anatomy always has lungs
        raise RuntimeError("demo volume without lungs: shape/spacing too small")
    placed: List[Tuple[np.ndarray, float]] = []
    r_min = max(4.5, 1.6 * grid.edge)
    margin = float(grid.spacing.max())
    r_wanted = 0.0
    for attempt in range(600):
        if len(placed) >= n_target:
            break
        if attempt % 40 == 0:  # a new nodule size every 40 tries; smaller after each failed round
            r_wanted = (5.0 + 15.0 * u() ** 1.3) * s * 0.85 ** (attempt // 40 - len(placed))
        r_main = max(r_min, r_wanted)
        c = np.array(np.unravel_index(lung_idx[rng.integers(lung_idx.size)], grid.shape), float)
        c = grid.origin + (c + rng.uniform(-0.5, 0.5, 3)) * grid.spacing
        if rng.random() < 0.5:  # spherical / ellipsoidal
            parts = [(np.zeros(3), r_main * rng.uniform(0.8, 1.2, 3), random_rotation(rng))]
        else:  # lobulated: a core and 2-4 overlapping lobes whose centres lie inside the core
            parts = [(np.zeros(3), np.full(3, 0.8 * r_main), np.eye(3))]
            for _ in range(int(rng.integers(2, 5))):
                off = unit(rng.standard_normal(3)) * 0.8 * r_main * u(0.4, 0.75)
                parts.append((off, np.full(3, max(r_min * 0.8, r_main * u(0.45, 0.7))), np.eye(3)))
        extent = max(float(np.linalg.norm(o) + ax.max()) for o, ax, _ in parts) + grid.edge
        if any(np.linalg.norm(c - pc) < extent + pe + 2.0 * margin for pc, pe in placed):
            continue
        box = grid.box(c - extent - 3.0 * s - margin, c + extent + 3.0 * s + margin)
        if box is None:
            continue
        px, py, pz = grid.coords(box)
        dist_c = np.sqrt((px - c[0]) ** 2 + (py - c[1]) ** 2 + (pz - c[2]) ** 2)
        if not np.all(lungs[box][dist_c < extent + 3.0 * s]):
            continue
        occ = np.zeros(dist_c.shape, np.float32)
        for off, ax, rot in parts:
            d = [(px - c[0] - off[0]), (py - c[1] - off[1]), (pz - c[2] - off[2])]
            local = [rot[0, k] * d[0] + rot[1, k] * d[1] + rot[2, k] * d[2] for k in range(3)]
            qn = np.sqrt(sum((local[k] / ax[k]) ** 2 for k in range(3)))
            np.maximum(occ, np.clip((1.0 - qn) * ax.min() / grid.edge + 0.5, 0.0, 1.0), out=occ)
        inside = occ >= 0.5
        if not inside.any():
            continue
        core = component_containing(inside, np.unravel_index(int(np.argmax(occ)), occ.shape))
        occ[inside & ~core] = 0.49  # a lobe cut off by the voxel grid stays out of the label
        value = u(*HU_NODULE)
        np.maximum(occ_nodule[box], occ, out=occ_nodule[box])
        nodule_hu[box] = np.where(occ > 0, value + 6.0 * texture[box], nodule_hu[box])
        placed.append((c, extent))
        r_wanted = (5.0 + 15.0 * u() ** 1.3) * s  # the next nodule's size
    if not placed:  # pragma: no cover - lungs always leave room
        raise RuntimeError(f"could not place a nodule in demo volume {index} (shape {grid.shape})")
    hu += occ_nodule * (nodule_hu - hu)
    label = (occ_nodule >= 0.5).astype(np.uint8)

    # ---- acquisition: slight blur and correlated noise ---------------------------------------------
    hu = smooth(hu, (0.6, 0.6, 0.3))
    hu += NOISE_HU * correlated_noise(rng, grid.shape, (0.5, 0.5, 0.0))
    image = np.clip(np.rint(hu), -1024, 3071).astype(np.int16)
    if not return_masks:
        return image, label
    masks = {"body": body, "lungs": lungs, "bone": bone & ~cartilage & (bone_hu > 200),
             "vessels": occ_vessel >= 0.5, "airways": occ_lumen >= 0.5}
    return image, label, masks


def chest_ct_affine(shape: Sequence[int], spacing: Sequence[float]) -> np.ndarray:
    """4x4 RAS affine of a chest-CT volume: diagonal ``spacing``, the volume centred on the origin."""
    return Grid(check_shape(shape, MIN_SHAPE), check_spacing(spacing)).affine()  # type: ignore[arg-type]


#: the chest-CT phantom as the data-set writer sees it (generator id kept from before it had siblings,
#: so data sets already on disk are recognised)
CHEST_CT = Phantom(
    name="chest_ct",
    generator="genesis_monai.data.demo",
    version=GENERATOR_VERSION,
    make=make_demo_volume,  # type: ignore[arg-type]
    affine=chest_ct_affine,
    min_shape=MIN_SHAPE,
    default_shape=DEMO_SHAPE,
    default_spacing=DEMO_SPACING,
    default_n_volumes=DEMO_N_VOLUMES,
    title="genesis_monai demo chest CT",
    description=("Procedural chest CT volumes (HU) with body, lungs, airways, vessels, heart, ribs, spine "
                 "and 1-4 spherical or lobulated lung nodules; label 1 = nodule. Made by "
                 "genesis_monai.data.demo, deterministic by seed."),
    modality={"0": "CT"},
    labels={"0": "background", "1": "nodule"},
    axes="X right, Y anterior, Z superior (RAS affine, centred on the origin)",
)
