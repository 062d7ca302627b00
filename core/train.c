/*
** core/train.c: the training loop: micro-batches from a batch source through
** the forward and the exact backward (core/backward.c), gradients averaged
** over the accumulation, clipped by their global norm, and one AdamW update
** (core/optim.c) per step; checkpoints that resume bit for bit.
**
** The trainer owns a copy of the weights in one arena (mech_model_zeros's
** layout), so the run it drives reads the weights the last update wrote. A
** checkpoint is two safetensors files: the model, loadable by every command
** as it is, and beside it the Adam moments; both carry the step, and a pair
** whose steps differ is refused.
*/
#include "core/core.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// Elements per job of the parallel update (a tensor is split into chunks).
#define UPDATE_CHUNK 65536

struct mech_trainer {
    mech_train_opts o;
    mech_model *m;           // the weights being trained (owned arena)
    mech_model *src;         // the checkpoint loaded from, for its metadata, or NULL
    mech_run *run;
    mech_pool *pool;         // the update's and the norm's threads
    size_t k;                // tensors
    mech_model_tensor *tens; // (k) names, shapes and data of m's tensors
    size_t *len;             // (k) elements
    size_t *off;             // (k) offset into the moments
    size_t total;
    float *adam_m, *adam_v;  // (total)
    float *acc;              // (total) summed gradients when accum > 1
    float **g;               // (k) the gradient tensors of the current step
    int32_t *ids, *targets;  // (B, T)
    size_t n_chunks;
    size_t *chunk_t, *chunk_lo; // (n_chunks) tensor and first element of each job
    int64_t step;
};

void mech_train_opts_default(mech_train_opts *o) {
    memset(o, 0, sizeof *o);
    o->B = 8, o->T = 64, o->accum = 1;
    o->steps = 1000, o->warmup = 100;
    o->lr = 1e-3, o->min_lr = 1e-4;
    mech_adamw_defaults(&o->adamw);
    o->clip = 1.0;
    o->seed = 1;
}

static mech_status check_opts(const mech_train_opts *o, const mech_config *c, mech_err *err) {
    const char *bad = NULL;
    if (o->B < 1) bad = "B must be >= 1";
    else if (o->T < 1 || o->T > c->n_ctx) bad = "T must be in 1 .. the model's n_ctx";
    else if (o->accum < 1) bad = "accum must be >= 1";
    else if (o->steps < 1) bad = "steps must be >= 1";
    else if (o->warmup < 0) bad = "warmup must be >= 0";
    else if (!(o->lr > 0) || !isfinite(o->lr)) bad = "lr must be a finite number > 0";
    else if (!(o->min_lr >= 0) || o->min_lr > o->lr) bad = "min_lr must be in [0, lr]";
    else if (!(o->adamw.beta1 >= 0 && o->adamw.beta1 < 1)) bad = "beta1 must be in [0, 1)";
    else if (!(o->adamw.beta2 >= 0 && o->adamw.beta2 < 1)) bad = "beta2 must be in [0, 1)";
    else if (!(o->adamw.eps > 0) || !isfinite(o->adamw.eps)) bad = "eps must be a finite number > 0";
    else if (!(o->adamw.weight_decay >= 0) || !isfinite(o->adamw.weight_decay)) bad = "weight decay must be >= 0";
    else if (isnan(o->clip) || isinf(o->clip)) bad = "clip must be finite";
    if (bad) return mech_err_set(err, MECH_ERR_ARG, "training options: %s", bad);
    return MECH_OK;
}

void mech_trainer_free(mech_trainer *t) {
    if (!t) return;
    mech_run_free(t->run);
    mech_pool_free(t->pool);
    mech_model_free(t->m);
    mech_model_free(t->src);
    mech_free(t->tens);
    mech_free(t->len);
    mech_free(t->off);
    mech_free_aligned(t->adam_m);
    mech_free_aligned(t->adam_v);
    mech_free_aligned(t->acc);
    mech_free(t->g);
    mech_free(t->ids);
    mech_free(t->targets);
    mech_free(t->chunk_t);
    mech_free(t->chunk_lo);
    mech_free(t);
}

mech_status mech_trainer_new(const mech_model *init, const mech_train_opts *o, mech_trainer **out, mech_err *err) {
    *out = NULL;
    mech_status rc = check_opts(o, &init->cfg, err);
    if (rc) return rc;
    mech_trainer *t = mech_calloc(1, sizeof *t);
    if (!t) return mech_err_set(err, MECH_ERR_NOMEM, "out of memory for the trainer");
    t->o = *o;
    mech_model_tensor *src = NULL;
    size_t n_src = 0;
    if ((rc = mech_model_zeros(&init->cfg, &t->m, err)) || (rc = mech_model_tensors(init, &src, &n_src, err)) ||
        (rc = mech_model_tensors(t->m, &t->tens, &t->k, err)))
        goto fail;
    for (size_t i = 0; i < n_src; i++) {
        float *dst = mech_model_param(t->m, src[i].name);
        size_t n = (size_t)src[i].shape[0] * (size_t)(src[i].ndim == 2 ? src[i].shape[1] : 1);
        if (dst) memcpy(dst, src[i].data, n * sizeof(float));
    }
    t->len = mech_calloc(t->k, sizeof *t->len);
    t->off = mech_calloc(t->k, sizeof *t->off);
    t->g = mech_calloc(t->k, sizeof *t->g);
    if (!t->len || !t->off || !t->g) goto nomem;
    for (size_t i = 0; i < t->k; i++) {
        t->len[i] = (size_t)t->tens[i].shape[0] * (size_t)(t->tens[i].ndim == 2 ? t->tens[i].shape[1] : 1);
        t->off[i] = t->total;
        t->total += t->len[i];
        t->n_chunks += (t->len[i] + UPDATE_CHUNK - 1) / UPDATE_CHUNK;
    }
    t->adam_m = mech_malloc_aligned(t->total * sizeof(float));
    t->adam_v = mech_malloc_aligned(t->total * sizeof(float));
    if (o->accum > 1) t->acc = mech_malloc_aligned(t->total * sizeof(float));
    t->chunk_t = mech_malloc(t->n_chunks * sizeof *t->chunk_t);
    t->chunk_lo = mech_malloc(t->n_chunks * sizeof *t->chunk_lo);
    t->ids = mech_malloc((size_t)o->B * o->T * sizeof *t->ids);
    t->targets = mech_malloc((size_t)o->B * o->T * sizeof *t->targets);
    if (!t->adam_m || !t->adam_v || (o->accum > 1 && !t->acc) || !t->chunk_t || !t->chunk_lo || !t->ids ||
        !t->targets)
        goto nomem;
    memset(t->adam_m, 0, t->total * sizeof(float));
    memset(t->adam_v, 0, t->total * sizeof(float));
    for (size_t i = 0, c = 0; i < t->k; i++)
        for (size_t lo = 0; lo < t->len[i]; lo += UPDATE_CHUNK, c++) t->chunk_t[c] = i, t->chunk_lo[c] = lo;
    if (!(t->pool = mech_pool_new(o->threads))) goto nomem;
    if ((rc = mech_run_new(t->m, o->B, o->T, &t->run, err)) ||
        (o->threads > 0 && (rc = mech_run_set_threads(t->run, o->threads, err))) ||
        (rc = mech_run_enable_grad(t->run, MECH_GRAD_PARAMS, err)))
        goto fail;
    mech_free(src);
    *out = t;
    return MECH_OK;
nomem:
    rc = mech_err_set(err, MECH_ERR_NOMEM, "out of memory for the trainer");
fail:
    mech_free(src);
    mech_trainer_free(t);
    return rc;
}

const mech_model *mech_trainer_model(const mech_trainer *t) { return t->m; }
const mech_train_opts *mech_trainer_opts(const mech_trainer *t) { return &t->o; }
int64_t mech_trainer_steps_done(const mech_trainer *t) { return t->step; }
const char *mech_trainer_meta(const mech_trainer *t, const char *key) {
    return t->src ? mech_model_meta(t->src, key) : NULL;
}

// ---------------------------------------------------------------------------
// One step

typedef struct update_job {
    mech_trainer *t;
    float scale;
    double lr;
} update_job;

static void update_chunk(void *ctx, int c) {
    update_job *u = ctx;
    mech_trainer *t = u->t;
    size_t i = t->chunk_t[c], lo = t->chunk_lo[c], n = t->len[i] - lo;
    if (n > UPDATE_CHUNK) n = UPDATE_CHUNK;
    // matrices decay; biases and LayerNorm gains (1-D) do not
    int decay = t->tens[i].ndim == 2;
    float *p = (float *)(uintptr_t)t->tens[i].data + lo;
    mech_adamw_update(p, t->g[i] + lo, u->scale, t->adam_m + t->off[i] + lo, t->adam_v + t->off[i] + lo, n, u->lr,
                      &t->o.adamw, decay, t->step + 1);
}

// acc += g (first: acc = g), chunk by chunk; element-wise, so the thread
// count does not change the sums.
typedef struct accum_job {
    mech_trainer *t;
    int first;
} accum_job;

static void accum_chunk(void *ctx, int c) {
    accum_job *j = ctx;
    mech_trainer *t = j->t;
    size_t i = t->chunk_t[c], lo = t->chunk_lo[c], n = t->len[i] - lo;
    if (n > UPDATE_CHUNK) n = UPDATE_CHUNK;
    float *a = t->acc + t->off[i] + lo;
    const float *g = t->g[i] + lo;
    if (j->first) memcpy(a, g, n * sizeof(float));
    else
        for (size_t e = 0; e < n; e++) a[e] += g[e];
}

mech_status mech_trainer_step(mech_trainer *t, mech_batch_fn fn, void *user, mech_train_step *out, mech_err *err) {
    const mech_train_opts *o = &t->o;
    size_t BT = (size_t)o->B * o->T;
    double loss = 0;
    mech_status rc;
    for (int k = 0; k < o->accum; k++) {
        for (size_t i = 0; i < BT; i++) t->targets[i] = -1;
        if ((rc = fn(user, t->step * o->accum + k, o->B, o->T, t->ids, t->targets, err))) return rc;
        mech_metric mt = {.kind = MECH_METRIC_LOSS, .targets = t->targets};
        double v;
        if ((rc = mech_run_forward(t->run, t->ids, err)) || (rc = mech_run_backward(t->run, &mt, &v, err))) return rc;
        if (!isfinite(v))
            return mech_err_set(err, MECH_ERR_RANGE, "training: the loss is %g at step %lld (lower the learning rate)",
                                v, (long long)t->step + 1);
        loss += v;
        mech_model_tensor *gt = NULL;
        size_t ng = 0;
        if ((rc = mech_model_tensors(mech_run_param_grads(t->run), &gt, &ng, err))) return rc;
        for (size_t i = 0; i < t->k; i++) t->g[i] = (float *)(uintptr_t)gt[i].data;
        mech_free(gt);
        if (o->accum > 1) {
            accum_job aj = {t, k == 0};
            mech_pool_for(t->pool, (int)t->n_chunks, accum_chunk, &aj);
        }
    }
    if (o->accum > 1)
        for (size_t i = 0; i < t->k; i++) t->g[i] = t->acc + t->off[i];
    double norm = mech_grad_norm(t->pool, t->g, t->len, t->k);
    if (isnan(norm)) return mech_err_set(err, MECH_ERR_NOMEM, "out of memory for the gradient norm");
    norm /= o->accum; // the norm of the averaged gradient
    update_job u = {t, (float)(mech_clip_scale(norm, o->clip) / o->accum),
                    mech_lr_cosine(t->step, o->steps, o->warmup, o->lr, o->min_lr)};
    mech_pool_for(t->pool, (int)t->n_chunks, update_chunk, &u);
    t->step++;
    if (out) *out = (mech_train_step){.step = t->step, .loss = loss / o->accum, .grad_norm = norm, .lr = u.lr};
    return MECH_OK;
}

// ---------------------------------------------------------------------------
// Checkpoints

char *mech_trainer_optim_path(const char *path) {
    size_t n = strlen(path), ext = strlen(".safetensors");
    char *p = mech_malloc(n + 16);
    if (!p) return NULL;
    if (n > ext && !strcmp(path + n - ext, ".safetensors"))
        snprintf(p, n + 16, "%.*s.optim.safetensors", (int)(n - ext), path);
    else snprintf(p, n + 16, "%s.optim", path);
    return p;
}

// The options and the step as JSON; doubles with 17 digits so they read
// back exactly.
static void opts_json(const mech_train_opts *o, int64_t step, mech_buf *b) {
    mech_buf_printf(b,
                    "{\"step\": %lld, \"B\": %d, \"T\": %d, \"accum\": %d, \"steps\": %lld, \"warmup\": %lld, "
                    "\"lr\": %.17g, \"min_lr\": %.17g, \"beta1\": %.17g, \"beta2\": %.17g, \"eps\": %.17g, "
                    "\"weight_decay\": %.17g, \"clip\": %.17g, \"seed\": %llu, \"threads\": %d}",
                    (long long)step, o->B, o->T, o->accum, (long long)o->steps, (long long)o->warmup, o->lr,
                    o->min_lr, o->adamw.beta1, o->adamw.beta2, o->adamw.eps, o->adamw.weight_decay, o->clip,
                    (unsigned long long)o->seed, o->threads);
}

mech_status mech_trainer_save(const mech_trainer *t, const char *path, const char *const *meta_keys,
                              const char *const *meta_values, size_t n_meta, mech_err *err) {
    mech_buf js = {0};
    opts_json(&t->o, t->step, &js);
    char *opath = mech_trainer_optim_path(path);
    mech_st_write *w = mech_calloc(2 * t->k, sizeof *w);
    char (*names)[80] = mech_calloc(2 * t->k, sizeof *names);
    const char **keys = mech_calloc(n_meta + 1, sizeof *keys), **vals = mech_calloc(n_meta + 1, sizeof *vals);
    mech_status rc = MECH_OK;
    if (js.oom || !opath || !w || !names || !keys || !vals) {
        rc = mech_err_set(err, MECH_ERR_NOMEM, "%s: out of memory saving the checkpoint", path);
        goto done;
    }
    for (size_t i = 0; i < t->k; i++)
        for (int mv = 0; mv < 2; mv++) {
            size_t j = 2 * i + (size_t)mv;
            snprintf(names[j], sizeof names[j], "%s.%s", mv ? "adam_v" : "adam_m", t->tens[i].name);
            w[j].name = names[j];
            w[j].dtype = MECH_DT_F32;
            w[j].ndim = t->tens[i].ndim;
            memcpy(w[j].shape, t->tens[i].shape, sizeof t->tens[i].shape);
            w[j].data = (mv ? t->adam_v : t->adam_m) + t->off[i];
        }
    keys[0] = "mech.train";
    vals[0] = js.data;
    for (size_t i = 0; i < n_meta; i++) keys[i + 1] = meta_keys[i], vals[i + 1] = meta_values[i];
    // the moments first: a model file is never newer than its moments
    if ((rc = mech_safetensors_write(opath, w, 2 * t->k, keys, vals, 1, err))) goto done;
    rc = mech_model_save(t->m, path, MECH_DT_F32, keys, vals, n_meta + 1, err);
done:
    mech_buf_free(&js);
    mech_free(opath);
    mech_free(w);
    mech_free(names);
    mech_free(keys);
    mech_free(vals);
    return rc;
}

static mech_status parse_opts(const char *path, const char *text, mech_train_opts *o, int64_t *step, mech_err *err) {
    mech_json *j = NULL;
    mech_err jerr = {0};
    if (!text) return mech_err_set(err, MECH_ERR_FORMAT, "%s: not a training checkpoint (no mech.train metadata)", path);
    if (mech_json_parse(text, strlen(text), &j, &jerr) || j->type != MECH_JSON_OBJECT) {
        mech_json_free(j);
        return mech_err_set(err, MECH_ERR_FORMAT, "%s: mech.train metadata is not a JSON object", path);
    }
    static const char *const need[] = {"step", "B", "T", "accum", "steps", "warmup", "lr", "min_lr", "beta1",
                                       "beta2", "eps", "weight_decay", "clip", "seed", "threads"};
    for (size_t i = 0; i < sizeof need / sizeof *need; i++) {
        const mech_json *v = mech_json_get(j, need[i]);
        if (!v || v->type != MECH_JSON_NUMBER) {
            mech_json_free(j);
            return mech_err_set(err, MECH_ERR_FORMAT, "%s: mech.train metadata: '%s' missing or not a number", path,
                                need[i]);
        }
    }
    const mech_json *seed = mech_json_get(j, "seed"), *st = mech_json_get(j, "step");
    mech_train_opts_default(o);
    o->B = (int)mech_json_num(j, "B", 0), o->T = (int)mech_json_num(j, "T", 0);
    o->accum = (int)mech_json_num(j, "accum", 0);
    o->steps = (int64_t)mech_json_num(j, "steps", 0), o->warmup = (int64_t)mech_json_num(j, "warmup", 0);
    o->lr = mech_json_num(j, "lr", 0), o->min_lr = mech_json_num(j, "min_lr", 0);
    o->adamw.beta1 = mech_json_num(j, "beta1", 0), o->adamw.beta2 = mech_json_num(j, "beta2", 0);
    o->adamw.eps = mech_json_num(j, "eps", 0), o->adamw.weight_decay = mech_json_num(j, "weight_decay", 0);
    o->clip = mech_json_num(j, "clip", 0);
    o->threads = (int)mech_json_num(j, "threads", 0);
    o->seed = seed->is_int ? (uint64_t)seed->inum : (uint64_t)seed->num;
    *step = st->is_int ? st->inum : -1;
    mech_json_free(j);
    if (*step < 0) return mech_err_set(err, MECH_ERR_FORMAT, "%s: mech.train metadata: bad step", path);
    return MECH_OK;
}

mech_status mech_trainer_load(const char *path, const mech_train_opts *o, mech_trainer **out, mech_err *err) {
    *out = NULL;
    mech_model *src = NULL;
    mech_safetensors *st = NULL;
    mech_trainer *t = NULL;
    char *opath = mech_trainer_optim_path(path);
    mech_train_opts stored;
    int64_t step = 0, ostep = 0;
    mech_status rc;
    if (!opath) return mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
    if ((rc = mech_model_load(path, &src, err))) goto done;
    if ((rc = parse_opts(path, mech_model_meta(src, "mech.train"), &stored, &step, err))) goto done;
    if ((rc = mech_safetensors_open(opath, &st, err))) {
        if (rc == MECH_ERR_IO)
            rc = mech_err_set(err, MECH_ERR_FORMAT, "%s: the checkpoint's optimizer state is missing (%s)", path, err->msg);
        goto done;
    }
    mech_train_opts ostored;
    if ((rc = parse_opts(opath, mech_safetensors_meta(st, "mech.train"), &ostored, &ostep, err))) goto done;
    if (ostep != step) {
        rc = mech_err_set(err, MECH_ERR_FORMAT, "%s: the model is at step %lld but its optimizer state %s is at step %lld",
                          path, (long long)step, opath, (long long)ostep);
        goto done;
    }
    if ((rc = mech_trainer_new(src, o ? o : &stored, &t, err))) {
        if (!o) rc = mech_err_set(err, MECH_ERR_FORMAT, "%s: stored %s", path, err->msg);
        goto done;
    }
    if (st->n != 2 * t->k) {
        rc = mech_err_set(err, MECH_ERR_FORMAT, "%s: %zu tensors, expected %zu (adam_m and adam_v of each weight)", opath,
                          st->n, 2 * t->k);
        goto done;
    }
    for (size_t i = 0; i < t->k; i++)
        for (int mv = 0; mv < 2; mv++) {
            char name[80];
            snprintf(name, sizeof name, "%s.%s", mv ? "adam_v" : "adam_m", t->tens[i].name);
            const mech_st_tensor *x = mech_safetensors_find(st, name);
            int ok = x && x->dtype == MECH_DT_F32 && x->ndim == t->tens[i].ndim;
            for (int d = 0; ok && d < x->ndim; d++) ok = x->shape[d] == t->tens[i].shape[d];
            if (!ok) {
                rc = mech_err_set(err, MECH_ERR_FORMAT, "%s: tensor '%s' missing, or not F32 of the weight's shape", opath,
                                  name);
                goto done;
            }
            memcpy((mv ? t->adam_v : t->adam_m) + t->off[i], x->data, t->len[i] * sizeof(float));
        }
    t->step = step;
    t->src = src;
    src = NULL;
    *out = t;
    t = NULL;
done:
    mech_trainer_free(t);
    mech_model_free(src);
    mech_safetensors_close(st);
    mech_free(opath);
    return rc;
}
