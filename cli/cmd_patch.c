/*
** cli/cmd_patch.c: `mech patch`: activation-patching sweeps over a file of
** clean/corrupt prompt pairs, one database transaction per pair, so a run
** that is killed keeps every finished pair and --resume finishes the rest.
*/
#include "cli/cli.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>

typedef struct pair {
    int32_t *clean, *corrupt;
    size_t n_clean, n_corrupt;
    int32_t answer, wrong;
    char *clean_text, *corrupt_text;
    int line;
} pair;

static volatile int interrupted;
static void on_signal(int sig) {
    (void)sig;
    interrupted = 1;
}

// A field that is text (tokenized) or an array of ids.
static int field_tokens(const char *path, int line, const char *name, const mech_json *v, const mech_tokenizer *tok,
                        int32_t **ids, size_t *n, char **text) {
    mech_err err = {0};
    *ids = NULL, *n = 0, *text = NULL;
    if (v && v->type == MECH_JSON_STRING) {
        if (mech_tokenizer_encode(tok, v->str, v->len, 0, ids, n, &err)) {
            fprintf(stderr, "%s:%d: error: '%s': %s\n", path, line, name, err.msg);
            return 1;
        }
        *text = mech_strdup(v->str);
        return 0;
    }
    if (v && v->type == MECH_JSON_ARRAY) {
        *ids = mech_malloc((v->n ? v->n : 1) * sizeof **ids);
        for (size_t i = 0; i < v->n; i++) {
            if (v->items[i].type != MECH_JSON_NUMBER || !v->items[i].is_int || v->items[i].inum < 0 ||
                v->items[i].inum > INT32_MAX) {
                fprintf(stderr, "%s:%d: error: '%s': item %zu is not a token id\n", path, line, name, i + 1);
                return 1;
            }
            (*ids)[i] = (int32_t)v->items[i].inum;
        }
        *n = v->n;
        return 0;
    }
    fprintf(stderr, "%s:%d: error: '%s' must be text or an array of token ids\n", path, line, name);
    return 1;
}

// A single token: an id, or text that tokenizes to exactly one token.
static int field_token(const char *path, int line, const char *name, const mech_json *v, const mech_tokenizer *tok,
                       int32_t *out) {
    if (v && v->type == MECH_JSON_NUMBER && v->is_int && v->inum >= 0 && v->inum <= INT32_MAX) {
        *out = (int32_t)v->inum;
        return 0;
    }
    int32_t *ids = NULL;
    size_t n = 0;
    char *text = NULL;
    int rc = field_tokens(path, line, name, v, tok, &ids, &n, &text);
    if (!rc && n != 1) {
        fprintf(stderr, "%s:%d: error: '%s' is %zu tokens, expected exactly one (e.g. \" Mary\" with its space)\n",
                path, line, name, n);
        rc = 1;
    }
    if (!rc) *out = ids[0];
    mech_free(ids);
    mech_free(text);
    return rc;
}

static void pairs_free(pair *p, int n) {
    for (int i = 0; i < n; i++) {
        mech_free(p[i].clean), mech_free(p[i].corrupt);
        mech_free(p[i].clean_text), mech_free(p[i].corrupt_text);
    }
    free(p);
}

// JSONL ({"clean": ..., "corrupt": ..., "answer": ..., "wrong": ...} per
// line) or TSV (clean, corrupt, answer, wrong): 0 or an exit code.
static int read_pairs(const char *path, const mech_tokenizer *tok, pair **out, int *n_out) {
    mech_err err = {0};
    char *text;
    size_t len;
    if (mech_read_file(path, &text, &len, &err)) {
        fprintf(stderr, "mech patch: error: %s\n", err.msg);
        return 1;
    }
    pair *p = NULL;
    int n = 0, cap = 0, line = 0, rc = 0;
    for (char *s = text, *e; s && *s && !rc; s = e ? e + 1 : NULL) {
        e = strchr(s, '\n');
        if (e) *e = 0;
        line++;
        size_t ll = strlen(s);
        if (ll && s[ll - 1] == '\r') s[--ll] = 0;
        if (!ll || s[0] == '#') continue;
        mech_json *j = NULL, *owned = NULL;
        if (s[0] == '{') {
            if (mech_json_parse(s, ll, &j, &err)) {
                fprintf(stderr, "%s:%d: error: %s\n", path, line, err.msg);
                rc = 2;
                break;
            }
        } else {
            // TSV: build the same object from the columns
            mech_buf b = {0};
            const char *names[4] = {"clean", "corrupt", "answer", "wrong"};
            mech_buf_puts(&b, "{");
            char *col = s;
            for (int c = 0; c < 4 && col; c++) {
                char *tab = strchr(col, '\t');
                if (tab) *tab = 0;
                mech_buf_printf(&b, "%s\"%s\": ", c ? ", " : "", names[c]);
                mech_buf_json_string(&b, col, strlen(col));
                col = tab ? tab + 1 : NULL;
            }
            mech_buf_puts(&b, "}");
            if (mech_json_parse(b.data, b.len, &owned, &err)) rc = 1;
            j = owned;
            mech_buf_free(&b);
            if (rc) break;
        }
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            pair *g = realloc(p, (size_t)cap * sizeof *g);
            if (!g) {
                rc = 1;
                mech_json_free(j);
                break;
            }
            p = g;
        }
        pair *q = &p[n];
        memset(q, 0, sizeof *q);
        q->line = line, q->wrong = -1;
        const mech_json *w = mech_json_get(j, "wrong");
        rc = field_tokens(path, line, "clean", mech_json_get(j, "clean"), tok, &q->clean, &q->n_clean, &q->clean_text) ||
             field_tokens(path, line, "corrupt", mech_json_get(j, "corrupt"), tok, &q->corrupt, &q->n_corrupt,
                          &q->corrupt_text) ||
             field_token(path, line, "answer", mech_json_get(j, "answer"), tok, &q->answer) ||
             (w && !(w->type == MECH_JSON_STRING && w->len == 0) && field_token(path, line, "wrong", w, tok, &q->wrong));
        n++;
        if (!rc && q->n_clean != q->n_corrupt) {
            fprintf(stderr, "%s:%d: error: clean is %zu tokens but corrupt is %zu; patching needs equal lengths\n", path,
                    line, q->n_clean, q->n_corrupt);
            rc = 2;
        }
        if (rc == 1) rc = 2;
        mech_json_free(j);
    }
    mech_free(text);
    if (!rc && !n) {
        fprintf(stderr, "%s: error: no pairs in the file\n", path);
        rc = 2;
    }
    if (rc) {
        pairs_free(p, n);
        return rc;
    }
    *out = p, *n_out = n;
    return 0;
}

// A built-in dataset (IOI, greater-than, induction) as pairs.
static int dataset_pairs(const char *cmd, const char *name, long n, long len, long seed, const mech_model *m,
                         const mech_tokenizer *tok, pair **out, int *n_out) {
    mech_err err = {0};
    mech_pair *d = NULL;
    mech_status st;
    if (!strcmp(name, "ioi")) st = mech_dataset_ioi(tok, (int)n, (uint64_t)seed, &d, &err);
    else if (!strcmp(name, "greater_than")) st = mech_dataset_greater_than(tok, (int)n, (uint64_t)seed, &d, &err);
    else if (!strcmp(name, "induction"))
        st = mech_dataset_induction(m->cfg.d_vocab, (int)n, (int)len, (uint64_t)seed, m->cfg.d_vocab > 200 ? 100 : 0, -1,
                                    &d, &err);
    else return cli_usage(cmd, "--dataset '%s': expected ioi, greater_than or induction", name);
    if (st) return cli_fail(cmd, &err);
    pair *p = calloc((size_t)n, sizeof *p);
    int rc = p ? 0 : 1;
    for (long i = 0; !rc && i < n; i++) {
        p[i].n_clean = p[i].n_corrupt = (size_t)d[i].n;
        p[i].clean = mech_malloc((size_t)d[i].n * sizeof(int32_t));
        p[i].corrupt = mech_malloc((size_t)d[i].n * sizeof(int32_t));
        if (!p[i].clean || !p[i].corrupt) {
            rc = 1;
            break;
        }
        memcpy(p[i].clean, d[i].clean, (size_t)d[i].n * sizeof(int32_t));
        memcpy(p[i].corrupt, d[i].corrupt, (size_t)d[i].n * sizeof(int32_t));
        p[i].clean_text = d[i].clean_text ? mech_strdup(d[i].clean_text) : NULL;
        p[i].corrupt_text = d[i].corrupt_text ? mech_strdup(d[i].corrupt_text) : NULL;
        p[i].answer = d[i].answer, p[i].wrong = d[i].wrong, p[i].line = (int)i + 1;
    }
    mech_pairs_free(d, (int)n);
    if (rc) {
        if (p) pairs_free(p, (int)n);
        fprintf(stderr, "mech %s: error: out of memory\n", cmd);
        return 1;
    }
    *out = p, *n_out = (int)n;
    return 0;
}

static void progress(int64_t done, int64_t total, void *user) {
    const int *item = user;
    if (done == total || done % 16 == 0) fprintf(stderr, "\rpair %d: %lld/%lld patches", item[0] + 1, (long long)done, (long long)total);
}

int cmd_patch(int argc, char **argv) {
    const char *cmd = "patch", *model = NULL, *pairs_path = NULL, *sweep = "resid_pre", *metric_s = "logit_diff";
    const char *db = "mech.db", *v, *dataset = NULL;
    long resume = 0, n_data = 20, len_data = 10, seed = 1;
    int naive = 0;
    for (int i = 1; i < argc; i++) {
        int r;
        if ((r = cli_opt(cmd, argc, argv, &i, "--model", &model))) { if (r < 0) return 2; }
        else if ((r = cli_opt(cmd, argc, argv, &i, "--pairs", &pairs_path))) { if (r < 0) return 2; }
        else if ((r = cli_opt(cmd, argc, argv, &i, "--dataset", &dataset))) { if (r < 0) return 2; }
        else if ((r = cli_opt(cmd, argc, argv, &i, "--n", &v))) {
            if (r < 0 || cli_int(cmd, "--n", v, 1, 100000, &n_data)) return 2;
        } else if ((r = cli_opt(cmd, argc, argv, &i, "--len", &v))) {
            if (r < 0 || cli_int(cmd, "--len", v, 1, 100000, &len_data)) return 2;
        } else if ((r = cli_opt(cmd, argc, argv, &i, "--seed", &v))) {
            if (r < 0 || cli_int(cmd, "--seed", v, 0, 2147483647L, &seed)) return 2;
        }
        else if ((r = cli_opt(cmd, argc, argv, &i, "--sweep", &sweep))) { if (r < 0) return 2; }
        else if ((r = cli_opt(cmd, argc, argv, &i, "--metric", &metric_s))) { if (r < 0) return 2; }
        else if ((r = cli_opt(cmd, argc, argv, &i, "--db", &db))) { if (r < 0) return 2; }
        else if ((r = cli_opt(cmd, argc, argv, &i, "--resume", &v))) {
            if (r < 0 || cli_int(cmd, "--resume", v, 1, 2147483647L, &resume)) return 2;
        } else if (!strcmp(argv[i], "--naive")) naive = 1;
        else return cli_usage(cmd, "unknown argument '%s'", argv[i]);
    }
    if (!model) return cli_usage(cmd, "--model is required");
    if (!pairs_path == !dataset)
        return cli_usage(cmd, "give --pairs FILE (JSONL or TSV: clean, corrupt, answer, wrong) or --dataset NAME");
    static const struct { const char *name; mech_patch_site site; } sweeps[] = {
        {"resid_pre", MECH_PATCH_RESID_PRE}, {"resid_mid", MECH_PATCH_RESID_MID}, {"attn_out", MECH_PATCH_ATTN_OUT},
        {"mlp_out", MECH_PATCH_MLP_OUT},     {"heads", MECH_PATCH_HEAD_OUT},      {"heads_by_pos", MECH_PATCH_HEAD_OUT_BY_POS},
        {"q", MECH_PATCH_HEAD_Q},            {"k", MECH_PATCH_HEAD_K},            {"v", MECH_PATCH_HEAD_V},
        {"pattern", MECH_PATCH_HEAD_PATTERN},
    };
    int site = -1;
    for (size_t i = 0; i < sizeof sweeps / sizeof *sweeps; i++)
        if (!strcmp(sweep, sweeps[i].name)) site = (int)sweeps[i].site;
    if (site < 0)
        return cli_usage(cmd, "--sweep '%s': expected resid_pre, resid_mid, attn_out, mlp_out, heads, heads_by_pos, q, k, "
                         "v or pattern", sweep);
    int metric = -1;
    for (int k = 0; k < MECH_PATCH_METRIC_COUNT_; k++)
        if (!strcmp(metric_s, mech_patch_metric_name((mech_patch_metric)k))) metric = k;
    if (metric < 0) return cli_usage(cmd, "--metric '%s': expected logit_diff, logprob, prob or kl", metric_s);

    mech_err err = {0};
    mech_model *m = NULL;
    mech_tokenizer *own = NULL;
    if (mech_model_load(model, &m, &err)) return cli_fail(cmd, &err);
    const mech_tokenizer *tok = m->tok;
    if (!tok && mech_tokenizer_gpt2(&own, &err) == MECH_OK) tok = own;
    pair *pairs = NULL;
    int n_pairs = 0;
    mech_store *s = NULL;
    int64_t run = resume;
    int *done_items = NULL;
    size_t n_done = 0;
    int rc = dataset ? dataset_pairs(cmd, dataset, n_data, len_data, seed, m, tok, &pairs, &n_pairs)
                     : read_pairs(pairs_path, tok, &pairs, &n_pairs);
    if (dataset) pairs_path = dataset;
    if (rc) {
        mech_tokenizer_free(own);
        mech_model_free(m);
        return rc;
    }
    if (metric == MECH_PATCH_LOGIT_DIFF)
        for (int i = 0; i < n_pairs; i++)
            if (pairs[i].wrong < 0) {
                fprintf(stderr, "%s:%d: error: the logit_diff metric needs a 'wrong' answer\n", pairs_path, pairs[i].line);
                rc = 2;
                goto done;
            }
    char params[300];
    snprintf(params, sizeof params,
             "{\"%s\": \"%s\", \"sweep\": \"%s\", \"metric\": \"%s\", \"n_pairs\": %d, \"seed\": %ld}",
             dataset ? "dataset" : "pairs", pairs_path, sweep, metric_s, n_pairs, dataset ? seed : 0L);
    if (resume) {
        mech_run_info info;
        if (mech_store_open(db, &s, &err) || mech_store_run_info(s, run, &info, &err)) {
            rc = cli_fail(cmd, &err);
            goto done;
        }
        int same = !strcmp(info.kind, "patch") && info.params_json && !strcmp(info.params_json, params);
        mech_store_run_info_deinit(&info);
        if (!same) {
            rc = cli_usage(cmd, "--resume %ld: that run is not a patch run with these pairs, sweep and metric", resume);
            goto done;
        }
        if (mech_store_items_done(s, run, &done_items, &n_done, &err) || mech_store_run_finish(s, run, "running", &err)) {
            rc = cli_fail(cmd, &err);
            goto done;
        }
    } else if ((rc = cli_run_open(cmd, db, "patch", model, argc, argv, params, &s, &run))) {
        goto done;
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    fprintf(stderr, "run %lld: patching %s, %d pair%s, metric %s -> %s\n", (long long)run, sweep, n_pairs,
            n_pairs > 1 ? "s" : "", metric_s, db);
    double sum_effect_max = 0;
    for (int i = 0; i < n_pairs && !interrupted; i++) {
        int skip = 0;
        for (size_t k = 0; k < n_done; k++) skip |= done_items[k] == i;
        if (skip) continue;
        mech_patch_opts o = {.metric = (mech_patch_metric)metric, .answer = pairs[i].answer, .wrong = pairs[i].wrong,
                             .pos = -1, .naive = naive, .progress = progress, .user = &i, .cancel = &interrupted};
        mech_patch *p = NULL;
        mech_patch_result res = {0};
        if (mech_patch_new(m, pairs[i].clean, (int)pairs[i].n_clean, pairs[i].corrupt, (int)pairs[i].n_corrupt, &o, &p,
                           &err) ||
            mech_patch_sweep(p, (mech_patch_site)site, &res, &err)) {
            mech_patch_free(p);
            mech_patch_result_deinit(&res);
            if (err.code == MECH_ERR_CANCELLED) break;
            fprintf(stderr, "\n%s:%d: error: %s\n", pairs_path, pairs[i].line, err.msg);
            rc = 1;
            break;
        }
        // One transaction per pair: all of its cells or none.
        int ok = mech_store_begin(s, &err) == MECH_OK &&
                 mech_store_prompt(s, run, i, "clean", pairs[i].clean_text, pairs[i].clean, (int)pairs[i].n_clean, &err) ==
                     MECH_OK &&
                 mech_store_prompt(s, run, i, "corrupt", pairs[i].corrupt_text, pairs[i].corrupt,
                                   (int)pairs[i].n_corrupt, &err) == MECH_OK;
        mech_result base = {.item = i, .site = "baseline", .layer = -1, .pos = -1, .head = -1, .token = -1, .rank = -1};
        base.metric = "clean", base.value = res.clean;
        ok = ok && mech_store_result(s, run, &base, &err) == MECH_OK;
        base.metric = "corrupted", base.value = res.corrupted;
        ok = ok && mech_store_result(s, run, &base, &err) == MECH_OK;
        int64_t cells = res.shape[0] * res.shape[1] * (res.ndim == 3 ? res.shape[2] : 1);
        for (int64_t c = 0; ok && c < cells; c++) {
            int layer = (int)(c / (cells / res.shape[0])), a = (int)(c % (cells / res.shape[0]));
            int is_heads = site >= MECH_PATCH_HEAD_OUT && site != MECH_PATCH_HEAD_OUT_BY_POS;
            mech_result r = {.item = i, .site = sweep, .layer = layer, .token = -1, .rank = -1};
            r.pos = is_heads ? -1 : res.ndim == 3 ? a / (int)res.shape[2] : a;
            r.head = is_heads ? a : res.ndim == 3 ? a % (int)res.shape[2] : -1;
            r.metric = metric_s, r.value = res.raw[c];
            ok = mech_store_result(s, run, &r, &err) == MECH_OK;
            r.metric = "effect", r.value = res.norm[c];
            ok = ok && mech_store_result(s, run, &r, &err) == MECH_OK;
            if (res.norm[c] > sum_effect_max) sum_effect_max = res.norm[c];
        }
        ok = ok && mech_store_commit(s, &err) == MECH_OK;
        if (!ok) {
            mech_store_rollback(s, NULL);
            rc = cli_fail(cmd, &err);
        }
        fprintf(stderr, "\rpair %d/%d done: clean %.4f, corrupted %.4f\n", i + 1, n_pairs, res.clean, res.corrupted);
        mech_patch_free(p);
        mech_patch_result_deinit(&res);
        if (rc) break;
    }
    const char *status = rc ? "failed" : interrupted ? "interrupted" : "done";
    if (mech_store_run_finish(s, run, status, &err) && !rc) rc = cli_fail(cmd, &err);
    if (interrupted && !rc) {
        fprintf(stderr, "interrupted: finished pairs are kept; continue with --resume %lld\n", (long long)run);
        rc = 1;
    }
    if (!rc) printf("run %lld: %s patching of %d pair%s written to %s (largest effect %.3f)\n", (long long)run, sweep,
                    n_pairs, n_pairs > 1 ? "s" : "", db, sum_effect_max);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
done:
    free(done_items);
    mech_store_close(s);
    pairs_free(pairs, n_pairs);
    mech_tokenizer_free(own);
    mech_model_free(m);
    return rc;
}
