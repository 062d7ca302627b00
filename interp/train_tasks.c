/*
** interp/train_tasks.c: the built-in training tasks, as batch sources for
** mech_trainer_step: induction on repeated random tokens, the task of a RASP
** program (input -> output examples from the reference interpreter) and
** next-token prediction on a text file.
**
** Every row of every batch is a function of (seed, batch index, row) alone,
** through its own splitmix stream, so a resumed run draws the batches an
** uninterrupted one would have drawn.
*/
#include "interp/interp.h"
#include "compiler/compiler.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum { TASK_INDUCTION, TASK_TEXT, TASK_RASP } task_kind;

// Most distinct output values a RASP task's vocabulary may hold.
#define RASP_MAX_OUTPUTS 4096
// Inputs per length evaluated to find a RASP program's output values.
#define RASP_PROBES 512

struct mech_task {
    task_kind kind;
    uint64_t seed;
    int vocab;           // the model's d_vocab the task needs (induction: the ids drawn are [0, vocab))
    int min_period;      // induction
    int32_t *tokens;     // text: the file's tokens
    size_t n_tokens;
    mech_rasp_program *prog; // rasp
    int n_in;                // rasp: input vocab size
    mech_rasp_value *outs;   // rasp: output values, sorted (strings and tuples in heap)
    int n_outs;
    mech_rasp_heap *heap;
};

// The stream of row b of batch index.
static uint64_t row_state(uint64_t seed, int64_t index, int b) {
    uint64_t s = seed ^ 0x7261696E5F6D6563ull; // "rain_mec": apart from the datasets' streams
    uint64_t a = mech_splitmix64(&s) ^ ((uint64_t)index * 0xA0761D6478BD642Full);
    uint64_t c = mech_splitmix64(&a) ^ ((uint64_t)(uint32_t)b * 0xE7037ED1A0B428DBull);
    mech_splitmix64(&c);
    return c;
}

// Uniform in [0, n), n >= 1, without modulo bias.
static uint64_t below(uint64_t *s, uint64_t n) {
    uint64_t lim = UINT64_MAX - UINT64_MAX % n, x;
    do x = mech_splitmix64(s);
    while (x >= lim);
    return x % n;
}

void mech_task_free(mech_task *t) {
    if (!t) return;
    mech_free(t->tokens);
    mech_rasp_program_free(t->prog);
    mech_free(t->outs);
    mech_rasp_heap_free(t->heap);
    mech_free(t);
}

int mech_task_vocab(const mech_task *t) { return t->vocab; }

// ---------------------------------------------------------------------------
// Induction

mech_status mech_task_induction(int vocab, int min_period, uint64_t seed, mech_task **out, mech_err *err) {
    *out = NULL;
    if (vocab < 2 || min_period < 1)
        return mech_err_set(err, MECH_ERR_ARG, "induction task: needs a vocabulary of >= 2 ids and a period >= 1");
    mech_task *t = mech_calloc(1, sizeof *t);
    if (!t) return mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
    t->kind = TASK_INDUCTION, t->vocab = vocab, t->min_period = min_period, t->seed = seed;
    *out = t;
    return MECH_OK;
}

// Row: r[0..p) distinct random ids, repeated to fill T (x[t] = r[t mod p]),
// the period p uniform in [min_period, T/2] so that no fixed positional
// offset predicts the repeat: only "find the earlier copy of this token and
// read what followed it" (induction) does. Targets on the repeated part.
static void induction_row(const mech_task *t, uint64_t s, int T, int32_t *ids, int32_t *targets) {
    int hi = T / 2 < t->vocab ? T / 2 : t->vocab;
    int p = t->min_period + (int)below(&s, (uint64_t)(hi - t->min_period + 1));
    for (int i = 0; i < p; i++) {
        int32_t x;
        int dup;
        do {
            x = (int32_t)below(&s, (uint64_t)t->vocab);
            dup = 0;
            for (int k = 0; k < i && !dup; k++) dup = ids[k] == x;
        } while (dup);
        ids[i] = x;
    }
    for (int i = p; i < T; i++) ids[i] = ids[i - p];
    for (int i = 0; i < T; i++) targets[i] = i >= p && i + 1 < T ? ids[i + 1] : -1;
}

// ---------------------------------------------------------------------------
// Text

mech_status mech_task_text(const char *path, const mech_tokenizer *tok, uint64_t seed, mech_task **out, mech_err *err) {
    *out = NULL;
    char *text = NULL;
    size_t len = 0;
    mech_status rc = mech_read_file(path, &text, &len, err);
    if (rc) return rc;
    mech_task *t = mech_calloc(1, sizeof *t);
    if (!t) {
        mech_free(text);
        return mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
    }
    t->kind = TASK_TEXT, t->seed = seed, t->vocab = mech_tokenizer_vocab_size(tok);
    rc = mech_tokenizer_encode(tok, text, len, 0, &t->tokens, &t->n_tokens, err);
    mech_free(text);
    if (rc) {
        mech_task_free(t);
        return rc;
    }
    *out = t;
    return MECH_OK;
}

size_t mech_task_text_tokens(const mech_task *t) { return t->kind == TASK_TEXT ? t->n_tokens : 0; }

// ---------------------------------------------------------------------------
// RASP: [BOS] x1 .. xn SEP y1 .. yn with y = the program's output on x.
// Token ids: 0 BOS, 1..n_in the input vocab (as the compiler numbers them),
// n_in + 1 SEP, n_in + 2 + j the j-th output value (sorted).

static mech_status deep_copy(mech_rasp_heap *h, const mech_rasp_value *v, mech_rasp_value *out, mech_err *err) {
    if (v->type == MECH_RASP_STR) return mech_rasp_value_str(h, v->s, v->n, out, err);
    if (v->type != MECH_RASP_TUPLE) {
        *out = *v;
        return MECH_OK;
    }
    mech_rasp_value items[64];
    if (v->n > 64) return mech_err_set(err, MECH_ERR_RANGE, "rasp task: an output tuple of more than 64 items");
    for (uint32_t i = 0; i < v->n; i++) {
        mech_status rc = deep_copy(h, &v->t[i], &items[i], err);
        if (rc) return rc;
    }
    return mech_rasp_value_tuple(h, items, v->n, out, err);
}

static int value_cmp(const void *a, const void *b) { return mech_rasp_value_order(a, b); }

static int out_index(const mech_task *t, const mech_rasp_value *v) {
    int lo = 0, hi = t->n_outs - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2, c = mech_rasp_value_order(v, &t->outs[mid]);
        if (!c) return mid;
        if (c < 0) hi = mid - 1;
        else lo = mid + 1;
    }
    return -1;
}

// A random input of n values and the program's output on it (*y owned).
static mech_status rasp_example(const mech_task *t, uint64_t *s, int n, mech_rasp_value *x, mech_rasp_value **y,
                                mech_err *err) {
    size_t nv;
    const mech_rasp_value *vocab = mech_rasp_program_vocab(t->prog, &nv);
    for (int i = 0; i < n; i++) x[i] = vocab[below(s, nv)];
    return mech_rasp_eval(t->prog, x, (size_t)n, y, err);
}

mech_status mech_task_rasp(const char *path, uint64_t seed, mech_task **out, mech_err *err) {
    *out = NULL;
    mech_task *t = mech_calloc(1, sizeof *t);
    if (!t) return mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
    t->kind = TASK_RASP, t->seed = seed;
    mech_status rc = mech_rasp_load(path, &t->prog, err);
    if (rc) goto fail;
    size_t nv;
    mech_rasp_program_vocab(t->prog, &nv);
    int max_len = mech_rasp_program_max_seq_len(t->prog);
    t->n_in = (int)nv;
    t->heap = mech_rasp_heap_new();
    mech_rasp_value *x = mech_malloc((size_t)max_len * sizeof *x);
    t->outs = mech_malloc(RASP_MAX_OUTPUTS * sizeof *t->outs);
    if (!t->heap || !x || !t->outs) {
        mech_free(x);
        rc = mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
        goto fail;
    }
    // The output values: probed on random inputs of every length with a
    // fixed stream, so the token numbering depends on the program only.
    for (int n = 1; n <= max_len && !rc; n++)
        for (int k = 0; k < RASP_PROBES && !rc; k++) {
            uint64_t s = row_state(0, n, k);
            mech_rasp_value *y = NULL;
            if ((rc = rasp_example(t, &s, n, x, &y, err))) break;
            for (int i = 0; i < n && !rc; i++) {
                int seen = 0;
                for (int j = 0; j < t->n_outs && !seen; j++) seen = mech_rasp_value_eq(&y[i], &t->outs[j]);
                if (seen) continue;
                if (t->n_outs == RASP_MAX_OUTPUTS)
                    rc = mech_err_set(err, MECH_ERR_RANGE, "%s: the output takes more than %d values: not a task of "
                                      "classes a model can learn as tokens", path, RASP_MAX_OUTPUTS);
                else rc = deep_copy(t->heap, &y[i], &t->outs[t->n_outs++], err);
            }
            mech_free(y);
        }
    mech_free(x);
    if (rc) goto fail;
    qsort(t->outs, (size_t)t->n_outs, sizeof *t->outs, value_cmp);
    t->vocab = t->n_in + 2 + t->n_outs;
    *out = t;
    return MECH_OK;
fail:
    mech_task_free(t);
    return rc;
}

const mech_rasp_program *mech_task_rasp_program(const mech_task *t) { return t->kind == TASK_RASP ? t->prog : NULL; }

static mech_status rasp_row(const mech_task *t, uint64_t s, int T, int32_t *ids, int32_t *targets, mech_rasp_value *x,
                            mech_err *err) {
    int n = (T - 2) / 2;
    mech_rasp_value *y = NULL;
    mech_status rc = rasp_example(t, &s, n, x, &y, err);
    if (rc) return rc;
    ids[0] = 0;
    for (int i = 0; i < n; i++) ids[1 + i] = mech_rasp_token_id(t->prog, &x[i]);
    ids[n + 1] = t->n_in + 1;
    for (int i = 0; i < n && !rc; i++) {
        int j = out_index(t, &y[i]);
        if (j < 0) {
            mech_buf b = {0};
            mech_rasp_value_repr(&b, &y[i]);
            rc = mech_err_set(err, MECH_ERR_RANGE, "rasp task: output value %s was not seen when the task was made",
                              b.data ? b.data : "?");
            mech_buf_free(&b);
            break;
        }
        ids[n + 2 + i] = t->n_in + 2 + j;
    }
    mech_free(y);
    for (int i = 0; i < T; i++) targets[i] = i > n && i < T - 1 ? ids[i + 1] : -1;
    return rc;
}

// ---------------------------------------------------------------------------
// Every task

mech_status mech_task_check(const mech_task *t, int vocab, int T, mech_err *err) {
    if (vocab != t->vocab && !(t->kind == TASK_INDUCTION && vocab > t->vocab))
        return mech_err_set(err, MECH_ERR_ARG, "the task needs a model with d_vocab %d (this one has %d)", t->vocab,
                            vocab);
    switch (t->kind) {
    case TASK_INDUCTION:
        if (T < 2 * t->min_period + 1 || T / 2 < t->min_period)
            return mech_err_set(err, MECH_ERR_ARG, "induction task: T = %d is too short to repeat a period of %d "
                                "(T >= %d)", T, t->min_period, 2 * t->min_period + 1);
        if (t->vocab < t->min_period)
            return mech_err_set(err, MECH_ERR_ARG, "induction task: %d ids cannot make a period of %d distinct ones",
                                t->vocab, t->min_period);
        return MECH_OK;
    case TASK_TEXT:
        if (t->n_tokens < (size_t)T + 1)
            return mech_err_set(err, MECH_ERR_ARG, "text task: the file has %zu tokens, fewer than T + 1 = %d",
                                t->n_tokens, T + 1);
        return MECH_OK;
    case TASK_RASP: {
        int max_len = mech_rasp_program_max_seq_len(t->prog);
        if (T < 4 || T % 2 || (T - 2) / 2 > max_len)
            return mech_err_set(err, MECH_ERR_ARG, "rasp task: T must be 2n + 2 for an input length n in 1..%d "
                                "(BOS, n inputs, SEP, n outputs); got %d", max_len, T);
        return MECH_OK;
    }
    }
    return MECH_OK;
}

mech_status mech_task_batch(void *task, int64_t index, int B, int T, int32_t *ids, int32_t *targets, mech_err *err) {
    const mech_task *t = task;
    mech_status rc = mech_task_check(t, t->vocab, T, err);
    if (rc) return rc;
    mech_rasp_value *x = NULL;
    if (t->kind == TASK_RASP && !(x = mech_malloc((size_t)T * sizeof *x)))
        return mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
    for (int b = 0; b < B && !rc; b++) {
        uint64_t s = row_state(t->seed, index, b);
        int32_t *id = ids + (size_t)b * T, *tg = targets + (size_t)b * T;
        switch (t->kind) {
        case TASK_INDUCTION: induction_row(t, s, T, id, tg); break;
        case TASK_TEXT: {
            size_t start = (size_t)below(&s, (uint64_t)(t->n_tokens - (size_t)T));
            for (int i = 0; i < T; i++) id[i] = t->tokens[start + (size_t)i], tg[i] = t->tokens[start + (size_t)i + 1];
            break;
        }
        case TASK_RASP: rc = rasp_row(t, s, T, id, tg, x, err); break;
        }
    }
    mech_free(x);
    return rc;
}

// Batches for evaluation come from indices far past any training run's.
#define EVAL_INDEX (INT64_C(1) << 50)

mech_status mech_task_accuracy(const mech_task *t, const mech_model *m, int T, int n, int threads,
                               mech_task_score *out, mech_err *err) {
    memset(out, 0, sizeof *out);
    mech_status rc = mech_task_check(t, m->cfg.d_vocab, T, err);
    if (rc) return rc;
    // 8 rows at a time: the logits of a GPT-2 vocabulary are 8 x T x 50257 floats
    int B = n < 8 ? n : 8, V = m->cfg.d_vocab;
    int32_t *ids = mech_malloc((size_t)B * T * sizeof *ids), *tg = mech_malloc((size_t)B * T * sizeof *tg);
    mech_run *run = NULL;
    if (!ids || !tg) rc = mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
    else if (!(rc = mech_run_new(m, B, T, &run, err)) && threads > 0) rc = mech_run_set_threads(run, threads, err);
    int64_t tok_ok = 0, tok_n = 0, seq_ok = 0, seq_n = 0;
    double loss = 0;
    for (int64_t bi = 0; !rc && seq_n < n; bi++) {
        if ((rc = mech_task_batch((void *)t, EVAL_INDEX + bi, B, T, ids, tg, err))) break;
        int rows = n - seq_n < B ? (int)(n - seq_n) : B;
        // RASP: greedy decoding, each output token predicted from the input
        // and the model's own earlier outputs. The others: next-token
        // prediction on the true prefix (teacher forcing).
        int first = -1;
        for (int i = 0; i < T; i++)
            if (tg[i] >= 0) {
                first = i;
                break;
            }
        int greedy = t->kind == TASK_RASP;
        int32_t *pred = mech_malloc((size_t)B * T * sizeof *pred);
        if (!pred) {
            rc = mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
            break;
        }
        memcpy(pred, ids, (size_t)B * T * sizeof *ids);
        for (int pass = 0; !rc && pass < (greedy ? T - 1 - first : 1); pass++) {
            if ((rc = mech_run_forward(run, pred, err))) break;
            const float *lg = mech_run_logits(run);
            for (int b = 0; b < rows; b++)
                for (int i = 0; i < T; i++) {
                    if (greedy && i != first + pass) continue;
                    if (tg[b * T + i] < 0) continue;
                    const float *row = lg + ((size_t)b * T + i) * V;
                    int best = 0;
                    for (int v = 1; v < V; v++)
                        if (row[v] > row[best]) best = v;
                    if (greedy) pred[b * T + i + 1] = best;
                    else pred[b * T + i] = best;
                    if (!greedy || pass == 0) {
                        // cross-entropy of the true next token (teacher-forced at the first pass)
                        double mx = row[best], s = 0;
                        for (int v = 0; v < V; v++) s += exp((double)row[v] - mx);
                        if (!greedy) loss += mx + log(s) - row[tg[b * T + i]];
                    }
                }
        }
        for (int b = 0; !rc && b < rows; b++) {
            int all = 1;
            for (int i = 0; i < T; i++) {
                if (tg[b * T + i] < 0) continue;
                int got = greedy ? pred[b * T + i + 1] : pred[b * T + i];
                int ok = got == tg[b * T + i];
                tok_ok += ok, tok_n++, all &= ok;
            }
            seq_ok += all, seq_n++;
        }
        mech_free(pred);
    }
    if (!rc) {
        out->token_acc = tok_n ? (double)tok_ok / (double)tok_n : 0;
        out->seq_acc = seq_n ? (double)seq_ok / (double)seq_n : 0;
        out->loss = t->kind == TASK_RASP || !tok_n ? NAN : loss / (double)tok_n;
        out->tokens = tok_n, out->seqs = seq_n;
    }
    mech_run_free(run);
    mech_free(ids);
    mech_free(tg);
    return rc;
}
