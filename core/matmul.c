/*
** core/matmul.c: single-precision matrix products, blocked for the caches,
** vectorised (AVX-512, AVX2+FMA, portable C, chosen at run time) and split
** over a mech_pool.
**
** Scheme (after GotoBLAS/BLIS): out[M,N] = inp[M,K] @ B[K,N] where B is w
** (mech_matmul, w [K,N]) or w^T (mech_matmul_nt, w [N,K]). The work is cut
** into tasks (column ranges of up to MM_TASK_COLS, or row ranges when N is
** small) taken dynamically by the pool's threads. A task walks its columns
** in blocks of NC and K in blocks of KC, packs B[kc, nc] into a contiguous
** buffer of column panels NR wide (k-major inside a panel, the last panel
** zero-padded to a whole vector; for nt a transposing copy) and runs the
** micro-kernel over MR-row strips of inp, read in place (a strip's MR x kc
** floats stay in L1 while the kernel sweeps the packed panels in L2). The
** micro-kernel keeps an MR x NR tile of out in registers and does one
** broadcast + FMA per (row, vector) per k; edge tiles use the same kernel
** instantiated for fewer rows and a masked last vector, so any M, N, K and
** strides work. While a block computes, the kernels prefetch the source of
** the task's next block, so at small M (weights streamed from memory once
** per call) the memory traffic overlaps the FMAs.
**
** Numerics: each output is a float sum over k in order within a K block,
** blocks added in order, bias added with the first block; results differ
** from the double-accumulating naive versions by rounding only.
**
** Invariants: no global mutable state; scratch comes from the pool's
** per-thread buffers (mech_pool_scratch) or, with no pool, from one
** allocation per call. If that allocation fails the task falls back to an
** unblocked loop, so the functions never fail.
*/
#include "core/core.h"

#include <limits.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#define MM_X86 1
#include <immintrin.h>
#else
#define MM_X86 0
#endif

#define MM_INLINE static inline __attribute__((always_inline))

enum { KIND_PORTABLE, KIND_AVX2, KIND_AVX512 };

static int mm_kind(void) {
#if MM_X86
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma")) return KIND_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return KIND_AVX2;
#endif
    return KIND_PORTABLE;
}

const char *mech_matmul_kernel(void) {
    switch (mm_kind()) {
    case KIND_AVX512: return "avx512";
    case KIND_AVX2: return "avx2";
    default: return "portable";
    }
}

// Register tile and vector width of each kernel: MR rows x NR columns, NR a
// multiple of VL.
static const int MR_OF[] = {4, 6, 8};
static const int NR_OF[] = {8, 16, 48};
static const int VL_OF[] = {8, 8, 16};

// Blocking, tuned on Zen 5 (48 KiB L1d, 1 MiB L2 per core) at GPT-2 shapes;
// anything from NC = 48 to 192 and KC = 256 to 512 is within a few percent.
#define MM_KC 384 // K block: an MR-row strip of inp (MR x KC floats) stays in L1
#define MM_NC 96  // N block: a packed B block (KC x NC floats, 144 KiB) stays in L2
#define MM_TASK_COLS 1536 // columns per task at most
#define MM_L2 (2u << 20)          // bytes of L2 per core
#define MM_WIDE_BLOCK (1u << 20)  // bytes of a wide packed B block: stays in L2 beside the strips

static int imin(int a, int b) { return a < b ? a : b; }
static int imax(int a, int b) { return a > b ? a : b; }
static int round_up(int x, int m) { return (x + m - 1) / m * m; }

// The width of B blocks taking cols columns in the fewest equal blocks (whole
// panels of nr) of at most bytes each, kc rows deep: a narrow last block
// would cost a whole pass over inp for a few panels.
static int block_cols(int cols, size_t bytes, int kc, int nr) {
    int fit = imax(nr, (int)(bytes / (sizeof(float) * (size_t)kc)) / nr * nr);
    int blocks = (cols + fit - 1) / fit;
    return round_up((cols + blocks - 1) / blocks, nr);
}

// Prefetch cursor over the source of the next packed block: `rows` rows of
// lpr cache lines, ld bytes apart. Each kernel call issues up to `budget`
// prefetches, one every `every` k steps, so that the next block streams in
// from memory while this one computes.
typedef struct mm_pf {
    uintptr_t row; // an address, not a pointer: it runs past the end

    size_t ld;
    int lpr, line, rows;
    int budget, every;
} mm_pf;

#define PF_STEP(pr, line, rows, lpr, ld, budget)                                                \
    if (budget > 0 && rows > 0) {                                                               \
        __builtin_prefetch((const void *)(pr + 64 * (uintptr_t)line), 0, 2);                    \
        budget--;                                                                               \
        if (++line == lpr) line = 0, pr += ld, rows--;                                          \
    }

// ---------------------------------------------------------------------------
// Reference versions

void mech_matmul_naive(float *out, int ldo, const float *inp, int ldi,
                       const float *w, int ldw, const float *bias, int M, int K, int N) {
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            double acc = bias ? bias[n] : 0.0;
            for (int k = 0; k < K; k++) acc += (double)inp[(size_t)m * ldi + k] * w[(size_t)k * ldw + n];
            out[(size_t)m * ldo + n] = (float)acc;
        }
}

void mech_matmul_nt_naive(float *out, int ldo, const float *inp, int ldi,
                          const float *w, int ldw, const float *bias, int M, int K, int N) {
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            double acc = bias ? bias[n] : 0.0;
            for (int k = 0; k < K; k++) acc += (double)inp[(size_t)m * ldi + k] * w[(size_t)n * ldw + k];
            out[(size_t)m * ldo + n] = (float)acc;
        }
}

// ---------------------------------------------------------------------------
// Packing: B[k0 .. k0+kc, n0 .. n0+nc] into panels of nr_max columns; panel
// p (columns jr = p*nr_max ..) starts at dst + jr*kc and holds kc rows of
// round_up(width, vl) floats, the padding zeroed.

static void pack_nn(float *dst, const float *w, size_t ldw, int k0, int kc, int n0, int nc,
                    int nr_max, int vl) {
    for (int k = 0; k < kc; k++) {
        const float *s = w + (size_t)(k0 + k) * ldw + n0;
        for (int jr = 0; jr < nc; jr += nr_max) {
            int nr = imin(nr_max, nc - jr), wp = round_up(nr, vl);
            float *d = dst + (size_t)jr * kc + (size_t)k * wp;
            if (nr == nr_max) {
                memcpy(d, s + jr, sizeof(float) * (size_t)nr_max);
            } else {
                memcpy(d, s + jr, sizeof(float) * (size_t)nr);
                memset(d + nr, 0, sizeof(float) * (size_t)(wp - nr));
            }
        }
    }
}

// Same for w [N, K] (B = w^T): a transposing copy.
static void pack_nt(float *dst, const float *w, size_t ldw, int k0, int kc, int n0, int nc,
                    int nr_max, int vl) {
    for (int jr = 0; jr < nc; jr += nr_max) {
        int nr = imin(nr_max, nc - jr), wp = round_up(nr, vl);
        float *d = dst + (size_t)jr * kc;
        for (int j = 0; j < nr; j++) {
            const float *s = w + (size_t)(n0 + jr + j) * ldw + k0;
            for (int k = 0; k < kc; k++) d[(size_t)k * wp + j] = s[k];
        }
        for (int j = nr; j < wp; j++)
            for (int k = 0; k < kc; k++) d[(size_t)k * wp + j] = 0.0f;
    }
}

#if MM_X86
#define T512 __attribute__((target("avx512f,fma")))
#define T256 __attribute__((target("avx2,fma")))

// Transposes the 16 x 16 block at src (row stride lds) into dst (row stride
// ldd): dst[i*ldd + j] = src[j*lds + i]. Straight-line code so that all 32
// values stay in registers.
// stream: dst's 16 rows are whole aligned lines, stored past the cache.
MM_INLINE T512 void tr16_t(const float *src, size_t lds, float *dst, size_t ldd, const int stream) {
#define LD(i) __m512 r##i = _mm512_loadu_ps(src + (i) * lds);
    LD(0) LD(1) LD(2) LD(3) LD(4) LD(5) LD(6) LD(7)
    LD(8) LD(9) LD(10) LD(11) LD(12) LD(13) LD(14) LD(15)
#undef LD
    __m512 t0 = _mm512_unpacklo_ps(r0, r1), t1 = _mm512_unpackhi_ps(r0, r1);
    __m512 t2 = _mm512_unpacklo_ps(r2, r3), t3 = _mm512_unpackhi_ps(r2, r3);
    __m512 t4 = _mm512_unpacklo_ps(r4, r5), t5 = _mm512_unpackhi_ps(r4, r5);
    __m512 t6 = _mm512_unpacklo_ps(r6, r7), t7 = _mm512_unpackhi_ps(r6, r7);
    __m512 t8 = _mm512_unpacklo_ps(r8, r9), t9 = _mm512_unpackhi_ps(r8, r9);
    __m512 t10 = _mm512_unpacklo_ps(r10, r11), t11 = _mm512_unpackhi_ps(r10, r11);
    __m512 t12 = _mm512_unpacklo_ps(r12, r13), t13 = _mm512_unpackhi_ps(r12, r13);
    __m512 t14 = _mm512_unpacklo_ps(r14, r15), t15 = _mm512_unpackhi_ps(r14, r15);
    // u[4i + {0,1,2,3}] from t[4i + {0,2}] and t[4i + {1,3}]
    r0 = _mm512_shuffle_ps(t0, t2, 0x44), r1 = _mm512_shuffle_ps(t0, t2, 0xEE);
    r2 = _mm512_shuffle_ps(t1, t3, 0x44), r3 = _mm512_shuffle_ps(t1, t3, 0xEE);
    r4 = _mm512_shuffle_ps(t4, t6, 0x44), r5 = _mm512_shuffle_ps(t4, t6, 0xEE);
    r6 = _mm512_shuffle_ps(t5, t7, 0x44), r7 = _mm512_shuffle_ps(t5, t7, 0xEE);
    r8 = _mm512_shuffle_ps(t8, t10, 0x44), r9 = _mm512_shuffle_ps(t8, t10, 0xEE);
    r10 = _mm512_shuffle_ps(t9, t11, 0x44), r11 = _mm512_shuffle_ps(t9, t11, 0xEE);
    r12 = _mm512_shuffle_ps(t12, t14, 0x44), r13 = _mm512_shuffle_ps(t12, t14, 0xEE);
    r14 = _mm512_shuffle_ps(t13, t15, 0x44), r15 = _mm512_shuffle_ps(t13, t15, 0xEE);
    t0 = _mm512_shuffle_f32x4(r0, r4, 0x88), t4 = _mm512_shuffle_f32x4(r0, r4, 0xDD);
    t1 = _mm512_shuffle_f32x4(r1, r5, 0x88), t5 = _mm512_shuffle_f32x4(r1, r5, 0xDD);
    t2 = _mm512_shuffle_f32x4(r2, r6, 0x88), t6 = _mm512_shuffle_f32x4(r2, r6, 0xDD);
    t3 = _mm512_shuffle_f32x4(r3, r7, 0x88), t7 = _mm512_shuffle_f32x4(r3, r7, 0xDD);
    t8 = _mm512_shuffle_f32x4(r8, r12, 0x88), t12 = _mm512_shuffle_f32x4(r8, r12, 0xDD);
    t9 = _mm512_shuffle_f32x4(r9, r13, 0x88), t13 = _mm512_shuffle_f32x4(r9, r13, 0xDD);
    t10 = _mm512_shuffle_f32x4(r10, r14, 0x88), t14 = _mm512_shuffle_f32x4(r10, r14, 0xDD);
    t11 = _mm512_shuffle_f32x4(r11, r15, 0x88), t15 = _mm512_shuffle_f32x4(r11, r15, 0xDD);
#define ST1(p, v)                                                                               \
    if (stream) _mm512_stream_ps(p, v);                                                         \
    else _mm512_storeu_ps(p, v);
#define ST(j, h)                                                                                \
    ST1(dst + (j) * ldd, _mm512_shuffle_f32x4(t##j, t##h, 0x88))                                \
    ST1(dst + (8 + j) * ldd, _mm512_shuffle_f32x4(t##j, t##h, 0xDD))
    ST(0, 8) ST(1, 9) ST(2, 10) ST(3, 11) ST(4, 12) ST(5, 13) ST(6, 14) ST(7, 15)
#undef ST
#undef ST1
}

MM_INLINE T512 void tr16(const float *src, size_t lds, float *dst, size_t ldd) { tr16_t(src, lds, dst, ldd, 0); }

static T512 void transpose_512(float *dst, size_t ldd, const float *src, size_t lds, int rows, int cols,
                               int stream) {
    int r16 = rows / 16 * 16, c16 = cols / 16 * 16;
    for (int r = 0; r < r16; r += 16) {
        float *d = dst + r;
        if (stream && ((uintptr_t)d & 63) == 0 && ldd % 16 == 0)
            for (int c = 0; c < c16; c += 16) tr16_t(src + (size_t)r * lds + c, lds, d + (size_t)c * ldd, ldd, 1);
        else
            for (int c = 0; c < c16; c += 16) tr16(src + (size_t)r * lds + c, lds, d + (size_t)c * ldd, ldd);
    }
    if (stream) _mm_sfence(); // the streamed values visible to whichever thread reads them next
    for (int r = 0; r < rows; r++)
        for (int c = r < r16 ? c16 : 0; c < cols; c++) dst[(size_t)c * ldd + r] = src[(size_t)r * lds + c];
}

// pack_nn for the AVX-512 kernel's panels (nr_max = 48: three vectors).
static T512 void pack_nn_512(float *dst, const float *w, size_t ldw, int k0, int kc, int n0, int nc,
                             int nr_max, int vl) {
    int full = nc / nr_max * nr_max; // columns in whole panels
    for (int k = 0; k < kc; k++) {
        const float *s = w + (size_t)(k0 + k) * ldw + n0;
        float *d = dst + (size_t)k * nr_max;
        int jr = 0;
        // Software prefetch a few rows ahead: a cold block (the first of a
        // task) comes from memory with more requests in flight than the
        // hardware prefetcher would have.
        const float *sp = s + (k + 8 < kc ? 8 * ldw : 0);
        for (; jr < full; jr += 48, d += (size_t)48 * kc) {
            _mm_prefetch((const char *)(sp + jr), _MM_HINT_T1);
            _mm_prefetch((const char *)(sp + jr + 16), _MM_HINT_T1);
            _mm_prefetch((const char *)(sp + jr + 32), _MM_HINT_T1);
            __m512 x0 = _mm512_loadu_ps(s + jr), x1 = _mm512_loadu_ps(s + jr + 16),
                   x2 = _mm512_loadu_ps(s + jr + 32);
            _mm512_storeu_ps(d, x0);
            _mm512_storeu_ps(d + 16, x1);
            _mm512_storeu_ps(d + 32, x2);
        }
        if (jr < nc) { // the last, narrower panel: zero-padded to whole vectors
            int nr = nc - jr, wp = round_up(nr, vl);
            float *e = dst + (size_t)jr * kc + (size_t)k * wp;
            for (int v = 0; v < wp; v += 16) {
                int left = nr - v;
                __mmask16 m = left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (left > 0 ? left : 0)) - 1);
                _mm512_storeu_ps(e + v, _mm512_maskz_loadu_ps(m, s + jr + v));
            }
        }
    }
}

static T512 void pack_nt_512(float *dst, const float *w, size_t ldw, int k0, int kc, int n0, int nc,
                             int nr_max, int vl) {
    for (int jr = 0; jr < nc; jr += nr_max) {
        int nr = imin(nr_max, nc - jr), wp = round_up(nr, vl);
        float *d = dst + (size_t)jr * kc;
        for (int g = 0; g < wp; g += 16) {
            int rows = imin(16, nr - g), k = 0;
            const float *s = w + (size_t)(n0 + jr + g) * ldw + k0;
            if (rows == 16)
                for (; k + 16 <= kc; k += 16) {
                    if (k + 80 <= kc)
                        for (int i = 0; i < 16; i++)
                            _mm_prefetch((const char *)(s + (size_t)i * ldw + k + 64), _MM_HINT_T1);
                    tr16(s + k, ldw, d + (size_t)k * wp + g, (size_t)wp);
                }
            // Edges: a partial group of rows (zero-padded) or the last k < 16.
            for (; k < kc; k++)
                for (int i = 0; i < 16; i++) d[(size_t)k * wp + g + i] = i < rows ? s[(size_t)i * ldw + k] : 0.0f;
        }
    }
}
#endif

// ---------------------------------------------------------------------------
// Micro-kernels: c[mr, nr] (=|+=) a[mr, kc] (row stride lda) @ b[kc, nv*VL]
// (packed panel) (+ bias on the first K block). accumulate: add to c.

// Portable: 4 rows x 8 columns in GNU C vectors of 4 floats (SSE2 on any
// x86-64, NEON on AArch64, scalar code elsewhere); 8 accumulators leave room
// in 16 registers.
typedef float mm_v4 __attribute__((vector_size(16)));

MM_INLINE void kp_t(const int mr, int kc, const float *a, size_t lda, const float *b, float *c,
                    size_t ldc, int nr, const float *bias, int accumulate) {
    mm_v4 z = {0, 0, 0, 0};
    mm_v4 t00 = z, t01 = z, t10 = z, t11 = z, t20 = z, t21 = z, t30 = z, t31 = z;
    for (int k = 0; k < kc; k++, b += 8) {
        mm_v4 b0, b1;
        memcpy(&b0, b, sizeof b0);
        memcpy(&b1, b + 4, sizeof b1);
#define ROWP(r)                                                                                 \
    if (mr > r) {                                                                               \
        float s = a[(size_t)r * lda + k];                                                       \
        mm_v4 av = {s, s, s, s};                                                                \
        t##r##0 += av * b0;                                                                     \
        t##r##1 += av * b1;                                                                     \
    }
        ROWP(0) ROWP(1) ROWP(2) ROWP(3)
#undef ROWP
    }
    float t[4][8];
    memcpy(t[0], &t00, 16), memcpy(t[0] + 4, &t01, 16);
    memcpy(t[1], &t10, 16), memcpy(t[1] + 4, &t11, 16);
    memcpy(t[2], &t20, 16), memcpy(t[2] + 4, &t21, 16);
    memcpy(t[3], &t30, 16), memcpy(t[3] + 4, &t31, 16);
    for (int r = 0; r < mr; r++)
        for (int j = 0; j < nr; j++) {
            float *o = c + (size_t)r * ldc + j;
            *o = accumulate ? *o + t[r][j] : t[r][j] + (bias ? bias[j] : 0.0f);
        }
}

static void kern_portable(int mr, int nr, int kc, const float *a, size_t lda, const float *b,
                          float *c, size_t ldc, const float *bias, int accumulate, mm_pf *pf) {
    (void)pf;
    switch (mr) {
    case 1: kp_t(1, kc, a, lda, b, c, ldc, nr, bias, accumulate); break;
    case 2: kp_t(2, kc, a, lda, b, c, ldc, nr, bias, accumulate); break;
    case 3: kp_t(3, kc, a, lda, b, c, ldc, nr, bias, accumulate); break;
    default: kp_t(4, kc, a, lda, b, c, ldc, nr, bias, accumulate); break;
    }
}

#if MM_X86
// clang hoists all the broadcasts of a k step ahead of the FMAs, which needs
// 35 vector registers for the 8 x 3 tile and spills accumulators; empty asm
// statements pin the order (row by row) so that one broadcast register is
// reused. gcc already schedules it that way.
#if defined(__clang__)
#define PIN(x) __asm__ volatile("" : "+v"(x))
#define PIN3(x, y, z) __asm__ volatile("" : "+v"(x), "+v"(y), "+v"(z))
#define PINX(x) __asm__ volatile("" : "+x"(x))
#define PIN2(x, y) __asm__ volatile("" : "+x"(x), "+x"(y))
#else
#define PINX(x) ((void)0)
#define PIN2(x, y) ((void)0)
#define PIN(x) ((void)0)
#define PIN3(x, y, z) ((void)0)
#endif

// AVX-512: up to 8 rows x 3 vectors of 16 (24 accumulators, 3 B registers,
// one broadcast register).
MM_INLINE T512 void k512_t(const int mr, const int nv, const int stream, int kc, const float *a, size_t lda,
                           const float *b, float *c, size_t ldc, const float *bias, int accumulate,
                           __mmask16 mlast, mm_pf *pf) {
    uintptr_t pr = pf->row;
    int line = pf->line, rows = pf->rows, lpr = pf->lpr, budget = pf->budget, every = pf->every;
    int cnt = every;
    size_t pld = pf->ld;
    __m512 c00 = _mm512_setzero_ps(), c01 = c00, c02 = c00, c10 = c00, c11 = c00, c12 = c00,
           c20 = c00, c21 = c00, c22 = c00, c30 = c00, c31 = c00, c32 = c00, c40 = c00,
           c41 = c00, c42 = c00, c50 = c00, c51 = c00, c52 = c00, c60 = c00, c61 = c00,
           c62 = c00, c70 = c00, c71 = c00, c72 = c00;
    const float *a0 = a, *a1 = a + (mr > 1 ? lda : 0), *a2 = a + (mr > 2 ? 2 * lda : 0),
                *a3 = a + (mr > 3 ? 3 * lda : 0), *a4 = a + (mr > 4 ? 4 * lda : 0),
                *a5 = a + (mr > 5 ? 5 * lda : 0), *a6 = a + (mr > 6 ? 6 * lda : 0),
                *a7 = a + (mr > 7 ? 7 * lda : 0);
    for (int k = 0; k < kc; k++) {
        __m512 b0 = _mm512_loadu_ps(b);
        __m512 b1 = nv > 1 ? _mm512_loadu_ps(b + 16) : b0;
        __m512 b2 = nv > 2 ? _mm512_loadu_ps(b + 32) : b0;
        b += nv * 16;
#define ROW(r)                                                                                  \
    if (mr > r) {                                                                               \
        __m512 av = _mm512_set1_ps(a##r[k]);                                                    \
        PIN(av);                                                                                \
        c##r##0 = _mm512_fmadd_ps(av, b0, c##r##0);                                             \
        if (nv > 1) c##r##1 = _mm512_fmadd_ps(av, b1, c##r##1);                                 \
        if (nv > 2) c##r##2 = _mm512_fmadd_ps(av, b2, c##r##2);                                 \
        PIN3(c##r##0, c##r##1, c##r##2);                                                        \
    }
        ROW(0) ROW(1) ROW(2) ROW(3) ROW(4) ROW(5) ROW(6) ROW(7)
#undef ROW
        if (--cnt == 0) {
            cnt = every;
            PF_STEP(pr, line, rows, lpr, pld, budget)
        }
    }
    pf->row = pr, pf->line = line, pf->rows = rows;
#define ST(r, v)                                                                                \
    if (mr > r && nv > v) {                                                                     \
        __mmask16 mk = v == nv - 1 ? mlast : (__mmask16)0xFFFF;                                  \
        float *o = c + (size_t)r * ldc + 16 * v;                                                \
        __m512 x = c##r##v;                                                                     \
        if (accumulate) x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(mk, o));                     \
        else if (bias) x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(mk, bias + 16 * v));          \
        if (stream && mk == (__mmask16)0xFFFF) _mm512_stream_ps(o, x);                          \
        else _mm512_mask_storeu_ps(o, mk, x);                                                   \
    }
#define STROW(r) ST(r, 0) ST(r, 1) ST(r, 2)
    STROW(0) STROW(1) STROW(2) STROW(3) STROW(4) STROW(5) STROW(6) STROW(7)
#undef STROW
#undef ST
}

static T512 void kern_avx512(int mr, int nr, int kc, const float *a, size_t lda, const float *b,
                             float *c, size_t ldc, const float *bias, int accumulate, mm_pf *pf) {
    int nv = (nr + 15) / 16;
    __mmask16 ml = (__mmask16)(0xFFFFu >> (16 * nv - nr));
#define CASE_MR(m)                                                                              \
    case m:                                                                                     \
        if (nv == 3) k512_t(m, 3, 0, kc, a, lda, b, c, ldc, bias, accumulate, ml, pf);               \
        else if (nv == 2) k512_t(m, 2, 0, kc, a, lda, b, c, ldc, bias, accumulate, ml, pf);          \
        else k512_t(m, 1, 0, kc, a, lda, b, c, ldc, bias, accumulate, ml, pf);                       \
        break;
    switch (mr) {
        CASE_MR(1) CASE_MR(2) CASE_MR(3) CASE_MR(4) CASE_MR(5) CASE_MR(6) CASE_MR(7) CASE_MR(8)
    }
#undef CASE_MR
}

// The same for whole 8 x 48 tiles of an out written once (c 64-byte aligned,
// ldc a multiple of 16): streaming stores, so that a large out (the weight
// gradients) is not first read into the cache only to be overwritten.
static T512 void kern_avx512_stream(int mr, int nr, int kc, const float *a, size_t lda, const float *b, float *c,
                                    size_t ldc, mm_pf *pf) {
    if (mr == 8 && nr == 48) k512_t(8, 3, 1, kc, a, lda, b, c, ldc, NULL, 0, (__mmask16)0xFFFF, pf);
    else kern_avx512(mr, nr, kc, a, lda, b, c, ldc, NULL, 0, pf);
}

// AVX2: up to 6 rows x 2 vectors of 8 (12 accumulators).
MM_INLINE T256 void k256_t(const int mr, const int nv, int kc, const float *a, size_t lda,
                           const float *b, float *c, size_t ldc, const float *bias, int accumulate,
                           __m256i mlast, mm_pf *pf) {
    uintptr_t pr = pf->row;
    int line = pf->line, rows = pf->rows, lpr = pf->lpr, budget = pf->budget, every = pf->every;
    int cnt = every;
    size_t pld = pf->ld;
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00,
           c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
    const float *a0 = a, *a1 = a + (mr > 1 ? lda : 0), *a2 = a + (mr > 2 ? 2 * lda : 0),
                *a3 = a + (mr > 3 ? 3 * lda : 0), *a4 = a + (mr > 4 ? 4 * lda : 0),
                *a5 = a + (mr > 5 ? 5 * lda : 0);
    for (int k = 0; k < kc; k++) {
        __m256 b0 = _mm256_loadu_ps(b);
        __m256 b1 = nv > 1 ? _mm256_loadu_ps(b + 8) : b0;
        b += nv * 8;
#define ROW(r)                                                                                  \
    if (mr > r) {                                                                               \
        __m256 av = _mm256_broadcast_ss(a##r + k);                                              \
        PINX(av);                                                                               \
        c##r##0 = _mm256_fmadd_ps(av, b0, c##r##0);                                             \
        if (nv > 1) c##r##1 = _mm256_fmadd_ps(av, b1, c##r##1);                                 \
        PIN2(c##r##0, c##r##1);                                                                 \
    }
        ROW(0) ROW(1) ROW(2) ROW(3) ROW(4) ROW(5)
#undef ROW
        if (--cnt == 0) {
            cnt = every;
            PF_STEP(pr, line, rows, lpr, pld, budget)
        }
    }
    pf->row = pr, pf->line = line, pf->rows = rows;
    const __m256i full = _mm256_set1_epi32(-1);
#define ST(r, v)                                                                                \
    if (mr > r && nv > v) {                                                                     \
        __m256i mk = v == nv - 1 ? mlast : full;                                                \
        float *o = c + (size_t)r * ldc + 8 * v;                                                 \
        __m256 x = c##r##v;                                                                     \
        if (accumulate) x = _mm256_add_ps(x, _mm256_maskload_ps(o, mk));                        \
        else if (bias) x = _mm256_add_ps(x, _mm256_maskload_ps(bias + 8 * v, mk));              \
        _mm256_maskstore_ps(o, mk, x);                                                          \
    }
#define STROW(r) ST(r, 0) ST(r, 1)
    STROW(0) STROW(1) STROW(2) STROW(3) STROW(4) STROW(5)
#undef STROW
#undef ST
}

static T256 void kern_avx2(int mr, int nr, int kc, const float *a, size_t lda, const float *b,
                           float *c, size_t ldc, const float *bias, int accumulate, mm_pf *pf) {
    int nv = (nr + 7) / 8, nl = nr - 8 * (nv - 1);
    __m256i ml = _mm256_cmpgt_epi32(_mm256_set1_epi32(nl), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
#define CASE_MR(m)                                                                              \
    case m:                                                                                     \
        if (nv == 2) k256_t(m, 2, kc, a, lda, b, c, ldc, bias, accumulate, ml, pf);                  \
        else k256_t(m, 1, kc, a, lda, b, c, ldc, bias, accumulate, ml, pf);                          \
        break;
    switch (mr) {
        CASE_MR(1) CASE_MR(2) CASE_MR(3) CASE_MR(4) CASE_MR(5) CASE_MR(6)
    }
#undef CASE_MR
}
#endif

// ---------------------------------------------------------------------------
// Driver

typedef struct mm_job {
    mech_pool *pool;
    float *out;
    const float *inp, *w, *bias;
    size_t ldo, ldi, ldw;
    int M, K, N;
    int nt;   // w is [N, K]
    int add;  // out += the product (no bias)
    int kind; // KIND_*
    int mr, nr, vl, kc, nc;
    int mch, nch; // rows and columns per task
    int tm, tn;   // task grid
    float *wsum;  // (N) w's column sums (mech_matmul_tn's bias gradient), or NULL
} mm_job;

static void colsum_packed(double *acc, const float *buf, int kc, int nc, int nr_max, int vl);
static void mm_tn_colsum_slow(const struct mm_job *j, float *wsum, int n0, int n1);

// Unblocked fallback for one task's region when no scratch could be had.
static void mm_slow(const mm_job *j, int m0, int m1, int n0, int n1) {
    for (int m = m0; m < m1; m++)
        for (int n = n0; n < n1; n++) {
            float acc = 0.0f;
            const float *x = j->inp + (size_t)m * j->ldi;
            for (int k = 0; k < j->K; k++)
                acc += x[k] * (j->nt ? j->w[(size_t)n * j->ldw + k] : j->w[(size_t)k * j->ldw + n]);
            float *o = j->out + (size_t)m * j->ldo + n;
            *o = acc + (j->add ? *o : j->bias ? j->bias[n] : 0.0f);
        }
}

#if MM_X86
// One row of inp (M = 1, the one-token forward) times w [K, N], AVX-512:
// w's rows are streamed in place instead of packed, since a packed block
// would serve that one row only (packing is then a copy of every weight).
// Each output gets the kernel's operations in the kernel's order (per K
// block a sum of FMAs from 0, then added to the bias or to the earlier
// blocks' sum), so the result equals the packed path's bit for bit. The
// partial sums of up to ROW1_COLS columns stay in L1 while a K block's rows
// stream past; rows 8 ahead are prefetched.
#define ROW1_COLS 1536
static T512 void mm_row1_nn_512(const mm_job *j, int m, int n0, int n1) {
    float p[ROW1_COLS] __attribute__((aligned(64)));
    const float *x = j->inp + (size_t)m * j->ldi;
    for (int c0 = n0; c0 < n1; c0 += ROW1_COLS) {
        int nc = imin(ROW1_COLS, n1 - c0), nv = (nc + 15) / 16;
        __mmask16 ml = (__mmask16)(0xFFFFu >> (16 * nv - nc));
        float *out = j->out + (size_t)m * j->ldo + c0;
        for (int pc = 0; pc < j->K; pc += j->kc) {
            int kcur = imin(j->kc, j->K - pc);
            for (int v = 0; v < nv; v++) _mm512_store_ps(p + 16 * v, _mm512_setzero_ps());
            for (int k = 0; k < kcur; k++) {
                const float *s = j->w + (size_t)(pc + k) * j->ldw + c0;
                const float *sp = s + (k + 8 < kcur ? 8 * j->ldw : 0);
                __m512 av = _mm512_set1_ps(x[pc + k]);
                int v = 0;
                for (; v < nv - 1; v++) {
                    _mm_prefetch((const char *)(sp + 16 * v), _MM_HINT_T1);
                    __m512 acc = _mm512_load_ps(p + 16 * v);
                    _mm512_store_ps(p + 16 * v, _mm512_fmadd_ps(av, _mm512_loadu_ps(s + 16 * v), acc));
                }
                _mm_prefetch((const char *)(sp + 16 * v), _MM_HINT_T1);
                __m512 acc = _mm512_load_ps(p + 16 * v);
                _mm512_store_ps(p + 16 * v, _mm512_fmadd_ps(av, _mm512_maskz_loadu_ps(ml, s + 16 * v), acc));
            }
            for (int v = 0; v < nv; v++) {
                __mmask16 mk = v == nv - 1 ? ml : (__mmask16)0xFFFF;
                __m512 r = _mm512_load_ps(p + 16 * v);
                if (pc > 0 || j->add) r = _mm512_add_ps(r, _mm512_maskz_loadu_ps(mk, out + 16 * v));
                else if (j->bias) r = _mm512_add_ps(r, _mm512_maskz_loadu_ps(mk, j->bias + c0 + 16 * v));
                _mm512_mask_storeu_ps(out + 16 * v, mk, r);
            }
        }
    }
}
#endif

static void mm_task(void *ctx, int t, int thread) {
    const mm_job *j = ctx;
    int im = t / j->tn, in = t % j->tn;
    int m0 = im * j->mch, m1 = imin(j->M, m0 + j->mch);
    int n0 = in * j->nch, n1 = imin(j->N, n0 + j->nch);
    if (m0 >= m1 || n0 >= n1) return;
#if MM_X86
    if (j->kind == KIND_AVX512 && !j->nt && m1 - m0 == 1 && !j->wsum) {
        mm_row1_nn_512(j, m0, n0, n1);
        return;
    }
#endif
    int kcm = imin(j->kc, j->K), ncm = imin(j->nc, round_up(n1 - n0, j->vl));
    size_t bfl = (size_t)kcm * (size_t)round_up(ncm, j->vl);
    // w's column sums: by the tasks of the first rows, from the packed blocks
    float *wsum = m0 == 0 ? j->wsum : NULL;
    size_t bytes = sizeof(float) * bfl + (wsum ? sizeof(double) * (size_t)ncm : 0);
    float *own = NULL, *buf = mech_pool_scratch(j->pool, thread, bytes);
    if (!buf) buf = own = mech_malloc_aligned(bytes);
    if (!buf) {
        mm_slow(j, m0, m1, n0, n1);
        if (wsum) mm_tn_colsum_slow(j, wsum, n0, n1);
        return;
    }
    double *wacc = (double *)(void *)(buf + bfl); // 8-aligned: bfl is a multiple of 8
    for (int jc = n0; jc < n1; jc += j->nc) {
        int ncur = imin(j->nc, n1 - jc);
        if (wsum)
            for (int c = 0; c < ncur; c++) wacc[c] = 0;
        for (int pc = 0; pc < j->K; pc += j->kc) {
            int kcur = imin(j->kc, j->K - pc);
#if MM_X86
            if (j->kind == KIND_AVX512 && j->nt)
                pack_nt_512(buf, j->w, j->ldw, pc, kcur, jc, ncur, j->nr, j->vl);
            else if (j->kind == KIND_AVX512)
                pack_nn_512(buf, j->w, j->ldw, pc, kcur, jc, ncur, j->nr, j->vl);
            else
#endif
            if (j->nt) pack_nt(buf, j->w, j->ldw, pc, kcur, jc, ncur, j->nr, j->vl);
            else pack_nn(buf, j->w, j->ldw, pc, kcur, jc, ncur, j->nr, j->vl);
            if (wsum) colsum_packed(wacc, buf, kcur, ncur, j->nr, j->vl);
            int acc = pc > 0 || j->add;
            // Prefetch the source of the next block of this task during
            // this block's kernels.
            mm_pf pf = {.every = INT_MAX}; // no next block: no prefetch
            int pc2 = pc + j->kc, jc2 = jc;
            if (pc2 >= j->K) pc2 = 0, jc2 = jc + j->nc;
            if (jc2 < n1) {
                int kc2 = imin(j->kc, j->K - pc2), nc2 = imin(j->nc, n1 - jc2);
                const float *src = j->nt ? j->w + (size_t)jc2 * j->ldw + pc2
                                         : j->w + (size_t)pc2 * j->ldw + jc2;
                int len = j->nt ? kc2 : nc2;
                pf.row = (uintptr_t)src & ~(uintptr_t)63;
                pf.ld = sizeof(float) * j->ldw;
                pf.rows = j->nt ? nc2 : kc2;
                pf.lpr = (int)(((uintptr_t)src & 63) + sizeof(float) * (size_t)len + 63) / 64;
                int calls = ((m1 - m0 + j->mr - 1) / j->mr) * ((ncur + j->nr - 1) / j->nr);
                pf.budget = (int)(((size_t)pf.rows * pf.lpr + calls - 1) / calls);
                pf.every = imax(1, kcur / imax(1, pf.budget));
            }
            for (int ir = m0; ir < m1; ir += j->mr) {
                int mr = imin(j->mr, m1 - ir);
                const float *a = j->inp + (size_t)ir * j->ldi + pc;
                float *c = j->out + (size_t)ir * j->ldo + jc;
                for (int jr = 0; jr < ncur; jr += j->nr) {
                    int nr = imin(j->nr, ncur - jr);
                    const float *b = buf + (size_t)jr * kcur;
                    const float *bias = j->bias ? j->bias + jc + jr : NULL;
                    switch (j->kind) {
#if MM_X86
                    case KIND_AVX512:
                        kern_avx512(mr, nr, kcur, a, j->ldi, b, c + jr, j->ldo, bias, acc, &pf);
                        break;
                    case KIND_AVX2:
                        kern_avx2(mr, nr, kcur, a, j->ldi, b, c + jr, j->ldo, bias, acc, &pf);
                        break;
#endif
                    default:
                        kern_portable(mr, nr, kcur, a, j->ldi, b, c + jr, j->ldo, bias, acc, &pf);
                    }
                }
            }
        }
        if (wsum)
            for (int c = 0; c < ncur; c++) wsum[jc + c] = (float)wacc[c];
    }
    mech_free_aligned(own);
}

// Register tile, blocking and task grid of a job whose operands are set.
static void mm_plan(mm_job *jp) {
    mm_job j = *jp;
    int M = j.M, N = j.N, K = j.K;
    j.mr = MR_OF[j.kind];
    j.nr = NR_OF[j.kind];
    j.vl = VL_OF[j.kind];
    j.kc = MM_KC;
    j.nc = MM_NC;
    int T = mech_pool_size(j.pool);
    double flops = 2.0 * M * (double)N * K;
    j.tm = j.tn = 1;
    j.mch = M;
    j.nch = N;
    int np = (N + j.nr - 1) / j.nr; // column panels
    if (T > 1 && flops >= 2e6 && np < 4 * T && M >= 16 * T) {
        // Few columns (attention's N = 64, say): split rows only, T ways.
        j.mch = round_up((M + T - 1) / T, j.mr);
        j.tm = (M + j.mch - 1) / j.mch;
    } else if (T > 1 && flops >= 2e6) {
        // Columns first: tasks of at most MM_TASK_COLS columns (whole
        // panels), a multiple of T of them so that the threads finish
        // together. Big tasks let each block's prefetch cover the next.
        int ppc_max = imax(1, MM_TASK_COLS / j.nr);
        int rounds = (np + T * ppc_max - 1) / (T * ppc_max);
        int tn = imin(np, T * rounds);
        int ppc = (np + tn - 1) / tn;
        j.tn = (np + ppc - 1) / ppc;
        j.nch = ppc * j.nr;
        // Fewer column tasks than threads: split rows too (>= 64 rows each).
        if (j.tn < T && M >= 128) {
            int tm = imin(M / 64, (T + j.tn - 1) / j.tn);
            j.mch = round_up((M + tm - 1) / tm, j.mr);
            j.tm = (M + j.mch - 1) / j.mch;
        }
    }
    // inp is read once per B block: when a task's rows of it outgrow L2 (a
    // long K: the unembedding's dX reads 50,257 columns of dlogits), take the
    // task's columns in the fewest equal blocks that fit MM_WIDE_BLOCK.
    if ((size_t)j.mch * (size_t)K * sizeof(float) > MM_L2)
        j.nc = imax(j.nc, block_cols(j.nch, MM_WIDE_BLOCK, imin(j.kc, K), j.nr));
    *jp = j;
}

static void mm_run_ws(int kind, mech_pool *pool, float *out, int ldo, const float *inp, int ldi, const float *w,
                      int ldw, const float *bias, int M, int K, int N, int nt, int add, float *wsum);

static void mm_run(int kind, mech_pool *pool, float *out, int ldo, const float *inp, int ldi,
                   const float *w, int ldw, const float *bias, int M, int K, int N, int nt, int add) {
    mm_run_ws(kind, pool, out, ldo, inp, ldi, w, ldw, bias, M, K, N, nt, add, NULL);
}

// mm_run, plus w's column sums into wsum (N) when not NULL (K > 0, M > 0).
static void mm_run_ws(int kind, mech_pool *pool, float *out, int ldo, const float *inp, int ldi, const float *w,
                      int ldw, const float *bias, int M, int K, int N, int nt, int add, float *wsum) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {
        if (!add)
            for (int m = 0; m < M; m++)
                for (int n = 0; n < N; n++) out[(size_t)m * ldo + n] = bias ? bias[n] : 0.0f;
        return;
    }
    mm_job j = {
        .pool = pool, .out = out, .inp = inp, .w = w, .bias = add ? NULL : bias,
        .ldo = (size_t)ldo, .ldi = (size_t)ldi, .ldw = (size_t)ldw,
        .M = M, .K = K, .N = N, .nt = nt, .add = add, .kind = kind, .wsum = wsum,
    };
    mm_plan(&j);
    mech_pool_run(pool, j.tm * j.tn, mm_task, &j);
}

void mech_matmul(mech_pool *pool, float *out, int ldo, const float *inp, int ldi,
                 const float *w, int ldw, const float *bias, int M, int K, int N) {
    mm_run(mm_kind(), pool, out, ldo, inp, ldi, w, ldw, bias, M, K, N, 0, 0);
}

static void transpose_any(float *dst, size_t ldd, const float *src, size_t lds, int rows, int cols, int stream) {
#if MM_X86
    if (mm_kind() == KIND_AVX512) {
        transpose_512(dst, ldd, src, lds, rows, cols, stream);
        return;
    }
#endif
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++) dst[(size_t)c * ldd + r] = src[(size_t)r * lds + c];
}

void mech_transpose(float *dst, size_t ldd, const float *src, size_t lds, int rows, int cols) {
    transpose_any(dst, ldd, src, lds, rows, cols, 0);
}

void mech_transpose_stream(float *dst, size_t ldd, const float *src, size_t lds, int rows, int cols) {
    transpose_any(dst, ldd, src, lds, rows, cols, 1);
}

void mech_matmul_add(mech_pool *pool, float *out, int ldo, const float *inp, int ldi, const float *w, int ldw, int M,
                     int K, int N) {
    mm_run(mm_kind(), pool, out, ldo, inp, ldi, w, ldw, NULL, M, K, N, 0, 1);
}

void mech_matmul_nt(mech_pool *pool, float *out, int ldo, const float *inp, int ldi,
                    const float *w, int ldw, const float *bias, int M, int K, int N) {
    mm_run(mm_kind(), pool, out, ldo, inp, ldi, w, ldw, bias, M, K, N, 1, 0);
}

// The kernel a test or bench names (NULL: the best), or -1 when unknown or
// beyond this CPU. The kinds are ordered: a CPU with one has every lesser one.
static int mm_kind_named(const char *kernel) {
    int best = mm_kind(), kind;
    if (!kernel) kind = best;
    else if (!strcmp(kernel, "avx512")) kind = KIND_AVX512;
    else if (!strcmp(kernel, "avx2")) kind = KIND_AVX2;
    else if (!strcmp(kernel, "portable")) kind = KIND_PORTABLE;
    else return -1;
    return kind > best ? -1 : kind;
}

int mech_matmul_with(const char *kernel, int nt, mech_pool *pool, float *out, int ldo,
                     const float *inp, int ldi, const float *w, int ldw, const float *bias, int M,
                     int K, int N) {
    int kind = mm_kind_named(kernel);
    if (kind < 0) return -1;
    mm_run(kind, pool, out, ldo, inp, ldi, w, ldw, bias, M, K, N, nt != 0, 0);
    return 0;
}

// ---------------------------------------------------------------------------
// Transposed left operand: out (M, N) = inp^T w, inp stored (K, M), w (K, N).
// The backward's weight gradients (X^T dY) read X and dY in their row-major
// layout this way instead of from a transposed copy of X. Each task packs B
// blocks as mech_matmul does and, per MR-row strip, gathers the strip's
// MR x kc values of inp^T into a small buffer the micro-kernel reads; the
// kernel, K blocking and order are mech_matmul's, so the result equals
// mech_matmul on a transposed copy of inp bit for bit. B blocks are as wide
// as fits MM_WIDE_BLOCK (a task's columns in one block, mostly) so that each
// strip is gathered once per K block; while a strip computes, the next one's
// source is prefetched. Tall products (M >= 4 N: the unembedding's dW) split
// rows between tasks, so inp is gathered once in all. Over several K blocks
// a transposed copy and mech_matmul replace the gathers (mm_tn_by_copy).


// a (mr, kc; rows lda apart) = inp[k0 .. k0+kc, m0 .. m0+mr]^T
static void pack_a_tn(float *a, size_t lda, const float *inp, size_t ldi, int k0, int kc, int m0, int mr) {
    for (int k = 0; k < kc; k++) {
        const float *s = inp + (size_t)(k0 + k) * ldi + m0;
        for (int r = 0; r < mr; r++) a[(size_t)r * lda + k] = s[r];
    }
}

#if MM_X86
// The same for mr = 8, eight k at a time through an 8 x 8 register transpose.
static T256 void pack_a8_tn_256(float *a, const float *inp, size_t ldi, int k0, int kc, int m0) {
    int k = 0;
    for (; k + 8 <= kc; k += 8) {
        const float *s = inp + (size_t)(k0 + k) * ldi + m0;
        __m256 r0 = _mm256_loadu_ps(s), r1 = _mm256_loadu_ps(s + ldi), r2 = _mm256_loadu_ps(s + 2 * ldi),
               r3 = _mm256_loadu_ps(s + 3 * ldi), r4 = _mm256_loadu_ps(s + 4 * ldi),
               r5 = _mm256_loadu_ps(s + 5 * ldi), r6 = _mm256_loadu_ps(s + 6 * ldi),
               r7 = _mm256_loadu_ps(s + 7 * ldi);
        __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1), t2 = _mm256_unpacklo_ps(r2, r3),
               t3 = _mm256_unpackhi_ps(r2, r3), t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5),
               t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
        __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE),
               u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE),
               u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE),
               u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
        _mm256_storeu_ps(a + 0 * (size_t)kc + k, _mm256_permute2f128_ps(u0, u4, 0x20));
        _mm256_storeu_ps(a + 1 * (size_t)kc + k, _mm256_permute2f128_ps(u1, u5, 0x20));
        _mm256_storeu_ps(a + 2 * (size_t)kc + k, _mm256_permute2f128_ps(u2, u6, 0x20));
        _mm256_storeu_ps(a + 3 * (size_t)kc + k, _mm256_permute2f128_ps(u3, u7, 0x20));
        _mm256_storeu_ps(a + 4 * (size_t)kc + k, _mm256_permute2f128_ps(u0, u4, 0x31));
        _mm256_storeu_ps(a + 5 * (size_t)kc + k, _mm256_permute2f128_ps(u1, u5, 0x31));
        _mm256_storeu_ps(a + 6 * (size_t)kc + k, _mm256_permute2f128_ps(u2, u6, 0x31));
        _mm256_storeu_ps(a + 7 * (size_t)kc + k, _mm256_permute2f128_ps(u3, u7, 0x31));
    }
    if (k < kc) pack_a_tn(a + k, (size_t)kc, inp, ldi, k0 + k, kc - k, m0, 8);
}
#endif

#if MM_X86
// colsum_packed for AVX-512's 48-wide panels, each column's double sum in a lane.
static T512 void colsum_packed_512(double *acc, const float *buf, int kc, int nc) {
    for (int jr = 0; jr < nc; jr += 48) {
        int nr = imin(48, nc - jr), nv = (nr + 15) / 16;
        const float *d = buf + (size_t)jr * kc;
        double t[48] = {0};
        memcpy(t, acc + jr, sizeof(double) * (size_t)nr);
        __m512d s[6];
        for (int v = 0; v < 2 * nv; v++) s[v] = _mm512_loadu_pd(t + 8 * v);
        for (int k = 0; k < kc; k++, d += 16 * nv)
            for (int v = 0; v < nv; v++) {
                __m512 x = _mm512_loadu_ps(d + 16 * v);
                s[2 * v] = _mm512_add_pd(s[2 * v], _mm512_cvtps_pd(_mm512_castps512_ps256(x)));
                s[2 * v + 1] =
                    _mm512_add_pd(s[2 * v + 1], _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(x), 1))));
            }
        for (int v = 0; v < 2 * nv; v++) _mm512_storeu_pd(t + 8 * v, s[v]);
        memcpy(acc + jr, t, sizeof(double) * (size_t)nr);
    }
}
#endif

// Add the column sums of a packed block (pack_nn's layout, kc rows of nc
// columns) to acc, row by row: acc holds a double sum over k in order.
static void colsum_packed(double *acc, const float *buf, int kc, int nc, int nr_max, int vl) {
#if MM_X86
    if (nr_max == 48 && vl == 16) {
        colsum_packed_512(acc, buf, kc, nc);
        return;
    }
#endif
    for (int jr = 0; jr < nc; jr += nr_max) {
        int nr = imin(nr_max, nc - jr), wp = nr == nr_max ? nr_max : round_up(nr, vl);
        const float *d = buf + (size_t)jr * kc;
        double *a = acc + jr;
        for (int k = 0; k < kc; k++, d += wp)
            for (int c = 0; c < nr; c++) a[c] += d[c];
    }
}

typedef struct mm_tn_job {
    mm_job j;
    float *wsum; // (N) column sums of w, or NULL
} mm_tn_job;

static void mm_tn_slow(const mm_job *j, int m0, int m1, int n0, int n1) {
    for (int m = m0; m < m1; m++)
        for (int n = n0; n < n1; n++) {
            float acc = 0.0f;
            for (int k = 0; k < j->K; k++) acc += j->inp[(size_t)k * j->ldi + m] * j->w[(size_t)k * j->ldw + n];
            j->out[(size_t)m * j->ldo + n] = acc;
        }
}

static void mm_tn_colsum_slow(const mm_job *j, float *wsum, int n0, int n1) {
    for (int n = n0; n < n1; n++) {
        double acc = 0;
        for (int k = 0; k < j->K; k++) acc += j->w[(size_t)k * j->ldw + n];
        wsum[n] = (float)acc;
    }
}

static void mm_tn_task(void *ctx, int t, int thread) {
    const mm_tn_job *tj = ctx;
    const mm_job *j = &tj->j;
    int im = t / j->tn, in = t % j->tn;
    int m0 = im * j->mch, m1 = imin(j->M, m0 + j->mch);
    int n0 = in * j->nch, n1 = imin(j->N, n0 + j->nch);
    if (m0 >= m1 || n0 >= n1) return;
    int kcm = imin(j->kc, j->K), ncm = imin(j->nc, round_up(n1 - n0, j->vl));
    size_t bfl = (size_t)kcm * (size_t)round_up(ncm, j->vl), afl = (size_t)j->mr * kcm;
    // w's column sums: by the tasks of the first rows, from the packed blocks
    float *wsum = m0 == 0 ? tj->wsum : NULL;
    size_t bytes = sizeof(float) * (bfl + afl) + (wsum ? sizeof(double) * (size_t)ncm : 0);
    float *own = NULL, *buf = mech_pool_scratch(j->pool, thread, bytes);
    if (!buf) buf = own = mech_malloc_aligned(bytes);
    if (!buf) {
        mm_tn_slow(j, m0, m1, n0, n1);
        if (wsum) mm_tn_colsum_slow(j, wsum, n0, n1);
        return;
    }
    float *abuf = buf + bfl;
    // one K block: each out tile is written once, and streamed
    int stream = j->K <= j->kc && j->ldo % 16 == 0 && j->kind == KIND_AVX512;
    double *wacc = (double *)(void *)(abuf + afl); // 8-aligned: bfl and afl are multiples of 8
    for (int jc = n0; jc < n1; jc += j->nc) {
        int ncur = imin(j->nc, n1 - jc);
        if (wsum)
            for (int c = 0; c < ncur; c++) wacc[c] = 0;
        for (int pc = 0; pc < j->K; pc += j->kc) {
            int kcur = imin(j->kc, j->K - pc);
#if MM_X86
            if (j->kind == KIND_AVX512)
                pack_nn_512(buf, j->w, j->ldw, pc, kcur, jc, ncur, j->nr, j->vl);
            else
#endif
                pack_nn(buf, j->w, j->ldw, pc, kcur, jc, ncur, j->nr, j->vl);
            if (wsum) colsum_packed(wacc, buf, kcur, ncur, j->nr, j->vl);
            int acc = pc > 0;
            for (int ir = m0; ir < m1; ir += j->mr) {
                int mr = imin(j->mr, m1 - ir);
#if MM_X86
                if (mr == 8 && j->kind == KIND_AVX512) pack_a8_tn_256(abuf, j->inp, j->ldi, pc, kcur, ir);
                else
#endif
                    pack_a_tn(abuf, (size_t)kcur, j->inp, j->ldi, pc, kcur, ir, mr);
                // While this strip computes, prefetch the next one's source:
                // its kc rows lie ldi apart (pages apart for a wide inp, which
                // the hardware prefetchers do not follow), so unprefetched the
                // gather waits on memory once per row.
                mm_pf pf = {.every = INT_MAX};
                if (ir + j->mr < m1) {
                    const float *src = j->inp + (size_t)pc * j->ldi + ir + j->mr;
                    int len = imin(j->mr, m1 - ir - j->mr), calls = (ncur + j->nr - 1) / j->nr;
                    pf.row = (uintptr_t)src & ~(uintptr_t)63;
                    pf.ld = sizeof(float) * j->ldi;
                    pf.rows = kcur;
                    pf.lpr = (int)(((uintptr_t)src & 63) + sizeof(float) * (size_t)len + 63) / 64;
                    pf.budget = (pf.rows * pf.lpr + calls - 1) / calls;
                    pf.every = imax(1, kcur / imax(1, pf.budget));
                }
                float *c = j->out + (size_t)ir * j->ldo + jc;
                for (int jr = 0; jr < ncur; jr += j->nr) {
                    int nr = imin(j->nr, ncur - jr);
                    const float *b = buf + (size_t)jr * kcur;
                    switch (j->kind) {
#if MM_X86
                    case KIND_AVX512:
                        if (stream && ((uintptr_t)(c + jr) & 63) == 0)
                            kern_avx512_stream(mr, nr, kcur, abuf, (size_t)kcur, b, c + jr, j->ldo, &pf);
                        else
                            kern_avx512(mr, nr, kcur, abuf, (size_t)kcur, b, c + jr, j->ldo, NULL, acc, &pf);
                        break;
                    case KIND_AVX2: kern_avx2(mr, nr, kcur, abuf, (size_t)kcur, b, c + jr, j->ldo, NULL, acc, &pf); break;
#endif
                    default: kern_portable(mr, nr, kcur, abuf, (size_t)kcur, b, c + jr, j->ldo, NULL, acc, &pf);
                    }
                }
            }
        }
        if (wsum)
            for (int c = 0; c < ncur; c++) wsum[jc + c] = (float)wacc[c];
    }
#if MM_X86
    if (stream) _mm_sfence(); // streamed tiles visible before the task counts as done
#endif
    mech_free_aligned(own);
}

// Over several K blocks (T = 1024 tokens, say) the strips are gathered once
// per K block from rows ldi apart, and their waits on memory outlast what
// the prefetches hide: there a transposed copy of inp, made by the pool's
// threads with streaming stores, and mech_matmul's product over it are
// faster (the MLP's output projection at T = 1024: 20 -> 17 ms a layer). The
// result is the same bit for bit: the same kernel, K blocks and order. Not
// for a copy beyond MM_TN_COPY_MAX (the unembedding's 50,257 rows): making
// and reading it costs more memory traffic than the gathers.
#define MM_TN_COPY_MAX ((size_t)64 << 20)

typedef struct tn_copy_job {
    float *dst;       // (cols, K) rows K apart
    const float *src; // (K, cols) rows ldi apart
    size_t ldi;
    int K, cols, per; // per: source rows a task, a multiple of 16
} tn_copy_job;

static void tn_copy_task(void *ctx, int i) {
    const tn_copy_job *c = ctx;
    int k0 = i * c->per, k1 = imin(c->K, k0 + c->per);
    if (k0 < k1) transpose_any(c->dst + k0, (size_t)c->K, c->src + (size_t)k0 * c->ldi, c->ldi, k1 - k0, c->cols, 1);
}

static int mm_tn_by_copy(int kind, mech_pool *pool, float *out, int ldo, const float *inp, int ldi, const float *w,
                         int ldw, float *wsum, int M, int K, int N) {
    size_t bytes = sizeof(float) * (size_t)M * (size_t)K;
    if (kind != KIND_AVX512 || mech_pool_size(pool) < 2 || K <= MM_KC || bytes > MM_TN_COPY_MAX) return 0;
    float *xt = mech_pool_borrow(pool, bytes);
    if (!xt) return 0;
    int tasks = 4 * mech_pool_size(pool);
    tn_copy_job c = {.dst = xt, .src = inp, .ldi = (size_t)ldi, .K = K, .cols = M};
    c.per = round_up((K + tasks - 1) / tasks, 16);
    mech_pool_for(pool, (K + c.per - 1) / c.per, tn_copy_task, &c);
    mm_run_ws(kind, pool, out, ldo, xt, K, w, ldw, NULL, M, K, N, 0, 0, wsum);
    mech_pool_return(pool);
    return 1;
}

static void mm_run_tn(int kind, mech_pool *pool, float *out, int ldo, const float *inp, int ldi, const float *w,
                      int ldw, float *wsum, int M, int K, int N) {
    if (N <= 0) return;
    if (M <= 0 || K <= 0) {
        for (int m = 0; m < M; m++)
            for (int n = 0; n < N; n++) out[(size_t)m * ldo + n] = 0.0f;
        if (wsum) {
            mm_job j = {.w = w, .ldw = (size_t)ldw, .K = K > 0 ? K : 0};
            mm_tn_colsum_slow(&j, wsum, 0, N);
        }
        return;
    }
    if (mm_tn_by_copy(kind, pool, out, ldo, inp, ldi, w, ldw, wsum, M, K, N)) return;
    mm_tn_job tj = {
        .j = {
            .pool = pool, .out = out, .inp = inp, .w = w,
            .ldo = (size_t)ldo, .ldi = (size_t)ldi, .ldw = (size_t)ldw,
            .M = M, .K = K, .N = N, .kind = kind,
        },
        .wsum = wsum,
    };
    mm_job *j = &tj.j;
    mm_plan(j);
    int T = mech_pool_size(pool);
    if (T > 1 && 2.0 * M * (double)N * K >= 2e6 && M >= 4 * N && M >= 16 * T) {
        j->tn = 1, j->nch = N;
        j->mch = round_up((M + T - 1) / T, j->mr);
        j->tm = (M + j->mch - 1) / j->mch;
    }
    // tall: one task's B is all of w's columns, a block may take more of L2
    j->nc = block_cols(j->nch, j->tn == 1 ? MM_WIDE_BLOCK + MM_WIDE_BLOCK / 2 : MM_WIDE_BLOCK, imin(j->kc, K), j->nr);
    mech_pool_run(pool, j->tm * j->tn, mm_tn_task, &tj);
}

void mech_matmul_tn(mech_pool *pool, float *out, int ldo, const float *inp, int ldi, const float *w, int ldw,
                    float *wsum, int M, int K, int N) {
    mm_run_tn(mm_kind(), pool, out, ldo, inp, ldi, w, ldw, wsum, M, K, N);
}

int mech_matmul_tn_with(const char *kernel, mech_pool *pool, float *out, int ldo, const float *inp, int ldi,
                        const float *w, int ldw, float *wsum, int M, int K, int N) {
    int kind = mm_kind_named(kernel);
    if (kind < 0) return -1;
    mm_run_tn(kind, pool, out, ldo, inp, ldi, w, ldw, wsum, M, K, N);
    return 0;
}
