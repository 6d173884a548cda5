/*
 * CPU kernel of the in-plane elastic deformation of Semantic Genesis / TransVW (METHODS.md section 2;
 * research/upstream_genesis.md 6.4): per sample, two displacement fields (along X and Y) =
 * gaussian_filter(U[-1, 1) noise over the whole 3D cube, sigma, mode "constant" 0, truncated at
 * radius R) * alpha, none along Z; then bilinear sampling of every (X, Y) slice at
 * index + displacement with half-sample symmetric reflection (SciPy map_coordinates(order=1,
 * mode="reflect"), torch grid_sample(padding_mode="reflection", align_corners=False)).
 *
 * Plain C99 (GCC/Clang), no Python or torch headers: genesis_monai/transforms/elastic_kernel.py
 * builds, caches and loads it through ctypes (which releases the GIL during the call), like
 * csrc/degrade.c.
 *
 * Layout: x, out are contiguous (n, C, X, Y, Z); the C channels of a sample share its fields.
 * noise (optional) and disp (optional) are contiguous (n, 2, X, Y, Z): field 0 moves axis X,
 * field 1 axis Y.
 *
 * The smoothing is exact (no approximation of the operator): three separable passes of the
 * truncated, normalised Gaussian G with zero outside the cube, along Z (a dense Z x Z band matrix
 * per row), then Y, then X (weight rows applied to whole rows of the volume, alpha folded into the
 * X weights), accumulated in the data type (float32 like torch's matmul, or float64). Along X and
 * Y, where it saves multiply-adds (64 voxels, R = 32: 2 x 32^2 instead of 3104 per column), the
 * pass uses the symmetry G[n-1-i][n-1-k] = G[i][k]: two half-size products of sums and differences
 * of mirrored rows (gm_el_sym_*), an algebraic identity, only the rounding of the sums differs.
 * The products work on register blocks of 8 (float32) or 4 (float64) output rows x 32 columns in
 * 16 vector accumulators (GCC/Clang vector extension), so every loaded vector feeds 8 or 4
 * multiply-adds: ~40 GFMA/s of the ~55 peak of one Zen 4 core, measured. The warp computes the
 * sampling positions of a run of voxels in one vectorised loop, then the four taps of each voxel
 * with scalar loads.
 *
 * Threads: several threads may run gm_elastic on the same batch with a shared next_sample
 * counter (initially 0); each takes the next unprocessed sample. NULL processes all samples in
 * order.
 *
 * Randomness (when noise is NULL): every sample has its own counter-based SplitMix64 stream, its
 * state the mix of seeds[i] ^ GM_EL_SALT (the salt keeps it apart from the degradation kernel's
 * stream of the same seed), so results do not depend on how samples are split across threads.
 * Noise value q of field plane p = k * X + x (q = y * Z + z) comes from the 64-bit word
 * mix(state + (w + 1) * golden): float32 takes two values per word (w = p * ceil(Y*Z / 2) + q / 2,
 * bits 40..63 for even q, 8..31 for odd q), float64 one (w = p * Y * Z + q, bits 11..63); the
 * value is k * 2^-23 - 1 (float32, k 24 random bits) or k * 2^-52 - 1 (float64, k 53 bits): exactly
 * uniform on a grid of [-1, 1). gm_elastic_noise_* writes the same noise, for tests.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define GM_OK 0
#define GM_ERR_ALLOC 1
#define GM_ERR_ARGS 2

#define GM_GOLDEN 0x9E3779B97F4A7C15ULL
#define GM_EL_SALT 0x5EED0E1A571C0DE5ULL
#define GM_CB 32 /* columns of a register block */
#define GM_RB 8 /* the most rows of a register block (8 float32, 4 float64: 16 vector accumulators) */
#define GM_WARP 512 /* voxels per chunk of the warp */
#define GM_PAD 16 /* extra elements per plane of the field buffers: rows of a strided pass then do not
                     all fall into one L1 set (a 64 x 32 float plane is 8 KiB, a power of two) */

/* the SplitMix64 output function */
static inline uint64_t gm_mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static inline uint64_t gm_el_state(uint64_t seed) { return gm_mix(seed ^ GM_EL_SALT); }

static inline int64_t gm_min64(int64_t a, int64_t b) { return a < b ? a : b; }
static inline int64_t gm_max64(int64_t a, int64_t b) { return a > b ? a : b; }

/* whether the symmetric pass (gm_el_sym_*) needs fewer multiply-adds than the banded one for an
   axis of n voxels and Gaussian radius R (by 10%: it has extra adds); a small sigma against a large
   axis keeps the banded pass */
static int gm_el_use_sym(int64_t n, int64_t R) {
    if (n < 2) return 0;
    int64_t band = 0;
    for (int64_t i = 0; i < n; ++i) band += gm_min64(n - 1, i + R) - gm_max64(0, i - R) + 1;
    const int64_t h = n / 2, hp = n - h;
    return 10 * (hp * hp + h * h) < 9 * band;
}

/* noise of field plane p (Q = Y * Z values) */
static void gm_el_plane_noise_f32(uint64_t state, int64_t p, int64_t Q, float *out) {
    const int64_t W = (Q + 1) / 2;
    const uint64_t base = state + (uint64_t)(p * W) * GM_GOLDEN;
    const int64_t pairs = Q / 2;
    for (int64_t j = 0; j < pairs; ++j) {
        const uint64_t r = gm_mix(base + (uint64_t)(j + 1) * GM_GOLDEN);
        out[2 * j] = (float)(uint32_t)(r >> 40) * 0x1p-23f - 1.0f;
        out[2 * j + 1] = (float)((uint32_t)r >> 8) * 0x1p-23f - 1.0f;
    }
    if (Q & 1) out[Q - 1] = (float)(uint32_t)(gm_mix(base + (uint64_t)(pairs + 1) * GM_GOLDEN) >> 40) * 0x1p-23f - 1.0f;
}

static void gm_el_plane_noise_f64(uint64_t state, int64_t p, int64_t Q, double *out) {
    const uint64_t base = state + (uint64_t)(p * Q) * GM_GOLDEN;
    for (int64_t j = 0; j < Q; ++j)
        out[j] = (double)(gm_mix(base + (uint64_t)(j + 1) * GM_GOLDEN) >> 11) * 0x1p-52 - 1.0;
}

/* the four taps of voxels 0..m-1 and their bilinear blend (positions from gm_el_positions_*; the
   steps to the +1 taps along X and Y, sx and sy, are the same for all). Plain scalar loads: AVX-512
   gathers were measured slower here (Zen 4). Not inlined: inside the driver its pointers spilled
   to vector registers (~20% slower). */
#define GM_DEFINE_TAPS(T, SUFFIX)                                                                   \
static __attribute__((noinline)) void gm_el_taps_##SUFFIX(const T *src, T *dst, const int32_t *idx,   \
                                                          int32_t sx, int32_t sy, const T *wtx,     \
                                                          const T *wty, int64_t m) {                \
    for (int64_t q = 0; q < m; ++q) {                                                               \
        const T *s = src + idx[q];                                                                  \
        const T top = s[0] + wty[q] * (s[sy] - s[0]);                                               \
        const T bot = s[sx] + wty[q] * (s[sx + sy] - s[sx]);                                        \
        dst[q] = top + wtx[q] * (bot - top);                                                        \
    }                                                                                               \
}
GM_DEFINE_TAPS(float, f32)
GM_DEFINE_TAPS(double, f64)


#define GM_DEFINE_ELASTIC(T, SUFFIX, FLOOR, FABS, RB)                                               \
                                                                                                    \
/* 64-byte vectors of T (GCC/Clang vector extension), loadable at any T-aligned address */          \
typedef T gm_v_##SUFFIX __attribute__((vector_size(64), aligned(sizeof(T)), may_alias));            \
enum { GM_NV_##SUFFIX = GM_CB * (int)sizeof(T) / 64 }; /* vectors per block of GM_CB values */      \
                                                                                                    \
/* Z pass of one plane: t[r][:] = p[r][:] @ M (M: Z x Zp, zero outside the band and beyond Z; Zp a  \
   multiple of GM_CB), RB rows at a time; rows beyond `rows` read row rows - 1 and are dropped */   \
static void gm_el_zpass_##SUFFIX(const T *p, T *t, int64_t rows, int64_t Z, const T *M, int64_t Zp, \
                                 int64_t R) {                                                       \
    for (int64_t r0 = 0; r0 < rows; r0 += RB) {                                                     \
        const T *pr[RB];                                                                            \
        for (int r = 0; r < RB; ++r) pr[r] = p + gm_min64(r0 + r, rows - 1) * Z;                    \
        for (int64_t z0 = 0; z0 < Z; z0 += GM_CB) {                                                 \
            gm_v_##SUFFIX a[RB][GM_NV_##SUFFIX];                                                    \
            for (int r = 0; r < RB; ++r)                                                            \
                for (int v = 0; v < GM_NV_##SUFFIX; ++v) a[r][v] = (gm_v_##SUFFIX){0};              \
            const int64_t klo = gm_max64(0, z0 - R), khi = gm_min64(Z, z0 + GM_CB + R);             \
            for (int64_t k = klo; k < khi; ++k) {                                                   \
                const gm_v_##SUFFIX *m = (const gm_v_##SUFFIX *)(M + k * Zp + z0);                  \
                for (int r = 0; r < RB; ++r) {                                                      \
                    const T s = pr[r][k];                                                           \
                    for (int v = 0; v < GM_NV_##SUFFIX; ++v) a[r][v] += s * m[v];                   \
                }                                                                                   \
            }                                                                                       \
            const int64_t nb = gm_min64(GM_CB, Z - z0);                                             \
            for (int r = 0; r < RB && r0 + r < rows; ++r) {                                         \
                T *dst = t + (r0 + r) * Z + z0;                                                     \
                if (nb == GM_CB) {                                                                  \
                    for (int v = 0; v < GM_NV_##SUFFIX; ++v) ((gm_v_##SUFFIX *)dst)[v] = a[r][v];   \
                } else {                                                                            \
                    T tmp[GM_CB];                                                                   \
                    memcpy(tmp, a[r], sizeof(tmp));                                                 \
                    memcpy(dst, tmp, (size_t)nb * sizeof(T));                                       \
                }                                                                                   \
            }                                                                                       \
        }                                                                                           \
    }                                                                                               \
}                                                                                                   \
                                                                                                    \
/* banded pass over rows: out row i = sum_k w[k - i] in row k (|k - i| <= R, 0 <= k < n), rows of   \
   L values at strides sin / sout, RB output rows x GM_CB columns at a time. wp: the 2R + 1         \
   weights with GM_RB zeros at each end (wp[d + R + GM_RB] is the weight of offset d). Reads up to  \
   GM_CB - 1 values past the end of a row (the caller pads the buffer). out may be in (same rows):  \
   then each column block goes through strip (n rounded up to GM_RB rows x GM_CB) first. */         \
static void gm_el_band_##SUFFIX(const T *in, int64_t sin, T *out, int64_t sout, int64_t n, int64_t L, \
                                const T *wp, int64_t R, T *strip) {                                 \
    for (int64_t c0 = 0; c0 < L; c0 += GM_CB) {                                                     \
        const int64_t nb = gm_min64(GM_CB, L - c0);                                                 \
        /* full blocks of a separate output go straight from the registers to out */                \
        const int direct = out != in && nb == GM_CB;                                                \
        for (int64_t i = 0; i < n; i += RB) {                                                       \
            const int64_t klo = gm_max64(0, i - R), khi = gm_min64(n - 1, i + RB - 1 + R);          \
            gm_v_##SUFFIX a[RB][GM_NV_##SUFFIX];                                                    \
            for (int r = 0; r < RB; ++r)                                                            \
                for (int v = 0; v < GM_NV_##SUFFIX; ++v) a[r][v] = (gm_v_##SUFFIX){0};              \
            for (int64_t k = klo; k <= khi; ++k) {                                                  \
                const gm_v_##SUFFIX *s = (const gm_v_##SUFFIX *)(in + k * sin + c0);                \
                const T *w = wp + (k - i + R + GM_RB);                                              \
                for (int r = 0; r < RB; ++r) {                                                      \
                    const T wr = w[-r];                                                             \
                    for (int v = 0; v < GM_NV_##SUFFIX; ++v) a[r][v] += wr * s[v];                  \
                }                                                                                   \
            }                                                                                       \
            for (int r = 0; r < RB; ++r) {                                                          \
                T *dst = direct && i + r < n ? out + (i + r) * sout + c0 : strip + (i + r) * GM_CB; \
                for (int v = 0; v < GM_NV_##SUFFIX; ++v) ((gm_v_##SUFFIX *)dst)[v] = a[r][v];       \
            }                                                                                       \
        }                                                                                           \
        if (direct) continue;                                                                       \
        for (int64_t i = 0; i < n; ++i) {                                                           \
            T *dst = out + i * sout + c0;                                                           \
            const T *src = strip + i * GM_CB;                                                       \
            if (nb == GM_CB)                                                                        \
                for (int v = 0; v < GM_NV_##SUFFIX; ++v)                                            \
                    ((gm_v_##SUFFIX *)dst)[v] = ((const gm_v_##SUFFIX *)src)[v];                    \
            else                                                                                    \
                memcpy(dst, src, (size_t)nb * sizeof(T));                                           \
        }                                                                                           \
    }                                                                                               \
}                                                                                                   \
                                                                                                    \
/* dense pass over strips: P row i = sum_{k < K} AT[k * lda + i] * S row k, for i < nout (rounded up \
   to RB; AT zero-padded to lda >= that), rows of GM_CB values, RB x GM_CB register blocks */       \
static void gm_el_dense_##SUFFIX(const T *S, int64_t K, const T *AT, int64_t lda, int64_t nout,     \
                                 T *P) {                                                            \
    for (int64_t i = 0; i < nout; i += RB) {                                                        \
        gm_v_##SUFFIX a[RB][GM_NV_##SUFFIX];                                                        \
        for (int r = 0; r < RB; ++r)                                                                \
            for (int v = 0; v < GM_NV_##SUFFIX; ++v) a[r][v] = (gm_v_##SUFFIX){0};                  \
        for (int64_t k = 0; k < K; ++k) {                                                           \
            const gm_v_##SUFFIX *s = (const gm_v_##SUFFIX *)(S + k * GM_CB);                        \
            const T *w = AT + k * lda + i;                                                          \
            for (int r = 0; r < RB; ++r) {                                                          \
                const T wr = w[r];                                                                  \
                for (int v = 0; v < GM_NV_##SUFFIX; ++v) a[r][v] += wr * s[v];                      \
            }                                                                                       \
        }                                                                                           \
        for (int r = 0; r < RB; ++r)                                                                \
            for (int v = 0; v < GM_NV_##SUFFIX; ++v) ((gm_v_##SUFFIX *)(P + (i + r) * GM_CB))[v] = a[r][v]; \
    }                                                                                               \
}                                                                                                   \
                                                                                                    \
/* The same pass as gm_el_band_* with half the multiply-adds, through the symmetry of the           \
   truncated Gaussian matrix G (G[n-1-i][n-1-k] = G[i][k]): with h = n / 2, for k < h the sums      \
   s_k = v_k + v_{n-1-k} and differences d_k = v_k - v_{n-1-k} (and s_h = v_h when n is odd),       \
   p = Ap s and m = Am d with Ap[i][k] = (G[i][k] + G[i][n-1-k]) / 2, Am[i][k] = (G[i][k] -         \
   G[i][n-1-k]) / 2 (the middle row and column of G itself when n is odd) give y_i = p_i + m_i,      \
   y_{n-1-i} = p_i - m_i and y_h = p_h: an identity, not an approximation (only the rounding of the  \
   sums differs). ApT / AmT: Ap, Am stored column-major with leading dimension lda. All reads of a  \
   column block come before its writes, so out may be in. scratch: 4 x lda x GM_CB values. */      \
static void gm_el_sym_##SUFFIX(const T *in, int64_t sin, T *out, int64_t sout, int64_t n, int64_t L, \
                               const T *ApT, const T *AmT, int64_t lda, T *scratch) {               \
    const int64_t h = n / 2, hp = n - h;                                                            \
    T *S = scratch, *D = S + lda * GM_CB, *P = D + lda * GM_CB, *M = P + lda * GM_CB;                \
    for (int64_t c0 = 0; c0 < L; c0 += GM_CB) {                                                     \
        const int64_t nb = gm_min64(GM_CB, L - c0);                                                 \
        for (int64_t k = 0; k < h; ++k) {                                                           \
            const gm_v_##SUFFIX *lo = (const gm_v_##SUFFIX *)(in + k * sin + c0);                   \
            const gm_v_##SUFFIX *hi = (const gm_v_##SUFFIX *)(in + (n - 1 - k) * sin + c0);         \
            for (int v = 0; v < GM_NV_##SUFFIX; ++v) {                                              \
                ((gm_v_##SUFFIX *)(S + k * GM_CB))[v] = lo[v] + hi[v];                              \
                ((gm_v_##SUFFIX *)(D + k * GM_CB))[v] = lo[v] - hi[v];                              \
            }                                                                                       \
        }                                                                                           \
        if (hp > h)                                                                                 \
            for (int v = 0; v < GM_NV_##SUFFIX; ++v)                                                \
                ((gm_v_##SUFFIX *)(S + h * GM_CB))[v] = ((const gm_v_##SUFFIX *)(in + h * sin + c0))[v]; \
        gm_el_dense_##SUFFIX(S, hp, ApT, lda, hp, P);                                               \
        gm_el_dense_##SUFFIX(D, h, AmT, lda, h, M);                                                 \
        for (int64_t i = 0; i < hp; ++i) {                                                          \
            const gm_v_##SUFFIX *p = (const gm_v_##SUFFIX *)(P + i * GM_CB);                        \
            const gm_v_##SUFFIX *m = (const gm_v_##SUFFIX *)(M + i * GM_CB);                        \
            gm_v_##SUFFIX top[GM_NV_##SUFFIX], bot[GM_NV_##SUFFIX];                                 \
            for (int v = 0; v < GM_NV_##SUFFIX; ++v) {                                              \
                top[v] = p[v];                                                                      \
                if (i < h) top[v] += m[v];                                                          \
                bot[v] = p[v] - m[v];                                                               \
            }                                                                                       \
            T *dst = out + i * sout + c0, *dst2 = out + (n - 1 - i) * sout + c0;                    \
            if (nb == GM_CB) {                                                                      \
                for (int v = 0; v < GM_NV_##SUFFIX; ++v) ((gm_v_##SUFFIX *)dst)[v] = top[v];        \
                if (i < h)                                                                          \
                    for (int v = 0; v < GM_NV_##SUFFIX; ++v) ((gm_v_##SUFFIX *)dst2)[v] = bot[v];   \
            } else {                                                                                \
                memcpy(dst, top, (size_t)nb * sizeof(T));                                           \
                if (i < h) memcpy(dst2, bot, (size_t)nb * sizeof(T));                               \
            }                                                                                       \
        }                                                                                           \
    }                                                                                               \
}                                                                                                   \
                                                                                                    \
/* the matrices of gm_el_sym_* for an axis of n voxels (weights w[0..2R], scaled by scale) */      \
static void gm_el_sym_matrices_##SUFFIX(int64_t n, const double *w, int64_t R, double scale,        \
                                        int64_t lda, T *ApT, T *AmT) {                              \
    const int64_t h = n / 2, hp = n - h;                                                            \
    for (int64_t i = 0; i < hp; ++i)                                                                \
        for (int64_t k = 0; k < hp; ++k) {                                                          \
            const double a = llabs(i - k) <= R ? w[i - k + R] * scale : 0.0;                        \
            const int64_t kk = n - 1 - k;                                                           \
            const double b = llabs(i - kk) <= R ? w[i - kk + R] * scale : 0.0;                      \
            if (i < h && k < h) {                                                                   \
                ApT[k * lda + i] = (T)(0.5 * (a + b));                                              \
                AmT[k * lda + i] = (T)(0.5 * (a - b));                                              \
            } else {                                                                                \
                ApT[k * lda + i] = (T)a; /* the middle row / column (n odd) */                      \
            }                                                                                       \
        }                                                                                           \
}                                                                                                   \
                                                                                                    \
/* half-sample symmetric reflection into [-0.5, L - 0.5] (period 2L), then clipped to [0, L - 1]:   \
   torch's grid_sample reflection (align_corners=False); branch-free, so the loop vectorises */     \
static inline T gm_el_reflect_##SUFFIX(T p, T L) {                                                  \
    const T period = 2 * L;                                                                         \
    T u = p + (T)0.5;                                                                               \
    u -= period * FLOOR(u / period);          /* [0, 2L) */                                         \
    u = L - FABS(u - L) - (T)0.5;             /* [-0.5, L - 0.5] */                                 \
    u = u < 0 ? (T)0 : u;                                                                           \
    return u > L - 1 ? L - 1 : u;                                                                   \
}                                                                                                   \
                                                                                                    \
/* sampling positions of m voxels of plane x (in-plane indices q0..q0+m-1, y = yq[q], z = zq[q]):   \
   address of the first tap and the weights. The first tap index is at most L - 2 (for L >= 2), so \
   the +1 tap always exists: at the last voxel (position L - 1) the weight is then 1 instead of 0  \
   on the one before, the same value up to rounding. Whole runs of rows at once: a Z-long loop is   \
   too short for the compiler's vectorisation cost model; not inlined, so restrict holds. */       \
static __attribute__((noinline)) void gm_el_positions_##SUFFIX(const T *restrict e0, const T *restrict e1, \
                                     const T *restrict yq, const int32_t *restrict zq, int64_t m,   \
                                     T bx, T fX, T fY, int32_t YZ, int32_t Z, int32_t X2,           \
                                     int32_t Y2, int32_t *restrict idx, T *restrict wtx,            \
                                     T *restrict wty) {                                             \
    for (int64_t q = 0; q < m; ++q) {                                                               \
        const T px = gm_el_reflect_##SUFFIX(bx + e0[q], fX);                                        \
        const T py = gm_el_reflect_##SUFFIX(yq[q] + e1[q], fY);                                     \
        int32_t ix = (int32_t)px, iy = (int32_t)py;                                                 \
        ix = ix < X2 ? ix : X2;                                                                     \
        iy = iy < Y2 ? iy : Y2;                                                                     \
        wtx[q] = px - (T)ix;                                                                        \
        wty[q] = py - (T)iy;                                                                        \
        idx[q] = ix * YZ + iy * Z + zq[q];                                                          \
    }                                                                                               \
}                                                                                                   \
                                                                                                    \
/* bilinear warp of one sample (C, X, Y, Z) by fields d0, d1 (planes of Y * Z at stride S): per     \
   chunk of GM_WARP voxels of a plane, first the sampling positions, then the four taps of each.    \
   yq, zq: the y and z of each in-plane index; idx, wtx, wty: GM_WARP scratch each. An axis of one  \
   voxel has no +1 tap (step 0, weight 0). */                                                       \
static void gm_el_warp_##SUFFIX(const T *img, T *o, int64_t C, int64_t X, int64_t Y, int64_t Z,     \
                                const T *d0, const T *d1, int64_t S, const T *yq, const int32_t *zq, \
                                int32_t *idx, T *wtx, T *wty) {                                     \
    const int64_t Q = Y * Z, V = X * Q;                                                             \
    const int32_t sx = X > 1 ? (int32_t)Q : 0, sy = Y > 1 ? (int32_t)Z : 0;                         \
    const int32_t X2 = X > 1 ? (int32_t)X - 2 : 0, Y2 = Y > 1 ? (int32_t)Y - 2 : 0;                 \
    for (int64_t x = 0; x < X; ++x)                                                                 \
        for (int64_t q0 = 0; q0 < Q; q0 += GM_WARP) {                                               \
            const int64_t m = gm_min64(GM_WARP, Q - q0);                                            \
            gm_el_positions_##SUFFIX(d0 + x * S + q0, d1 + x * S + q0, yq + q0, zq + q0, m, (T)x,   \
                                     (T)X, (T)Y, (int32_t)Q, (int32_t)Z, X2, Y2, idx, wtx, wty);    \
            for (int64_t c = 0; c < C; ++c)                                                         \
                gm_el_taps_##SUFFIX(img + c * V, o + c * V + x * Q + q0, idx, sx, sy, wtx, wty, m); \
        }                                                                                           \
}                                                                                                   \
                                                                                                    \
int gm_elastic_noise_##SUFFIX(const int64_t *seeds, int64_t n, int64_t X, int64_t Y, int64_t Z,     \
                              T *out) {                                                             \
    if (n < 0 || X < 1 || Y < 1 || Z < 1) return GM_ERR_ARGS;                                       \
    const int64_t Q = Y * Z;                                                                        \
    for (int64_t i = 0; i < n; ++i) {                                                               \
        const uint64_t state = gm_el_state((uint64_t)seeds[i]);                                     \
        for (int64_t p = 0; p < 2 * X; ++p) gm_el_plane_noise_##SUFFIX(state, p, Q, out + (i * 2 * X + p) * Q); \
    }                                                                                               \
    return GM_OK;                                                                                   \
}                                                                                                   \
                                                                                                    \
int gm_elastic_##SUFFIX(const T *x, T *out, int64_t n, int64_t C, int64_t X, int64_t Y, int64_t Z,  \
                        const T *noise, const int64_t *seeds, const uint8_t *apply,                 \
                        const double *weights, int64_t R, double alpha, T *disp,                    \
                        int64_t *next_sample) {                                                     \
    if (n < 0 || C < 1 || X < 1 || Y < 1 || Z < 1 || R < 0) return GM_ERR_ARGS;                     \
    if (!noise && !seeds) return GM_ERR_ARGS;                                                       \
    if (X * Y * Z > 2147483647LL / C) return GM_ERR_ARGS;                                           \
    const int64_t Q = Y * Z, V = X * Q, S = Q + GM_PAD;                                             \
    const int64_t Zp = (Z + GM_CB - 1) / GM_CB * GM_CB;                                             \
    const int64_t rows = (gm_max64(X, Y) + GM_RB - 1) / GM_RB * GM_RB, nw = 2 * R + 1 + 2 * GM_RB;  \
    /* the two fields (planes at stride S) and tbuf are padded by GM_CB values: the banded passes   \
       read up to GM_CB - 1 values past the end of a row */                                         \
    T *fields = (T *)calloc((size_t)(2 * X * S + GM_CB), sizeof(T));                                \
    T *pbuf = (T *)malloc((size_t)(Q + 1) * sizeof(T));                                             \
    T *tbuf = (T *)calloc((size_t)(Q + GM_CB), sizeof(T));                                          \
    T *strip = (T *)malloc((size_t)(rows * GM_CB) * sizeof(T));                                     \
    T *M = (T *)calloc((size_t)(Z * Zp), sizeof(T));                                                \
    T *wy = (T *)calloc((size_t)nw, sizeof(T));                                                     \
    T *wx = (T *)calloc((size_t)nw, sizeof(T));                                                     \
    /* per axis (X, Y): the symmetric (half-cost) pass where it needs fewer multiply-adds than    \
       the banded one (always for 64 voxels and R = 32: 2 x 32^2 against 3104 per column) */        \
    const int64_t hx = X - X / 2, hy = Y - Y / 2;                                                   \
    const int sym_x = gm_el_use_sym(X, R), sym_y = gm_el_use_sym(Y, R);                             \
    const int64_t lx = (hx + GM_RB - 1) / GM_RB * GM_RB, ly = (hy + GM_RB - 1) / GM_RB * GM_RB;     \
    T *sym = (T *)calloc((size_t)(2 * lx * hx + 2 * ly * hy + 4 * gm_max64(lx, ly) * GM_CB), sizeof(T)); \
    T *ApX = sym, *AmX = ApX + lx * hx, *ApY = AmX + lx * hx, *AmY = ApY + ly * hy;                 \
    T *sym_scratch = AmY + ly * hy;                                                                 \
    int32_t *idx = (int32_t *)malloc((size_t)(GM_WARP + Q) * sizeof(int32_t));                      \
    T *wt = (T *)malloc((size_t)(2 * GM_WARP + Q) * sizeof(T));                                     \
    int rc = GM_OK;                                                                                 \
    if (!fields || !pbuf || !tbuf || !strip || !M || !wy || !wx || !idx || !wt || !sym) {           \
        rc = GM_ERR_ALLOC;                                                                          \
        goto done;                                                                                  \
    }                                                                                               \
    for (int64_t d = 0; d <= 2 * R; ++d) {                                                          \
        wy[d + GM_RB] = (T)weights[d];                                                              \
        wx[d + GM_RB] = (T)(weights[d] * alpha);                                                    \
    }                                                                                               \
    for (int64_t k = 0; k < Z; ++k)                                                                 \
        for (int64_t z = gm_max64(0, k - R); z <= gm_min64(Z - 1, k + R); ++z)                      \
            M[k * Zp + z] = (T)weights[z - k + R];                                                  \
    if (sym_x) gm_el_sym_matrices_##SUFFIX(X, weights, R, alpha, lx, ApX, AmX);                     \
    if (sym_y) gm_el_sym_matrices_##SUFFIX(Y, weights, R, 1.0, ly, ApY, AmY);                       \
    int32_t *zq = idx + GM_WARP;                                                                    \
    T *yq = wt + 2 * GM_WARP;                                                                       \
    for (int64_t q = 0; q < Q; ++q) {                                                               \
        yq[q] = (T)(q / Z);                                                                         \
        zq[q] = (int32_t)(q % Z);                                                                   \
    }                                                                                               \
    for (int64_t step = 0;; ++step) {                                                               \
        const int64_t i = next_sample ? __atomic_fetch_add(next_sample, 1, __ATOMIC_RELAXED) : step; \
        if (i >= n) break;                                                                          \
        const T *xi = x + i * C * V;                                                                \
        T *oi = out + i * C * V;                                                                    \
        if (apply && !apply[i]) {                                                                   \
            memcpy(oi, xi, (size_t)(C * V) * sizeof(T));                                            \
            if (disp) memset(disp + i * 2 * V, 0, (size_t)(2 * V) * sizeof(T));                     \
            continue;                                                                               \
        }                                                                                           \
        const uint64_t state = seeds ? gm_el_state((uint64_t)seeds[i]) : 0;                         \
        for (int64_t k = 0; k < 2; ++k) {                                                           \
            T *f = fields + k * X * S;                                                              \
            for (int64_t px = 0; px < X; ++px) {                                                    \
                const T *plane;                                                                     \
                if (noise) {                                                                        \
                    plane = noise + ((i * 2 + k) * X + px) * Q;                                     \
                } else {                                                                            \
                    gm_el_plane_noise_##SUFFIX(state, k * X + px, Q, pbuf);                         \
                    plane = pbuf;                                                                   \
                }                                                                                   \
                gm_el_zpass_##SUFFIX(plane, tbuf, Y, Z, M, Zp, R);                                  \
                if (sym_y) gm_el_sym_##SUFFIX(tbuf, Z, f + px * S, Z, Y, Z, ApY, AmY, ly, sym_scratch); \
                else gm_el_band_##SUFFIX(tbuf, Z, f + px * S, Z, Y, Z, wy, R, strip);               \
            }                                                                                       \
            if (sym_x) gm_el_sym_##SUFFIX(f, S, f, S, X, Q, ApX, AmX, lx, sym_scratch);             \
            else gm_el_band_##SUFFIX(f, S, f, S, X, Q, wx, R, strip);                               \
            if (disp)                                                                               \
                for (int64_t px = 0; px < X; ++px)                                                  \
                    memcpy(disp + ((i * 2 + k) * X + px) * Q, f + px * S, (size_t)Q * sizeof(T));   \
        }                                                                                           \
        gm_el_warp_##SUFFIX(xi, oi, C, X, Y, Z, fields, fields + X * S, S, yq, zq, idx, wt, wt + GM_WARP); \
    }                                                                                               \
done:                                                                                               \
    free(fields);                                                                                   \
    free(pbuf);                                                                                     \
    free(tbuf);                                                                                     \
    free(strip);                                                                                    \
    free(M);                                                                                        \
    free(wy);                                                                                       \
    free(wx);                                                                                       \
    free(idx);                                                                                      \
    free(wt);                                                                                       \
    free(sym);                                                                                      \
    return rc;                                                                                      \
}

GM_DEFINE_ELASTIC(float, f32, floorf, fabsf, 8)
GM_DEFINE_ELASTIC(double, f64, floor, fabs, 4)

/* lets the loader check that it talks to the kernel version it was written for */
int gm_elastic_abi_version(void) { return 1; }
