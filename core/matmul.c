/*
** core/matmul.c: matrix products. PLACEHOLDER: naive kernels only, to be
** replaced by the blocked, vectorised, threaded implementation.
*/
#include "core/core.h"

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

void mech_matmul(mech_pool *pool, float *out, int ldo, const float *inp, int ldi,
                 const float *w, int ldw, const float *bias, int M, int K, int N) {
    (void)pool;
    mech_matmul_naive(out, ldo, inp, ldi, w, ldw, bias, M, K, N);
}

void mech_matmul_nt(mech_pool *pool, float *out, int ldo, const float *inp, int ldi,
                    const float *w, int ldw, const float *bias, int M, int K, int N) {
    (void)pool;
    mech_matmul_nt_naive(out, ldo, inp, ldi, w, ldw, bias, M, K, N);
}

const char *mech_matmul_kernel(void) { return "portable"; }
