/*
** cli/cmd_eap.c: `mech eap`: edge attribution patching (interp/eap.c) on
** ACDC's graph from the command line. One run of kind "eap" in the results
** database: the inputs as prompts, every counted edge's score (metric
** "score"), the circuit chosen by --top-n or --threshold (metric "kept"),
** and for compiled RASP models the ground truth with TPR, FPR and the ROC
** AUC of |score|. What is stored: docs/eap.md.
*/
#include "cli/cli.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>


// The pairs in batches of equal length (a prompt's score, and its metric
// under any circuit, do not depend on the batch it is in): fn gets each
// batch; its return value (an exit code) stops the walk when non-zero.
typedef struct len_batch {
    int B, T;
    const int32_t *clean, *corrupt, *answer, *wrong;
} len_batch;

static int for_each_length(const char *cmd, const cli_pair *p, int n, int (*fn)(const len_batch *b, void *user),
                           void *user) {
    int rc = 0;
    uint8_t *done = mech_calloc((size_t)n, 1);
    int32_t *clean = NULL, *corrupt = NULL, *ans = mech_malloc((size_t)n * sizeof *ans),
            *wrong = mech_malloc((size_t)n * sizeof *wrong);
    if (!done || !ans || !wrong) goto oom;
    for (int i = 0; i < n && !rc; i++) {
        if (done[i]) continue;
        int T = (int)p[i].n_clean, B = 0;
        for (int j = i; j < n; j++) B += !done[j] && (int)p[j].n_clean == T;
        mech_free(clean);
        mech_free(corrupt);
        clean = mech_malloc((size_t)B * T * sizeof *clean);
        corrupt = mech_malloc((size_t)B * T * sizeof *corrupt);
        if (!clean || !corrupt) goto oom;
        int b = 0;
        for (int j = i; j < n; j++) {
            if (done[j] || (int)p[j].n_clean != T) continue;
            memcpy(clean + (size_t)b * T, p[j].clean, (size_t)T * sizeof(int32_t));
            memcpy(corrupt + (size_t)b * T, p[j].corrupt, (size_t)T * sizeof(int32_t));
            ans[b] = p[j].answer, wrong[b] = p[j].wrong;
            done[j] = 1, b++;
        }
        len_batch lb = {B, T, clean, corrupt, ans, wrong};
        rc = fn(&lb, user);
    }
    goto out;
oom:
    fprintf(stderr, "mech %s: error: out of memory\n", cmd);
    rc = 1;
out:
    mech_free(done);
    mech_free(clean);
    mech_free(corrupt);
    mech_free(ans);
    mech_free(wrong);
    return rc;
}

// Scores over pairs of any lengths: one EAP pass per length, combined as the
// mean over every prompt. value: the metric on the clean prompts, likewise.
typedef struct score_acc {
    const char *cmd;
    const mech_model *m;
    const mech_acdc_graph *g;
    mech_metric_kind kind;
    const mech_eap_opts *o;
    int n;
    double *part, *scores, value;
} score_acc;

static int score_batch(const len_batch *b, void *user) {
    score_acc *a = user;
    mech_err err = {0};
    mech_metric mt = {.kind = a->kind, .pos = -1, .answer = b->answer,
                      .wrong = a->kind == MECH_METRIC_LOGIT_DIFF ? b->wrong : NULL};
    double v = 0;
    if (mech_eap_scores_opts(a->m, a->g, b->clean, b->corrupt, b->B, b->T, &mt, a->o, a->part, &v, &err))
        return err.code == MECH_ERR_RANGE ? cli_usage(a->cmd, "%s", err.msg) : cli_fail(a->cmd, &err);
    for (int e = 0; e < a->g->n_edges; e++) a->scores[e] += a->part[e] * b->B / a->n;
    a->value += v * b->B / a->n;
    return 0;
}

// The faithfulness curve over pairs of any lengths: per length the metric of
// every circuit and of the two ends, combined as the mean over every prompt,
// then f, CPR and CMD from those means.
typedef struct faith_acc {
    const char *cmd;
    const mech_model *m;
    const mech_acdc_graph *g;
    const double *scores, *fracs;
    int n_fracs, n, threads;
    mech_faith_point *pts, *part;
    double m_full, m_empty;
} faith_acc;

static int faith_batch(const len_batch *b, void *user) {
    faith_acc *a = user;
    mech_err err = {0};
    mech_acdc_opts o = {.metric = MECH_ACDC_LOGIT_DIFF, .ablation = MECH_ACDC_RESAMPLE, .answer = b->answer,
                        .wrong = b->wrong, .threads = a->threads};
    mech_faith_result r;
    if (mech_eap_faithfulness(a->m, a->g, a->scores, b->clean, b->corrupt, b->B, b->T, &o, a->fracs, a->n_fracs,
                              a->part, &r, &err))
        return cli_fail(a->cmd, &err);
    for (int i = 0; i < a->n_fracs; i++) {
        a->pts[i].frac = a->part[i].frac, a->pts[i].n_edges = a->part[i].n_edges;
        a->pts[i].metric += a->part[i].metric * b->B / a->n;
    }
    a->m_full += r.m_full * b->B / a->n;
    a->m_empty += r.m_empty * b->B / a->n;
    return 0;
}

static char *params_json(const char *model, const char *pairs, const char *dataset, long n, long len, long seed,
                         const char *corruption, const char *metric, const mech_eap_opts *o, long top_n,
                         double threshold, const mech_acdc_graph *g, int prepend_bos, const double *fracs,
                         int n_fracs) {
    mech_buf b = {0};
    mech_buf_puts(&b, "{\"model\": ");
    mech_buf_json_string(&b, model, strlen(model));
    if (dataset) {
        mech_buf_puts(&b, ", \"dataset\": ");
        mech_buf_json_string(&b, dataset, strlen(dataset));
        mech_buf_printf(&b, ", \"n\": %ld, \"len\": %ld, \"seed\": %ld", n, len, seed);
        if (!strcmp(dataset, "compiled")) mech_buf_printf(&b, ", \"corruption\": \"%s\"", corruption);
    } else {
        mech_buf_puts(&b, ", \"pairs\": ");
        mech_buf_json_string(&b, pairs, strlen(pairs));
    }
    char th[32];
    mech_buf_printf(&b, ", \"metric\": \"%s\", \"method\": \"%s\", ", metric, mech_eap_method_name(o->method));
    if (o->method == MECH_EAP_IG_INPUTS || o->method == MECH_EAP_IG_ACTIVATIONS)
        mech_buf_printf(&b, "\"ig_steps\": %d, ", o->ig_steps);
    if (top_n >= 0) mech_buf_printf(&b, "\"top_n\": %ld", top_n);
    else mech_buf_printf(&b, "\"threshold\": %s", cli_shortest(th, threshold));
    mech_buf_printf(&b, ", \"n_layers\": %d, \"n_heads\": %d, \"attn_only\": %s, \"split_embed\": %s", g->n_layers,
                    g->n_heads, g->attn_only ? "true" : "false", g->split_embed ? "true" : "false");
    if (prepend_bos) mech_buf_puts(&b, ", \"prepend_bos\": true");
    if (n_fracs) {
        mech_buf_puts(&b, ", \"faithfulness\": true, \"sizes\": [");
        for (int i = 0; i < n_fracs; i++) mech_buf_printf(&b, "%s%s", i ? ", " : "", cli_shortest(th, fracs[i]));
        mech_buf_puts(&b, "]");
    }
    mech_buf_puts(&b, "}");
    char *s = b.oom ? NULL : mech_strdup(b.data);
    mech_buf_free(&b);
    return s;
}

static int store_row(mech_store *s, int64_t run, const mech_acdc_graph *g, int e, const char *metric, double v,
                     mech_err *err) {
    char site[160];
    const mech_acdc_edge *x = &g->edges[e];
    snprintf(site, sizeof site, "%s->%s", g->nodes[x->sender].name, g->nodes[x->receiver].name);
    const mech_acdc_node *r = &g->nodes[x->receiver];
    mech_result row = {.item = -1, .site = site, .layer = r->layer, .pos = -1, .head = r->head, .token = -1,
                       .rank = -1, .metric = metric, .value = v};
    return mech_store_result(s, run, &row, err) == MECH_OK;
}

// MIB's circuit sizes (fractions of the edges).
#define DEFAULT_SIZES "0.1%,0.2%,0.5%,1%,2%,5%,10%,20%,50%,100%"
#define MAX_SIZES 64

// --sizes: a comma-separated list of fractions of the edges in [0, 1] or
// percentages ("0.5%"). 0 or an exit code.
static int parse_sizes(const char *cmd, const char *list, double *out, int *n) {
    *n = 0;
    const char *p = list;
    while (*p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char item[64];
        if (len == 0 || len >= sizeof item) return cli_usage(cmd, "--sizes '%s': expected fractions or percentages, "
                                                             "e.g. 0.01,0.1,1 or 1%%,10%%,100%%", list);
        memcpy(item, p, len);
        item[len] = 0;
        int pct = item[len - 1] == '%';
        if (pct) item[len - 1] = 0;
        char *stop;
        double v = strtod(item, &stop);
        if (stop == item || *stop || !(v >= 0) || v > (pct ? 100 : 1))
            return cli_usage(cmd, "--sizes: '%.*s' is not a fraction in [0, 1] or a percentage in [0%%, 100%%]", (int)len, p);
        if (*n == MAX_SIZES) return cli_usage(cmd, "--sizes: at most %d sizes", MAX_SIZES);
        out[(*n)++] = pct ? v / 100 : v;
        p += len + (end != NULL);
        if (end && !*p) return cli_usage(cmd, "--sizes '%s': a size is missing after the last comma", list);
    }
    return *n ? 0 : cli_usage(cmd, "--sizes: give at least one size");
}

int cmd_eap(int argc, char **argv) {
    const char *cmd = "eap", *v, *model = NULL, *pairs_path = NULL, *dataset = NULL, *corruption = "random";
    const char *metric = NULL, *db = "mech.db", *dot = NULL, *json = NULL;
    long n = 0, len = 0, seed = 1, top_n = -1, threads = 0, ig_steps = 5;
    const char *method_name = "eap", *steps_given = NULL, *sizes = NULL;
    int faith = 0, rc0;
    mech_faith_point curve[2 * MAX_SIZES];
    double threshold = NAN;
    int prepend_bos = 0;
    const char *n_given = NULL, *len_given = NULL, *seed_given = NULL, *corruption_given = NULL;
    for (int i = 1; i < argc; i++) {
        int r;
        if ((r = cli_opt(cmd, argc, argv, &i, "--model", &model))) { if (r < 0) return 2; }
        else if ((r = cli_opt(cmd, argc, argv, &i, "--pairs", &pairs_path))) { if (r < 0) return 2; }
        else if ((r = cli_opt(cmd, argc, argv, &i, "--dataset", &dataset))) { if (r < 0) return 2; }
        else if ((r = cli_opt(cmd, argc, argv, &i, "--n", &v))) {
            if (r < 0 || cli_int(cmd, "--n", v, 1, 100000, &n)) return 2;
            n_given = "--n";
        } else if ((r = cli_opt(cmd, argc, argv, &i, "--len", &v))) {
            if (r < 0 || cli_int(cmd, "--len", v, 1, 100000, &len)) return 2;
            len_given = "--len";
        } else if ((r = cli_opt(cmd, argc, argv, &i, "--seed", &v))) {
            if (r < 0 || cli_int(cmd, "--seed", v, 0, 2147483647L, &seed)) return 2;
            seed_given = "--seed";
        } else if ((r = cli_opt(cmd, argc, argv, &i, "--corruption", &corruption))) {
            if (r < 0) return 2;
            corruption_given = "--corruption";
        } else if ((r = cli_opt(cmd, argc, argv, &i, "--metric", &metric))) { if (r < 0) return 2; }
        else if ((r = cli_opt(cmd, argc, argv, &i, "--method", &method_name))) { if (r < 0) return 2; }
        else if ((r = cli_opt(cmd, argc, argv, &i, "--ig-steps", &v))) {
            if (r < 0 || cli_int(cmd, "--ig-steps", v, 1, 10000, &ig_steps)) return 2;
            steps_given = "--ig-steps";
        }
        else if ((r = cli_opt(cmd, argc, argv, &i, "--top-n", &v))) {
            if (r < 0 || cli_int(cmd, "--top-n", v, 0, 2147483647L, &top_n)) return 2;
        } else if ((r = cli_opt(cmd, argc, argv, &i, "--threshold", &v))) {
            if (r < 0 || cli_float(cmd, "--threshold", v, 0, HUGE_VAL, &threshold)) return 2;
        } else if ((r = cli_opt(cmd, argc, argv, &i, "--db", &db))) { if (r < 0) return 2; }
        else if ((r = cli_opt(cmd, argc, argv, &i, "--dot", &dot))) { if (r < 0) return 2; }
        else if ((r = cli_opt(cmd, argc, argv, &i, "--json", &json))) { if (r < 0) return 2; }
        else if ((r = cli_opt(cmd, argc, argv, &i, "--threads", &v))) {
            if (r < 0 || cli_threads(cmd, v, &threads)) return 2;
        } else if ((r = cli_opt(cmd, argc, argv, &i, "--sizes", &sizes))) { if (r < 0) return 2; }
        else if (!strcmp(argv[i], "--faithfulness")) faith = 1;
        else if (!strcmp(argv[i], "--prepend-bos")) prepend_bos = 1;
        else if (!strcmp(argv[i], "--no-prepend-bos")) prepend_bos = 0;
        else return cli_usage(cmd, "unknown argument '%s'", argv[i]);
    }
    if (!model) return cli_usage(cmd, "--model is required");
    if (!pairs_path == !dataset) return cli_usage(cmd, "give --pairs FILE or --dataset ioi|greater_than|induction|compiled");
    const char *unused = NULL;
    if (pairs_path) unused = n_given ? n_given : len_given ? len_given : seed_given ? seed_given : corruption_given;
    else if (strcmp(dataset, "compiled") && corruption_given) unused = corruption_given;
    else if ((!strcmp(dataset, "ioi") || !strcmp(dataset, "greater_than")) && len_given) unused = len_given;
    if (unused)
        return cli_usage(cmd, "%s does not apply to %s%s (see --dataset in mech eap --help)", unused,
                         dataset ? "--dataset " : "--pairs", dataset ? dataset : "");
    mech_eap_opts eo = {.ig_steps = (int)ig_steps, .threads = (int)threads};
    if (mech_eap_method_parse(method_name, &eo.method))
        return cli_usage(cmd, "--method '%s': expected eap, eap-ig-inputs, eap-ig-activations or clean-corrupted",
                         method_name);
    int ig = eo.method == MECH_EAP_IG_INPUTS || eo.method == MECH_EAP_IG_ACTIVATIONS;
    if (steps_given && !ig)
        return cli_usage(cmd, "--ig-steps applies to --method eap-ig-inputs or eap-ig-activations, not %s", method_name);
    if (top_n >= 0 && !isnan(threshold)) return cli_usage(cmd, "give --top-n N or --threshold X, not both");
    if (sizes && !faith) return cli_usage(cmd, "--sizes applies to --faithfulness");
    double fracs[MAX_SIZES];
    int n_fracs = 0;
    if (faith && (rc0 = parse_sizes(cmd, sizes ? sizes : DEFAULT_SIZES, fracs, &n_fracs))) return rc0;
    if (top_n < 0 && isnan(threshold)) top_n = 100;
    if (!metric) metric = "logit_diff";
    mech_metric_kind kind;
    if (!strcmp(metric, "logit_diff")) kind = MECH_METRIC_LOGIT_DIFF;
    else if (!strcmp(metric, "logprob")) kind = MECH_METRIC_LOGPROB;
    else if (!strcmp(metric, "kl"))
        return cli_usage(cmd, "--metric kl: the KL to the clean run is at its minimum on the clean run, so its "
                         "gradient there and every EAP score are 0; use logit_diff or logprob");
    else return cli_usage(cmd, "--metric '%s': expected logit_diff or logprob", metric);
    if (faith && kind != MECH_METRIC_LOGIT_DIFF)
        return cli_usage(cmd, "--faithfulness measures the circuits with the logit difference: use --metric logit_diff");
    if (dot && strcmp(dot, "-") && !cli_has_ext(dot, ".dot") && !cli_has_ext(dot, ".gv"))
        return cli_usage(cmd, "--dot '%s': the circuit is written as Graphviz; name the file FILE.dot (or - for stdout)",
                         dot);
    if (json && strcmp(json, "-") && !cli_has_ext(json, ".json"))
        return cli_usage(cmd, "--json '%s': the circuit is written as JSON; name the file FILE.json (or - for stdout)",
                         json);
    if (dot && json && !strcmp(dot, "-") && !strcmp(json, "-"))
        return cli_usage(cmd, "--dot - and --json -: only one of them can go to stdout");

    mech_err err = {0};
    mech_model *m = NULL;
    mech_tokenizer *own = NULL;
    cli_pair *pairs = NULL;
    int n_pairs = 0, n_truth = 0;
    mech_acdc_graph *g = NULL;
    double *scores = NULL;
    uint8_t *truth = NULL;
    char *params = NULL;
    mech_store *s = NULL;
    int64_t run = 0;
    int rc = cli_model_load_blocks(cmd, model, "its graph has no edges", &m);
    if (rc) goto done;
    int compiled = mech_model_meta(m, "mech.rasp.circuit") != NULL;
    const mech_tokenizer *tok = m->tok;
    if (!tok && !compiled && mech_tokenizer_gpt2(&own, &err) == MECH_OK) tok = own;
    rc = dataset ? cli_pairs_dataset(cmd, dataset, n, &len, seed, corruption, m, tok, &pairs, &n_pairs)
                 : cli_pairs_read(cmd, pairs_path, m, tok, &pairs, &n_pairs);
    if (rc) goto done;
    if (dataset) n = n_pairs;
    if (prepend_bos && (rc = cli_pairs_bos(cmd, m, tok, pairs, n_pairs))) goto done;
    for (int i = 0; i < n_pairs; i++) {
        const char *src = pairs_path ? pairs_path : dataset;
        if (pairs[i].n_clean != pairs[i].n_corrupt) {
            fprintf(stderr, "%s:%d: error: the clean and corrupt prompts need the same number of tokens (%zu and %zu)\n",
                    src, pairs[i].line, pairs[i].n_clean, pairs[i].n_corrupt);
            rc = 2;
            goto done;
        }
        if (kind == MECH_METRIC_LOGIT_DIFF && pairs[i].wrong < 0) {
            fprintf(stderr, "%s:%d: error: the logit_diff metric needs a 'wrong' answer\n", src, pairs[i].line);
            rc = 2;
            goto done;
        }
    }
    if (mech_acdc_graph_new(&m->cfg, compiled, &g, &err)) {
        rc = cli_fail(cmd, &err);
        goto done;
    }
    scores = mech_calloc((size_t)g->n_edges + 1, sizeof *scores);
    truth = compiled ? mech_calloc((size_t)g->n_edges + 1, 1) : NULL;
    params = params_json(model, pairs_path, dataset, n, len, seed, corruption, metric, &eo, top_n, threshold, g,
                         prepend_bos, fracs, n_fracs);
    if (!scores || (compiled && !truth) || !params) {
        fprintf(stderr, "mech %s: error: out of memory\n", cmd);
        rc = 1;
        goto done;
    }
    if (compiled && mech_acdc_truth_model(m, g, truth, &n_truth, &err)) {
        rc = cli_fail(cmd, &err);
        goto done;
    }
    if ((rc = cli_run_open(cmd, db, "eap", model, argc, argv, params, &s, &run))) goto done;
    double t0 = mech_now(), value = 0;
    score_acc sa = {cmd, m, g, kind, &eo, n_pairs, mech_calloc((size_t)g->n_edges + 1, sizeof(double)), scores, 0};
    if (!sa.part) fprintf(stderr, "mech %s: error: out of memory\n", cmd), rc = 1;
    else rc = for_each_length(cmd, pairs, n_pairs, score_batch, &sa);
    mech_free(sa.part);
    value = sa.value;
    if (rc) {
        mech_store_run_finish(s, run, "failed", NULL);
        goto done;
    }
    double seconds = mech_now() - t0;
    int any = 0;
    for (int e = 0; e < g->n_edges; e++) any |= scores[e] != 0;
    if (!any)
        fprintf(stderr, "mech %s: warning: every score is 0: the metric's gradient vanishes on these prompts (answer "
                "and wrong the same token, as a compiled model's numerical output gives, or saturated attention)\n",
                cmd);
    if (mech_eap_select(g, scores, (int)top_n, threshold, &err)) {
        rc = cli_run_failed(cmd, s, run, &err);
        goto done;
    }
    mech_acdc_score sc = mech_acdc_truth_score(g, truth);
    double auc = truth ? mech_eap_auc(g, scores, truth) : NAN;
    // The faithfulness curve of the circuits the scores rank.
    mech_faith_result fr = {0};
    if (faith) {
        faith_acc fa = {cmd, m, g, scores, fracs, n_fracs, n_pairs, (int)threads, curve, curve + MAX_SIZES, 0, 0};
        memset(curve, 0, sizeof curve);
        if ((rc = for_each_length(cmd, pairs, n_pairs, faith_batch, &fa))) {
            mech_store_run_finish(s, run, "failed", NULL);
            goto done;
        }
        mech_faith_finish(curve, n_fracs, fa.m_full, fa.m_empty, &fr);
    }
    // Everything in one transaction: the inputs, every score, the circuit, the summary.
    int ok = mech_store_begin(s, &err) == MECH_OK;
    for (int i = 0; ok && i < n_pairs; i++)
        ok = mech_store_prompt(s, run, i, "clean", pairs[i].clean_text, pairs[i].clean, pairs[i].n_clean, &err) == MECH_OK &&
             mech_store_prompt(s, run, i, "corrupt", pairs[i].corrupt_text, pairs[i].corrupt, pairs[i].n_corrupt, &err) ==
                 MECH_OK;
    for (int e = 0; ok && e < g->n_edges; e++) {
        if (g->edges[e].type == MECH_ACDC_PLACEHOLDER) continue;
        ok = store_row(s, run, g, e, "score", scores[e], &err);
        if (ok && g->edges[e].present) ok = store_row(s, run, g, e, "kept", scores[e], &err);
        if (ok && truth && truth[e]) ok = store_row(s, run, g, e, "truth", 1, &err);
    }
    struct { const char *name; double v; } sum[] = {
        {"n_edges", sc.n_found}, {"n_counted", sc.n_counted}, {"metric_clean", value}, {"seconds", seconds},
        {"tpr", sc.tpr}, {"fpr", sc.fpr}, {"n_truth", sc.n_truth}, {"auc", auc},
    };
    for (size_t k = 0; ok && k < sizeof sum / sizeof *sum; k++) {
        if (k >= 4 && !truth) break;
        mech_result row = {.item = -1, .site = "circuit", .layer = -1, .pos = -1, .head = -1, .token = -1, .rank = -1,
                           .metric = sum[k].name, .value = sum[k].v};
        ok = mech_store_result(s, run, &row, &err) == MECH_OK;
    }
    for (int i = 0; ok && faith && i < n_fracs; i++) {
        struct { const char *name; double v; } pt[] = {
            {"edges", curve[i].n_edges}, {"fraction", curve[i].frac}, {"metric", curve[i].metric}, {"f", curve[i].f}};
        for (size_t k = 0; ok && k < sizeof pt / sizeof *pt; k++) {
            mech_result row = {.item = i, .site = "faithfulness", .layer = -1, .pos = -1, .head = -1, .token = -1,
                               .rank = -1, .metric = pt[k].name, .value = pt[k].v};
            ok = mech_store_result(s, run, &row, &err) == MECH_OK;
        }
    }
    struct { const char *name; double v; } fsum[] = {
        {"cpr", fr.cpr}, {"cmd", fr.cmd}, {"m_full", fr.m_full}, {"m_empty", fr.m_empty}};
    for (size_t k = 0; ok && faith && k < sizeof fsum / sizeof *fsum; k++) {
        mech_result row = {.item = -1, .site = "circuit", .layer = -1, .pos = -1, .head = -1, .token = -1, .rank = -1,
                           .metric = fsum[k].name, .value = fsum[k].v};
        ok = mech_store_result(s, run, &row, &err) == MECH_OK;
    }
    ok = ok && mech_store_commit(s, &err) == MECH_OK;
    if (!ok || mech_store_run_finish(s, run, "done", &err)) {
        rc = cli_run_failed(cmd, s, run, &err);
        goto done;
    }
    mech_buf b = {0};
    if (dot) {
        mech_acdc_export_dot(g, truth, &b);
        rc = cli_write_buf(cmd, dot, &b);
        mech_buf_free(&b);
    }
    if (!rc && json) {
        mech_acdc_export_json(g, truth, &b);
        rc = cli_write_buf(cmd, json, &b);
        mech_buf_free(&b);
    }
    if (rc) goto done;
    // with an export on stdout, the report goes to stderr
    FILE *f = (dot && !strcmp(dot, "-")) || (json && !strcmp(json, "-")) ? stderr : stdout;
    char th[32];
    char how[64];
    if (ig) snprintf(how, sizeof how, "EAP-IG %s (%d steps)", eo.method == MECH_EAP_IG_INPUTS ? "inputs" : "activations",
                     eo.ig_steps);
    else snprintf(how, sizeof how, eo.method == MECH_EAP_PLAIN ? "EAP" : "EAP clean-corrupted");
    fprintf(f, "run %lld: %s on %d input%s, metric %s %.6g, %d edges scored in %.3f s -> %s\n", (long long)run, how,
            n_pairs, cli_s(n_pairs), metric, value, sc.n_counted, seconds, db);
    fprintf(f, "circuit: %d of %d edges (%s %s)\n", sc.n_found, sc.n_counted, top_n >= 0 ? "top-n" : "|score| >=",
            top_n >= 0 ? (snprintf(th, sizeof th, "%ld", top_n), th) : cli_shortest(th, threshold));
    fprintf(f, "%sedge (score = first-order metric change when the edge reads the corrupted sender)\n",
            truth ? "found truth  " : "");
    for (int e = 0; e < g->n_edges; e++) {
        const mech_acdc_edge *x = &g->edges[e];
        int t = truth && truth[e];
        if (x->type == MECH_ACDC_PLACEHOLDER || (!x->present && !t)) continue;
        if (truth) fprintf(f, "  %s     %s    ", x->present ? "x" : " ", t ? "x" : " ");
        else fprintf(f, "  ");
        fprintf(f, "%s -> %s  (%.4g)\n", g->nodes[x->sender].name, g->nodes[x->receiver].name, scores[e]);
    }
    if (truth)
        fprintf(f, "TPR %.3f  FPR %.4f  (%d of %d truth edges found, %d false positives); ROC AUC of |score| %.3f\n",
                sc.tpr, sc.fpr, sc.tp, sc.n_truth, sc.fp, auc);
    if (faith) {
        fprintf(f, "faithfulness (top edges by |score|, every other edge reading the corrupted run):\n"
                   "  edges  fraction  logit_diff       f\n");
        // (the ACDC metric is the negated logit difference)
        for (int i = 0; i < n_fracs; i++)
            fprintf(f, "  %5d  %8.4f  %10.4g  %6.3f\n", curve[i].n_edges, curve[i].frac, -curve[i].metric, curve[i].f);
        fprintf(f, "CPR %.4f  CMD %.4f  (logit_diff: all edges %.4g, none %.4g)\n", fr.cpr, fr.cmd, -fr.m_full,
                -fr.m_empty);
        if (isnan(fr.cpr))
            fprintf(stderr, "mech %s: warning: the metric is the same with every edge and with none: f is undefined\n",
                    cmd);
    }
done:
    mech_store_close(s);
    mech_free(params);
    mech_free(truth);
    mech_free(scores);
    mech_acdc_graph_free(g);
    cli_pairs_free(pairs, n_pairs);
    mech_tokenizer_free(own);
    mech_model_free(m);
    return rc;
}
