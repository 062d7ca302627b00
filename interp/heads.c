/*
** interp/heads.c: head scores after TransformerLens's head_detector
** (previous-token, duplicate-token and induction reference patterns, "mul"
** and "abs" error measures) over a run's cached attention patterns, and the
** repeated-random-token batches induction is measured on.
**
** Invariants: the reference pattern D is lower-triangular and built from
** each batch item's own tokens; scores are averaged over the batch in double.
*/
#include "interp/interp.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

const char *mech_head_kind_name(mech_head_kind k) {
    switch (k) {
    case MECH_HEAD_PREV_TOKEN: return "previous_token";
    case MECH_HEAD_DUPLICATE: return "duplicate_token";
    case MECH_HEAD_INDUCTION: return "induction";
    default: return "?";
    }
}

// D[T*T] for one sequence tok[T] (TransformerLens's get_*_detection_pattern).
static void reference(unsigned char *D, const int32_t *tok, int T, mech_head_kind kind) {
    memset(D, 0, (size_t)T * T);
    for (int i = 0; i < T; i++)
        for (int j = 0; j <= i; j++) {
            int on = 0;
            switch (kind) {
            case MECH_HEAD_PREV_TOKEN: on = j == i - 1; break;
            case MECH_HEAD_DUPLICATE: on = j < i && tok[j] == tok[i]; break;
            // The duplicate pattern shifted one column right, column 0 zeroed, then tril.
            case MECH_HEAD_INDUCTION: on = j >= 1 && j - 1 < i && tok[j - 1] == tok[i]; break;
            default: break;
            }
            D[(size_t)i * T + j] = (unsigned char)on;
        }
}

mech_status mech_heads_score(const mech_model *m, const mech_run *run, const int32_t *tokens, mech_head_kind kind,
                             mech_head_measure measure, int exclude_bos, int exclude_current, double *scores,
                             mech_err *err) {
    int L = m->cfg.n_layers, NH = m->cfg.n_heads;
    int B = mech_run_batch(run), T = mech_run_seq_len(run);
    if ((int)kind < 0 || kind >= MECH_HEAD_KIND_COUNT_) return mech_err_set(err, MECH_ERR_ARG, "unknown head kind %d", (int)kind);
    if (measure != MECH_HEAD_MUL && measure != MECH_HEAD_ABS)
        return mech_err_set(err, MECH_ERR_ARG, "unknown error measure %d", (int)measure);
    for (int b = 0; b < B; b++) {
        int s0, n;
        mech_run_row(run, b, &s0, &n);
        if (n < 2)
            return mech_err_set(err, MECH_ERR_ARG, "head scores need at least 2 positions, got %d (sequence %d)", n, b + 1);
    }
    const float *pat[L > 0 ? L : 1];
    for (int l = 0; l < L; l++) {
        char name[64];
        snprintf(name, sizeof name, "blocks.%d.attn.hook_pattern", l);
        const mech_tensor *t = mech_run_get(run, name);
        if (!t) return mech_err_set(err, MECH_ERR_ARG, "activation '%s' is not cached (cache it before the forward pass)", name);
        pat[l] = t->data;
    }
    unsigned char *D = mech_malloc((size_t)T * T);
    if (!D) return mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
    for (int i = 0; i < L * NH; i++) scores[i] = 0;
    for (int b = 0; b < B; b++) {
        // A padded sequence is scored on its own tokens, as if run alone:
        // the block [s0, s0 + n) of its pattern, column s0 its first token.
        int s0, n;
        mech_run_row(run, b, &s0, &n);
        reference(D, tokens + (size_t)b * T + s0, n, kind);
        for (int l = 0; l < L; l++)
            for (int h = 0; h < NH; h++) {
                const float *A = pat[l] + ((size_t)b * NH + h) * T * T + (size_t)s0 * T + s0; // [n, n], rows T apart
                double hit = 0, mass = 0, absdiff = 0;
                for (int i = 0; i < n; i++)
                    for (int j = 0; j < n; j++) {
                        double a = A[(size_t)i * T + j];
                        if ((exclude_bos && j == 0) || (exclude_current && i == j)) a = 0;
                        int dij = D[(size_t)i * n + j];
                        hit += a * dij;
                        mass += a;
                        absdiff += fabs(a - dij);
                    }
                double sc;
                if (measure == MECH_HEAD_MUL) sc = mass > 0 ? hit / mass : 0;
                else sc = 1 - round(absdiff / n * 1000) / 1000; // mean over n*n, times n
                scores[l * NH + h] += sc / B;
            }
    }
    mech_free(D);
    return MECH_OK;
}

mech_status mech_heads_repeated_tokens(uint64_t seed, int B, int n, int32_t lo, int32_t hi, int32_t bos,
                                       int32_t *out, mech_err *err) {
    if (B < 1 || n < 1 || lo >= hi)
        return mech_err_set(err, MECH_ERR_ARG, "repeated tokens: need B >= 1, n >= 1 and lo < hi (B=%d, n=%d, [%d, %d))",
                            B, n, lo, hi);
    uint64_t s = seed;
    uint64_t range = (uint64_t)((int64_t)hi - lo);
    int off = bos >= 0, W = off + 2 * n;
    for (int b = 0; b < B; b++) {
        int32_t *row = out + (size_t)b * W;
        if (off) row[0] = bos;
        for (int i = 0; i < n; i++) {
            row[off + i] = (int32_t)(lo + (int64_t)(mech_splitmix64(&s) % range));
            row[off + n + i] = row[off + i];
        }
    }
    return MECH_OK;
}
