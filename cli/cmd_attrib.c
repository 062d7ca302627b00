/*
** cli/cmd_attrib.c: `mech attrib`: direct logit attribution of a logit or a
** logit difference to the embedding, every head, every attention bias and
** every MLP, plus the accumulated residual per layer; one database run.
*/
#include "cli/cli.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SEQS 64

// A token given as an id or as text that is exactly one token.
static int one_token(const char *cmd, const char *opt, const char *s, const mech_tokenizer *tok, int V, int32_t *out) {
    // all digits is an id (as every number on the command line: no sign or space)
    int digits = *s != 0 && strlen(s) <= 9;
    for (const char *p = s; digits && *p; p++) digits = *p >= '0' && *p <= '9';
    long id = digits ? strtol(s, NULL, 10) : -1;
    if (digits) {
        if (id < 0 || id >= V) return cli_usage(cmd, "%s %ld: expected a token id below %d", opt, id, V);
        *out = (int32_t)id;
        return 0;
    }
    int32_t *ids = NULL;
    size_t n = 0;
    mech_err err = {0};
    int bad = mech_tokenizer_encode(tok, s, strlen(s), 0, &ids, &n, &err) || n != 1;
    if (!bad) *out = ids[0];
    mech_free(ids);
    return bad ? cli_usage(cmd, "%s '%s' is not one token (an id, or text of one token such as \" Mary\")", opt, s) : 0;
}

// A compiled model's answer: one of its program's output values (the
// readout's, as in pair files for `mech patch`), as the index of its logit;
// a numerical output has one logit, named by the output variable.
static int compiled_answer(const char *cmd, const char *opt, const char *s, const mech_model *m, int32_t *out) {
    const char *ro = mech_model_meta(m, "mech.rasp.readout");
    mech_json *j = NULL;
    mech_err err = {0};
    if (!ro || mech_json_parse(ro, strlen(ro), &j, &err)) {
        mech_json_free(j);
        fprintf(stderr, "mech %s: error: %s: mech.rasp.readout metadata missing or malformed\n", cmd, m->path);
        return 1;
    }
    const mech_json *vals = mech_json_get(j, "values"), *enc = mech_json_get(j, "encoding"),
                    *node = mech_json_get(j, "node");
    const char *name = node && node->type == MECH_JSON_STRING ? node->str : "output";
    int rc = 0;
    if (enc && enc->type == MECH_JSON_STRING && !strcmp(enc->str, "numerical")) {
        // one logit: the output's value, nothing to take a difference from
        if (strcmp(opt, "--answer"))
            rc = cli_usage(cmd, "%s: %s's output '%s' is numerical (one value): there is no other output to "
                           "subtract", opt, m->path, name);
        else if (strcmp(s, name))
            rc = cli_usage(cmd, "%s '%s': %s's output is numerical: give its name, %s %s", opt, s, m->path, opt, name);
        else *out = 0;
        mech_json_free(j);
        return rc;
    }
    for (size_t i = 0; vals && vals->type == MECH_JSON_ARRAY && i < vals->n; i++) {
        const mech_json *x = &vals->items[i];
        char *e;
        double d = x->type == MECH_JSON_NUMBER ? strtod(s, &e) : 0;
        int eq = (x->type == MECH_JSON_STRING && x->len == strlen(s) && !memcmp(x->str, s, x->len)) ||
                 (x->type == MECH_JSON_NUMBER && e != s && !*e && d == x->num) ||
                 (x->type == MECH_JSON_BOOL && !strcmp(s, x->boolean ? "true" : "false"));
        if (eq) {
            *out = (int32_t)i;
            mech_json_free(j);
            return 0;
        }
    }
    mech_buf b = {0};
    for (size_t i = 0; vals && vals->type == MECH_JSON_ARRAY && i < vals->n && i < 20; i++) {
        const mech_json *x = &vals->items[i];
        if (i) mech_buf_puts(&b, " ");
        if (x->type == MECH_JSON_STRING) mech_buf_printf(&b, "%.*s", (int)x->len, x->str);
        else if (x->type == MECH_JSON_BOOL) mech_buf_puts(&b, x->boolean ? "true" : "false");
        else mech_buf_printf(&b, "%g", x->num);
    }
    if (vals && vals->type == MECH_JSON_ARRAY && vals->n > 20) mech_buf_puts(&b, " ...");
    rc = cli_usage(cmd, "%s '%s' is not an output value of %s's program (%s); expected one of: %s", opt, s, m->path,
                   name, b.data ? b.data : "");
    mech_buf_free(&b);
    mech_json_free(j);
    return rc;
}

// The components [n_comp, B] and the accumulated residual [L+1, B] as arrays
// (the component order is mech_dla's labels: embed, then per layer its
// heads, attn_bias and mlp).
static mech_status store_arrays(mech_store *s, int64_t run_id, const mech_dla *d, mech_err *err) {
    size_t na = (size_t)d->n_comp * d->B, nc = (size_t)(d->n_layers + 1) * d->B;
    float *buf = mech_malloc((na > nc ? na : nc) * sizeof *buf);
    if (!buf) return mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < na; i++) buf[i] = (float)d->attr[i];
    int64_t shape[2] = {d->n_comp, d->B};
    mech_status st = mech_store_tensor(s, run_id, "components", buf, 2, shape, err);
    for (size_t i = 0; i < nc; i++) buf[i] = (float)d->accum[i];
    shape[0] = d->n_layers + 1;
    if (!st) st = mech_store_tensor(s, run_id, "accumulated", buf, 2, shape, err);
    mech_free(buf);
    return st;
}

int cmd_attrib(int argc, char **argv) {
    const char *cmd = "attrib", *model = NULL, *db = "mech.db", *answer_s = NULL, *wrong_s = NULL, *v, *ln_s = "cached";
    const char *texts[MAX_SEQS];
    int is_ids[MAX_SEQS], n = 0;
    long pos = -1, top = 10;
    cli_batch_opts bo = CLI_BATCH_OPTS_INIT;
    for (int i = 1; i < argc; i++) {
        int r;
        if ((r = cli_opt(cmd, argc, argv, &i, "--model", &model))) { if (r < 0) return 2; }
        else if ((r = cli_opt(cmd, argc, argv, &i, "--db", &db))) { if (r < 0) return 2; }
        else if ((r = cli_opt(cmd, argc, argv, &i, "--answer", &answer_s))) { if (r < 0) return 2; }
        else if ((r = cli_opt(cmd, argc, argv, &i, "--wrong", &wrong_s))) { if (r < 0) return 2; }
        else if ((r = cli_opt(cmd, argc, argv, &i, "--ln", &ln_s))) {
            if (r < 0) return 2;
            if (strcmp(ln_s, "cached") && strcmp(ln_s, "exact"))
                return cli_usage(cmd, "--ln '%s': expected cached or exact", ln_s);
        }
        else if ((r = cli_opt(cmd, argc, argv, &i, "--pos", &v))) {
            // negative counts from the end; checked against the sequences below
            if (r < 0 || cli_int(cmd, "--pos", v, -(1L << 20), 1 << 20, &pos)) return 2;
        } else if ((r = cli_opt(cmd, argc, argv, &i, "--top", &v))) {
            if (r < 0 || cli_int(cmd, "--top", v, 1, 100000, &top)) return 2;
        } else if ((r = cli_seq_opt(cmd, argc, argv, &i, texts, is_ids, &n, MAX_SEQS)) ||
                   (r = cli_batch_opt(cmd, argc, argv, &i, &bo))) {
            if (r < 0) return 2;
        } else return cli_usage(cmd, "unknown argument '%s'", argv[i]);
    }
    if (!model) return cli_usage(cmd, "--model is required");
    if (!answer_s) return cli_usage(cmd, "--answer TOKEN is required (and --wrong TOKEN for a logit difference)");
    mech_err err = {0};
    mech_model *m = NULL;
    // with no blocks the logit would be the embedding's alone: nothing to split
    int rc = cli_model_load_blocks(cmd, model, "no head or MLP to attribute to", &m);
    if (rc) return rc;
    cli_inputs in;
    rc = cli_batch(cmd, m, texts, is_ids, n, &bo, &in);
    if (rc) {
        mech_model_free(m);
        return rc;
    }
    int32_t answer = 0, wrong = -1;
    mech_run *run = NULL;
    mech_dla *d = NULL;
    mech_store *s = NULL;
    int64_t run_id = 0;
    int32_t *ans = NULL, *wr = NULL;
    // --pos within every sequence: 0..len-1, or -len..-1 from its end
    for (int b = 0; b < in.B; b++)
        if (pos >= in.len[b] || pos < -(long)in.len[b]) {
            rc = in.B > 1 ? cli_usage(cmd, "--pos %ld: sequence %d has %d token%s (BOS included): expected %d to %d",
                                      pos, b + 1, in.len[b], cli_s(in.len[b]), -in.len[b], in.len[b] - 1)
                          : cli_usage(cmd, "--pos %ld: the sequence has %d token%s (BOS included): expected %d to %d",
                                      pos, in.len[b], cli_s(in.len[b]), -in.len[b], in.len[b] - 1);
            goto done;
        }
    if (mech_model_meta(m, "mech.rasp.source")) {
        // a compiled model's logits are its program's output values, not tokens
        if ((rc = compiled_answer(cmd, "--answer", answer_s, m, &answer)) ||
            (wrong_s && (rc = compiled_answer(cmd, "--wrong", wrong_s, m, &wrong))))
            goto done;
    } else if ((rc = one_token(cmd, "--answer", answer_s, in.tok, m->cfg.d_vocab, &answer)) ||
               (wrong_s && (rc = one_token(cmd, "--wrong", wrong_s, in.tok, m->cfg.d_vocab, &wrong))))
        goto done;
    if (wrong == answer) {
        rc = cli_usage(cmd, "--answer %s and --wrong %s are the same %s: their logit difference is 0 by construction",
                       answer_s, wrong_s, mech_model_meta(m, "mech.rasp.source") ? "output value" : "token");
        goto done;
    }
    ans = malloc((size_t)in.B * sizeof *ans), wr = malloc((size_t)in.B * sizeof *wr);
    for (int b = 0; ans && wr && b < in.B; b++) ans[b] = answer, wr[b] = wrong;
    if (!ans || !wr || mech_run_new(m, in.B, in.T, &run, &err) || mech_run_set_mask(run, in.mask, &err) ||
        mech_lens_cache(run, &err) ||
        mech_run_forward(run, in.ids, &err) || mech_lens_dla_ex(m, run, (int)pos, ans, wrong >= 0 ? wr : NULL,
                         strcmp(ln_s, "exact") ? MECH_DLA_LN_CACHED : MECH_DLA_LN_EXACT, &d, &err)) {
        // --ln exact on a model with a real final LayerNorm: the option does not apply
        rc = run && !d && err.code == MECH_ERR_ARG && !strcmp(ln_s, "exact") ? cli_usage(cmd, "--ln exact: %s", err.msg)
                                                                            : cli_fail(cmd, &err);
        goto done;
    }
    char params[200];
    snprintf(params, sizeof params, "{\"answer\": %d, \"wrong\": %d, \"pos\": %ld, \"ln\": \"%s\"}", (int)answer,
             (int)wrong, pos, ln_s);
    if ((rc = cli_run_open(cmd, db, "attrib", model, argc, argv, params, &s, &run_id))) goto done;
    if (mech_store_begin(s, &err)) goto db_fail;
    int P = 0;
    for (int b = 0; b < in.B; b++) {
        P = pos < 0 ? in.len[b] + (int)pos : (int)pos; // this sequence's own position
        if (mech_store_prompt(s, run_id, b, "prompt", is_ids[b] ? NULL : texts[b], in.ids + (size_t)b * in.T + in.start[b],
                              in.len[b], &err))
            goto db_fail;
        for (int c = 0; c < d->n_comp; c++) {
            // labels: "embed", "L{l}H{h}", "L{l}.attn_bias", "L{l}.mlp"
            const char *lab = d->labels[c];
            int layer = -1, head = -1;
            const char *metric = "embed";
            if (lab[0] == 'L') {
                layer = atoi(lab + 1);
                const char *rest = strpbrk(lab, "H.");
                if (rest && *rest == 'H') head = atoi(rest + 1), metric = "head";
                else metric = strstr(lab, "mlp") ? "mlp" : "attn_bias";
            }
            mech_result r = {.item = b, .site = "attrib", .layer = layer, .pos = P, .head = head, .token = answer,
                             .rank = -1, .metric = metric, .value = d->attr[(size_t)c * d->B + b]};
            if (mech_store_result(s, run_id, &r, &err)) goto db_fail;
        }
        for (int l = 0; l <= d->n_layers; l++) {
            mech_result r = {.item = b, .site = "attrib", .layer = l, .pos = P, .head = -1, .token = answer, .rank = -1,
                             .metric = "accumulated", .value = d->accum[(size_t)l * d->B + b]};
            if (mech_store_result(s, run_id, &r, &err)) goto db_fail;
        }
        mech_result r = {.item = b, .site = "attrib", .layer = -1, .pos = P, .head = -1, .token = answer, .rank = -1,
                         .metric = "bias", .value = d->bias[b]};
        if (mech_store_result(s, run_id, &r, &err)) goto db_fail;
        r.metric = "logit", r.value = d->logit[b];
        if (mech_store_result(s, run_id, &r, &err)) goto db_fail;
    }
    if (store_arrays(s, run_id, d, &err)) goto db_fail;
    if (mech_store_commit(s, &err) || mech_store_run_finish(s, run_id, "done", &err)) goto db_fail;
    printf("run %lld: attribution of %s at position %d -> %s\n", (long long)run_id,
           wrong >= 0 ? "the logit difference" : "the logit", pos < 0 ? in.len[0] + (int)pos : (int)pos, db);
    printf("  logit %.4f = sum of components + bias %.4f\n", d->logit[0], d->bias[0]);
    // the largest components of the first sequence
    int *order = malloc((size_t)d->n_comp * sizeof *order);
    for (int c = 0; order && c < d->n_comp; c++) order[c] = c;
    for (int i = 0; order && i < d->n_comp && i < top; i++) {
        int best = i;
        for (int j = i + 1; j < d->n_comp; j++)
            if (fabs(d->attr[(size_t)order[j] * d->B]) > fabs(d->attr[(size_t)order[best] * d->B])) best = j;
        int t = order[i];
        order[i] = order[best], order[best] = t;
        printf("  %-16s %+.4f\n", d->labels[order[i]], d->attr[(size_t)order[i] * d->B]);
    }
    free(order);
    goto done;
db_fail:
    rc = cli_run_failed(cmd, s, run_id, &err);
done:
    mech_store_close(s);
    mech_dla_free(d);
    mech_run_free(run);
    free(ans), free(wr);
    cli_inputs_free(&in);
    mech_model_free(m);
    return rc;
}
