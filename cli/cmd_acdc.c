/*
** cli/cmd_acdc.c: `mech acdc`: automatic circuit discovery (interp/acdc.c)
** from the command line. One run per threshold and ablation in the results
** database (kind "acdc"): the inputs as prompts, every trial as it is
** decided (one transaction per receiver, or per 64 trials), the final
** circuit, and for compiled RASP models the ground truth and TPR/FPR;
** `--sweep` adds a run of kind "acdc-sweep" with the ROC AUC per ablation.
** Ctrl-C or kill keeps the finished trials; --resume RUN replays them and
** goes on to the same circuit. What is stored: docs/schema.md, "ACDC runs".
*/
#include "cli/cli.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

// ---------------------------------------------------------------------------
// The specification of a run (what --resume must reproduce)

typedef struct acdc_spec {
    const char *model, *pairs, *dataset, *corruption, *metric, *ablation;
    const char *positions; // KL rows: last (default), all, or induction (the repeated half)
    long n, len, seed;
    long pos_shuffle; // seed of the corrupted pass's position shuffle (compiled models, resample); -1: none
    double tau;
    int heads_ascending, naive, abs_value;
    int prepend_bos; // <|endoftext|> in front of every prompt (--prepend-bos)
    long prefilter;  // ACDC tries only the top N edges by EAP (0: every edge)
} acdc_spec;

static const char *const metric_names[] = {"kl", "logit_diff", "l2"};
static const char *const ablation_names[] = {"resample", "zero"};

static int name_index(const char *s, const char *const *names, int n) {
    for (int i = 0; i < n; i++)
        if (s && !strcmp(s, names[i])) return i;
    return -1;
}

// Everything the run depends on, as JSON (also compared on --resume).
static char *spec_json(const acdc_spec *sp, const mech_acdc_graph *g, int n_out, int B, int T, int64_t sweep) {
    mech_buf b = {0};
    mech_buf_puts(&b, "{\"model\": ");
    mech_buf_json_string(&b, sp->model, strlen(sp->model));
    if (sp->dataset) {
        mech_buf_puts(&b, ", \"dataset\": ");
        mech_buf_json_string(&b, sp->dataset, strlen(sp->dataset));
        mech_buf_printf(&b, ", \"n\": %ld, \"len\": %ld, \"seed\": %ld", sp->n, sp->len, sp->seed);
        if (!strcmp(sp->dataset, "compiled")) mech_buf_printf(&b, ", \"corruption\": \"%s\"", sp->corruption);
    } else {
        mech_buf_puts(&b, ", \"pairs\": ");
        mech_buf_json_string(&b, sp->pairs, strlen(sp->pairs));
    }
    char tau[32];
    mech_buf_printf(&b, ", \"tau\": %s, \"metric\": \"%s\", \"ablation\": \"%s\", \"heads\": \"%s\"",
                    cli_shortest(tau, sp->tau), sp->metric, sp->ablation, sp->heads_ascending ? "ascending" : "descending");
    mech_buf_printf(&b, ", \"naive\": %s, \"abs_value\": %s, \"pos_shuffle\": %ld", sp->naive ? "true" : "false",
                    sp->abs_value ? "true" : "false", sp->pos_shuffle);
    mech_buf_printf(&b, ", \"positions\": \"%s\"", sp->positions ? sp->positions : "last");
    mech_buf_printf(&b, ", \"n_out\": %d, \"B\": %d, \"T\": %d", n_out, B, T);
    mech_buf_printf(&b, ", \"n_layers\": %d, \"n_heads\": %d, \"attn_only\": %s, \"split_embed\": %s", g->n_layers,
                    g->n_heads, g->attn_only ? "true" : "false", g->split_embed ? "true" : "false");
    if (sp->prepend_bos) mech_buf_puts(&b, ", \"prepend_bos\": true");
    if (sp->prefilter > 0) mech_buf_printf(&b, ", \"prefilter\": %ld", sp->prefilter);
    if (sweep) mech_buf_printf(&b, ", \"sweep\": %lld", (long long)sweep);
    mech_buf_puts(&b, "}");
    char *s = b.oom ? NULL : mech_strdup(b.data);
    mech_buf_free(&b);
    return s;
}

// Fills sp from a stored run's params (strings borrowed from j).
static int spec_from_json(const mech_json *j, acdc_spec *sp) {
    memset(sp, 0, sizeof *sp);
    sp->model = mech_json_str(j, "model", NULL);
    sp->dataset = mech_json_str(j, "dataset", NULL);
    sp->pairs = mech_json_str(j, "pairs", NULL);
    sp->corruption = mech_json_str(j, "corruption", NULL);
    sp->metric = mech_json_str(j, "metric", NULL);
    sp->ablation = mech_json_str(j, "ablation", NULL);
    sp->n = (long)mech_json_num(j, "n", 20), sp->len = (long)mech_json_num(j, "len", 0), sp->seed = (long)mech_json_num(j, "seed", 1);
    sp->tau = mech_json_num(j, "tau", NAN);
    const char *heads = mech_json_str(j, "heads", NULL);
    sp->heads_ascending = heads && !strcmp(heads, "ascending");
    sp->naive = mech_json_bool(j, "naive");
    sp->abs_value = mech_json_bool(j, "abs_value");
    sp->prepend_bos = mech_json_bool(j, "prepend_bos");
    sp->pos_shuffle = (long)mech_json_num(j, "pos_shuffle", -1);
    sp->positions = mech_json_str(j, "positions", NULL);
    sp->prefilter = (long)mech_json_num(j, "prefilter", 0);
    if (!sp->corruption) sp->corruption = "random";
    return sp->model && (sp->dataset || sp->pairs) && sp->metric && sp->ablation && !isnan(sp->tau) ? 0 : -1;
}

// ---------------------------------------------------------------------------
// What every run of one invocation shares

typedef struct acdc_ctx {
    const char *cmd, *db;
    int argc;
    char **argv;
    mech_model *m;
    int compiled, n_out, threads;
    cli_pair *pairs;
    int n_pairs, B, T;
    int32_t *clean, *corrupt, *answer, *wrong; // [B*T], [B*T], [B], [B]
    mech_store *s;
    uint8_t *truth;  // [graph edges] for compiled models, else NULL
    int n_truth;
    int quiet;       // sweep: one line per run instead of the circuit
    double *eap;     // [graph edges] EAP scores of a new run with --prefilter, else NULL
    double eap_seconds;
    volatile int *stop; // set by Ctrl-C / SIGTERM
} acdc_ctx;

// One run's storage state while trials come in.
typedef struct run_state {
    acdc_ctx *c;
    const mech_acdc_graph *g;
    int64_t run;
    int64_t item;      // index of the next trial
    int in_tx, pending, last_receiver;
    double tx_start;
    mech_err err;
    int failed;
    cli_progress bar; // receivers done
} run_state;

static int store_trial(const mech_acdc_trial *t, void *user) {
    run_state *rs = user;
    const mech_acdc_graph *g = rs->g;
    const mech_acdc_edge *e = &g->edges[t->edge];
    mech_store *s = rs->c->s;
    if (rs->in_tx && (e->receiver != rs->last_receiver || rs->pending >= 64 || mech_now() - rs->tx_start > 1.0)) {
        if (mech_store_commit(s, &rs->err)) goto fail;
        rs->in_tx = 0, rs->pending = 0;
    }
    if (!rs->in_tx) {
        if (mech_store_begin(s, &rs->err)) goto fail;
        rs->in_tx = 1, rs->tx_start = mech_now();
    }
    rs->last_receiver = e->receiver;
    char site[160];
    snprintf(site, sizeof site, "%s->%s", g->nodes[e->sender].name, g->nodes[e->receiver].name);
    const mech_acdc_node *r = &g->nodes[e->receiver];
    mech_result row = {.item = (int)rs->item, .site = site, .layer = r->layer, .pos = -1, .head = r->head,
                       .token = -1, .rank = -1};
    // macs and seconds: the run's cost so far, which a resumed run continues from
    const char *names[6] = {"before", "after", "effect", "removed", "macs", "seconds"};
    double vals[6] = {t->before, t->after, t->after - t->before, t->removed ? 1 : 0, (double)t->macs, t->seconds};
    for (int k = 0; k < 6; k++) {
        row.metric = names[k], row.value = vals[k];
        if (mech_store_result(s, rs->run, &row, &rs->err)) goto fail;
    }
    rs->item++, rs->pending++;
    return 0;
fail:
    rs->failed = 1;
    return 1;
}

static int flush_trials(run_state *rs) {
    if (!rs->in_tx) return 0;
    rs->in_tx = 0;
    if (mech_store_commit(rs->c->s, &rs->err)) {
        mech_store_rollback(rs->c->s, NULL);
        rs->failed = 1;
        return -1;
    }
    return 0;
}

static void show_progress(const mech_acdc_progress *p, void *user) {
    run_state *rs = user;
    char detail[128];
    snprintf(detail, sizeof detail, "%lld trials, %lld edges removed, %.0f trials/s", (long long)p->trials,
             (long long)p->edges_removed, p->seconds > 0 ? (double)p->trials / p->seconds : 0);
    rs->bar.total = p->receivers_total;
    cli_progress_detail(&rs->bar, p->receivers_done, detail);
}

// Resolves "SENDER->RECEIVER" to an edge of g, or -1.
static int edge_by_site(const mech_acdc_graph *g, const char *site) {
    const char *arrow = strstr(site, "->");
    if (!arrow || arrow - site >= 64) return -1;
    char sname[64];
    memcpy(sname, site, (size_t)(arrow - site));
    sname[arrow - site] = 0;
    int sv = mech_acdc_graph_node(g, sname), rv = mech_acdc_graph_node(g, arrow + 2);
    return sv < 0 || rv < 0 ? -1 : mech_acdc_graph_edge(g, sv, rv);
}

// The stored trials of run, in order. OUT: *trials (mech_free), *n.
static int read_trials(acdc_ctx *c, int64_t run, const mech_acdc_graph *g, mech_acdc_trial **trials, int *n) {
    mech_err err = {0};
    mech_result_row *rows = NULL;
    size_t nr = 0;
    *trials = NULL, *n = 0;
    if (mech_store_results_get(c->s, run, NULL, &rows, &nr, &err)) return cli_fail(c->cmd, &err);
    int max_item = -1;
    for (size_t i = 0; i < nr; i++)
        if (rows[i].item > max_item && strcmp(rows[i].site, "circuit") && strcmp(rows[i].metric, "truth") &&
            strcmp(rows[i].metric, "kept"))
            max_item = rows[i].item;
    mech_acdc_trial *t = mech_calloc((size_t)max_item + 2, sizeof *t);
    unsigned char *seen = mech_calloc((size_t)max_item + 2, 1);
    int rc = t && seen ? 0 : 1;
    for (size_t i = 0; !rc && i < nr; i++) {
        const mech_result_row *r = &rows[i];
        if (r->item < 0) continue;
        int which = !strcmp(r->metric, "before") ? 0 : !strcmp(r->metric, "after") ? 1 : !strcmp(r->metric, "removed") ? 2
                  : !strcmp(r->metric, "macs") ? 3 : !strcmp(r->metric, "seconds") ? 4 : -1;
        if (which < 0) continue;
        int e = edge_by_site(g, r->site);
        if (e < 0) {
            fprintf(stderr, "mech %s: error: run %lld: trial %d names an edge '%s' this model's graph lacks\n", c->cmd,
                    (long long)run, r->item, r->site);
            rc = 1;
            break;
        }
        t[r->item].edge = e;
        if (which == 0) t[r->item].before = r->value;
        else if (which == 1) t[r->item].after = r->value;
        else if (which == 2) t[r->item].removed = r->value != 0;
        else if (which == 3) t[r->item].macs = (int64_t)r->value; // absent in older runs: 0, unknown
        else t[r->item].seconds = r->value;
        if (which < 3) seen[r->item] |= (unsigned char)(1 << which);
    }
    for (int i = 0; !rc && i <= max_item; i++)
        if (seen[i] != 7) {
            fprintf(stderr, "mech %s: error: run %lld: trial %d is incomplete in the database\n", c->cmd, (long long)run, i);
            rc = 1;
        }
    mech_store_results_free(rows, nr);
    mech_free(seen);
    if (rc) {
        mech_free(t);
        return rc;
    }
    *trials = t, *n = max_item + 1;
    return 0;
}

// ---------------------------------------------------------------------------
// Printing

static void print_circuit(const acdc_ctx *c, const mech_acdc_graph *g) {
    const uint8_t *truth = c->truth;
    printf("%s%s\n", truth ? "found truth  " : "", "edge (effect = metric change when removed)");
    for (int e = 0; e < g->n_edges; e++) {
        const mech_acdc_edge *x = &g->edges[e];
        if (x->type == MECH_ACDC_PLACEHOLDER) continue;
        int t = truth && truth[e];
        if (!x->present && !t) continue;
        if (truth) printf("  %s     %s    ", x->present ? "x" : " ", t ? "x" : " ");
        else printf("  ");
        printf("%s -> %s", g->nodes[x->sender].name, g->nodes[x->receiver].name);
        if (!isnan(x->effect)) printf("  (%.4g)", x->effect);
        printf("\n");
    }
}

// ---------------------------------------------------------------------------
// One ACDC run (new or resumed)

// KL rows other than the last: every position (after BOS for compiled
// models), or the induction dataset's repeated half, where the next token is
// predictable (the reference's mask_repeat_candidates). *mask NULL for the
// last position. -1 when out of memory.
static int positions_mask(const acdc_ctx *c, const acdc_spec *sp, uint8_t **mask) {
    *mask = NULL;
    if (!sp->positions || !strcmp(sp->positions, "last")) return 0;
    *mask = mech_calloc((size_t)c->B * c->T, 1);
    if (!*mask) return -1;
    // (with --prepend-bos the halves start one position later)
    int bos = sp->prepend_bos;
    int from = !strcmp(sp->positions, "induction") ? (c->T - bos + 1) / 2 + bos : c->compiled ? 1 : bos;
    for (int b = 0; b < c->B; b++)
        for (int t = from; t < c->T; t++) (*mask)[(size_t)b * c->T + t] = 1;
    return 0;
}

// --prefilter: the EAP scores a resumed run stored when it started.
static int read_eap(acdc_ctx *c, int64_t run, const mech_acdc_graph *g, double *scores) {
    mech_err err = {0};
    mech_result_row *rows = NULL;
    size_t nr = 0;
    if (mech_store_results_get(c->s, run, NULL, &rows, &nr, &err)) return cli_fail(c->cmd, &err);
    int n = 0;
    for (int e = 0; e < g->n_edges; e++) scores[e] = 0;
    for (size_t i = 0; i < nr; i++) {
        if (rows[i].item != -1 || strcmp(rows[i].metric, "eap_score")) continue;
        int e = edge_by_site(g, rows[i].site);
        if (e >= 0) scores[e] = rows[i].value, n++;
    }
    mech_store_results_free(rows, nr);
    if (n != g->n_addition + g->n_direct) {
        fprintf(stderr, "mech %s: error: run %lld: its prefilter's EAP scores are incomplete in the database (%d of %d)\n",
                c->cmd, (long long)run, n, g->n_addition + g->n_direct);
        return 1;
    }
    return 0;
}

typedef struct run_out {
    int64_t run;
    mech_acdc_score score;
    int n_edges;
} run_out;

static int run_acdc(acdc_ctx *c, const acdc_spec *sp, int64_t resume, int64_t sweep, run_out *out) {
    const char *cmd = c->cmd;
    mech_err err = {0};
    mech_acdc_graph *g = NULL;
    mech_acdc_trial *replay = NULL;
    int n_replay = 0, rc = 0;
    char *params = NULL;
    int metric = name_index(sp->metric, metric_names, 3), ablation = name_index(sp->ablation, ablation_names, 2);
    memset(out, 0, sizeof *out);
    if (mech_acdc_graph_new(&c->m->cfg, c->compiled, &g, &err)) return cli_fail(cmd, &err);
    params = spec_json(sp, g, c->n_out, c->B, c->T, sweep);
    if (!params) {
        mech_acdc_graph_free(g);
        fprintf(stderr, "mech %s: error: out of memory\n", cmd);
        return 1;
    }
    int64_t run = resume;
    // --prefilter: ACDC starts from the top edges by EAP (the run's own stored
    // scores when resumed), every other edge removed
    double *eap = NULL;
    if (sp->prefilter > 0) {
        eap = resume ? mech_malloc((size_t)g->n_edges * sizeof *eap) : c->eap;
        if (!eap) {
            fprintf(stderr, "mech %s: error: out of memory\n", cmd);
            rc = 1;
            goto done;
        }
        if ((resume && (rc = read_eap(c, run, g, eap)))) goto done;
        if (mech_acdc_prefilter(g, eap, (int)sp->prefilter, NULL, &err)) {
            rc = cli_fail(cmd, &err);
            goto done;
        }
    }
    if (resume) {
        if ((rc = read_trials(c, run, g, &replay, &n_replay))) goto done;
        if (mech_store_run_finish(c->s, run, "running", &err)) {
            rc = cli_fail(cmd, &err);
            goto done;
        }
    } else {
        mech_buf line = {0};
        mech_buf_puts(&line, "mech");
        for (int i = 0; i < c->argc; i++) mech_buf_printf(&line, " %s", c->argv[i]);
        if (mech_store_run_new(c->s, "acdc", sp->model, line.data, params, &run, &err)) {
            mech_buf_free(&line);
            rc = cli_fail(cmd, &err);
            goto done;
        }
        mech_buf_free(&line);
        // the inputs and the truth, in one transaction
        int ok = mech_store_begin(c->s, &err) == MECH_OK;
        for (int i = 0; ok && i < c->B; i++) {
            ok = mech_store_prompt(c->s, run, i, "clean", c->pairs[i].clean_text, c->clean + (size_t)i * c->T, c->T,
                                   &err) == MECH_OK &&
                 mech_store_prompt(c->s, run, i, "corrupt", c->pairs[i].corrupt_text, c->corrupt + (size_t)i * c->T,
                                   c->T, &err) == MECH_OK;
        }
        // the prefilter's ranking: every counted edge's EAP score
        for (int e = 0; ok && eap && e < g->n_edges; e++) {
            if (g->edges[e].type == MECH_ACDC_PLACEHOLDER) continue;
            char site[160];
            snprintf(site, sizeof site, "%s->%s", g->nodes[g->edges[e].sender].name, g->nodes[g->edges[e].receiver].name);
            const mech_acdc_node *r = &g->nodes[g->edges[e].receiver];
            mech_result row = {.item = -1, .site = site, .layer = r->layer, .pos = -1, .head = r->head, .token = -1,
                               .rank = -1, .metric = "eap_score", .value = eap[e]};
            ok = mech_store_result(c->s, run, &row, &err) == MECH_OK;
        }
        for (int e = 0; ok && c->truth && e < g->n_edges; e++) {
            if (!c->truth[e]) continue;
            char site[160];
            snprintf(site, sizeof site, "%s->%s", g->nodes[g->edges[e].sender].name, g->nodes[g->edges[e].receiver].name);
            const mech_acdc_node *r = &g->nodes[g->edges[e].receiver];
            mech_result row = {.item = -1, .site = site, .layer = r->layer, .pos = -1, .head = r->head, .token = -1,
                               .rank = -1, .metric = "truth", .value = 1};
            ok = mech_store_result(c->s, run, &row, &err) == MECH_OK;
        }
        ok = ok && mech_store_commit(c->s, &err) == MECH_OK;
        if (!ok) {
            rc = cli_run_failed(cmd, c->s, run, &err);
            goto done;
        }
    }
    out->run = run;
    if (!c->quiet)
        fprintf(stderr, "run %lld: ACDC on %d input%s of %d token%s, tau %g, metric %s, %s ablation%s -> %s\n",
                (long long)run, c->B, cli_s(c->B), c->T, cli_s(c->T), sp->tau, sp->metric, sp->ablation,
                n_replay ? " (resumed)" : "", c->db);
    if (!c->quiet && eap)
        fprintf(stderr, "run %lld: prefilter: ACDC tries the top %ld of %d edges by EAP%s\n", (long long)run,
                sp->prefilter, g->n_addition + g->n_direct, resume ? " (the run's stored scores)" : "");
    run_state rs = {.c = c, .g = g, .run = run, .item = n_replay, .last_receiver = -1};
    cli_progress_start(&rs.bar, "acdc receivers", 0);
    mech_acdc_opts o = {.metric = (mech_acdc_metric)metric, .ablation = (mech_acdc_ablation)ablation, .tau = sp->tau,
                        .abs_value = sp->abs_value, .heads_ascending = sp->heads_ascending, .naive = sp->naive,
                        .answer = c->answer, .wrong = c->wrong, .n_out = c->n_out, .replay = replay,
                        .n_replay = n_replay, .on_trial = store_trial, .progress = show_progress, .user = &rs,
                        .cancel = c->stop, .threads = c->threads};
    // The reference's Tracr tasks scramble positions in the corrupted pass
    // (torch.manual_seed(49); randperm(T)); without it resample ablation
    // cannot see what positional edges carry.
    int32_t *perm = NULL;
    if (g->split_embed && ablation == MECH_ACDC_RESAMPLE && sp->pos_shuffle >= 0) {
        perm = mech_malloc((size_t)c->T * sizeof *perm);
        if (!perm) {
            mech_err_set(&err, MECH_ERR_NOMEM, "out of memory");
            rc = cli_run_failed(cmd, c->s, run, &err);
            goto done;
        }
        mech_acdc_torch_randperm((uint64_t)sp->pos_shuffle, c->T, perm);
        o.pos_perm = perm;
    }
    uint8_t *mask = NULL;
    if (positions_mask(c, sp, &mask)) {
        mech_free(perm);
        mech_err_set(&err, MECH_ERR_NOMEM, "out of memory");
        rc = cli_run_failed(cmd, c->s, run, &err);
        goto done;
    }
    o.mask = mask;
    mech_acdc_result res = {0};
    mech_status st = mech_acdc_run(c->m, c->clean, ablation == MECH_ACDC_ZERO ? NULL : c->corrupt, c->B, c->T, &o, g,
                                   &res, &err);
    mech_free(perm);
    mech_free(mask);
    cli_progress_end(&rs.bar);
    flush_trials(&rs);
    if (rs.failed) {
        rc = cli_run_failed(cmd, c->s, run, &rs.err);
        goto done;
    }
    if (st == MECH_ERR_CANCELLED || *c->stop) {
        mech_store_run_finish(c->s, run, "interrupted", NULL);
        fprintf(stderr, "interrupted: %lld trials are kept; continue with: mech acdc --resume %lld --db %s\n",
                (long long)rs.item, (long long)run, c->db);
        rc = CLI_EXIT_INTERRUPTED;
        goto done;
    }
    if (st) {
        rc = cli_run_failed(cmd, c->s, run, &err);
        goto done;
    }
    // The circuit and its summary, in one transaction.
    mech_acdc_score sc = mech_acdc_truth_score(g, c->truth);
    int ok = mech_store_begin(c->s, &err) == MECH_OK;
    for (int e = 0; ok && e < g->n_edges; e++) {
        const mech_acdc_edge *x = &g->edges[e];
        if (x->type == MECH_ACDC_PLACEHOLDER || !x->present) continue;
        char site[160];
        snprintf(site, sizeof site, "%s->%s", g->nodes[x->sender].name, g->nodes[x->receiver].name);
        const mech_acdc_node *r = &g->nodes[x->receiver];
        mech_result row = {.item = -1, .site = site, .layer = r->layer, .pos = -1, .head = r->head, .token = -1,
                           .rank = -1, .metric = "kept", .value = x->effect};
        ok = mech_store_result(c->s, run, &row, &err) == MECH_OK;
    }
    struct { const char *name; double v; } sum[] = {
        {"n_edges", sc.n_found}, {"n_counted", sc.n_counted}, {"metric_final", res.metric_final},
        {"trials", (double)(n_replay + res.n_trials)}, {"seconds", res.seconds}, {"macs", (double)res.macs},
        {"tpr", c->truth ? sc.tpr : NAN}, {"fpr", c->truth ? sc.fpr : NAN}, {"n_truth", c->truth ? sc.n_truth : NAN},
        {"prefilter", eap ? (double)sp->prefilter : NAN}, {"eap_seconds", eap && !resume ? c->eap_seconds : NAN},
    };
    for (size_t k = 0; ok && k < sizeof sum / sizeof *sum; k++) {
        if (isnan(sum[k].v) && k >= 6) continue;
        mech_result row = {.item = -1, .site = "circuit", .layer = -1, .pos = -1, .head = -1, .token = -1, .rank = -1,
                           .metric = sum[k].name, .value = sum[k].v};
        ok = mech_store_result(c->s, run, &row, &err) == MECH_OK;
    }
    ok = ok && mech_store_commit(c->s, &err) == MECH_OK;
    if (!ok || mech_store_run_finish(c->s, run, "done", &err)) {
        rc = cli_run_failed(cmd, c->s, run, &err);
        goto done;
    }
    out->score = sc;
    out->n_edges = sc.n_found;
    if (!c->quiet) {
        long long trials = n_replay + res.n_trials;
        printf("run %lld: %d of %d edges kept (tau %g, %s, %s ablation), %lld trial%s in %.2f s, metric %.6g\n",
               (long long)run, sc.n_found, sc.n_counted, sp->tau, sp->metric, sp->ablation, trials, cli_s(trials),
               res.seconds, res.metric_final);
        if (eap)
            printf("prefilter: ACDC tried the top %ld of %d edges by EAP%s\n", sp->prefilter, sc.n_counted,
                   resume ? "" : " (the other edges were removed before it started)");
        print_circuit(c, g);
        if (c->truth)
            printf("TPR %.3f  FPR %.4f  (%d of %d truth edges found, %d false positives)\n", sc.tpr, sc.fpr, sc.tp,
                   sc.n_truth, sc.fp);
    }
done:
    if (eap != c->eap) mech_free(eap);
    mech_free(replay);
    mech_free(params);
    mech_acdc_graph_free(g);
    return rc;
}

// ---------------------------------------------------------------------------
// Subcommands

static int count_edges(const char *cmd, const char *model) {
    mech_err err = {0};
    mech_model *m = NULL;
    mech_acdc_graph *g = NULL;
    int rc = cli_model_load_blocks(cmd, model, "its graph has no edges", &m);
    if (rc) return rc;
    int compiled = mech_model_meta(m, "mech.rasp.circuit") != NULL;
    if (mech_acdc_graph_new(&m->cfg, compiled, &g, &err)) {
        mech_model_free(m);
        return cli_fail(cmd, &err);
    }
    int receivers = 0;
    for (int v = 0; v < g->n_nodes; v++) {
        mech_acdc_node_kind k = g->nodes[v].kind;
        receivers += k == MECH_ACDC_Q_INPUT || k == MECH_ACDC_K_INPUT || k == MECH_ACDC_V_INPUT ||
                     k == MECH_ACDC_MLP_IN || k == MECH_ACDC_RESID_POST;
    }
    printf("%d counted edges (%d addition + %d direct), %d placeholder; %d nodes, %d receivers%s\n",
           g->n_addition + g->n_direct, g->n_addition, g->n_direct, g->n_placeholder, g->n_nodes, receivers,
           compiled ? "; split embeddings (compiled model)" : "");
    mech_acdc_graph_free(g);
    mech_model_free(m);
    return 0;
}


static int export_run(const char *cmd, int argc, char **argv) {
    const char *db = "mech.db", *dot = NULL, *json = NULL;
    long run = 0;
    for (int i = 2; i < argc; i++) {
        int r;
        if ((r = cli_opt(cmd, argc, argv, &i, "--db", &db))) { if (r < 0) return 2; }
        else if ((r = cli_opt(cmd, argc, argv, &i, "--dot", &dot))) { if (r < 0) return 2; }
        else if ((r = cli_opt(cmd, argc, argv, &i, "--json", &json))) { if (r < 0) return 2; }
        else if (argv[i][0] != '-' && !run) {
            if (cli_int(cmd, "RUN", argv[i], 1, 2147483647L, &run)) return 2;
        } else return cli_usage(cmd, "unknown argument '%s'", argv[i]);
    }
    if (!run) return cli_usage(cmd, "export: give the run id: mech acdc export RUN --dot FILE | --json FILE");
    if (!dot && !json) return cli_usage(cmd, "export: give --dot FILE and/or --json FILE");
    // each file in the format its name says; - is stdout, for one of them
    if (dot && strcmp(dot, "-") && !cli_has_ext(dot, ".dot") && !cli_has_ext(dot, ".gv"))
        return cli_usage(cmd, "--dot '%s': the circuit is written as Graphviz; name the file FILE.dot (or - for stdout)",
                         dot);
    if (json && strcmp(json, "-") && !cli_has_ext(json, ".json"))
        return cli_usage(cmd, "--json '%s': the circuit is written as JSON; name the file FILE.json (or - for stdout)",
                         json);
    if (dot && json && !strcmp(dot, "-") && !strcmp(json, "-"))
        return cli_usage(cmd, "--dot - and --json -: only one of them can go to stdout");
    mech_err err = {0};
    mech_store *s = NULL;
    mech_run_info info = {0};
    mech_json *pj = NULL;
    mech_acdc_graph *g = NULL;
    mech_result_row *rows = NULL;
    size_t nr = 0;
    uint8_t *truth = NULL;
    int rc = cli_store_open(cmd, db, 0, &s);
    if (rc) goto done;
    if (mech_store_run_info(s, run, &info, &err)) {
        rc = err.code == MECH_ERR_RANGE ? cli_usage(cmd, "%s", err.msg) : cli_fail(cmd, &err);
        goto done;
    }
    if ((strcmp(info.kind, "acdc") && strcmp(info.kind, "eap")) || !info.params_json || // eap: same graph and rows
        mech_json_parse(info.params_json, strlen(info.params_json), &pj, NULL)) {
        rc = cli_usage(cmd, "run %ld is of kind '%s', not an ACDC run", run, info.kind);
        goto done;
    }
    mech_config cfg = {0};
    cfg.n_layers = (int)mech_json_num(pj, "n_layers", 0);
    cfg.n_heads = (int)mech_json_num(pj, "n_heads", 0);
    cfg.attn_only = mech_json_bool(pj, "attn_only");
    if (mech_acdc_graph_new(&cfg, mech_json_bool(pj, "split_embed"), &g, &err) ||
        mech_store_results_get(s, run, NULL, &rows, &nr, &err)) {
        rc = cli_fail(cmd, &err);
        goto done;
    }
    truth = mech_calloc((size_t)g->n_edges + 1, 1);
    if (!truth) {
        rc = 1;
        goto done;
    }
    // Effects from the trials; the circuit from the "kept" rows of a finished
    // run (its summary is written with them, so a circuit that kept no edge
    // is empty, not unfinished), else every edge no trial removed (a run
    // still going or stopped).
    int finished = 0, has_truth = 0;
    for (size_t i = 0; i < nr; i++) finished |= !strcmp(rows[i].site, "circuit") && !strcmp(rows[i].metric, "n_edges");
    for (int e = 0; e < g->n_edges; e++)
        if (g->edges[e].type != MECH_ACDC_PLACEHOLDER) g->edges[e].present = !finished;
    for (size_t i = 0; i < nr; i++) {
        const mech_result_row *r = &rows[i];
        int kept = !strcmp(r->metric, "kept"), tr = !strcmp(r->metric, "truth");
        int eff = !strcmp(r->metric, "effect") || !strcmp(r->metric, "score"), rem = !strcmp(r->metric, "removed");
        if (!kept && !tr && !eff && !rem) continue;
        int e = edge_by_site(g, r->site);
        if (e < 0) continue;
        if (kept) g->edges[e].present = 1;
        if (tr) truth[e] = 1, has_truth = 1;
        if (eff) g->edges[e].effect = r->value;
        if (rem && !finished && r->value != 0) g->edges[e].present = 0;
    }
    mech_buf b = {0};
    if (dot) {
        mech_acdc_export_dot(g, has_truth ? truth : NULL, &b);
        rc = cli_write_buf(cmd, dot, &b);
        mech_buf_free(&b);
    }
    if (!rc && json) {
        mech_acdc_export_json(g, has_truth ? truth : NULL, &b);
        rc = cli_write_buf(cmd, json, &b);
        mech_buf_free(&b);
    }
    if (!rc) {
        // with an export on stdout, the summary goes to stderr
        FILE *f = (dot && !strcmp(dot, "-")) || (json && !strcmp(json, "-")) ? stderr : stdout;
        int n = mech_acdc_graph_count_present(g);
        fprintf(f, "run %ld: %d edge%s%s%s%s%s%s\n", run, n, cli_s(n), dot ? " -> " : "",
                dot ? (strcmp(dot, "-") ? dot : "stdout") : "", dot && json ? ", " : json ? " -> " : "",
                json ? (strcmp(json, "-") ? json : "stdout") : "", finished ? "" : " (run not finished)");
    }
done:
    mech_store_results_free(rows, nr);
    mech_free(truth);
    mech_acdc_graph_free(g);
    mech_json_free(pj);
    mech_store_run_info_deinit(&info);
    mech_store_close(s);
    return rc;
}

// ACDC runs one batch, so every prompt needs one length. The IOI templates
// differ in length (the reference uses a single template): from a dataset
// 50 times larger, keep the first n pairs of its most common length.
static int equal_lengths(const char *cmd, const acdc_spec *sp, const mech_model *m, const mech_tokenizer *tok,
                         cli_pair **pairs, int *n) {
    int same = 1;
    for (int i = 1; i < *n; i++) same &= (*pairs)[i].n_clean == (*pairs)[0].n_clean;
    if (same) return 0;
    cli_pair *big = NULL;
    int n_big = 0;
    long want = sp->n * 50 > 100000 ? 100000 : sp->n * 50;
    long len = sp->len;
    int rc = cli_pairs_dataset(cmd, sp->dataset, want, &len, sp->seed, sp->corruption, m, tok, &big, &n_big);
    if (rc) return rc;
    // the most common length (ties: the shorter)
    size_t best = 0;
    int best_count = 0;
    for (int i = 0; i < n_big; i++) {
        int count = 0;
        for (int j = 0; j < n_big; j++) count += big[j].n_clean == big[i].n_clean && big[j].n_corrupt == big[i].n_clean;
        if (count > best_count || (count == best_count && big[i].n_clean < best)) best = big[i].n_clean, best_count = count;
    }
    cli_pair *keep = calloc((size_t)sp->n, sizeof *keep);
    int k = 0;
    for (int i = 0; keep && i < n_big && k < sp->n; i++)
        if (big[i].n_clean == best && big[i].n_corrupt == best) {
            keep[k] = big[i];
            keep[k].line = k + 1;
            memset(&big[i], 0, sizeof big[i]); // now owned by keep
            k++;
        }
    cli_pairs_free(big, n_big);
    if (!keep || k < sp->n) {
        cli_pairs_free(keep, k);
        fprintf(stderr, "mech %s: error: --dataset %s: fewer than %ld prompts of one length among %ld\n", cmd,
                sp->dataset, sp->n, want);
        return keep ? 2 : 1;
    }
    cli_pairs_free(*pairs, *n);
    *pairs = keep, *n = k;
    return 0;
}

// "1e-4,1e-3" -> taus (at most cap). Returns the count, or -1 (printed).
static int parse_taus(const char *cmd, const char *s, double *taus, int cap) {
    int n = 0;
    const char *p = s;
    while (*p) {
        char *end;
        double t = strtod(p, &end);
        if (end == p || !(t >= 0) || !isfinite(t) || (*end && *end != ',') || n == cap) {
            cli_usage(cmd, "--taus '%s': expected a comma-separated list of thresholds >= 0 (at most %d)", s, cap);
            return -1;
        }
        taus[n++] = t;
        p = *end ? end + 1 : end;
    }
    if (!n) cli_usage(cmd, "--taus is empty");
    return n ? n : -1;
}

// --prefilter N (edges) or F (a fraction of them, with a decimal point):
// sp->prefilter gets the count and c->eap the EAP scores of the run's own
// inputs and metric (interp/acdc.c: mech_acdc_eap_scores), computed once for
// every run of a sweep. ablations: a sweep's list, or NULL. 0 or an exit code.
static int prefilter_scores(acdc_ctx *c, acdc_spec *sp, const char *arg, const char *ablations) {
    const char *cmd = c->cmd;
    mech_err err = {0};
    mech_acdc_graph *g = NULL;
    if (mech_acdc_graph_new(&c->m->cfg, c->compiled, &g, &err)) return cli_fail(cmd, &err);
    int counted = g->n_addition + g->n_direct, rc = 0;
    char *end = NULL;
    double x = strtod(arg, &end);
    int frac = strchr(arg, '.') != NULL;
    if (end == arg || *end || !(x > 0) || (frac ? x > 1 : x != floor(x) || x > 2147483647.0)) {
        rc = cli_usage(cmd, "--prefilter '%s': expected a number of edges (1 or more) or a fraction of them (0 < F <= 1, "
                       "e.g. 0.1)", arg);
        goto done;
    }
    sp->prefilter = frac ? (long)ceil(x * counted) : (long)x;
    if (sp->prefilter > counted) sp->prefilter = counted;
    // EAP scores resample ablation on the corrupted inputs as they are
    int zero = ablations ? strstr(ablations, "zero") != NULL : !strcmp(sp->ablation, "zero");
    if (zero) {
        rc = cli_usage(cmd, "--prefilter ranks edges by EAP, which scores resample ablation (corrupted inputs); "
                       "it does not apply to zero ablation%s", ablations ? " (give --ablations resample)" : "");
        goto done;
    }
    uint8_t *mask = NULL;
    c->eap = mech_malloc((size_t)g->n_edges * sizeof *c->eap);
    if (!c->eap || positions_mask(c, sp, &mask)) {
        fprintf(stderr, "mech %s: error: out of memory\n", cmd);
        rc = 1;
        goto done;
    }
    mech_acdc_opts o = {.metric = (mech_acdc_metric)name_index(sp->metric, metric_names, 3),
                        .ablation = MECH_ACDC_RESAMPLE, .answer = c->answer, .wrong = c->wrong, .mask = mask,
                        .n_out = c->n_out, .threads = c->threads};
    double t0 = mech_now();
    if (mech_acdc_eap_scores(c->m, g, c->clean, c->corrupt, c->B, c->T, &o, c->eap, &err)) rc = cli_fail(cmd, &err);
    c->eap_seconds = mech_now() - t0;
    mech_free(mask);
    if (!rc)
        fprintf(stderr, "prefilter: EAP scored %d edges in %.2f s; ACDC tries the top %ld\n", counted, c->eap_seconds,
                sp->prefilter);
done:
    mech_acdc_graph_free(g);
    return rc;
}

// ---------------------------------------------------------------------------
// The command

// The options --resume compares with the run's own (arg: "--tau" or "--tau=1").
static int is_compared(const char *arg) {
    static const char *const names[] = {"--model", "--tau", "--metric", "--ablation"};
    size_t n = strcspn(arg, "=");
    for (size_t k = 0; k < sizeof names / sizeof *names; k++)
        if (strlen(names[k]) == n && !strncmp(arg, names[k], n)) return 1;
    return 0;
}

int cmd_acdc(int argc, char **argv) {
    const char *cmd = "acdc", *v, *taus_s = NULL, *ablations_s = NULL, *db = "mech.db", *prefilter_s = NULL;
    if (argc > 1 && !strcmp(argv[1], "export")) return export_run(cmd, argc, argv);
    acdc_spec sp = {.n = 0, .len = 0, .seed = 1, .pos_shuffle = 49, .corruption = "random", .tau = NAN};
    long resume = 0, threads = 0;
    int count = 0, sweep = 0, given = 0;
    // options given that apply only to some inputs or modes (checked below)
    const char *n_given = NULL, *len_given = NULL, *seed_given = NULL, *corruption_given = NULL;
    const char *tau_given = NULL, *ablation_given = NULL, *pos_shuffle_given = NULL, *not_count = NULL;
    const char *unchecked = NULL; // the first run option --resume does not compare
    for (int i = 1; i < argc; i++) {
        int r, spec = 1;
        const char *arg = argv[i];
        if ((r = cli_opt(cmd, argc, argv, &i, "--model", &sp.model))) { if (r < 0) return 2; arg = NULL; }
        else if ((r = cli_opt(cmd, argc, argv, &i, "--pairs", &sp.pairs))) { if (r < 0) return 2; }
        else if ((r = cli_opt(cmd, argc, argv, &i, "--dataset", &sp.dataset))) { if (r < 0) return 2; }
        else if ((r = cli_opt(cmd, argc, argv, &i, "--n", &v))) {
            if (r < 0 || cli_int(cmd, "--n", v, 1, 100000, &sp.n)) return 2;
            n_given = "--n";
        } else if ((r = cli_opt(cmd, argc, argv, &i, "--len", &v))) {
            if (r < 0 || cli_int(cmd, "--len", v, 1, 100000, &sp.len)) return 2;
            len_given = "--len";
        } else if ((r = cli_opt(cmd, argc, argv, &i, "--seed", &v))) {
            if (r < 0 || cli_int(cmd, "--seed", v, 0, 2147483647L, &sp.seed)) return 2;
            seed_given = "--seed";
        } else if ((r = cli_opt(cmd, argc, argv, &i, "--corruption", &sp.corruption))) {
            if (r < 0) return 2;
            corruption_given = "--corruption";
        } else if ((r = cli_opt(cmd, argc, argv, &i, "--tau", &v))) {
            if (r < 0 || cli_float(cmd, "--tau", v, 0, HUGE_VAL, &sp.tau)) return 2;
            tau_given = "--tau";
        } else if ((r = cli_opt(cmd, argc, argv, &i, "--taus", &taus_s))) { if (r < 0) return 2; }
        else if ((r = cli_opt(cmd, argc, argv, &i, "--metric", &sp.metric))) { if (r < 0) return 2; }
        else if ((r = cli_opt(cmd, argc, argv, &i, "--ablation", &sp.ablation))) {
            if (r < 0) return 2;
            ablation_given = "--ablation";
        }
        else if ((r = cli_opt(cmd, argc, argv, &i, "--ablations", &ablations_s))) { if (r < 0) return 2; }
        else if ((r = cli_opt(cmd, argc, argv, &i, "--positions", &sp.positions))) { if (r < 0) return 2; }
        else if ((r = cli_opt(cmd, argc, argv, &i, "--prefilter", &prefilter_s))) { if (r < 0) return 2; }
        else if ((r = cli_opt(cmd, argc, argv, &i, "--pos-shuffle", &v))) {
            if (r < 0) return 2;
            pos_shuffle_given = "--pos-shuffle";
            if (!strcmp(v, "off")) sp.pos_shuffle = -1;
            else if (cli_int(cmd, "--pos-shuffle", v, 0, 2147483647L, &sp.pos_shuffle)) return 2;
        } else if (!strcmp(argv[i], "--heads-ascending")) sp.heads_ascending = 1;
        else if (!strcmp(argv[i], "--naive")) sp.naive = 1;
        else if (!strcmp(argv[i], "--abs-value")) sp.abs_value = 1;
        else if (!strcmp(argv[i], "--prepend-bos")) sp.prepend_bos = 1;
        else if (!strcmp(argv[i], "--no-prepend-bos")) sp.prepend_bos = 0;
        else if (!strcmp(argv[i], "--sweep")) sweep = 1;
        else if (!strcmp(argv[i], "--count-edges")) count = 1, spec = 0, arg = NULL;
        else if ((r = cli_opt(cmd, argc, argv, &i, "--db", &db))) { if (r < 0) return 2; spec = 0; }
        else if ((r = cli_opt(cmd, argc, argv, &i, "--threads", &v))) {
            if (r < 0 || cli_threads(cmd, v, &threads)) return 2;
            spec = 0;
        } else if ((r = cli_opt(cmd, argc, argv, &i, "--resume", &v))) {
            if (r < 0 || cli_int(cmd, "--resume", v, 1, 2147483647L, &resume)) return 2;
            spec = 0;
        } else return cli_usage(cmd, "unknown argument '%s'", argv[i]);
        given += spec;
        if (arg && !not_count) not_count = arg;
        // --resume compares these with the run's own; any other is refused
        if (spec && !unchecked && arg && !is_compared(arg)) unchecked = arg;
    }
    // Options of a mode or input that was not chosen are refused, not ignored.
    if (count) {
        if (!sp.model) return cli_usage(cmd, "--count-edges needs --model MODEL");
        if (not_count)
            return cli_usage(cmd, "%s does not apply to --count-edges (it takes only --model: it counts the "
                             "graph's edges and runs and stores nothing)", not_count);
        return count_edges(cmd, sp.model);
    }
    if (!sweep && (taus_s || ablations_s))
        return cli_usage(cmd, "%s goes with --sweep (one run takes --tau and --ablation)", taus_s ? "--taus" : "--ablations");
    if (sweep && (tau_given || ablation_given))
        return cli_usage(cmd, "%s does not apply to --sweep (a sweep takes --taus T1,T2,... and --ablations LIST)",
                         tau_given ? tau_given : ablation_given);
    // as `mech patch`: the dataset options go with the datasets that use them
    const char *unused = NULL;
    if (sp.pairs && !sp.dataset)
        unused = n_given ? n_given : len_given ? len_given : seed_given ? seed_given : corruption_given;
    else if (sp.dataset && strcmp(sp.dataset, "compiled") && corruption_given) unused = corruption_given;
    else if (sp.dataset && (!strcmp(sp.dataset, "ioi") || !strcmp(sp.dataset, "greater_than")) && len_given)
        unused = len_given;
    if (unused)
        return cli_usage(cmd, "%s does not apply to %s%s (see --dataset in mech acdc --help)", unused,
                         sp.dataset ? "--dataset " : "--pairs", sp.dataset ? sp.dataset : "");
    if (sp.positions && !strcmp(sp.positions, "induction") && sp.dataset && strcmp(sp.dataset, "induction"))
        return cli_usage(cmd, "--positions induction reads the repeated half of induction prompts; it does not "
                         "apply to --dataset %s", sp.dataset);

    acdc_ctx c = {.cmd = cmd, .db = db, .argc = argc, .argv = argv, .threads = (int)threads};
    mech_err err = {0};
    mech_json *stored = NULL;
    mech_run_info info = {0};
    mech_tokenizer *own = NULL;
    int rc = 0;
    if (resume) {
        // The run's own options; any given here must agree with them.
        mech_store *ro = NULL; // a mistyped --db must not be created
        if ((rc = cli_store_open(cmd, db, 0, &ro))) goto done;
        mech_store_close(ro);
        if ((rc = cli_store_open(cmd, db, 1, &c.s))) goto done;
        if (mech_store_run_info(c.s, resume, &info, &err)) {
            rc = err.code == MECH_ERR_RANGE ? cli_usage(cmd, "--resume %ld: %s", resume, err.msg) : cli_fail(cmd, &err);
            goto done;
        }
        acdc_spec st;
        if ((strcmp(info.kind, "acdc") && strcmp(info.kind, "eap")) || !info.params_json || // eap: same graph and rows
            mech_json_parse(info.params_json, strlen(info.params_json), &stored, NULL) ||
            spec_from_json(stored, &st)) {
            rc = cli_usage(cmd, "--resume %ld: the run is of kind '%s', not an ACDC run", resume, info.kind);
            goto done;
        }
        if (!strcmp(info.status, "done")) {
            rc = cli_usage(cmd, "--resume %ld: the run is already done (see mech acdc export %ld --dot FILE)", resume,
                           resume);
            goto done;
        }
        if (sweep) {
            rc = cli_usage(cmd, "--resume continues one run; it does not take --sweep");
            goto done;
        }
        if (given && ((sp.model && strcmp(sp.model, st.model)) || (!isnan(sp.tau) && sp.tau != st.tau) ||
                      (sp.metric && strcmp(sp.metric, st.metric)) || (sp.ablation && strcmp(sp.ablation, st.ablation)))) {
            rc = cli_usage(cmd, "--resume %ld: the options differ from the run's own (%s); give only --resume and --db",
                           resume, info.params_json);
            goto done;
        }
        if (unchecked) {
            rc = cli_usage(cmd, "--resume %ld continues the run with its own options; %s does not apply (give only "
                           "--resume, --db and --threads)", resume, unchecked);
            goto done;
        }
        sp = st;
        if ((rc = cli_resume_check_model(cmd, resume, sp.model, info.model_hash))) goto done;
    }
    if (!sp.model) {
        rc = cli_usage(cmd, "--model is required (or --count-edges --model M, or export RUN)");
        goto done;
    }
    if (!sp.pairs == !sp.dataset) {
        rc = cli_usage(cmd, "give --pairs FILE or --dataset ioi|greater_than|induction|compiled");
        goto done;
    }
    if (sp.metric && name_index(sp.metric, metric_names, 3) < 0) {
        rc = cli_usage(cmd, "--metric '%s': expected kl, logit_diff or l2", sp.metric);
        goto done;
    }
    if (sp.ablation && name_index(sp.ablation, ablation_names, 2) < 0) {
        rc = cli_usage(cmd, "--ablation '%s': expected resample or zero", sp.ablation);
        goto done;
    }
    if (sp.positions && strcmp(sp.positions, "last") && strcmp(sp.positions, "all") && strcmp(sp.positions, "induction")) {
        rc = cli_usage(cmd, "--positions '%s': expected last, all or induction", sp.positions);
        goto done;
    }
    if (!sweep && !resume && isnan(sp.tau)) {
        rc = cli_usage(cmd, "give the threshold --tau T (e.g. --tau 0.01), or --sweep for a list of them");
        goto done;
    }
    if ((rc = cli_model_load_blocks(cmd, sp.model, "its graph has no edges to prune", &c.m))) goto done;
    c.compiled = mech_model_meta(c.m, "mech.rasp.circuit") != NULL;
    if (c.compiled) c.n_out = mech_compiled_n_out(c.m);
    if (!sp.metric) sp.metric = c.compiled ? "l2" : "kl";
    if (!sp.ablation) sp.ablation = "resample";
    if (sp.positions && strcmp(sp.positions, "last") && strcmp(sp.metric, "kl")) {
        rc = cli_usage(cmd, "--positions is for --metric kl (logit_diff reads the last position, l2 every one)");
        goto done;
    }
    if (pos_shuffle_given && !c.compiled) {
        rc = cli_usage(cmd, "--pos-shuffle is for compiled RASP models (split embeddings); %s is not one", sp.model);
        goto done;
    }
    if (pos_shuffle_given && (sweep ? ablations_s && !strstr(ablations_s, "resample") : strcmp(sp.ablation, "resample"))) {
        rc = cli_usage(cmd, "--pos-shuffle shuffles the corrupted pass of resample ablation; it does not apply to "
                       "zero ablation");
        goto done;
    }
    if (!strcmp(sp.metric, "logit_diff") && c.compiled) {
        rc = cli_usage(cmd, "--metric logit_diff is for language models; a compiled model's output is read with l2");
        goto done;
    }
    const mech_tokenizer *tok = c.m->tok;
    if (!tok && !c.compiled && mech_tokenizer_gpt2(&own, &err) == MECH_OK) tok = own;
    rc = sp.dataset ? cli_pairs_dataset(cmd, sp.dataset, sp.n, &sp.len, sp.seed, sp.corruption, c.m, tok, &c.pairs,
                                        &c.n_pairs)
                    : cli_pairs_read(cmd, sp.pairs, c.m, tok, &c.pairs, &c.n_pairs);
    if (rc) goto done;
    if (sp.dataset) sp.n = c.n_pairs; // the dataset's default when not given
    if (sp.dataset && (rc = equal_lengths(cmd, &sp, c.m, tok, &c.pairs, &c.n_pairs))) goto done;
    if (sp.prepend_bos && (rc = cli_pairs_bos(cmd, c.m, tok, c.pairs, c.n_pairs))) goto done;
    c.B = c.n_pairs, c.T = (int)c.pairs[0].n_clean;
    for (int i = 0; i < c.B; i++)
        if ((int)c.pairs[i].n_clean != c.T || (int)c.pairs[i].n_corrupt != c.T) {
            fprintf(stderr, "%s:%d: error: ACDC runs one batch: every clean and corrupt prompt needs %d tokens "
                    "(this pair has %zu and %zu)\n", sp.pairs ? sp.pairs : sp.dataset, c.pairs[i].line, c.T,
                    c.pairs[i].n_clean, c.pairs[i].n_corrupt);
            rc = 2;
            goto done;
        }
    if (!strcmp(sp.metric, "logit_diff"))
        for (int i = 0; i < c.B; i++)
            if (c.pairs[i].wrong < 0) {
                fprintf(stderr, "%s:%d: error: the logit_diff metric needs a 'wrong' answer\n",
                        sp.pairs ? sp.pairs : sp.dataset, c.pairs[i].line);
                rc = 2;
                goto done;
            }
    c.clean = mech_malloc((size_t)c.B * c.T * sizeof *c.clean);
    c.corrupt = mech_malloc((size_t)c.B * c.T * sizeof *c.corrupt);
    c.answer = mech_malloc((size_t)c.B * sizeof *c.answer);
    c.wrong = mech_malloc((size_t)c.B * sizeof *c.wrong);
    if (!c.clean || !c.corrupt || !c.answer || !c.wrong) {
        fprintf(stderr, "mech %s: error: out of memory\n", cmd);
        rc = 1;
        goto done;
    }
    for (int i = 0; i < c.B; i++) {
        memcpy(c.clean + (size_t)i * c.T, c.pairs[i].clean, (size_t)c.T * sizeof(int32_t));
        memcpy(c.corrupt + (size_t)i * c.T, c.pairs[i].corrupt, (size_t)c.T * sizeof(int32_t));
        c.answer[i] = c.pairs[i].answer, c.wrong[i] = c.pairs[i].wrong;
    }
    if (c.compiled) {
        mech_acdc_graph *g = NULL;
        if (mech_acdc_graph_new(&c.m->cfg, 1, &g, &err)) {
            rc = cli_fail(cmd, &err);
            goto done;
        }
        c.truth = mech_calloc((size_t)g->n_edges + 1, 1);
        if (!c.truth) err.code = MECH_ERR_NOMEM;
        if (!c.truth || mech_acdc_truth_model(c.m, g, c.truth, &c.n_truth, &err)) {
            mech_acdc_graph_free(g);
            rc = cli_fail(cmd, &err);
            goto done;
        }
        mech_acdc_graph_free(g);
    }
    if (prefilter_s && (rc = prefilter_scores(&c, &sp, prefilter_s, sweep ? ablations_s ? ablations_s : "zero,resample" : NULL))) goto done;
    if (!c.s && (rc = cli_store_open(cmd, db, 1, &c.s))) goto done;
    c.stop = cli_interrupts_catch();
    if (!sweep) {
        run_out out;
        rc = run_acdc(&c, &sp, resume, 0, &out);
        goto done;
    }

    // --- the sweep: every tau for every ablation, then the AUC per ablation
    double taus[64];
    int n_tau = 0;
    if (taus_s) {
        if ((n_tau = parse_taus(cmd, taus_s, taus, 64)) < 0) {
            rc = 2;
            goto done;
        }
    } else {
        for (int k = 0; k <= 14; k++) taus[n_tau++] = pow(10.0, -6 + 0.5 * k); // 1e-6 .. 1e1
    }
    int abl[2], n_abl = 0;
    if (!ablations_s) ablations_s = "zero,resample";
    {
        char buf[64];
        snprintf(buf, sizeof buf, "%s", ablations_s);
        for (char *t = strtok(buf, ","); t && n_abl < 2; t = strtok(NULL, ",")) {
            int a = name_index(t, ablation_names, 2);
            if (a < 0) {
                rc = cli_usage(cmd, "--ablations '%s': expected zero, resample or both (zero,resample)", ablations_s);
                goto done;
            }
            abl[n_abl++] = a;
        }
    }
    int64_t sweep_run = 0;
    {
        mech_buf pb = {0};
        mech_buf_puts(&pb, "{\"model\": ");
        mech_buf_json_string(&pb, sp.model, strlen(sp.model));
        mech_buf_printf(&pb, ", \"metric\": \"%s\", \"n_tau\": %d", sp.metric, n_tau);
        if (sp.prefilter > 0) mech_buf_printf(&pb, ", \"prefilter\": %ld", sp.prefilter);
        mech_buf_puts(&pb, "}");
        mech_buf line = {0};
        mech_buf_puts(&line, "mech");
        for (int i = 0; i < argc; i++) mech_buf_printf(&line, " %s", argv[i]);
        mech_status st = mech_store_run_new(c.s, "acdc-sweep", sp.model, line.data, pb.data, &sweep_run, &err);
        mech_buf_free(&pb);
        mech_buf_free(&line);
        if (st) {
            rc = cli_fail(cmd, &err);
            goto done;
        }
    }
    c.quiet = 1;
    printf("sweep run %lld: %d threshold%s x %d ablation%s, metric %s%s\n", (long long)sweep_run, n_tau, cli_s(n_tau),
           n_abl, cli_s(n_abl), sp.metric, c.truth ? "" : " (no ground truth: not a compiled model)");
    if (c.truth) printf("truth: %d edge%s\n", c.n_truth, cli_s(c.n_truth));
    printf("%-9s %-10s %6s %8s %7s %7s\n", "ablation", "tau", "run", "edges", "TPR", "FPR");
    for (int a = 0; a < n_abl && !rc; a++) {
        mech_acdc_roc_point pts[64];
        acdc_spec one = sp;
        one.ablation = ablation_names[abl[a]];
        for (int k = 0; k < n_tau && !rc; k++) {
            one.tau = taus[k];
            run_out out;
            if ((rc = run_acdc(&c, &one, 0, sweep_run, &out))) break;
            pts[k] = (mech_acdc_roc_point){out.score.fpr, out.score.tpr};
            printf("%-9s %-10.3g %6lld %8d", one.ablation, one.tau, (long long)out.run, out.n_edges);
            if (c.truth) printf(" %7.3f %7.4f", out.score.tpr, out.score.fpr);
            printf("\n");
            fflush(stdout);
            mech_result row = {.item = k, .site = one.ablation, .layer = -1, .pos = -1, .head = -1, .token = -1,
                               .rank = -1};
            const char *names[5] = {"tau", "run", "n_edges", "tpr", "fpr"};
            double vals[5] = {one.tau, (double)out.run, out.n_edges, c.truth ? out.score.tpr : NAN,
                              c.truth ? out.score.fpr : NAN};
            int ok = mech_store_begin(c.s, &err) == MECH_OK;
            for (int q = 0; ok && q < (c.truth ? 5 : 3); q++) {
                row.metric = names[q], row.value = vals[q];
                ok = mech_store_result(c.s, sweep_run, &row, &err) == MECH_OK;
            }
            if (!ok || mech_store_commit(c.s, &err)) rc = cli_run_failed(cmd, c.s, sweep_run, &err);
        }
        if (!rc && c.truth) {
            double auc = mech_acdc_auc(pts, n_tau);
            printf("%s ablation: AUC %.3f\n", one.ablation, auc);
            mech_result row = {.item = -1, .site = one.ablation, .layer = -1, .pos = -1, .head = -1, .token = -1,
                               .rank = -1, .metric = "auc", .value = auc};
            if (mech_store_result(c.s, sweep_run, &row, &err)) rc = cli_run_failed(cmd, c.s, sweep_run, &err);
        }
    }
    if (sweep_run) {
        const char *status = rc ? (*c.stop ? "interrupted" : "failed") : "done";
        mech_store_run_finish(c.s, sweep_run, status, NULL);
    }
done:
    cli_interrupts_release();
    mech_free(c.eap);
    mech_free(c.truth);
    mech_free(c.clean);
    mech_free(c.corrupt);
    mech_free(c.answer);
    mech_free(c.wrong);
    cli_pairs_free(c.pairs, c.n_pairs);
    mech_store_close(c.s);
    mech_json_free(stored);
    mech_store_run_info_deinit(&info);
    mech_tokenizer_free(own);
    mech_model_free(c.m);
    return rc;
}
