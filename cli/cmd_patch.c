/*
** cli/cmd_patch.c: `mech patch`: activation-patching sweeps over a file of
** clean/corrupt prompt pairs, one database transaction per pair, so a run
** that is killed keeps every finished pair and --resume finishes the rest.
** --method attrib stores attribution patching's estimates (interp/patch_attrib.c)
** in the same rows; --method both writes an exact run and an attrib run.
*/
#include "cli/cli.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

// Progress over all patches of the run: pairs finished before plus this one's.
typedef struct patch_progress {
    cli_progress bar;
    int64_t before; // patches of the pairs finished in this process
    int n_pairs;    // pairs this process runs
} patch_progress;

static void progress(int64_t done, int64_t total, void *user) {
    patch_progress *pp = user;
    if (!pp->bar.total) pp->bar.total = total * pp->n_pairs; // every pair has the same sweep shape
    cli_progress_update(&pp->bar, pp->before + done);
}

// "9.9.q,10.7" : layer.head.input, comma-separated; no input means q, k and v.
static int parse_receivers(const char *cmd, const char *s, mech_patch_receiver *out, int cap) {
    int n = 0;
    for (const char *p = s; *p;) {
        int layer, head, used = 0;
        char kind = 0;
        // digits only: sscanf's %d would also take " 9" and "+9"
        int plain = *p >= '0' && *p <= '9', dot = (int)strspn(p, "0123456789");
        plain = plain && p[dot] == '.' && p[dot + 1] >= '0' && p[dot + 1] <= '9' && dot <= 6 &&
                strspn(p + dot + 1, "0123456789") <= 6;
        if (!plain || sscanf(p, "%d.%d%n", &layer, &head, &used) != 2 || layer < 0 || head < 0) {
            cli_usage(cmd, "--receivers '%s': expected LAYER.HEAD[.q|.k|.v] items separated by commas, e.g. 9.9.q,10.7", s);
            return -1;
        }
        p += used;
        if (p[0] == '.' && (p[1] == 'q' || p[1] == 'k' || p[1] == 'v') && (p[2] == ',' || !p[2])) kind = p[1], p += 2;
        if (*p && *p != ',') {
            cli_usage(cmd, "--receivers '%s': expected LAYER.HEAD[.q|.k|.v] items separated by commas, e.g. 9.9.q,10.7", s);
            return -1;
        }
        if (*p == ',') p++;
        const char *kinds = kind ? (kind == 'q' ? "q" : kind == 'k' ? "k" : "v") : "qkv";
        for (const char *k = kinds; *k; k++) {
            if (n == cap) {
                cli_usage(cmd, "--receivers: at most %d", cap);
                return -1;
            }
            out[n].layer = layer, out[n].head = head;
            out[n++].input = *k == 'q' ? MECH_PATCH_INPUT_Q : *k == 'k' ? MECH_PATCH_INPUT_K : MECH_PATCH_INPUT_V;
        }
    }
    if (!n) {
        cli_usage(cmd, "--receivers is empty");
        return -1;
    }
    return n;
}

// ---------------------------------------------------------------------------
// One pair's sweep, by one method, and its rows in the database

enum { METHOD_EXACT, METHOD_ATTRIB };

typedef struct sweep_job {
    const mech_model *m;
    int metric, naive, path, site;
    const mech_patch_receiver *recv;
    int n_recv;
    void (*progress)(int64_t done, int64_t total, void *user);
    void *user;
    const volatile int *cancel;
} sweep_job;

static int64_t result_cells(const mech_patch_result *r) {
    return r->shape[0] * r->shape[1] * (r->ndim == 3 ? r->shape[2] : 1);
}

// The pair's exact sweep (one patched run per cell) or its attribution
// estimate (one backward), into *res (the caller deinits it).
static mech_status sweep_pair(const sweep_job *j, int method, const cli_pair *q, mech_patch_result *res,
                              mech_err *err) {
    mech_status rc;
    if (method == METHOD_ATTRIB) {
        if (q->n_clean != q->n_corrupt)
            return mech_err_set(err, MECH_ERR_ARG,
                                "clean prompt has %zu tokens and corrupted prompt %zu: patching needs equal lengths",
                                q->n_clean, q->n_corrupt);
        mech_patch_pairs pp = {.clean = q->clean, .corrupt = q->corrupt, .answer = &q->answer, .wrong = &q->wrong,
                               .B = 1, .T = (int)q->n_clean, .pos = -1};
        rc = j->path ? mech_patch_attrib_path(j->m, &pp, (mech_patch_metric)j->metric, j->recv, j->n_recv, res, err)
                     : mech_patch_attrib_sweep(j->m, &pp, (mech_patch_metric)j->metric, (mech_patch_site)j->site, res, err);
        if (!rc && j->progress) j->progress(result_cells(res), result_cells(res), j->user);
        return rc;
    }
    mech_patch_opts o = {.metric = (mech_patch_metric)j->metric, .answer = q->answer, .wrong = q->wrong, .pos = -1,
                         .naive = j->naive, .progress = j->progress, .user = j->user, .cancel = j->cancel};
    mech_patch *p = NULL;
    rc = mech_patch_new(j->m, q->clean, (int)q->n_clean, q->corrupt, (int)q->n_corrupt, &o, &p, err);
    if (!rc)
        rc = j->path ? mech_patch_path(p, j->recv, j->n_recv, res, err)
                     : mech_patch_sweep(p, (mech_patch_site)j->site, res, err);
    mech_patch_free(p);
    return rc;
}

// One transaction per pair: its prompts, baselines, every cell (raw metric
// and effect) and the grids as arrays, or nothing. 1 when stored.
static int store_pair(mech_store *s, int64_t run, int i, const cli_pair *q, const mech_patch_result *res,
                      const char *sweep, const char *metric_s, int is_heads, double *effect_max, mech_err *err) {
    int ok = mech_store_begin(s, err) == MECH_OK &&
             mech_store_prompt(s, run, i, "clean", q->clean_text, q->clean, (int)q->n_clean, err) == MECH_OK &&
             mech_store_prompt(s, run, i, "corrupt", q->corrupt_text, q->corrupt, (int)q->n_corrupt, err) == MECH_OK;
    mech_result base = {.item = i, .site = "baseline", .layer = -1, .pos = -1, .head = -1, .token = -1, .rank = -1};
    base.metric = "clean", base.value = res->clean;
    ok = ok && mech_store_result(s, run, &base, err) == MECH_OK;
    base.metric = "corrupted", base.value = res->corrupted;
    ok = ok && mech_store_result(s, run, &base, err) == MECH_OK;
    int64_t cells = result_cells(res);
    for (int64_t c = 0; ok && c < cells; c++) {
        int layer = (int)(c / (cells / res->shape[0])), a = (int)(c % (cells / res->shape[0]));
        mech_result r = {.item = i, .site = sweep, .layer = layer, .token = -1, .rank = -1};
        r.pos = is_heads ? -1 : res->ndim == 3 ? a / (int)res->shape[2] : a;
        r.head = is_heads ? a : res->ndim == 3 ? a % (int)res->shape[2] : -1;
        r.metric = metric_s, r.value = res->raw[c];
        ok = mech_store_result(s, run, &r, err) == MECH_OK;
        r.metric = "effect", r.value = res->norm[c];
        ok = ok && mech_store_result(s, run, &r, err) == MECH_OK;
        if (res->norm[c] > *effect_max) *effect_max = res->norm[c];
    }
    // the grids as arrays too, for `mech db export RUN --npz`
    char tname[64];
    snprintf(tname, sizeof tname, "pair%d.%s", i, metric_s);
    ok = ok && mech_store_tensor(s, run, tname, res->raw, res->ndim, res->shape, err) == MECH_OK;
    snprintf(tname, sizeof tname, "pair%d.effect", i);
    ok = ok && mech_store_tensor(s, run, tname, res->norm, res->ndim, res->shape, err) == MECH_OK;
    ok = ok && mech_store_commit(s, err) == MECH_OK;
    if (!ok) mech_store_rollback(s, NULL);
    return ok;
}

static int patch_main(int argc, char **argv);

// --resume RUN needs only the run: the options it was started with (its
// params and model path) go in front of the ones given, which therefore
// override them; patch_main then refuses a run whose params differ from
// what the options make, so a given option must agree with the run's.
int cmd_patch(int argc, char **argv) {
    const char *cmd = "patch", *db = "mech.db", *v = NULL, *resume_s = NULL;
    for (int i = 1; i < argc; i++) {
        int r;
        if ((r = cli_opt(cmd, argc, argv, &i, "--resume", &v)) > 0) resume_s = v;
        else if (!r && (r = cli_opt(cmd, argc, argv, &i, "--db", &v)) > 0) db = v;
        if (r < 0) return 2;
    }
    long resume = 0;
    if (!resume_s) return patch_main(argc, argv);
    if (cli_int(cmd, "--resume", resume_s, 1, 2147483647L, &resume)) return 2;
    mech_err err = {0};
    mech_store *s = NULL;
    mech_run_info info = {0};
    mech_json *pj = NULL;
    char **av = NULL, *nums[3] = {NULL, NULL, NULL};
    int rc = 0, ac = 0;
    // read-only: a mistyped --db must not be created
    if ((rc = cli_store_open(cmd, db, 0, &s))) goto done;
    if (mech_store_run_info(s, resume, &info, &err)) {
        rc = err.code == MECH_ERR_RANGE ? cli_usage(cmd, "--resume %ld: %s", resume, err.msg) : cli_fail(cmd, &err);
        goto done;
    }
    if (strcmp(info.kind, "patch") || !info.params_json || !info.model_path ||
        mech_json_parse(info.params_json, strlen(info.params_json), &pj, NULL) || pj->type != MECH_JSON_OBJECT) {
        rc = cli_usage(cmd, "--resume %ld: run %ld is of kind '%s', not a patch run", resume, resume, info.kind);
        goto done;
    }
    av = mech_calloc((size_t)argc + 24, sizeof *av);
    if (!av) {
        fprintf(stderr, "mech %s: error: out of memory\n", cmd);
        rc = 1;
        goto done;
    }
    av[ac++] = argv[0];
    av[ac++] = "--model", av[ac++] = info.model_path;
    // string-valued params as the options of the same name
    static const char *const keys[][2] = {{"pairs", "--pairs"},       {"dataset", "--dataset"},
                                          {"sweep", "--sweep"},       {"metric", "--metric"},
                                          {"corruption", "--corruption"}, {"receivers", "--receivers"},
                                          {"shard", "--shard"},       {"method", "--method"}};
    for (size_t k = 0; k < sizeof keys / sizeof *keys; k++) {
        const mech_json *x = mech_json_get(pj, keys[k][0]);
        if (x && x->type == MECH_JSON_STRING) av[ac++] = (char *)keys[k][1], av[ac++] = (char *)x->str;
    }
    // numbers: a dataset's size, seed and length
    static const char *const nkeys[][2] = {{"n_pairs", "--n"}, {"seed", "--seed"}, {"len", "--len"}};
    for (int k = 0; k < 3 && mech_json_get(pj, "dataset"); k++) {
        const mech_json *x = mech_json_get(pj, nkeys[k][0]);
        if (!x || x->type != MECH_JSON_NUMBER || !x->is_int || (k == 2 && x->inum <= 0)) continue;
        mech_buf b = {0};
        mech_buf_printf(&b, "%lld", (long long)x->inum);
        nums[k] = b.oom ? NULL : mech_strdup(b.data);
        mech_buf_free(&b);
        if (nums[k]) av[ac++] = (char *)nkeys[k][1], av[ac++] = nums[k];
    }
    const mech_json *bos = mech_json_get(pj, "prepend_bos");
    if (bos && bos->type == MECH_JSON_BOOL && bos->boolean) av[ac++] = "--prepend-bos";
    for (int i = 1; i < argc; i++) av[ac++] = argv[i];
    mech_store_close(s), s = NULL;
    rc = patch_main(ac, av);
done:
    for (int k = 0; k < 3; k++) mech_free(nums[k]);
    mech_free(av);
    mech_json_free(pj);
    mech_store_run_info_deinit(&info);
    mech_store_close(s);
    return rc;
}

static int patch_main(int argc, char **argv) {
    const char *cmd = "patch", *model = NULL, *pairs_path = NULL, *sweep = "resid_pre", *metric_s = "logit_diff";
    const char *db = "mech.db", *v, *dataset = NULL;
    const char *corruption = "random", *shard_s = NULL, *receivers_s = NULL, *method_s = "exact";
    long resume = 0, n_data = 0, len_data = 0, seed = 1; // n, len 0: the dataset's default
    int naive = 0, shard_k = 0, shard_n = 1, dry_run = 0, prepend_bos = 0;
    const char *n_given = NULL, *len_given = NULL, *seed_given = NULL, *corruption_given = NULL;
    for (int i = 1; i < argc; i++) {
        int r;
        if ((r = cli_opt(cmd, argc, argv, &i, "--model", &model))) { if (r < 0) return 2; }
        else if ((r = cli_opt(cmd, argc, argv, &i, "--pairs", &pairs_path))) { if (r < 0) return 2; }
        else if ((r = cli_opt(cmd, argc, argv, &i, "--dataset", &dataset))) { if (r < 0) return 2; }
        else if ((r = cli_opt(cmd, argc, argv, &i, "--n", &v))) {
            if (r < 0 || cli_int(cmd, "--n", v, 1, 100000, &n_data)) return 2;
            n_given = "--n";
        } else if ((r = cli_opt(cmd, argc, argv, &i, "--len", &v))) {
            if (r < 0 || cli_int(cmd, "--len", v, 1, 100000, &len_data)) return 2;
            len_given = "--len";
        } else if ((r = cli_opt(cmd, argc, argv, &i, "--seed", &v))) {
            if (r < 0 || cli_int(cmd, "--seed", v, 0, 2147483647L, &seed)) return 2;
            seed_given = "--seed";
        } else if ((r = cli_opt(cmd, argc, argv, &i, "--corruption", &corruption))) {
            if (r < 0) return 2;
            corruption_given = "--corruption";
        }
        else if ((r = cli_opt(cmd, argc, argv, &i, "--receivers", &receivers_s))) { if (r < 0) return 2; }
        else if ((r = cli_opt(cmd, argc, argv, &i, "--shard", &shard_s))) {
            if (r < 0 || cli_shard(cmd, shard_s, &shard_k, &shard_n)) return 2;
        }
        else if ((r = cli_opt(cmd, argc, argv, &i, "--sweep", &sweep))) { if (r < 0) return 2; }
        else if ((r = cli_opt(cmd, argc, argv, &i, "--metric", &metric_s))) { if (r < 0) return 2; }
        else if ((r = cli_opt(cmd, argc, argv, &i, "--method", &method_s))) { if (r < 0) return 2; }
        else if ((r = cli_opt(cmd, argc, argv, &i, "--db", &db))) { if (r < 0) return 2; }
        else if ((r = cli_opt(cmd, argc, argv, &i, "--threads", &v))) {
            if (r < 0 || cli_threads(cmd, v, NULL)) return 2;
        }
        else if ((r = cli_opt(cmd, argc, argv, &i, "--resume", &v))) {
            if (r < 0 || cli_int(cmd, "--resume", v, 1, 2147483647L, &resume)) return 2;
        } else if (!strcmp(argv[i], "--naive")) naive = 1;
        else if (!strcmp(argv[i], "--dry-run")) dry_run = 1;
        else if (!strcmp(argv[i], "--prepend-bos")) prepend_bos = 1;
        else if (!strcmp(argv[i], "--no-prepend-bos")) prepend_bos = 0;
        else return cli_usage(cmd, "unknown argument '%s'", argv[i]);
    }
    if (!model) return cli_usage(cmd, "--model is required");
    if (!pairs_path == !dataset)
        return cli_usage(cmd, "give --pairs FILE (JSONL or TSV: clean, corrupt, answer, wrong) or --dataset NAME");
    // An option the chosen input does not use is a mistake, not a no-op.
    const char *unused = NULL;
    if (pairs_path) unused = n_given ? n_given : len_given ? len_given : seed_given ? seed_given : corruption_given;
    else if (strcmp(dataset, "compiled") && corruption_given) unused = corruption_given;
    else if ((!strcmp(dataset, "ioi") || !strcmp(dataset, "greater_than")) && len_given) unused = len_given;
    if (unused)
        return cli_usage(cmd, "%s does not apply to %s%s (see --dataset in mech patch --help)", unused,
                         pairs_path ? "--pairs" : "--dataset ", pairs_path ? "" : dataset);
    static const struct { const char *name; mech_patch_site site; } sweeps[] = {
        {"resid_pre", MECH_PATCH_RESID_PRE}, {"resid_mid", MECH_PATCH_RESID_MID}, {"attn_out", MECH_PATCH_ATTN_OUT},
        {"mlp_out", MECH_PATCH_MLP_OUT},     {"heads", MECH_PATCH_HEAD_OUT},      {"heads_by_pos", MECH_PATCH_HEAD_OUT_BY_POS},
        {"q", MECH_PATCH_HEAD_Q},            {"k", MECH_PATCH_HEAD_K},            {"v", MECH_PATCH_HEAD_V},
        {"pattern", MECH_PATCH_HEAD_PATTERN},
    };
    int site = -1, path = !strcmp(sweep, "path");
    for (size_t i = 0; i < sizeof sweeps / sizeof *sweeps; i++)
        if (!strcmp(sweep, sweeps[i].name)) site = (int)sweeps[i].site;
    if (site < 0 && !path)
        return cli_usage(cmd, "--sweep '%s': expected resid_pre, resid_mid, attn_out, mlp_out, heads, heads_by_pos, q, k, "
                         "v, pattern or path", sweep);
    mech_patch_receiver recv[256];
    int n_recv = 0;
    if (path != !!receivers_s) return cli_usage(cmd, "--sweep path and --receivers L.H.q|k|v,... go together");
    if (path && (n_recv = parse_receivers(cmd, receivers_s, recv, 256)) < 0) return 2;
    int metric = -1;
    for (int k = 0; k < MECH_PATCH_METRIC_COUNT_; k++)
        if (!strcmp(metric_s, mech_patch_metric_name((mech_patch_metric)k))) metric = k;
    if (metric < 0) return cli_usage(cmd, "--metric '%s': expected logit_diff, logprob, prob or kl", metric_s);
    // exact: one patched run per cell; attrib: the first-order estimate of
    // every cell from one backward; both: a run of each and their correlation
    int methods[2] = {METHOD_EXACT, METHOD_ATTRIB}, n_methods = 2;
    if (!strcmp(method_s, "exact")) n_methods = 1;
    else if (!strcmp(method_s, "attrib")) methods[0] = METHOD_ATTRIB, n_methods = 1;
    else if (strcmp(method_s, "both"))
        return cli_usage(cmd, "--method '%s': expected exact, attrib or both", method_s);
    if (naive && methods[0] == METHOD_ATTRIB)
        return cli_usage(cmd, "--naive applies to the exact sweep; --method attrib runs one backward per pair");
    if (resume && n_methods > 1)
        return cli_usage(cmd, "--method both writes two runs; resume each with --resume RUN");

    mech_err err = {0};
    mech_model *m = NULL;
    mech_tokenizer *own = NULL;
    int rc = cli_model_load_blocks(cmd, model, "there is no site to patch", &m);
    if (rc) return rc;
    for (int r = 0; r < n_recv; r++)
        if (recv[r].layer >= m->cfg.n_layers || recv[r].head >= m->cfg.n_heads) {
            int L = m->cfg.n_layers, H = m->cfg.n_heads;
            mech_model_free(m);
            return cli_usage(cmd, "--receivers: head %d.%d is not in this model (%d layers of %d heads)", recv[r].layer,
                             recv[r].head, L, H);
        }
    const mech_tokenizer *tok = m->tok;
    if (!tok && mech_tokenizer_gpt2(&own, &err) == MECH_OK) tok = own;
    cli_pair *pairs = NULL;
    int n_pairs = 0;
    mech_store *s = NULL;
    int64_t run = resume;
    int *done_items = NULL;
    size_t n_done = 0;
    char *params = NULL, *params_attrib = NULL;
    int64_t runs[2] = {0, 0};
    int is_heads = path || (site >= MECH_PATCH_HEAD_OUT && site != MECH_PATCH_HEAD_OUT_BY_POS);
    sweep_job job = {.m = m, .metric = metric, .naive = naive, .path = path, .site = site, .recv = recv, .n_recv = n_recv};
    volatile int *stop = NULL; // Ctrl-C / SIGTERM, once the run is open
    rc = dataset ? cli_pairs_dataset(cmd, dataset, n_data, &len_data, seed, corruption, m, tok, &pairs, &n_pairs)
                     : cli_pairs_read(cmd, pairs_path, m, tok, &pairs, &n_pairs);
    if (!rc && prepend_bos) rc = cli_pairs_bos(cmd, m, tok, pairs, n_pairs);
    if (dataset) pairs_path = dataset;
    if (rc) {
        cli_pairs_free(pairs, n_pairs);
        mech_tokenizer_free(own);
        mech_model_free(m);
        return rc;
    }
    // Tokens the model has no row for are the input's fault (2), found
    // before the run is opened rather than at that pair mid-sweep (1).
    for (int i = 0, V = m->cfg.d_vocab; i < n_pairs; i++) {
        const cli_pair *q = &pairs[i];
        const char *what = q->answer >= V ? "answer" : q->wrong >= V ? "wrong" : NULL;
        int32_t bad = q->answer >= V ? q->answer : q->wrong;
        for (size_t t = 0; !what && t < q->n_clean; t++)
            if (q->clean[t] >= V) what = "clean", bad = q->clean[t];
        for (size_t t = 0; !what && t < q->n_corrupt; t++)
            if (q->corrupt[t] >= V) what = "corrupt", bad = q->corrupt[t];
        if (what) {
            fprintf(stderr, "%s:%d: error: '%s': token %d is outside this model's vocabulary of %d tokens\n", pairs_path,
                    q->line, what, (int)bad, V);
            rc = 2;
            goto done;
        }
    }
    if (metric == MECH_PATCH_LOGIT_DIFF)
        for (int i = 0; i < n_pairs; i++)
            if (pairs[i].wrong < 0) {
                fprintf(stderr, "%s:%d: error: the logit_diff metric needs a 'wrong' answer\n", pairs_path, pairs[i].line);
                rc = 2;
                goto done;
            }
    mech_buf pb = {0};
    mech_buf_printf(&pb, "{\"%s\": ", dataset ? "dataset" : "pairs");
    mech_buf_json_string(&pb, pairs_path, strlen(pairs_path));
    mech_buf_printf(&pb, ", \"sweep\": \"%s\", \"metric\": \"%s\", \"n_pairs\": %d", sweep, metric_s, n_pairs);
    if (dataset) {
        mech_buf_printf(&pb, ", \"seed\": %ld, \"len\": %ld", seed, len_data);
        if (!strcmp(dataset, "compiled")) mech_buf_printf(&pb, ", \"corruption\": \"%s\"", corruption);
    }
    if (path) {
        mech_buf_puts(&pb, ", \"receivers\": ");
        mech_buf_json_string(&pb, receivers_s, strlen(receivers_s));
    }
    if (shard_n > 1) mech_buf_printf(&pb, ", \"shard\": \"%d/%d\"", shard_k + 1, shard_n);
    if (prepend_bos) mech_buf_puts(&pb, ", \"prepend_bos\": true");
    // An exact run's parameters stay as they were (no "method": exact).
    size_t before_method = pb.len;
    mech_buf_puts(&pb, ", \"method\": \"attrib\"}");
    params_attrib = pb.oom ? NULL : mech_strdup(pb.data);
    if (!pb.oom) pb.data[before_method] = 0, pb.len = before_method;
    mech_buf_puts(&pb, "}");
    params = pb.oom ? NULL : mech_strdup(methods[0] == METHOD_ATTRIB ? params_attrib : pb.data);
    mech_buf_free(&pb);
    if (!params || !params_attrib) {
        rc = 1;
        goto done;
    }
    if (dry_run) {
        // The first pair of this shard, timed; the database is not opened.
        int first = shard_k, n_shard = 0;
        for (int i = shard_k; i < n_pairs; i += shard_n) n_shard++;
        if (first >= n_pairs) {
            printf("dry run: no pairs in shard %d/%d\n", shard_k + 1, shard_n);
            goto done;
        }
        for (int k = 0; k < n_methods && !rc; k++) {
            mech_patch_result res = {0};
            double t0 = mech_now();
            if (sweep_pair(&job, methods[k], &pairs[first], &res, &err)) {
                fprintf(stderr, "%s:%d: error: %s\n", pairs_path, pairs[first].line, err.msg);
                rc = 1;
            } else {
                printf("dry run (nothing written)%s: ", n_methods > 1 ? methods[k] ? ", attribution" : ", exact" : "");
                cli_estimate(stdout, n_shard, "pair", result_cells(&res), mech_now() - t0);
            }
            mech_patch_result_deinit(&res);
        }
        goto done;
    }
    if (resume) {
        mech_run_info info;
        if ((rc = cli_store_open(cmd, db, 1, &s))) goto done;
        if (mech_store_run_info(s, run, &info, &err)) {
            rc = cli_fail(cmd, &err);
            goto done;
        }
        int same = !strcmp(info.kind, "patch") && info.params_json && !strcmp(info.params_json, params);
        if (!same) {
            rc = cli_usage(cmd, "--resume %ld: that run is not a patch run with these options (its own: %s); give only --resume RUN and --db",
                           resume, info.params_json ? info.params_json : "none");
            mech_store_run_info_deinit(&info);
            goto done;
        }
        rc = cli_resume_check_model(cmd, run, model, info.model_hash);
        mech_store_run_info_deinit(&info);
        if (rc) goto done;
        if (mech_store_items_done(s, run, &done_items, &n_done, &err) || mech_store_run_finish(s, run, "running", &err)) {
            rc = cli_fail(cmd, &err);
            goto done;
        }
        runs[0] = run;
    } else {
        // --method both: the exact run first, then the attribution run, on one database
        if ((rc = cli_run_open(cmd, db, "patch", model, argc, argv, params, &s, &runs[0]))) goto done;
        if (n_methods > 1) {
            mech_buf line = {0};
            mech_buf_puts(&line, "mech");
            for (int i = 0; i < argc; i++) mech_buf_printf(&line, " %s", argv[i]);
            mech_status st = line.oom ? mech_err_set(&err, MECH_ERR_NOMEM, "out of memory")
                                      : mech_store_run_new(s, "patch", model, line.data, params_attrib, &runs[1], &err);
            mech_buf_free(&line);
            if (st) {
                rc = cli_run_failed(cmd, s, runs[0], &err);
                goto done;
            }
        }
        run = runs[0];
    }
    stop = cli_interrupts_catch();
    job.cancel = stop;
    // This shard's pairs (every shard_n-th from shard_k), less those done.
    int n_todo = 0;
    char *todo = mech_calloc((size_t)n_pairs + 1, 1);
    for (int i = shard_k; i < n_pairs; i += shard_n) todo[i] = 1, n_todo++;
    for (size_t k = 0; k < n_done; k++)
        if (done_items[k] >= 0 && done_items[k] < n_pairs && todo[done_items[k]]) todo[done_items[k]] = 0, n_todo--;
    for (int k = 0; k < n_methods; k++)
        fprintf(stderr, "run %lld: %s %s, %d pair%s%s, metric %s -> %s\n", (long long)runs[k],
                methods[k] ? "attribution patching" : "patching", sweep, n_todo, n_todo == 1 ? "" : "s",
                resume ? " left" : "", metric_s, db);
    patch_progress pp = {.n_pairs = n_todo};
    job.user = &pp;
    cli_progress_start(&pp.bar, "patches", 0);
    double effect_max[2] = {0, 0}, seconds[2] = {0, 0}, t_first = mech_now();
    double sx = 0, sy = 0, sxx = 0, syy = 0, sxy = 0; // --method both: exact x, attribution y
    int64_t n_xy = 0;
    int n_run = 0;
    for (int i = 0; i < n_pairs && !*stop; i++) {
        if (!todo[i]) continue;
        mech_patch_result res[2] = {{0}, {0}};
        int64_t cells = 0;
        for (int k = 0; k < n_methods && !rc; k++) {
            double t0 = mech_now();
            // one progress bar: the exact sweep's patches (the estimate is one step)
            job.progress = methods[k] == METHOD_EXACT || n_methods == 1 ? progress : NULL;
            if (sweep_pair(&job, methods[k], &pairs[i], &res[k], &err)) {
                if (err.code != MECH_ERR_CANCELLED) {
                    fprintf(stderr, "\n%s:%d: error: %s\n", pairs_path, pairs[i].line, err.msg);
                    rc = 1;
                }
                break;
            }
            seconds[k] += mech_now() - t0;
            cells = result_cells(&res[k]);
        }
        // A pair goes to every run or to none.
        int complete = !rc;
        for (int k = 0; k < n_methods; k++) complete &= res[k].raw && res[k].done == result_cells(&res[k]);
        for (int k = 0; !rc && complete && k < n_methods; k++)
            if (!store_pair(s, runs[k], i, &pairs[i], &res[k], sweep, metric_s, is_heads, &effect_max[k], &err))
                rc = cli_fail(cmd, &err);
        if (!rc && complete && n_methods > 1)
            for (int64_t c = 0; c < cells; c++) {
                double x = res[0].norm[c], y = res[1].norm[c];
                if (!isfinite(x) || !isfinite(y)) continue;
                sx += x, sy += y, sxx += x * x, syy += y * y, sxy += x * y, n_xy++;
            }
        pp.before += cells;
        // A long sweep says how long once its first pair is measured.
        if (complete && n_run++ == 0 && pp.bar.tty && n_todo > 1) {
            cli_progress_end(&pp.bar);
            cli_estimate(stderr, n_todo, "pair", cells, mech_now() - t_first);
        }
        for (int k = 0; k < 2; k++) mech_patch_result_deinit(&res[k]);
        if (rc || !complete) break;
    }
    cli_progress_end(&pp.bar);
    mech_free(todo);
    const char *status = rc ? "failed" : *stop ? "interrupted" : "done";
    for (int k = 0; k < n_methods; k++)
        if (mech_store_run_finish(s, runs[k], status, &err) && !rc) rc = cli_fail(cmd, &err);
    if (*stop && !rc) {
        if (n_methods > 1)
            fprintf(stderr, "interrupted: finished pairs are kept; continue each run with --resume %lld and --resume %lld\n",
                    (long long)runs[0], (long long)runs[1]);
        else
            fprintf(stderr, "interrupted: finished pairs are kept; continue with --resume %lld\n", (long long)run);
        rc = CLI_EXIT_INTERRUPTED;
    }
    for (int k = 0; !rc && k < n_methods; k++)
        printf("run %lld: %s%s patching of %d pair%s written to %s (largest effect %.3f, %.3f s)\n", (long long)runs[k],
               sweep, methods[k] ? " attribution" : "", n_run, n_run == 1 ? "" : "s", db, effect_max[k], seconds[k]);
    if (!rc && n_methods > 1) {
        double r = NAN;
        if (n_xy > 1) {
            double vx = sxx - sx * sx / (double)n_xy, vy = syy - sy * sy / (double)n_xy, cxy = sxy - sx * sy / (double)n_xy;
            r = vx > 0 && vy > 0 ? cxy / sqrt(vx * vy) : NAN;
        }
        if (isnan(r))
            printf("exact vs attribution: correlation undefined (the effects do not vary over %lld cells)\n",
                   (long long)n_xy);
        else
            printf("exact vs attribution: correlation of the effects %.4f over %lld cells\n", r, (long long)n_xy);
    }
    cli_interrupts_release();
done:
    mech_free(params);
    mech_free(params_attrib);

    free(done_items);
    mech_store_close(s);
    cli_pairs_free(pairs, n_pairs);
    mech_tokenizer_free(own);
    mech_model_free(m);
    return rc;
}
