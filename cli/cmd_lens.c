/*
** cli/cmd_lens.c: `mech lens`: the logit lens on a prompt, every layer and
** position, written to the results database as one run.
*/
#include "cli/cli.h"

#include <math.h>

#include <stdlib.h>
#include <string.h>

#define MAX_SEQS 64

// The decoder lens: a compiled RASP model's residual stream read, layer by
// layer, as the named variables the compiler placed in it.
static int decoder_lens(const char *cmd, const char *model, const char *input, const char *db, int argc, char **argv) {
    mech_err err = {0};
    mech_model *m = NULL;
    mech_rasp_program *p = NULL;
    mech_lens_vars *vars = NULL;
    mech_lens_decoded *rows = NULL;
    mech_rasp_trace *trace = NULL;
    mech_run *run = NULL;
    mech_store *s = NULL;
    int32_t *ids = NULL;
    size_t n = 0, n_rows = 0;
    int64_t run_id = 0;
    int rc = 0;
    if ((rc = cli_model_load_blocks(cmd, model, "the lens has no layers to read", &m))) return rc;
    const char *labels = mech_model_meta(m, "mech.rasp.residual"), *circuit = mech_model_meta(m, "mech.rasp.circuit");
    if ((rc = cli_compiled_program(cmd, m, model, &p))) goto done;
    if (!p || !labels) {
        rc = cli_usage(cmd, "--input is for models from `mech compile`; %s is not one (no mech.rasp.source "
                       "metadata): give --prompt or --ids", model);
        goto done;
    }
    if ((rc = cli_compiled_ids(cmd, p, input, &ids, &n))) goto done;
    { // which numerical variables are booleans: printed true/false as `mech rasp --trace` prints them
        mech_rasp_value *iv = NULL;
        size_t ni = 0;
        if (mech_rasp_input_parse(p, input, &iv, &ni, &err) || mech_rasp_eval_trace(p, iv, ni, &trace, &err)) {
            mech_free(iv);
            goto fail_early;
        }
        mech_free(iv);
    }
    if (mech_lens_vars_parse(labels, &vars, &err) || (circuit && mech_lens_vars_layers(vars, circuit, &err))) goto fail;
    int T = (int)n;
    if (T > m->cfg.n_ctx) {
        rc = cli_usage(cmd, "--input: %d tokens exceed the model's max_seq_len of %d", T - 1, m->cfg.n_ctx - 1);
        goto done;
    }
    if (mech_run_new(m, 1, T, &run, &err) || mech_lens_cache(run, &err) || mech_run_forward(run, ids, &err) ||
        mech_lens_decode(m, run, vars, 0, &rows, &n_rows, &err))
        goto fail;
    char params[64];
    snprintf(params, sizeof params, "{\"decoder\": true, \"T\": %d}", T);
    if ((rc = cli_run_open(cmd, db, "lens", model, argc, argv, params, &s, &run_id))) goto done;
    if (mech_store_begin(s, &err) || mech_store_prompt(s, run_id, 0, "prompt", input, ids, T, &err)) goto fail;
    int L = m->cfg.n_layers;
    printf("run %lld: decoder lens on %s (%d layers) -> %s\n", (long long)run_id, input, L + 1, db); // L >= 1
    for (int v = 0; v < vars->n_vars; v++) {
        const char *name = vars->vars[v].name;
        if (!strcmp(name, "bos") || !strcmp(name, "one") || strchr(name, '.')) continue;
        const mech_rasp_node *node = mech_rasp_program_find(p, name);
        int is_bool = node && trace && trace->n > 0 && !mech_rasp_node_is_selector(node) &&
                      trace->vals[(size_t)node->id * trace->n].type == MECH_RASP_BOOL;
        for (int l = 0; l <= L; l++) {
            const mech_lens_decoded *r0 = &rows[((size_t)l * vars->n_vars + v) * T];
            { // every layer: "-" until the variable is computed
                printf("  %-14s layer %d:", l == 0 ? name : "", l);
                for (int t = 1; t < T; t++) {
                    const mech_lens_decoded *r = r0 + t;
                    if (!r->present) printf(" -");
                    else if (vars->vars[v].numerical) {
                        // written as the interpreter writes numbers and booleans (`mech rasp --trace`)
                        mech_buf nb = {0};
                        mech_rasp_value x = mech_rasp_float(r->number);
                        if (is_bool && (r->number == 0 || r->number == 1)) x.type = MECH_RASP_BOOL, x.b = r->number == 1;
                        mech_rasp_value_json(&nb, &x);
                        printf(" %s", nb.data ? nb.data : "?");
                        mech_buf_free(&nb);
                    } else printf(" %s", r->has_value ? r->value : "null");
                }
                printf("\n");
            }
            for (int t = 1; t < T; t++) {
                const mech_lens_decoded *r = r0 + t;
                // token: a categorical value's index among the variable's
                // dimensions (its mech.rasp.residual labels), -1 for none
                int vi = -1;
                for (int d = 0; r->value && d < vars->vars[v].n_dims && vi < 0; d++)
                    if (vars->values[vars->vars[v].first_dim + d] == r->value) vi = d;
                mech_result res = {.item = 0, .site = "decoder_lens", .layer = l, .pos = t - 1, .head = -1, .token = vi,
                                   .rank = r->present ? 1 : 0, .metric = name,
                                   .value = vars->vars[v].numerical ? r->number : r->has_value};
                if (mech_store_result(s, run_id, &res, &err)) goto fail;
            }
        }
    }
    if (mech_store_commit(s, &err) || mech_store_run_finish(s, run_id, "done", &err)) goto fail;
    goto done;
fail:
    rc = cli_run_failed(cmd, s, run_id, &err);
    goto done;
fail_early: // before the run is opened (the input parsed already: evaluation failed)
    rc = cli_fail(cmd, &err);
done:
    mech_rasp_trace_free(trace);
    mech_store_close(s);
    mech_free(rows);
    mech_run_free(run);
    free(ids);
    mech_lens_vars_free(vars);
    mech_rasp_program_free(p);
    mech_model_free(m);
    return rc;
}

// Per-row measures as arrays [layer, batch, pos]: kl, entropy, and with a
// target its probability and rank.
static mech_status store_arrays(mech_store *s, int64_t run_id, const mech_lens_row *rows, size_t n_rows, int L1, int B,
                                int T, int has_target, mech_err *err) {
    size_t n = (size_t)L1 * B * T;
    float *a = mech_malloc(4 * n * sizeof *a);
    if (!a) return mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < 4 * n; i++) a[i] = NAN;
    for (size_t i = 0; i < n_rows; i++) {
        const mech_lens_row *r = &rows[i];
        size_t at = ((size_t)r->layer * B + r->batch) * T + r->pos;
        if (at >= n) continue;
        a[at] = (float)r->kl, a[n + at] = (float)r->entropy;
        a[2 * n + at] = (float)r->target_prob, a[3 * n + at] = (float)r->target_rank;
    }
    int64_t shape[3] = {L1, B, T};
    static const char *const names[4] = {"kl", "entropy", "target_prob", "target_rank"};
    mech_status st = MECH_OK;
    for (int k = 0; k < (has_target ? 4 : 2) && !st; k++)
        st = mech_store_tensor(s, run_id, names[k], a + (size_t)k * n, 3, shape, err);
    mech_free(a);
    return st;
}

// One lens run's rows in one transaction (they land whole or not at all):
// the prompts, top-k probabilities, KL, entropy and target of every row, the
// arrays of store_arrays and, with --tuned (kl_layer not NULL), the mean KL of
// each layer as a tensor kl_by_layer (L+1) and as results (position -1).
static mech_status store_lens(mech_store *s, int64_t run_id, const cli_inputs *in, const int *is_ids,
                              const char *const *texts, const mech_lens_row *rows, size_t n_rows, int L, int has_target,
                              const double *kl_layer, mech_err *err) {
    mech_status st;
    if ((st = mech_store_begin(s, err))) return st;
    for (int b = 0; b < in->B; b++)
        if ((st = mech_store_prompt(s, run_id, b, "prompt", is_ids[b] ? NULL : texts[b],
                                    in->ids + (size_t)b * in->T + in->start[b], in->len[b], err)))
            return st;
    for (size_t i = 0; i < n_rows; i++) {
        const mech_lens_row *row = &rows[i];
        mech_result r = {.item = row->batch, .site = "lens", .layer = row->layer, .pos = row->pos, .head = -1,
                         .token = -1, .rank = -1};
        for (int j = 0; j < row->k; j++) {
            r.token = row->top_ids[j], r.rank = j, r.metric = "prob", r.value = row->top_probs[j];
            if ((st = mech_store_result(s, run_id, &r, err))) return st;
        }
        r.token = -1, r.rank = -1;
        struct { const char *metric; double value; } rowm[2] = {{"kl", row->kl}, {"entropy", row->entropy}};
        for (int j = 0; j < 2; j++) {
            r.metric = rowm[j].metric, r.value = rowm[j].value;
            if ((st = mech_store_result(s, run_id, &r, err))) return st;
        }
        if (row->target >= 0) {
            r.token = row->target, r.rank = (int)row->target_rank, r.metric = "target_prob", r.value = row->target_prob;
            if ((st = mech_store_result(s, run_id, &r, err))) return st;
        }
    }
    if ((st = store_arrays(s, run_id, rows, n_rows, L + 1, in->B, in->T, has_target, err))) return st;
    if (kl_layer) {
        float kf[L + 1];
        int64_t shape[1] = {L + 1};
        for (int l = 0; l <= L; l++) {
            kf[l] = (float)kl_layer[l];
            mech_result r = {.item = 0, .site = "lens", .layer = l, .pos = -1, .head = -1, .token = -1, .rank = -1,
                             .metric = "kl_mean", .value = kl_layer[l]};
            if ((st = mech_store_result(s, run_id, &r, err))) return st;
        }
        if ((st = mech_store_tensor(s, run_id, "kl_by_layer", kf, 1, shape, err))) return st;
    }
    return mech_store_commit(s, err);
}

int cmd_lens(int argc, char **argv) {
    const char *cmd = "lens", *model = NULL, *db = "mech.db", *target_s = NULL, *v, *rasp_input = NULL, *tuned = NULL;
    const char *texts[MAX_SEQS];
    int is_ids[MAX_SEQS], n = 0, k_given = 0;
    long k = 5;
    cli_batch_opts bo = CLI_BATCH_OPTS_INIT;
    for (int i = 1; i < argc; i++) {
        int r;
        if ((r = cli_opt(cmd, argc, argv, &i, "--model", &model))) { if (r < 0) return 2; }
        else if ((r = cli_opt(cmd, argc, argv, &i, "--db", &db))) { if (r < 0) return 2; }
        else if ((r = cli_opt(cmd, argc, argv, &i, "--target", &target_s))) { if (r < 0) return 2; }
        else if ((r = cli_opt(cmd, argc, argv, &i, "--top-k", &v))) {
            if (r < 0 || cli_int(cmd, "--top-k", v, 1, MECH_LENS_MAX_K, &k)) return 2;
            k_given = 1;
        } else if ((r = cli_opt(cmd, argc, argv, &i, "--input", &rasp_input))) {
            if (r < 0) return 2;
        } else if ((r = cli_opt(cmd, argc, argv, &i, "--tuned", &tuned))) {
            if (r < 0) return 2;
        } else if ((r = cli_seq_opt(cmd, argc, argv, &i, texts, is_ids, &n, MAX_SEQS)) ||
                   (r = cli_batch_opt(cmd, argc, argv, &i, &bo))) {
            if (r < 0) return 2;
        } else return cli_usage(cmd, "unknown argument '%s'", argv[i]);
    }
    if (!model) return cli_usage(cmd, "--model is required");
    int n_prompt = 0;
    for (int i = 0; i < n; i++) n_prompt += is_ids[i] == 0;
    if (bo.special && !n_prompt) return cli_usage(cmd, "--allow-special applies to --prompt text (there is none)");
    if (rasp_input) {
        if (n) return cli_usage(cmd, "--input (a compiled RASP model's input) goes without --prompt/--ids");
        if (tuned) return cli_usage(cmd, "--tuned: the decoder lens (--input) reads variables; a tuned lens reads tokens");
        if (target_s || k_given)
            return cli_usage(cmd, "%s: the decoder lens (--input) reads variables, not tokens", target_s ? "--target" : "--top-k");
        return decoder_lens(cmd, model, rasp_input, db, argc, argv);
    }
    mech_err err = {0};
    mech_model *m = NULL;
    int rc = cli_model_load_blocks(cmd, model, "the lens has no layers to read", &m);
    if (rc) return rc;
    if (mech_model_meta(m, "mech.rasp.source")) {
        // its logits are the readout, not a vocabulary: the logit lens would misname them
        mech_model_free(m);
        return cli_usage(cmd, "%s is a compiled RASP model: give its input with --input \"a b c\" for the decoder "
                         "lens (the logit lens reads a language model's vocabulary)", model);
    }
    mech_tuned_lens *tl = NULL; // before anything is run or opened: a bad file changes nothing
    if (tuned && mech_tuned_lens_load(tuned, m, &tl, &err)) {
        mech_model_free(m);
        return cli_fail(cmd, &err);
    }
    cli_inputs in;
    rc = cli_batch(cmd, m, texts, is_ids, n, &bo, &in);
    if (rc) {
        mech_tuned_lens_free(tl);
        mech_model_free(m);
        return rc;
    }
    int32_t *targets = NULL;
    if (target_s) {
        // a token id, or text that must be exactly one token
        int32_t *t = NULL;
        size_t nt = 0;
        long id = -1;
        int digits = *target_s != 0;
        for (const char *p = target_s; *p; p++) digits &= *p >= '0' && *p <= '9';
        if (digits && strlen(target_s) <= 9) id = strtol(target_s, NULL, 10); // all digits: an id
        if (digits && (id < 0 || id >= m->cfg.d_vocab)) {
            cli_inputs_free(&in);
            mech_tuned_lens_free(tl);
            int V = m->cfg.d_vocab;
            mech_model_free(m);
            return cli_usage(cmd, "--target %s: token ids of this model are 0 to %d", target_s, V - 1);
        }
        if (digits) {
            t = malloc(sizeof *t), nt = 1;
            if (t) t[0] = (int32_t)id;
        } else if (mech_tokenizer_encode(in.tok, target_s, strlen(target_s), 0, &t, &nt, &err) || nt != 1) {
            mech_free(t);
            cli_inputs_free(&in);
            mech_tuned_lens_free(tl);
            mech_model_free(m);
            return cli_usage(cmd, "--target '%s' is not one token (an id, or text of one token)", target_s);
        }
        targets = malloc((size_t)in.B * in.T * sizeof *targets); // one per position
        for (int b = 0; targets && b < in.B * in.T; b++) targets[b] = t[0];
        free(t);
    }
    mech_run *run = NULL;
    mech_lens_row *rows = NULL, *trows = NULL;
    size_t n_rows = 0, n_trows = 0;
    mech_store *s = NULL;
    int64_t run_id = 0, logit_run = 0;
    int L = m->cfg.n_layers;
    double *kl_layer = NULL; // with --tuned: (2, L+1) the mean KL of each layer, logit lens then tuned lens
    char params[256];
    snprintf(params, sizeof params, "{\"top_k\": %ld, \"target\": %d, \"B\": %d, \"T\": %d}", k,
             targets ? (int)targets[0] : -1, in.B, in.T);
    if (mech_run_new(m, in.B, in.T, &run, &err) || mech_run_set_mask(run, in.mask, &err) || mech_lens_cache(run, &err) ||
        mech_run_forward(run, in.ids, &err) ||
        mech_lens_logit(m, run, (int)k, targets, &rows, &n_rows, &err) ||
        (tl && mech_lens_tuned(m, run, tl, (int)k, targets, &trows, &n_trows, &err))) {
        rc = cli_fail(cmd, &err);
        goto done;
    }
    if (tl) {
        if (!(kl_layer = malloc((size_t)2 * (L + 1) * sizeof *kl_layer))) {
            mech_err_set(&err, MECH_ERR_NOMEM, "out of memory");
            rc = cli_fail(cmd, &err);
            goto done;
        }
        mech_lens_kl_by_layer(rows, n_rows, L, kl_layer);
        mech_lens_kl_by_layer(trows, n_trows, L, kl_layer + L + 1);
    }
    if ((rc = cli_run_open(cmd, db, "lens", model, argc, argv, params, &s, &run_id))) goto done;
    if (store_lens(s, run_id, &in, is_ids, texts, rows, n_rows, L, targets != NULL, kl_layer, &err) ||
        mech_store_run_finish(s, run_id, "done", &err))
        goto db_fail;
    if (tl) { // the tuned lens: a lens run of its own, its parameters naming the lens file
        mech_store_close(s);
        s = NULL;
        logit_run = run_id, run_id = 0;
        mech_buf tp = {0};
        mech_buf_append(&tp, params, strlen(params) - 1);
        mech_buf_puts(&tp, ", \"tuned\": ");
        mech_buf_json_string(&tp, tuned, strlen(tuned));
        mech_buf_printf(&tp, ", \"logit_run\": %lld}", (long long)logit_run);
        rc = tp.oom ? cli_fail(cmd, &(mech_err){.code = MECH_ERR_NOMEM, .msg = "out of memory"})
                    : cli_run_open(cmd, db, "lens", model, argc, argv, tp.data, &s, &run_id);
        mech_buf_free(&tp);
        if (rc) goto done;
        if (store_lens(s, run_id, &in, is_ids, texts, trows, n_trows, L, targets != NULL, kl_layer + L + 1, &err) ||
            mech_store_run_finish(s, run_id, "done", &err))
            goto db_fail;
    }
    // The last position of the first sequence, layer by layer.
    printf("run %lld: logit lens, %d sequence%s x %s%d token%s, %d layers -> %s\n", (long long)(tl ? logit_run : run_id),
           in.B, cli_s(in.B), in.mask ? "up to " : "", in.T, cli_s(in.T), L + 1, db);
    if (tl) {
        printf("run %lld: tuned lens %s, the same inputs -> %s\n", (long long)run_id, tuned, db);
        printf("%6s  %-16s %9s %9s  %-16s %9s %9s\n", "layer", "logit lens", "prob", "KL", "tuned lens", "prob", "KL");
    } else
        printf("%6s  %-16s %9s %9s %9s%s\n", "layer", "top token", "prob", "KL", "entropy", targets ? "  target rank, prob" : "");
    for (size_t i = 0; i < n_rows; i++) {
        const mech_lens_row *row = &rows[i];
        if (row->batch != 0 || row->pos != in.len[0] - 1) continue;
        mech_buf name = {0};
        cli_token_text(&name, in.tok, row->top_ids[0]);
        // %g, not %f: a probability of 3e-7 must not print as 0.0000
        if (tl) {
            const mech_lens_row *tr = &trows[i]; // the same order: layer, batch, position
            mech_buf tname = {0};
            cli_token_text(&tname, in.tok, tr->top_ids[0]);
            printf("%6d  %-16s %9.4g %9.4g  %-16s %9.4g %9.4g\n", row->layer, name.data, row->top_probs[0], row->kl,
                   tname.data, tr->top_probs[0], tr->kl);
            mech_buf_free(&tname);
        } else {
            printf("%6d  %-16s %9.4g %9.4g %9.4g", row->layer, name.data, row->top_probs[0], row->kl, row->entropy);
            if (targets) printf("  %lld, %.4g", (long long)row->target_rank, row->target_prob);
            printf("\n");
        }
        mech_buf_free(&name);
    }
    if (tl) {
        size_t n_pos = n_rows / (size_t)(L + 1);
        printf("KL(final || layer), mean over all %zu position%s (nats):\n", n_pos, cli_s((long long)n_pos));
        printf("%6s %12s %12s\n", "layer", "logit lens", "tuned lens");
        for (int l = 0; l <= L; l++) printf("%6d %12.4g %12.4g\n", l, kl_layer[l], kl_layer[L + 1 + l]);
    }
    goto done;
db_fail:
    rc = cli_run_failed(cmd, s, run_id, &err);
done:
    mech_store_close(s);
    mech_free(rows);
    mech_free(trows);
    free(kl_layer);
    mech_tuned_lens_free(tl);
    mech_run_free(run);
    free(targets);
    cli_inputs_free(&in);
    mech_model_free(m);
    return rc;
}
