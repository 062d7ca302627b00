/*
** tui/live.c: the live session of `mech tui --model M`: the model, its
** tokenizer (or a compiled model's program vocabulary), the prompt and its
** ids, and the current finished run. No curses here.
**
** The forward runs in one background thread (pthread) at a time, so the
** interface answers keys while it runs. Progress is counted by a hook on
** blocks.*.hook_resid_post (one call per finished block), which also
** cancels the forward when the session is freed. The thread owns the run
** it builds until it sets `done`; the main thread then joins it and takes
** the run over in mech_tui_live_poll. The previous run stays alive
** ("retired") until mech_tui_live_release, which the caller makes once no
** view points into it: views are only ever repointed on the main thread.
*/
#include "tui/tui.h"

#include "compiler/compiler.h"
#include "data/data.h"
#include "interp/interp.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// One prompt's finished (or running) forward and what the views read of it.
typedef struct live_result {
    mech_run *run;
    int32_t *ids; // [T] (owned)
    int T;
    char *text;     // the prompt as typed (owned)
    double *scores; // [MECH_TUI_SCORE_KINDS][L*NH] or NULL (owned)
    double seconds; // how long its forward (and scores) took
    int lens;       // it caches the logit lens's hooks (else the patterns only)
    int grid_w, grid_h; // the grid size its thumbnails are pooled for (0: none)
    mech_tui_attn *thumbs; // the all-heads grid's thumbnails (owned; only the thumb fields), or NULL
} live_result;

struct mech_tui_live {
    const mech_model *m;
    mech_tui_live_opts o;
    const mech_tokenizer *tok;
    mech_tokenizer *own_tok;
    mech_rasp_program *prog; // a compiled model's program, or NULL
    live_result cur, old;    // main thread only
    // the job: `job` and `th` belong to the main thread; `pending` and
    // `pending_err` to the worker until it sets `done`
    int job;
    int job_lens;            // the job builds the lens view of cur (not a forward)
    mech_tui_lens lens_pending; // its result (the worker's until `done`)
    pthread_t th;
    live_result pending;
    mech_err pending_err;
    atomic_int done, layers_done, cancel;
    int run_T;
    int grid_w, grid_h;      // main thread: the grid size the next forward pools thumbnails for
    double t0;
    char error[1024];
};

static void result_free(live_result *r) {
    mech_run_free(r->run);
    mech_free(r->ids);
    mech_free(r->text);
    mech_free(r->scores);
    if (r->thumbs) mech_tui_attn_deinit(r->thumbs);
    mech_free(r->thumbs);
    memset(r, 0, sizeof *r);
}

// --- Set-up -----------------------------------------------------------------

mech_status mech_tui_live_new(const mech_model *m, const mech_tui_live_opts *o, mech_tui_live **out, mech_err *err) {
    *out = NULL;
    mech_tui_live *s = mech_calloc(1, sizeof *s);
    if (!s) return mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
    s->m = m;
    if (o) s->o = *o;
    else s->o.bos = -1;
    mech_status st = MECH_OK;
    const char *src = mech_model_meta(m, "mech.rasp.source");
    if (src && (st = mech_rasp_parse(m->path ? m->path : "model", src, strlen(src), &s->prog, err))) goto fail;
    s->tok = m->tok;
    // no tokenizer files beside the model: GPT-2's when the vocabulary can be
    // it, else none (tokens are shown by id, the input is ids)
    if (!s->tok && !s->prog && mech_tokenizer_gpt2_fits(m->cfg.d_vocab)) {
        if ((st = mech_tokenizer_gpt2(&s->own_tok, err))) goto fail;
        s->tok = s->own_tok;
    }
    *out = s;
    return MECH_OK;
fail:
    mech_tui_live_free(s);
    return st;
}

void mech_tui_live_free(mech_tui_live *s) {
    if (!s) return;
    if (s->job) {
        // the forward stops at its next finished block; nothing else waits
        atomic_store(&s->cancel, 1);
        pthread_join(s->th, NULL);
        s->job = 0;
        result_free(&s->pending);
    }
    mech_tui_lens_deinit(&s->lens_pending);
    result_free(&s->cur);
    result_free(&s->old);
    mech_rasp_program_free(s->prog);
    mech_tokenizer_free(s->own_tok);
    mech_free(s);
}

// --- The background forward -------------------------------------------------

static int on_block_done(mech_tensor *act, int layer, void *user) {
    mech_tui_live *s = user;
    (void)act;
    if (atomic_load(&s->cancel)) return 1;
    atomic_store(&s->layers_done, layer + 1);
    return 0;
}

// What mech_lens_cache caches, as globs for mech_run_memory.
static const char *const lens_globs[] = {"hook_embed", "hook_pos_embed", "blocks.*.hook_resid_pre",
                                         "blocks.*.hook_resid_post", "blocks.*.attn.hook_result",
                                         "blocks.*.attn.hook_pattern", "blocks.*.hook_mlp_out", "ln_final.hook_scale"};
static const char *const pattern_glob[] = {"blocks.*.attn.hook_pattern"};

// Bytes a run of T tokens holds beyond the (shared) weights; *limit gets
// 80 % of this machine's memory.
static double run_bytes(const mech_model *m, int T, int lens, double *limit) {
    mech_run_bytes b;
    mech_run_memory(m, 1, T, lens ? lens_globs : pattern_glob,
                    lens ? (int)(sizeof lens_globs / sizeof *lens_globs) : 1, 0, &b, NULL); // fills b even when too large
    if (limit) *limit = b.limit;
    return b.total - b.weights;
}

static void *worker(void *arg) {
    mech_tui_live *s = arg;
    live_result *r = &s->pending;
    mech_err *err = &s->pending_err;
    const mech_model *m = s->m;
    int L = m->cfg.n_layers, NH = m->cfg.n_heads;
    mech_status st = mech_run_new(m, 1, r->T, &r->run, err);
    if (!st && s->o.threads > 0) st = mech_run_set_threads(r->run, s->o.threads, err);
    if (!st) st = mech_run_hook(r->run, "blocks.*.hook_resid_post", on_block_done, s, err);
    if (!st) st = r->lens ? mech_lens_cache(r->run, err) : mech_run_cache(r->run, "blocks.*.attn.hook_pattern", err);
    if (!st) st = mech_run_forward(r->run, r->ids, err);
    if (!st && r->T >= 2) {
        if (!(r->scores = mech_malloc((size_t)MECH_TUI_SCORE_KINDS * L * NH * sizeof *r->scores)))
            st = mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
        for (int k = 0; !st && k < MECH_TUI_SCORE_KINDS && k < MECH_HEAD_KIND_COUNT_; k++)
            st = mech_heads_score(m, r->run, r->ids, (mech_head_kind)k, MECH_HEAD_MUL, 0, 0,
                                  r->scores + (size_t)k * L * NH, err);
    }
    // The grid's thumbnails read every head's pattern once (288 MB at GPT-2
    // small, 1024 tokens: 35 ms): done here so the first switch to the
    // grid copies them. Without them (out of memory) the grid pools them itself.
    if (!st && r->grid_w > 0 && r->grid_h > 1 && (r->thumbs = mech_calloc(1, sizeof *r->thumbs))) {
        mech_tui_attn *t = r->thumbs;
        t->L = L, t->NH = NH, t->T = r->T, t->causal = m->cfg.causal;
        int ok = (t->layer_pat = mech_calloc((size_t)L, sizeof *t->layer_pat)) != NULL;
        for (int l = 0; ok && l < L; l++) {
            char hook[64];
            snprintf(hook, sizeof hook, "blocks.%d.attn.hook_pattern", l);
            const mech_tensor *pt = mech_run_get(r->run, hook);
            ok = pt != NULL;
            if (ok) t->layer_pat[l] = pt->data;
        }
        if (!ok || mech_tui_attn_grid_prepare(t, r->grid_w, r->grid_h)) {
            mech_tui_attn_deinit(t);
            mech_free(t);
            r->thumbs = NULL;
        }
    }
    if (st && !err->code) err->code = st;
    r->seconds = mech_now() - s->t0;
    atomic_store(&s->done, 1);
    return NULL;
}

mech_status mech_tui_live_start_ids(mech_tui_live *s, const char *text, const int32_t *ids, int T, mech_err *err) {
    if (s->job)
        return mech_err_set(err, MECH_ERR_ARG, "busy: %s (wait for it to finish)",
                            s->job_lens ? "the lens is being computed" : "a forward is running");
    const mech_config *c = &s->m->cfg;
    if (T < 1) return mech_err_set(err, MECH_ERR_RANGE, "the prompt has no tokens");
    if (T > c->n_ctx)
        return mech_err_set(err, MECH_ERR_RANGE, "%d tokens, more than the model's context of %d", T, c->n_ctx);
    for (int t = 0; t < T; t++)
        if (ids[t] < 0 || ids[t] >= c->d_vocab)
            return mech_err_set(err, MECH_ERR_RANGE, "token %d: id %d is outside the model's vocabulary (ids 0..%d)", t,
                                (int)ids[t], c->d_vocab - 1);
    live_result r = {.T = T, .grid_w = s->grid_w, .grid_h = s->grid_h};
    r.ids = mech_malloc((size_t)T * sizeof *r.ids);
    r.text = mech_strdup(text ? text : "");
    if (!r.ids || !r.text) {
        result_free(&r);
        return mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
    }
    memcpy(r.ids, ids, (size_t)T * sizeof *ids);
    // The logit lens's hooks are cached when they fit in memory beside the
    // current run, which lives on until this one finishes (else only the
    // patterns, which the views need).
    if (!s->o.no_lens) {
        double limit = 0, held = s->cur.run ? run_bytes(s->m, s->cur.T, s->cur.lens, NULL) : 0;
        double need = run_bytes(s->m, T, 1, &limit);
        double weights = (double)mech_config_n_params(c) * sizeof(float);
        r.lens = limit <= 0 || weights + held + need <= limit;
    }
    s->pending = r;
    memset(&s->pending_err, 0, sizeof s->pending_err);
    atomic_store(&s->done, 0);
    atomic_store(&s->layers_done, 0);
    atomic_store(&s->cancel, 0);
    s->run_T = T;
    s->t0 = mech_now();
    if (pthread_create(&s->th, NULL, worker, s)) {
        result_free(&s->pending);
        return mech_err_set(err, MECH_ERR_NOMEM, "cannot start the forward's thread");
    }
    s->job = 1, s->job_lens = 0;
    return MECH_OK;
}

// The lens view of the current run, built off the main thread: the main
// thread only reads cur while a job runs, and no forward can start.
static void *lens_worker(void *arg) {
    mech_tui_live *s = arg;
    mech_err *err = &s->pending_err;
    mech_tokenizer *own = NULL;
    const mech_tokenizer *tok = s->prog ? NULL : s->tok;
    if (!tok && !s->prog && mech_tokenizer_gpt2_fits(s->m->cfg.d_vocab) && mech_tokenizer_gpt2(&own, err) == MECH_OK)
        tok = own;
    memset(err, 0, sizeof *err);
    mech_status st = mech_tui_lens_from_run(&s->lens_pending, s->m, s->cur.run, s->cur.ids, s->cur.T, tok, err);
    if (st && !err->code) err->code = st;
    mech_tokenizer_free(own);
    atomic_store(&s->done, 1);
    return NULL;
}

mech_status mech_tui_live_lens_start(mech_tui_live *s, mech_err *err) {
    if (s->job)
        return mech_err_set(err, MECH_ERR_ARG, "busy: %s", s->job_lens ? "the lens is being computed" : "a forward is running");
    if (!s->cur.run || !s->cur.lens)
        return mech_err_set(err, MECH_ERR_ARG, "the run did not keep the residual stream the lens reads");
    mech_tui_lens_deinit(&s->lens_pending);
    memset(&s->pending_err, 0, sizeof s->pending_err);
    atomic_store(&s->done, 0);
    s->t0 = mech_now();
    if (pthread_create(&s->th, NULL, lens_worker, s))
        return mech_err_set(err, MECH_ERR_NOMEM, "cannot start the lens's thread");
    s->job = 1, s->job_lens = 1;
    return MECH_OK;
}

int mech_tui_live_busy_lens(const mech_tui_live *s) { return s->job && s->job_lens; }

void mech_tui_live_take_lens(mech_tui_live *s, mech_tui_lens *dst) {
    mech_tui_lens_deinit(dst);
    *dst = s->lens_pending;
    memset(&s->lens_pending, 0, sizeof s->lens_pending);
}

// "1,2,3" or "1 2 3": ids as `mech run --ids` reads them.
static mech_status parse_ids(const char *text, int32_t **out, int *n, mech_err *err) {
    size_t cap = strlen(text) / 2 + 1;
    int32_t *ids = mech_malloc(cap * sizeof *ids);
    if (!ids) return mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
    int k = 0;
    for (const char *p = text; *p;) {
        if (*p == ',' || *p == ' ' || *p == '\t') {
            p++;
            continue;
        }
        if (*p < '0' || *p > '9') {
            mech_free(ids);
            return mech_err_set(err, MECH_ERR_PARSE, "'%.20s': token ids are numbers separated by commas or spaces", p);
        }
        long v = 0;
        while (*p >= '0' && *p <= '9' && v <= 0x7fffffffL) v = v * 10 + (*p++ - '0');
        if (v > 0x7fffffffL) {
            mech_free(ids);
            return mech_err_set(err, MECH_ERR_RANGE, "token id too large");
        }
        ids[k++] = (int32_t)v;
    }
    *out = ids, *n = k;
    return MECH_OK;
}

mech_status mech_tui_live_start(mech_tui_live *s, const char *text, mech_err *err) {
    if (s->job)
        return mech_err_set(err, MECH_ERR_ARG, "busy: %s (wait for it to finish)",
                            s->job_lens ? "the lens is being computed" : "a forward is running");
    int32_t *ids = NULL;
    int T = 0;
    mech_status st = MECH_OK;
    if (s->o.kind == 1) {
        st = parse_ids(text, &ids, &T, err);
    } else if (s->o.kind == 2 || s->prog) {
        // a compiled model's input: BOS (id 0), then the program's vocab tokens
        mech_rasp_value *in = NULL;
        size_t n = 0;
        if (!s->prog) return mech_err_set(err, MECH_ERR_ARG, "the model is not compiled: its input is text");
        if ((st = mech_rasp_input_parse(s->prog, text, &in, &n, err))) return st;
        if (!(ids = mech_malloc((n + 1) * sizeof *ids))) st = mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
        for (size_t i = 0; ids && i < n; i++) ids[i + 1] = mech_rasp_token_id(s->prog, &in[i]);
        if (ids) ids[0] = 0, T = (int)n + 1;
        mech_free(in);
        if (!st && n == 0) st = mech_err_set(err, MECH_ERR_RANGE, "the input is empty: give at least one token");
    } else {
        int32_t *enc = NULL;
        size_t n = 0;
        int add = s->o.bos >= 0;
        if (!s->tok)
            return mech_err_set(err, MECH_ERR_ARG, "this model has no text tokenizer: its input is token ids (--ids)");
        if ((st = mech_tokenizer_encode(s->tok, text, strlen(text), s->o.special, &enc, &n, err))) return st;
        if (!(ids = mech_malloc((n + (size_t)add + 1) * sizeof *ids))) st = mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
        else {
            if (add) ids[0] = s->o.bos;
            if (n) memcpy(ids + add, enc, n * sizeof *enc);
            T = (int)n + add;
        }
        mech_free(enc);
    }
    if (!st) st = mech_tui_live_start_ids(s, text, ids, T, err);
    mech_free(ids);
    return st;
}

int mech_tui_live_busy(const mech_tui_live *s) { return s->job; }

void mech_tui_live_progress(const mech_tui_live *s, int *T, int *layers_done, int *layers, double *elapsed) {
    int busy = s->job;
    if (T) *T = busy ? (s->job_lens ? s->cur.T : s->run_T) : 0;
    if (layers_done) *layers_done = busy ? atomic_load(&((mech_tui_live *)s)->layers_done) : 0;
    if (layers) *layers = busy && !s->job_lens ? s->m->cfg.n_layers : 0;
    if (elapsed) *elapsed = busy ? mech_now() - s->t0 : 0;
}

int mech_tui_live_poll(mech_tui_live *s) {
    if (!s->job || !atomic_load(&s->done)) return 0;
    pthread_join(s->th, NULL);
    s->job = 0;
    if (s->job_lens) {
        s->job_lens = 0;
        if (s->pending_err.code) {
            snprintf(s->error, sizeof s->error, "%s", s->pending_err.msg[0] ? s->pending_err.msg
                                                                            : mech_strerror(s->pending_err.code));
            mech_tui_lens_deinit(&s->lens_pending);
            return -2;
        }
        return 2;
    }
    if (s->pending_err.code) {
        snprintf(s->error, sizeof s->error, "%s", s->pending_err.msg[0] ? s->pending_err.msg
                                                                        : mech_strerror(s->pending_err.code));
        result_free(&s->pending);
        return -1;
    }
    s->error[0] = 0;
    result_free(&s->old); // a retired run not released yet: nothing points into it any more either
    s->old = s->cur;
    s->cur = s->pending;
    memset(&s->pending, 0, sizeof s->pending);
    return 1;
}

void mech_tui_live_release(mech_tui_live *s) { result_free(&s->old); }

void mech_tui_live_set_grid_size(mech_tui_live *s, int w, int h) { s->grid_w = w, s->grid_h = h; }

int mech_tui_live_take_thumbs(mech_tui_live *s, mech_tui_attn *a) {
    mech_tui_attn *t = s->cur.thumbs;
    if (!t || !t->thumbs || a->pool_mean || a->diff || a->T != t->T || a->L != t->L || a->NH != t->NH) return 0;
    mech_free(a->thumbs), mech_free(a->thumb_ok);
    a->thumbs = t->thumbs, a->thumb_ok = t->thumb_ok;
    a->thumb_r = t->thumb_r, a->thumb_c = t->thumb_c, a->thumb_br = t->thumb_br, a->thumb_bc = t->thumb_bc;
    a->thumb_mean = t->thumb_mean, a->thumb_diff = t->thumb_diff, a->thumb_half = t->thumb_half;
    t->thumbs = NULL, t->thumb_ok = NULL;
    return 1;
}

const mech_tokenizer *mech_tui_live_tokenizer(const mech_tui_live *s) { return s->prog ? NULL : s->tok; }
int mech_tui_live_has_text(const mech_tui_live *s) { return s->prog || s->tok; }
int mech_tui_live_has_lens(const mech_tui_live *s) { return s->cur.run && s->cur.lens; }

const char *mech_tui_live_error(const mech_tui_live *s) { return s->error; }
const mech_run *mech_tui_live_run(const mech_tui_live *s) { return s->cur.run; }
const char *mech_tui_live_text(const mech_tui_live *s) { return s->cur.text ? s->cur.text : ""; }
const double *mech_tui_live_scores(const mech_tui_live *s) { return s->cur.scores; }
const mech_model *mech_tui_live_model(const mech_tui_live *s) { return s->m; }
double mech_tui_live_seconds(const mech_tui_live *s) { return s->cur.seconds; }

const int32_t *mech_tui_live_ids(const mech_tui_live *s, int *T) {
    if (T) *T = s->cur.T;
    return s->cur.ids;
}

// --- Reading the run ----------------------------------------------------------

void mech_tui_live_token_text(const mech_tui_live *s, int32_t id, int quoted, mech_buf *b) {
    if (s->prog) {
        size_t nv = 0;
        const mech_rasp_value *vocab = mech_rasp_program_vocab(s->prog, &nv);
        if (id == 0) mech_buf_puts(b, "BOS");
        else if (id >= 1 && (size_t)id <= nv) mech_rasp_value_json(b, &vocab[id - 1]);
        else if ((size_t)id == nv + 1) mech_buf_puts(b, "PAD");
        else mech_buf_printf(b, "<%d>", (int)id);
        return;
    }
    size_t len = 0;
    const char *t = s->tok ? mech_tokenizer_token(s->tok, id, &len) : NULL;
    if (t && quoted) mech_buf_json_string(b, t, len);
    else if (t) mech_buf_append(b, t, len);
    else if (!s->tok) mech_buf_printf(b, "%d", (int)id); // no text tokenizer: every token is its id
    else mech_buf_printf(b, "<%d>", (int)id);
}

int mech_tui_live_topk(const mech_tui_live *s, int pos, int k, int32_t *ids, float *logits, double *probs) {
    const float *all = s->cur.run ? mech_run_logits(s->cur.run) : NULL;
    int V = s->m->cfg.d_vocab;
    if (!all || pos < 0 || pos >= s->cur.T || k < 1) return 0;
    const float *row = all + (size_t)pos * V;
    if (k > V) k = V;
    // insertion into the k best so far: ties keep the lower id first (as `mech run`)
    int n = 0;
    for (int v = 0; v < V; v++) {
        if (n < k) n++;
        else if (row[v] <= row[ids[k - 1]]) continue;
        int j = n - 1;
        while (j > 0 && row[ids[j - 1]] < row[v]) {
            ids[j] = ids[j - 1];
            j--;
        }
        ids[j] = v;
    }
    double mx = row[ids[0]], z = 0;
    for (int v = 0; v < V; v++) z += exp((double)row[v] - mx);
    for (int i = 0; i < n; i++) {
        if (logits) logits[i] = row[ids[i]];
        if (probs) probs[i] = exp((double)row[ids[i]] - mx) / z;
    }
    return n;
}

// --- Saving -----------------------------------------------------------------

mech_status mech_tui_live_save(const mech_tui_live *s, const char *db_path, const char *model_path,
                               const char *cmdline, int pos, int k, int64_t *run_id, mech_err *err) {
    const live_result *r = &s->cur;
    *run_id = 0;
    if (!r->run) return mech_err_set(err, MECH_ERR_ARG, "nothing to save yet: the forward has not finished");
    if (pos < 0 || pos >= r->T) pos = r->T - 1;
    if (k < 1 || k > MECH_LENS_MAX_K) k = MECH_TUI_LIVE_K;
    int L = s->m->cfg.n_layers, NH = s->m->cfg.n_heads;
    int32_t top[MECH_LENS_MAX_K];
    float lg[MECH_LENS_MAX_K];
    double pr[MECH_LENS_MAX_K];
    int n = mech_tui_live_topk(s, pos, k, top, lg, pr);
    char params[256];
    snprintf(params, sizeof params, "{\"T\": %d, \"pos\": %d, \"k\": %d, \"input\": \"%s\", \"bos\": %d}", r->T, pos, n,
             s->prog || s->o.kind == 2 ? "input" : s->o.kind == 1 ? "ids" : "prompt", (int)s->o.bos);
    mech_store *st = NULL;
    mech_status rc = mech_store_open(db_path, &st, err);
    if (rc) return rc;
    int64_t id = 0;
    float *f = NULL;
    if ((rc = mech_store_run_new(st, "live", model_path, cmdline, params, &id, err))) goto done;
    if ((rc = mech_store_begin(st, err))) goto fail;
    if ((rc = mech_store_prompt(st, id, 0, "prompt", s->o.kind == 1 ? NULL : r->text, r->ids, r->T, err))) goto fail;
    for (int i = 0; i < n; i++) {
        mech_result res = {.item = 0, .site = "logits", .layer = -1, .pos = pos, .head = -1, .token = top[i],
                           .rank = i, .metric = "prob", .value = pr[i]};
        if ((rc = mech_store_result(st, id, &res, err))) goto fail;
        res.metric = "logit", res.value = lg[i];
        if ((rc = mech_store_result(st, id, &res, err))) goto fail;
    }
    if (r->scores) {
        for (int kd = 0; kd < MECH_TUI_SCORE_KINDS && kd < MECH_HEAD_KIND_COUNT_; kd++)
            for (int l = 0; l < L; l++)
                for (int h = 0; h < NH; h++) {
                    mech_result res = {.item = -1, .site = "heads", .layer = l, .pos = -1, .head = h, .token = -1,
                                       .rank = -1, .metric = mech_head_kind_name((mech_head_kind)kd),
                                       .value = r->scores[((size_t)kd * L + l) * NH + h]};
                    if ((rc = mech_store_result(st, id, &res, err))) goto fail;
                }
        // as `mech heads` stores them: [kind, layer, head]
        int64_t shape[3] = {MECH_TUI_SCORE_KINDS, L, NH};
        size_t nf = (size_t)MECH_TUI_SCORE_KINDS * L * NH;
        if (!(f = mech_malloc(nf * sizeof *f))) {
            rc = mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
            goto fail;
        }
        for (size_t i = 0; i < nf; i++) f[i] = (float)r->scores[i];
        if ((rc = mech_store_tensor(st, id, "head_scores", f, 3, shape, err))) goto fail;
    }
    if ((rc = mech_store_commit(st, err)) || (rc = mech_store_run_finish(st, id, "done", err))) goto fail;
    *run_id = id;
    goto done;
fail:
    // the batch goes, the run row says why; earlier runs are untouched
    mech_store_rollback(st, NULL);
    mech_store_run_finish(st, id, "failed", NULL);
done:
    mech_free(f);
    mech_store_close(st);
    return rc;
}
