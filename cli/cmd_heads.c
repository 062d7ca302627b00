/*
** cli/cmd_heads.c: `mech heads`: previous-token, duplicate-token and
** induction scores of every head, on prompts or on repeated random tokens,
** written to the results database as one run.
*/
#include "cli/cli.h"

#include <stdlib.h>
#include <string.h>

#define MAX_SEQS 64

int cmd_heads(int argc, char **argv) {
    const char *cmd = "heads", *model = NULL, *db = "mech.db", *v;
    const char *texts[MAX_SEQS];
    int is_ids[MAX_SEQS], n = 0;
    long random_len = 0, batch = 8, seed = 1;
    const char *random_only = NULL; // --batch/--seed: options of --random
    cli_batch_opts bo = CLI_BATCH_OPTS_INIT;
    for (int i = 1; i < argc; i++) {
        int r;
        if ((r = cli_opt(cmd, argc, argv, &i, "--model", &model))) { if (r < 0) return 2; }
        else if ((r = cli_opt(cmd, argc, argv, &i, "--db", &db))) { if (r < 0) return 2; }
        else if ((r = cli_opt(cmd, argc, argv, &i, "--random", &v))) {
            if (r < 0 || cli_int(cmd, "--random", v, 1, 100000, &random_len)) return 2;
        } else if ((r = cli_opt(cmd, argc, argv, &i, "--batch", &v))) {
            if (r < 0 || cli_int(cmd, "--batch", v, 1, 1024, &batch)) return 2;
            random_only = "--batch";
        } else if ((r = cli_opt(cmd, argc, argv, &i, "--seed", &v))) {
            if (r < 0 || cli_int(cmd, "--seed", v, 0, 2147483647L, &seed)) return 2;
            random_only = "--seed";
        } else if ((r = cli_seq_opt(cmd, argc, argv, &i, texts, is_ids, &n, MAX_SEQS)) ||
                   (r = cli_batch_opt(cmd, argc, argv, &i, &bo))) {
            if (r < 0) return 2;
        } else return cli_usage(cmd, "unknown argument '%s'", argv[i]);
    }
    if (!model) return cli_usage(cmd, "--model is required");
    if (!n && !random_len) return cli_usage(cmd, "give --prompt/--ids, or --random N for repeated random tokens");
    if (n && random_len) return cli_usage(cmd, "--random goes without --prompt/--ids");
    if (random_only && !random_len) return cli_usage(cmd, "%s applies to --random N (random tokens)", random_only);
    if (random_len && (bo.special || bo.pad_left))
        return cli_usage(cmd, "--random makes sequences of one length from ids: --allow-special and --padding-side do "
                         "not apply");
    mech_err err = {0};
    mech_model *m = NULL;
    int rc = cli_model_load_blocks(cmd, model, "it has no heads to score", &m);
    if (rc) return rc;
    cli_inputs in = {0};
    if (random_len) {
        // As TransformerLens's induction test: [BOS] r r with r random tokens
        // (avoiding the lowest ids); BOS unless --no-prepend-bos.
        int32_t bos = cli_model_bos(m, m->tok);
        if (bo.bos == 0) bos = -1;
        if (bo.bos == 1 && bos < 0) {
            mech_model_free(m);
            return cli_usage(cmd, "--prepend-bos: this model's vocabulary has no BOS token (<|endoftext|>)");
        }
        in.B = (int)batch, in.T = (bos >= 0) + 2 * (int)random_len, in.bos = bos;
        if (in.T > m->cfg.n_ctx) {
            int n_ctx = m->cfg.n_ctx;
            mech_model_free(m);
            return cli_usage(cmd, "--random %ld makes %d tokens%s, more than the model's context of %d", random_len,
                             in.T, bos >= 0 ? " with BOS" : "", n_ctx);
        }
        in.ids = mech_malloc((size_t)in.B * in.T * sizeof *in.ids);
        in.start = calloc((size_t)in.B, sizeof *in.start);
        in.len = malloc((size_t)in.B * sizeof *in.len);
        for (int b = 0; in.len && b < in.B; b++) in.len[b] = in.T;
        // the compiled models' vocabularies are small: every id but BOS
        int32_t lo = m->cfg.d_vocab > 200 ? 100 : bos == 0 ? 1 : 0;
        if (!in.ids || !in.start || !in.len ||
            mech_heads_repeated_tokens((uint64_t)seed, in.B, (int)random_len, lo, m->cfg.d_vocab, bos, in.ids, &err)) {
            rc = in.ids && in.start && in.len ? cli_fail(cmd, &err) : (fprintf(stderr, "mech heads: error: out of memory\n"), 1);
            cli_inputs_free(&in);
            mech_model_free(m);
            return rc;
        }
    } else if ((rc = cli_batch(cmd, m, texts, is_ids, n, &bo, &in))) {
        mech_model_free(m);
        return rc;
    }
    int L = m->cfg.n_layers, NH = m->cfg.n_heads;
    double *scores = malloc((size_t)MECH_HEAD_KIND_COUNT_ * L * NH * sizeof *scores);
    mech_run *run = NULL;
    mech_store *s = NULL;
    int64_t run_id = 0;
    if (!scores || mech_run_new(m, in.B, in.T, &run, &err) || mech_run_set_mask(run, in.mask, &err) ||
        mech_run_cache(run, "blocks.*.attn.hook_pattern", &err) || mech_run_forward(run, in.ids, &err)) {
        rc = scores ? cli_fail(cmd, &err) : 1;
        goto done;
    }
    for (int k = 0; k < MECH_HEAD_KIND_COUNT_; k++)
        if (mech_heads_score(m, run, in.ids, (mech_head_kind)k, MECH_HEAD_MUL, 0, 0, scores + (size_t)k * L * NH, &err)) {
            rc = cli_fail(cmd, &err);
            goto done;
        }
    char params[200];
    snprintf(params, sizeof params,
             "{\"random\": %ld, \"batch\": %d, \"seed\": %ld, \"T\": %d, \"measure\": \"mul\", \"bos\": %d, "
             "\"padding_side\": \"%s\"}",
             random_len, in.B, seed, in.T, (int)in.bos, bo.pad_left ? "left" : "right");
    if ((rc = cli_run_open(cmd, db, "heads", model, argc, argv, params, &s, &run_id))) goto done;
    if (mech_store_begin(s, &err)) goto db_fail;
    for (int b = 0; b < in.B; b++)
        if (mech_store_prompt(s, run_id, b, "prompt", n && !is_ids[b] ? texts[b] : NULL,
                              in.ids + (size_t)b * in.T + in.start[b], in.len[b], &err))
            goto db_fail;
    for (int k = 0; k < MECH_HEAD_KIND_COUNT_; k++)
        for (int l = 0; l < L; l++)
            for (int h = 0; h < NH; h++) {
                mech_result r = {.item = -1, .site = "heads", .layer = l, .pos = -1, .head = h, .token = -1, .rank = -1,
                                 .metric = mech_head_kind_name((mech_head_kind)k),
                                 .value = scores[((size_t)k * L + l) * NH + h]};
                if (mech_store_result(s, run_id, &r, &err)) goto db_fail;
            }
    // all three scores as one array [kind, layer, head], kinds in the order
    // previous_token, duplicate_token, induction
    int64_t shape[3] = {MECH_HEAD_KIND_COUNT_, L, NH};
    float *f = mech_malloc((size_t)MECH_HEAD_KIND_COUNT_ * L * NH * sizeof *f);
    for (size_t i = 0; f && i < (size_t)MECH_HEAD_KIND_COUNT_ * L * NH; i++) f[i] = (float)scores[i];
    mech_status tst = f ? mech_store_tensor(s, run_id, "head_scores", f, 3, shape, &err)
                        : mech_err_set(&err, MECH_ERR_NOMEM, "out of memory");
    mech_free(f);
    if (tst) goto db_fail;
    if (mech_store_commit(s, &err) || mech_store_run_finish(s, run_id, "done", &err)) goto db_fail;
    if (in.mask) printf("run %lld: head scores on %d sequences of up to %d tokens -> %s\n", (long long)run_id, in.B, in.T, db);
    else printf("run %lld: head scores on %d sequence%s x %d tokens -> %s\n", (long long)run_id, in.B, in.B > 1 ? "s" : "",
                in.T, db);
    for (int k = 0; k < MECH_HEAD_KIND_COUNT_; k++) {
        const double *sc = scores + (size_t)k * L * NH;
        int best = 0;
        for (int i = 1; i < L * NH; i++)
            if (sc[i] > sc[best]) best = i;
        printf("  %-16s best L%dH%d %.3f\n", mech_head_kind_name((mech_head_kind)k), best / NH, best % NH, sc[best]);
    }
    goto done;
db_fail:
    rc = cli_run_failed(cmd, s, run_id, &err);
done:
    mech_store_close(s);
    mech_run_free(run);
    free(scores);
    cli_inputs_free(&in);
    mech_model_free(m);
    return rc;
}
