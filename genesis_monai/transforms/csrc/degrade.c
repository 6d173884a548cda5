/*
 * One-pass CPU kernel of the Models Genesis degradations (METHODS.md section 1, "Degradations").
 *
 * Plain C99, no Python or torch headers, so that it compiles in well under a second with the
 * system C compiler the first time it is needed (genesis_monai/transforms/cpu_kernel.py builds,
 * caches and loads it through ctypes, which releases the GIL during the call).
 *
 * Why a compiled kernel at all: the reference shuffles 10,000 small blocks per cube, one after the
 * other, later blocks overwriting earlier ones. Vectorised torch has to materialise every block
 * write (~245,000 per 64x64x32 cube) and resolve the last writer with scatters and sorts; done in
 * order, in cache, block by block, the same law costs a few nanoseconds per voxel write.
 *
 * Layout: x, out, target are contiguous (n, C, X, Y, Z) arrays (2-D samples pass Z = 1). Per
 * sample i, flags[i] says what to do, in this order:
 *   bits 0-3  flip along channel, X, Y, Z (applied to out AND target)
 *   bit  4    local pixel shuffle (n_blocks blocks, reading the flipped input)
 *   bit  5    Bezier map: the curve of control points points[i] (n, 4; double) at T samples,
 *             intensity-inverting if invert[i], applied by linear interpolation
 *   bit  6    in-painting: boxes 0..box_count[i]-1 filled with U[0,1) noise
 *   bit  7    out-painting: U[0,1) noise outside the union of the boxes
 * Boxes: box_corner/box_size are (n, slots, 3) int64. The noise of a voxel is shared by its
 * channels, one shuffle permutation moves all channels of a voxel together.
 *
 * Threads: several threads may run gm_degrade on the same batch with a shared next_sample counter
 * (initially 0); each takes the next unprocessed sample. NULL processes all samples in order.
 *
 * Randomness: every sample has its own stream, SplitMix64 seeded by seeds[i] (drawn from a torch
 * Generator by the caller), so results do not depend on how samples are split across threads.
 * Integers in [0, n) use Lemire's multiply-and-reject method (exactly uniform); U[0,1) noise
 * takes 24 random bits (float) or 53 (double), drawn a row at a time from the counter-based
 * stream so that the loop vectorises.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define GM_FLIP_C 1
#define GM_FLIP_X 2
#define GM_FLIP_Y 4
#define GM_FLIP_Z 8
#define GM_SHUFFLE 16
#define GM_BEZIER 32
#define GM_INPAINT 64
#define GM_OUTPAINT 128

#define GM_OK 0
#define GM_ERR_ALLOC 1
#define GM_ERR_ARGS 2

typedef struct {
    uint64_t state;
    uint64_t spare;
    int has_spare;
} gm_rng;

#define GM_GOLDEN 0x9E3779B97F4A7C15ULL

/* the SplitMix64 output function */
static inline uint64_t gm_mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static inline uint64_t gm_next64(gm_rng *r) { return gm_mix(r->state += GM_GOLDEN); }

static inline uint32_t gm_next32(gm_rng *r) {
    if (r->has_spare) {
        r->has_spare = 0;
        return (uint32_t)(r->spare >> 32);
    }
    r->spare = gm_next64(r);
    r->has_spare = 1;
    return (uint32_t)r->spare;
}

/* uniform integer in [0, range), range >= 1 (Lemire 2019, "nearly divisionless") */
static inline uint32_t gm_below(gm_rng *r, uint32_t range) {
    uint64_t m = (uint64_t)gm_next32(r) * range;
    uint32_t low = (uint32_t)m;
    if (low < range) {
        uint32_t threshold = (uint32_t)(-range) % range;
        while (low < threshold) {
            m = (uint64_t)gm_next32(r) * range;
            low = (uint32_t)m;
        }
    }
    return (uint32_t)(m >> 32);
}

/* n U[0,1) values from the stream in one vectorisable loop (SplitMix64 is counter-based: value i
   is the mix of state + (i+1) * golden); the stream then continues after them. 24 random bits
   per float, 53 per double. */
static void gm_noise_f32(gm_rng *r, float *out, int64_t n) {
    const uint64_t base = r->state;
    for (int64_t i = 0; i < n; ++i) out[i] = (float)(gm_mix(base + (uint64_t)(i + 1) * GM_GOLDEN) >> 40) * 0x1p-24f;
    r->state = base + (uint64_t)n * GM_GOLDEN;
}

static void gm_noise_f64(gm_rng *r, double *out, int64_t n) {
    const uint64_t base = r->state;
    for (int64_t i = 0; i < n; ++i) out[i] = (double)(gm_mix(base + (uint64_t)(i + 1) * GM_GOLDEN) >> 11) * 0x1p-53;
    r->state = base + (uint64_t)n * GM_GOLDEN;
}

static inline int64_t gm_max64(int64_t a, int64_t b) { return a > b ? a : b; }

/* Sort a[0..n) ascending by merging its monotone runs (a sampled cubic has at most three, so this
   is linear in practice; any input is sorted correctly). tmp: n doubles, bounds: n + 1 ints. */
static void gm_sort_runs(double *a, double *tmp, int64_t *bounds, int64_t n) {
    int64_t runs = 0, i = 0;
    while (i < n) {
        int64_t j = i + 1;
        if (j < n && a[j] < a[i]) {
            while (j < n && a[j] <= a[j - 1]) ++j;
            for (int64_t lo = i, hi = j - 1; lo < hi; ++lo, --hi) {
                const double t = a[lo];
                a[lo] = a[hi];
                a[hi] = t;
            }
        } else {
            while (j < n && a[j] >= a[j - 1]) ++j;
        }
        bounds[runs++] = i;
        i = j;
    }
    bounds[runs] = n;
    while (runs > 1) {
        int64_t merged = 0;
        for (int64_t r = 0; r < runs; r += 2) {
            const int64_t lo = bounds[r], mid = bounds[r + 1 < runs ? r + 1 : runs];
            const int64_t hi = r + 2 <= runs ? bounds[r + 2 < runs ? r + 2 : runs] : mid;
            int64_t p = lo, q = mid, k = lo;
            while (p < mid && q < hi) tmp[k++] = a[q] < a[p] ? a[q++] : a[p++];
            while (p < mid) tmp[k++] = a[p++];
            while (q < hi) tmp[k++] = a[q++];
            memcpy(a + lo, tmp + lo, (size_t)(hi - lo) * sizeof(double));
            bounds[merged++] = lo;
        }
        bounds[merged] = n;
        runs = merged;
    }
}

/* The Bezier table of one sample (METHODS.md section 1, step 3): the curve through (0,0), (a,b),
   (c,d), (1,1) at Tn equally spaced t (Bernstein weight of point i: C(3,i) t^(3-i) (1-t)^i), x
   sorted; y sorted too unless invert. Same formula as functional.bezier_tables. */
static void gm_bezier_table(const double *points, int invert, int64_t Tn, double *xs, double *ys,
                            double *tmp, int64_t *bounds) {
    const double a = points[0], b = points[1], c = points[2], d = points[3];
    for (int64_t k = 0; k < Tn; ++k) {
        const double t = (double)k / (double)(Tn - 1), u = 1.0 - t;
        const double w1 = 3.0 * t * t * u, w2 = 3.0 * t * u * u, w3 = u * u * u;
        xs[k] = a * w1 + c * w2 + w3;
        ys[k] = b * w1 + d * w2 + w3;
    }
    gm_sort_runs(xs, tmp, bounds, Tn);
    if (!invert) gm_sort_runs(ys, tmp, bounds, Tn);
}

typedef struct { float thr; int32_t start; } gm_cell_f32;
typedef struct { double thr; int32_t start; } gm_cell_f64;

/* block-size classes of one sample shape: window offsets (in sample strides) of each class */
typedef struct {
    uint32_t n_classes;
    int64_t stride_x, stride_y;
    int32_t *ranges;  /* (n_classes, 3): number of corner positions per axis */
    int32_t *start;   /* (n_classes + 1): class k's offsets are offsets[start[k]:start[k+1]] */
    int32_t *offsets;
} gm_shuffle_plan;

static void gm_plan_free(gm_shuffle_plan *p) {
    free(p->ranges);
    free(p->start);
    free(p->offsets);
}

static int gm_plan_init(gm_shuffle_plan *p, int64_t X, int64_t Y, int64_t Z) {
    const int64_t mx = gm_max64(1, X / 10), my = gm_max64(1, Y / 10), mz = gm_max64(1, Z / 10);
    const int64_t M = mx * my * mz;
    p->n_classes = (uint32_t)M;
    p->stride_x = Y * Z;
    p->stride_y = Z;
    p->ranges = (int32_t *)malloc((size_t)(3 * M) * sizeof(int32_t));
    p->start = (int32_t *)malloc((size_t)(M + 1) * sizeof(int32_t));
    /* sum over classes of bx*by*bz = (sum bx)(sum by)(sum bz) */
    const int64_t total = (mx * (mx + 1) / 2) * (my * (my + 1) / 2) * (mz * (mz + 1) / 2);
    p->offsets = (int32_t *)malloc((size_t)total * sizeof(int32_t));
    if (!p->ranges || !p->start || !p->offsets) return GM_ERR_ALLOC;
    int64_t cls = 0, at = 0;
    for (int64_t bx = 1; bx <= mx; ++bx)
        for (int64_t by = 1; by <= my; ++by)
            for (int64_t bz = 1; bz <= mz; ++bz, ++cls) {
                p->ranges[3 * cls] = (int32_t)(X - bx + 1);
                p->ranges[3 * cls + 1] = (int32_t)(Y - by + 1);
                p->ranges[3 * cls + 2] = (int32_t)(Z - bz + 1);
                p->start[cls] = (int32_t)at;
                for (int64_t ix = 0; ix < bx; ++ix)
                    for (int64_t iy = 0; iy < by; ++iy)
                        for (int64_t iz = 0; iz < bz; ++iz) p->offsets[at++] = (int32_t)((ix * Y + iy) * Z + iz);
            }
    p->start[M] = (int32_t)at;
    return GM_OK;
}

/* -------------------------------------------------------------------------------------------- */
/* The kernels, written once and instantiated for float and double.                             */
/* -------------------------------------------------------------------------------------------- */
#define GM_DEFINE_KERNELS(T, SUFFIX, NOISE)                                                           \
                                                                                                     \
/* out = flip(x) (and target = out when target != NULL), one sample of C*V values */                 \
static void gm_flip_##SUFFIX(const T *x, T *out, T *target, int64_t C, int64_t X, int64_t Y,         \
                             int64_t Z, unsigned flags) {                                            \
    const int64_t V = X * Y * Z;                                                                     \
    if ((flags & 15u) == 0) {                                                                        \
        memcpy(out, x, (size_t)(C * V) * sizeof(T));                                                 \
    } else {                                                                                         \
        for (int64_t c = 0; c < C; ++c) {                                                            \
            const int64_t sc = (flags & GM_FLIP_C) ? C - 1 - c : c;                                  \
            for (int64_t ix = 0; ix < X; ++ix) {                                                     \
                const int64_t sx = (flags & GM_FLIP_X) ? X - 1 - ix : ix;                            \
                for (int64_t iy = 0; iy < Y; ++iy) {                                                 \
                    const int64_t sy = (flags & GM_FLIP_Y) ? Y - 1 - iy : iy;                        \
                    const T *src = x + sc * V + (sx * Y + sy) * Z;                                   \
                    T *dst = out + c * V + (ix * Y + iy) * Z;                                        \
                    if (flags & GM_FLIP_Z) {                                                         \
                        for (int64_t iz = 0; iz < Z; ++iz) dst[iz] = src[Z - 1 - iz];                \
                    } else {                                                                         \
                        memcpy(dst, src, (size_t)Z * sizeof(T));                                     \
                    }                                                                                \
                }                                                                                    \
            }                                                                                        \
        }                                                                                            \
    }                                                                                                \
    if (target) memcpy(target, out, (size_t)(C * V) * sizeof(T));                                   \
}                                                                                                    \
                                                                                                     \
/* Local pixel shuffling, the reference loop: block size per axis uniform in [1, max(1, D/10)]     \
   (drawn as one of the M = mx*my*mz size classes, uniformly: the same law), corner uniform         \
   inside the sample; the block's window of src (the unshuffled sample) is permuted uniformly       \
   (inside-out Fisher-Yates) and written to dst, later blocks on top. Window offsets come from a    \
   per-class table so that each block is one loop (few mispredicted loop exits). */                 \
static void gm_shuffle_##SUFFIX(const T *src, T *dst, int64_t C, int64_t V, int64_t n_blocks,        \
                                const gm_shuffle_plan *plan, gm_rng *r, T *buf, int32_t *perm) {     \
    for (int64_t b = 0; b < n_blocks; ++b) {                                                         \
        const uint32_t cls = gm_below(r, plan->n_classes);                                           \
        const int32_t *rng3 = plan->ranges + 3 * cls;                                                \
        const int64_t corner = (int64_t)gm_below(r, (uint32_t)rng3[0]) * plan->stride_x             \
                             + (int64_t)gm_below(r, (uint32_t)rng3[1]) * plan->stride_y             \
                             + (int64_t)gm_below(r, (uint32_t)rng3[2]);                             \
        const int32_t *offs = plan->offsets + plan->start[cls];                                      \
        const uint32_t s = (uint32_t)(plan->start[cls + 1] - plan->start[cls]);                      \
        const T *sc = src + corner;                                                                  \
        T *dc = dst + corner;                                                                        \
        if (C == 1) {                                                                                \
            buf[0] = sc[offs[0]];                                                                    \
            for (uint32_t k = 1; k < s; ++k) {                                                       \
                const uint32_t j = gm_below(r, k + 1);                                \
                buf[k] = buf[j];                                                                     \
                buf[j] = sc[offs[k]];                                                                \
            }                                                                                        \
            for (uint32_t k = 0; k < s; ++k) dc[offs[k]] = buf[k];                                   \
        } else {                                                                                     \
            perm[0] = offs[0];                                                                       \
            for (uint32_t k = 1; k < s; ++k) {                                                       \
                const uint32_t j = gm_below(r, k + 1);                                \
                perm[k] = perm[j];                                                                   \
                perm[j] = offs[k];                                                                   \
            }                                                                                        \
            for (int64_t c = 0; c < C; ++c)                                                          \
                for (uint32_t k = 0; k < s; ++k) dc[c * V + offs[k]] = sc[c * V + perm[k]];          \
        }                                                                                            \
    }                                                                                                \
}                                                                                                    \
                                                                                                     \
/* np.interp(v, xs, ys) in place over n values; xs sorted (T >= 2). A uniform grid of G cells        \
   (a power of two, so v * G is exact) over [0, 1]: cell g holds the last table index left of the   \
   cell and the one table point inside it, if any, so most values need one comparison; cells with  \
   several points (rare: where the curve's x barely moves) are marked by a NaN threshold and       \
   searched. Each table interval is one (x, y, slope) record: one cache line per value. */         \
static void gm_bezier_##SUFFIX(T *v, int64_t n, const double *xs_d, const double *ys_d, int64_t Tn,  \
                               gm_cell_##SUFFIX *cells, T *seg, T *xs, T *ys, int64_t G) {           \
    for (int64_t k = 0; k < Tn; ++k) {                                                               \
        xs[k] = (T)xs_d[k];                                                                          \
        ys[k] = (T)ys_d[k];                                                                          \
    }                                                                                                \
    const T lo = xs[0], hi = xs[Tn - 1];                                                             \
    const T nan = (T)0 / (T)0;                                                                       \
    int64_t k = 0;                                                                                   \
    for (int64_t g = 0; g < G; ++g) {                                                                \
        const int64_t first = k; /* points with cell < g */                                          \
        while (k < Tn && !(xs[k] >= 0 && (int64_t)(xs[k] * (T)G) > g)) ++k;                          \
        cells[g].start = (int32_t)(first - 1);                                                       \
        cells[g].thr = (k - first == 0) ? (T)2 : (k - first == 1) ? xs[first] : nan;                 \
    }                                                                                                \
    for (int64_t j = 0; j < Tn - 1; ++j) {                                                           \
        const T dx = xs[j + 1] - xs[j];                                                              \
        seg[3 * j] = xs[j];                                                                          \
        seg[3 * j + 1] = ys[j];                                                                      \
        seg[3 * j + 2] = dx > 0 ? (ys[j + 1] - ys[j]) / dx : (T)0;                                   \
    }                                                                                                \
    const T y_lo = ys[0], y_hi = ys[Tn - 1];                                                         \
    const int64_t j_max = Tn - 2;                                                                    \
    for (int64_t i = 0; i < n; ++i) {                                                                \
        const T a = v[i];                                                                            \
        if (!(a > lo)) { v[i] = (a == a) ? y_lo : a; continue; } /* NaN stays NaN */                 \
        if (a >= hi) { v[i] = y_hi; continue; }                                                      \
        int64_t g = (int64_t)(a * (T)G);                                                             \
        if (g >= G) g = G - 1;                                                                       \
        const T thr = cells[g].thr;                                                                  \
        int64_t j = cells[g].start + (a >= thr);                                                     \
        if (thr != thr) {                                                                            \
            if (j < 0) j = 0;                                                                        \
            while (j < j_max && xs[j + 1] <= a) ++j;                                                 \
        }                                                                                            \
        j = j < 0 ? 0 : (j > j_max ? j_max : j);                                                     \
        const T *sg = seg + 3 * j;                                                                   \
        v[i] = sg[1] + (a - sg[0]) * sg[2];                                                          \
    }                                                                                                \
}                                                                                                    \
                                                                                                     \
/* in-painting: fill each box with noise (shared by channels); later boxes draw fresh noise.      \
   nb: scratch of Z values for one row of noise. */                                                 \
static void gm_inpaint_##SUFFIX(T *s, int64_t C, int64_t X, int64_t Y, int64_t Z, int64_t count,     \
                                const int64_t *corner, const int64_t *size, gm_rng *r, T *nb) {      \
    const int64_t V = X * Y * Z;                                                                     \
    for (int64_t b = 0; b < count; ++b) {                                                            \
        const int64_t *c0 = corner + 3 * b, *sz = size + 3 * b;                                      \
        for (int64_t ix = c0[0]; ix < c0[0] + sz[0]; ++ix)                                           \
            for (int64_t iy = c0[1]; iy < c0[1] + sz[1]; ++iy) {                                     \
                T *row = s + (ix * Y + iy) * Z + c0[2];                                              \
                NOISE(r, nb, sz[2]);                                                                 \
                for (int64_t c = 0; c < C; ++c) memcpy(row + c * V, nb, (size_t)sz[2] * sizeof(T));  \
            }                                                                                        \
    }                                                                                                \
}                                                                                                    \
                                                                                                     \
/* out-painting: noise (shared by channels) everywhere outside the union of the boxes. Each row    \
   draws Z noise values and keeps the original where a box covers it (a branch-free select). */     \
static void gm_outpaint_##SUFFIX(T *s, int64_t C, int64_t X, int64_t Y, int64_t Z, int64_t count,    \
                                 const int64_t *corner, const int64_t *size, gm_rng *r,              \
                                 uint64_t *mask_x, uint64_t *mask_y, uint64_t *mask_z, T *nb) {      \
    const int64_t V = X * Y * Z;                                                                     \
    memset(mask_x, 0, (size_t)X * sizeof(uint64_t));                                                 \
    memset(mask_y, 0, (size_t)Y * sizeof(uint64_t));                                                 \
    memset(mask_z, 0, (size_t)Z * sizeof(uint64_t));                                                 \
    for (int64_t b = 0; b < count; ++b) {                                                            \
        const uint64_t bit = 1ULL << b;                                                              \
        const int64_t *c0 = corner + 3 * b, *sz = size + 3 * b;                                      \
        for (int64_t i = c0[0]; i < c0[0] + sz[0]; ++i) mask_x[i] |= bit;                            \
        for (int64_t i = c0[1]; i < c0[1] + sz[1]; ++i) mask_y[i] |= bit;                            \
        for (int64_t i = c0[2]; i < c0[2] + sz[2]; ++i) mask_z[i] |= bit;                            \
    }                                                                                                \
    for (int64_t ix = 0; ix < X; ++ix)                                                               \
        for (int64_t iy = 0; iy < Y; ++iy) {                                                         \
            const uint64_t mxy = mask_x[ix] & mask_y[iy];                                            \
            T *row = s + (ix * Y + iy) * Z;                                                          \
            NOISE(r, nb, Z);                                                                         \
            for (int64_t c = 0; c < C; ++c) {                                                        \
                T *rc = row + c * V;                                                                 \
                if (!mxy) {                                                                          \
                    memcpy(rc, nb, (size_t)Z * sizeof(T));                                           \
                } else {                                                                             \
                    for (int64_t iz = 0; iz < Z; ++iz) rc[iz] = (mxy & mask_z[iz]) ? rc[iz] : nb[iz]; \
                }                                                                                    \
            }                                                                                        \
        }                                                                                            \
}                                                                                                    \
                                                                                                     \
int gm_degrade_##SUFFIX(const T *x, T *out, T *target, int64_t n, int64_t C, int64_t X, int64_t Y,  \
                        int64_t Z, const uint8_t *flags, int64_t n_blocks, const double *points,     \
                        const uint8_t *invert, int64_t Tn, const int64_t *box_count,                 \
                        const int64_t *box_corner,                                                   \
                        const int64_t *box_size, int64_t slots, const uint64_t *seeds,               \
                        int64_t *next_sample) {                                                      \
    if (n < 0 || C < 1 || X < 1 || Y < 1 || Z < 1 || slots < 0 || slots > 64) return GM_ERR_ARGS;   \
    if (X * Y * Z > 2147483647LL / C) return GM_ERR_ARGS;                                            \
    const int64_t V = X * Y * Z;                                                                     \
    const int64_t max_block = gm_max64(1, X / 10) * gm_max64(1, Y / 10) * gm_max64(1, Z / 10);       \
    const int64_t G = Tn >= 2 ? (int64_t)1 << (64 - __builtin_clzll((uint64_t)(4 * Tn - 1))) : 1;    \
    int any_shuffle = 0, any_bezier = 0;                                                             \
    for (int64_t i = 0; i < n; ++i) {                                                                \
        any_shuffle |= (flags[i] & GM_SHUFFLE) != 0;                                                 \
        any_bezier |= (flags[i] & GM_BEZIER) != 0;                                                   \
    }                                                                                                \
    if (any_bezier && Tn < 2) return GM_ERR_ARGS;                                                    \
    gm_shuffle_plan plan = {0, 0, 0, NULL, NULL, NULL};                                              \
    T *scratch = any_shuffle ? (T *)malloc((size_t)(C * V) * sizeof(T)) : NULL;                      \
    T *buf = (T *)malloc((size_t)max_block * sizeof(T));                                             \
    int32_t *perm = (int32_t *)malloc((size_t)max_block * sizeof(int32_t));                          \
    gm_cell_##SUFFIX *cells = any_bezier ? (gm_cell_##SUFFIX *)malloc((size_t)G * sizeof(*cells)) : NULL; \
    T *seg = any_bezier ? (T *)malloc((size_t)(5 * Tn) * sizeof(T)) : NULL; /* + xs, ys */           \
    double *table = any_bezier ? (double *)malloc((size_t)(3 * Tn) * sizeof(double)) : NULL;         \
    int64_t *bounds = any_bezier ? (int64_t *)malloc((size_t)(Tn + 1) * sizeof(int64_t)) : NULL;     \
    uint64_t *masks = (uint64_t *)malloc((size_t)(X + Y + Z) * sizeof(uint64_t));                    \
    T *nb = (T *)malloc((size_t)Z * sizeof(T));                                                      \
    int rc = any_shuffle ? gm_plan_init(&plan, X, Y, Z) : GM_OK;                                     \
    if (rc != GM_OK || (any_shuffle && !scratch) || !buf || !perm \
        || (any_bezier && (!cells || !seg || !table || !bounds)) || !masks || !nb) {                 \
        rc = GM_ERR_ALLOC;                                                                           \
        goto done;                                                                                   \
    }                                                                                                \
    for (int64_t step = 0;; ++step) {                                                                \
        /* with a shared counter, threads take the next sample as they finish one (samples differ  \
           in cost: the shuffle runs on half of them); without one, samples go in order */         \
        const int64_t i = next_sample ? __atomic_fetch_add(next_sample, 1, __ATOMIC_RELAXED) : step; \
        if (i >= n) break;                                                                           \
        const unsigned f = flags[i];                                                                 \
        gm_rng r = {seeds[i], 0, 0};                                                                 \
        T *o = out + i * C * V;                                                                      \
        gm_flip_##SUFFIX(x + i * C * V, o, target ? target + i * C * V : NULL, C, X, Y, Z, f);       \
        if (f & GM_SHUFFLE) {                                                                        \
            memcpy(scratch, o, (size_t)(C * V) * sizeof(T));                                         \
            gm_shuffle_##SUFFIX(scratch, o, C, V, n_blocks, &plan, &r, buf, perm);                   \
        }                                                                                            \
        if (f & GM_BEZIER) {                                                                         \
            gm_bezier_table(points + 4 * i, invert[i], Tn, table, table + Tn, table + 2 * Tn, bounds); \
            gm_bezier_##SUFFIX(o, C * V, table, table + Tn, Tn, cells, seg, seg + 3 * Tn, seg + 4 * Tn, G); \
        }                                                                                            \
        if (f & (GM_INPAINT | GM_OUTPAINT)) {                                                        \
            const int64_t cnt = box_count[i] < slots ? box_count[i] : slots;                         \
            const int64_t *bc = box_corner + i * slots * 3, *bs = box_size + i * slots * 3;          \
            if (f & GM_INPAINT) gm_inpaint_##SUFFIX(o, C, X, Y, Z, cnt, bc, bs, &r, nb);             \
            else gm_outpaint_##SUFFIX(o, C, X, Y, Z, cnt, bc, bs, &r, masks, masks + X,              \
                                      masks + X + Y, nb);                                            \
        }                                                                                            \
    }                                                                                                \
done:                                                                                                \
    free(scratch);                                                                                   \
    free(buf);                                                                                       \
    free(perm);                                                                                      \
    free(cells);                                                                                     \
    free(seg);                                                                                       \
    free(table);                                                                                     \
    free(bounds);                                                                                    \
    gm_plan_free(&plan);                                                                             \
    free(masks);                                                                                     \
    free(nb);                                                                                        \
    return rc;                                                                                       \
}

GM_DEFINE_KERNELS(float, f32, gm_noise_f32)
GM_DEFINE_KERNELS(double, f64, gm_noise_f64)

/* The input range check: 1 if some value of x[0..n) lies outside [0, 1] or is NaN, else 0.
   Why in C: torch.aminmax is one pass too, but its OpenMP threads keep spinning after it returns
   and slow the degradation threads that start right after it (measured ~4 ms per batch of 32
   64x64x32 cubes on 2 cores, against ~0.6 ms for the pass itself). Only the yes/no question is
   asked here (the caller describes a failure with torch, off the hot path): 16 independent
   int lanes of "(v >= 0) & (v <= 1)" vectorise without -ffast-math (a float min/max reduction
   does not), ~0.3 ms for 4M floats on one core. NaN fails both comparisons. */
#define GM_LANES 16
#define GM_DEFINE_RANGE_CHECK(T, SUFFIX)                                                           \
int gm_outside_unit_##SUFFIX(const T *x, int64_t n) {                                              \
    int32_t bad[GM_LANES] = {0};                                                                   \
    int64_t i = 0;                                                                                 \
    for (; i + GM_LANES <= n; i += GM_LANES)                                                       \
        for (int k = 0; k < GM_LANES; ++k) {                                                       \
            const T v = x[i + k];                                                                  \
            bad[k] |= ((v >= (T)0) & (v <= (T)1)) ? 0 : 1;                                         \
        }                                                                                          \
    int32_t any = 0;                                                                               \
    for (int k = 0; k < GM_LANES; ++k) any |= bad[k];                                              \
    for (; i < n; ++i) any |= !((x[i] >= (T)0) & (x[i] <= (T)1));                                  \
    return any;                                                                                    \
}

GM_DEFINE_RANGE_CHECK(float, f32)
GM_DEFINE_RANGE_CHECK(double, f64)

/* lets the loader check that it talks to the kernel version it was written for */
int gm_abi_version(void) { return 4; }
