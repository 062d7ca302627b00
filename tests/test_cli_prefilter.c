/*
** tests/test_cli_prefilter.c: ACDC's --prefilter (interp/acdc.c,
** cli/cmd_acdc.c). Keeping every edge is plain ACDC, trial for trial; edges
** a prefilter removes are ablated from the first evaluation in both
** evaluators (naive and fast agree); the ranking; on compiled RASP models
** the prefiltered search finds plain ACDC's circuit with fewer trials once
** N reaches the truth's edges (with and without ACDC's position shuffle);
** the command stores the prefilter and the EAP scores, resumes from them,
** and refuses what EAP cannot score.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "mech.h"
#include "tests/support/check.h"

#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { SB = 3, ST = 6 };

typedef struct trial_log {
    mech_acdc_trial *t;
    int n, cap;
} trial_log;

static int log_trial(const mech_acdc_trial *t, void *user) {
    trial_log *lg = user;
    if (lg->n == lg->cap) {
        lg->cap = lg->cap ? 2 * lg->cap : 256;
        lg->t = realloc(lg->t, (size_t)lg->cap * sizeof *lg->t);
        assert_non_null(lg->t);
    }
    lg->t[lg->n++] = *t;
    return 0;
}

static mech_acdc_graph *graph(const mech_model *m, int split) {
    mech_err err = {0};
    mech_acdc_graph *g = NULL;
    if (mech_acdc_graph_new(&m->cfg, split, &g, &err)) fail_msg("graph_new: %s", err.msg);
    return g;
}

static int counted(const mech_acdc_graph *g) { return g->n_addition + g->n_direct; }

// ACDC on g (keep < 0: no prefilter) with trials logged.
static void acdc(const mech_model *m, const int32_t *clean, const int32_t *corrupt, int B, int T, mech_acdc_opts o,
                 const double *scores, int keep, mech_acdc_graph *g, trial_log *lg) {
    mech_err err = {0};
    if (keep >= 0 && mech_acdc_prefilter(g, scores, keep, NULL, &err)) fail_msg("prefilter: %s", err.msg);
    o.on_trial = log_trial, o.user = lg;
    mech_acdc_result res;
    if (mech_acdc_run(m, clean, corrupt, B, T, &o, g, &res, &err)) fail_msg("acdc: %s", err.msg);
    assert_int_equal(res.n_trials, lg->n);
}

static void small_inputs(int32_t *clean, int32_t *corrupt, int32_t *ans, int32_t *wrong, uint64_t seed) {
    mech_test_seed(seed * 7919 + 3);
    for (int i = 0; i < SB * ST; i++) clean[i] = (int32_t)(mech_test_urand() * 23), corrupt[i] = (int32_t)(mech_test_urand() * 23);
    for (int b = 0; b < SB; b++) ans[b] = (int32_t)(mech_test_urand() * 23), wrong[b] = (ans[b] + 1) % 23;
}

// ---------------------------------------------------------------------------
// The library

// Keeping every edge changes nothing: the same trials, bit for bit.
static void test_prefilter_all_edges_is_plain(void **state) {
    (void)state;
    mech_model *m = mech_test_small_model(2, 2, 0, 1, 21);
    int32_t clean[SB * ST], corrupt[SB * ST], ans[SB], wrong[SB];
    small_inputs(clean, corrupt, ans, wrong, 4);
    for (int metric = 0; metric < 2; metric++) {
        mech_acdc_opts o = {.metric = metric ? MECH_ACDC_LOGIT_DIFF : MECH_ACDC_KL, .ablation = MECH_ACDC_RESAMPLE,
                            .tau = metric ? 0.05 : 0.01, .answer = ans, .wrong = wrong, .threads = 1};
        mech_acdc_graph *g0 = graph(m, 0), *g1 = graph(m, 0);
        double *scores = calloc((size_t)g1->n_edges, sizeof *scores);
        mech_err err = {0};
        if (mech_acdc_eap_scores(m, g1, clean, corrupt, SB, ST, &o, scores, &err)) fail_msg("%s", err.msg);
        int nonzero = 0;
        for (int e = 0; e < g1->n_edges; e++) nonzero += scores[e] != 0;
        assert_true(nonzero > counted(g1) / 2); // the swapped KL gradient is not 0
        trial_log a = {0}, b = {0};
        acdc(m, clean, corrupt, SB, ST, o, NULL, -1, g0, &a);
        acdc(m, clean, corrupt, SB, ST, o, scores, counted(g1), g1, &b);
        assert_int_equal(a.n, b.n);
        assert_true(a.n > 10);
        for (int i = 0; i < a.n; i++) {
            assert_int_equal(a.t[i].edge, b.t[i].edge);
            assert_int_equal(a.t[i].removed, b.t[i].removed);
            assert_true(a.t[i].before == b.t[i].before && a.t[i].after == b.t[i].after);
        }
        for (int e = 0; e < g0->n_edges; e++) assert_int_equal(g0->edges[e].present, g1->edges[e].present);
        free(a.t), free(b.t), free(scores);
        mech_acdc_graph_free(g0);
        mech_acdc_graph_free(g1);
    }
    mech_model_free(m);
}

// Removed edges are ablated from the start by both evaluators alike (the
// naive one builds a receiver's input from its present edges only once it
// is installed), and never tried.
static void test_prefilter_fast_equals_naive(void **state) {
    (void)state;
    mech_model *m = mech_test_small_model(2, 3, 0, 1, 9);
    int32_t clean[SB * ST], corrupt[SB * ST], ans[SB], wrong[SB];
    small_inputs(clean, corrupt, ans, wrong, 7);
    mech_acdc_opts o = {.metric = MECH_ACDC_KL, .ablation = MECH_ACDC_RESAMPLE, .tau = 0.01, .threads = 1};
    mech_acdc_graph *g[2] = {graph(m, 0), graph(m, 0)};
    double *scores = calloc((size_t)g[0]->n_edges, sizeof *scores);
    mech_err err = {0};
    if (mech_acdc_eap_scores(m, g[0], clean, corrupt, SB, ST, &o, scores, &err)) fail_msg("%s", err.msg);
    int keep = counted(g[0]) / 3;
    trial_log lg[2] = {{0}, {0}};
    for (int naive = 0; naive < 2; naive++) {
        o.naive = naive;
        acdc(m, clean, corrupt, SB, ST, o, scores, keep, g[naive], &lg[naive]);
    }
    assert_int_equal(lg[0].n, lg[1].n);
    assert_true(lg[0].n > 0 && lg[0].n <= keep);
    // the first baseline is the graph with the removed edges ablated: not the full model's 0
    assert_true(lg[0].t[0].before > 1e-6);
    int *rank = malloc(sizeof(int) * (size_t)g[0]->n_edges);
    mech_acdc_graph *gr = graph(m, 0);
    if (mech_acdc_prefilter(gr, scores, keep, rank, &err)) fail_msg("%s", err.msg);
    for (int i = 0; i < lg[0].n; i++) {
        const mech_acdc_trial *a = &lg[0].t[i], *b = &lg[1].t[i];
        assert_int_equal(a->edge, b->edge);
        assert_int_equal(a->removed, b->removed);
        assert_true(rank[a->edge] < keep); // only the kept edges are tried
        double scale = fmax(1e-3, fabs(b->after));
        if (fabs(a->after - b->after) > 1e-4 * scale || fabs(a->before - b->before) > 1e-4 * scale)
            fail_msg("trial %d: fast %.9g -> %.9g, naive %.9g -> %.9g", i, a->before, a->after, b->before, b->after);
    }
    for (int e = 0; e < g[0]->n_edges; e++) assert_int_equal(g[0]->edges[e].present, g[1]->edges[e].present);
    free(rank), free(scores), free(lg[0].t), free(lg[1].t);
    mech_acdc_graph_free(gr);
    mech_acdc_graph_free(g[0]);
    mech_acdc_graph_free(g[1]);
    mech_model_free(m);
}

// The top keep by |score|, ties in graph order; placeholders untouched.
static void test_prefilter_ranking(void **state) {
    (void)state;
    mech_model *m = mech_test_small_model(1, 2, 0, 1, 3);
    mech_acdc_graph *g = graph(m, 0);
    double *s = calloc((size_t)g->n_edges, sizeof *s);
    int *rank = malloc(sizeof(int) * (size_t)g->n_edges), first = -1, second = -1, n = 0;
    for (int e = 0; e < g->n_edges; e++) {
        if (g->edges[e].type == MECH_ACDC_PLACEHOLDER) continue;
        if (first < 0) first = e;
        else if (second < 0) second = e;
        s[e] = ++n % 3 ? 0.5 : -2.0; // every third edge large (negative), the rest tied
    }
    s[second] = NAN; // counts as 0: last
    mech_err err = {0};
    int keep = n / 3 + 2;
    if (mech_acdc_prefilter(g, s, keep, rank, &err)) fail_msg("%s", err.msg);
    int kept = 0, tied_kept = 0, big = 0;
    for (int e = 0; e < g->n_edges; e++) {
        if (g->edges[e].type == MECH_ACDC_PLACEHOLDER) {
            assert_int_equal(g->edges[e].present, 1);
            assert_int_equal(rank[e], -1);
            continue;
        }
        kept += g->edges[e].present;
        assert_int_equal(g->edges[e].present, rank[e] < keep);
        if (s[e] == -2.0) big++, assert_true(g->edges[e].present);
        if (s[e] == 0.5 && g->edges[e].present) tied_kept++;
    }
    assert_int_equal(kept, keep);
    assert_int_equal(tied_kept, keep - big);
    assert_int_equal(rank[first], big); // the first of the tied edges comes right after the large ones
    assert_int_equal(rank[second], n - 1);
    assert_int_equal(mech_acdc_prefilter(g, s, -1, NULL, &err), MECH_ERR_ARG);
    // what EAP cannot score
    int32_t ids[4] = {1, 2, 3, 4};
    mech_acdc_opts o = {.metric = MECH_ACDC_KL, .ablation = MECH_ACDC_ZERO};
    assert_int_equal(mech_acdc_eap_scores(m, g, ids, ids, 1, 4, &o, s, &err), MECH_ERR_ARG);
    o.ablation = MECH_ACDC_RESAMPLE;
    assert_int_equal(mech_acdc_eap_scores(m, g, ids, NULL, 1, 4, &o, s, &err), MECH_ERR_ARG);
    free(s), free(rank);
    mech_acdc_graph_free(g);
    mech_model_free(m);
}

// ---------------------------------------------------------------------------
// Compiled models: the circuit is plain ACDC's once N covers the truth

// shuffle: ACDC's corrupted pass reads positions in torch's randperm(T)
// order for seed 49 (the command's default); EAP does not shuffle.
static void compiled_same_circuit(const char *program, int shuffle, int *n_keep, int *n_counted, int *trials_plain,
                                  int *trials_pre) {
    const char *path = mech_test_tmpn("prefilter.safetensors");
    char *out = NULL;
    if (mech_test_cli(&out, NULL, "compile examples/rasp/%s.rasp -o %s", program, path)) fail_msg("%s", out);
    free(out);
    mech_err err = {0};
    mech_model *m = NULL;
    if (mech_model_load(path, &m, &err)) fail_msg("%s", err.msg);
    enum { N = 40 };
    mech_pair *pairs = NULL;
    if (mech_dataset_compiled(m, N, 0, 1, "random", &pairs, &err)) fail_msg("%s", err.msg);
    int T = pairs[0].n;
    int32_t *clean = malloc(sizeof(int32_t) * N * T), *corrupt = malloc(sizeof(int32_t) * N * T);
    for (int i = 0; i < N; i++) {
        memcpy(clean + i * T, pairs[i].clean, sizeof(int32_t) * T);
        memcpy(corrupt + i * T, pairs[i].corrupt, sizeof(int32_t) * T);
    }
    int32_t *perm = malloc(sizeof(int32_t) * T);
    mech_acdc_torch_randperm(49, T, perm);
    mech_acdc_opts o = {.metric = MECH_ACDC_L2, .ablation = MECH_ACDC_RESAMPLE, .tau = 0.01,
                        .n_out = mech_compiled_n_out(m), .pos_perm = shuffle ? perm : NULL, .threads = 1};
    mech_acdc_graph *g0 = graph(m, 1), *g1 = graph(m, 1);
    uint8_t *truth = calloc((size_t)g0->n_edges, 1);
    double *scores = calloc((size_t)g0->n_edges, sizeof *scores);
    int *rank = malloc(sizeof(int) * (size_t)g0->n_edges);
    if (mech_acdc_truth_model(m, g0, truth, NULL, &err)) fail_msg("%s", err.msg);
    if (mech_acdc_eap_scores(m, g0, clean, corrupt, N, T, &o, scores, &err)) fail_msg("%s", err.msg);
    // N: the smallest that keeps every truth edge
    mech_acdc_graph *gr = graph(m, 1);
    if (mech_acdc_prefilter(gr, scores, 0, rank, &err)) fail_msg("%s", err.msg);
    int keep = 0;
    for (int e = 0; e < g0->n_edges; e++)
        if (truth[e] && rank[e] + 1 > keep) keep = rank[e] + 1;
    trial_log a = {0}, b = {0};
    acdc(m, clean, corrupt, N, T, o, NULL, -1, g0, &a);
    acdc(m, clean, corrupt, N, T, o, scores, keep, g1, &b);
    for (int e = 0; e < g0->n_edges; e++)
        if (g0->edges[e].present != g1->edges[e].present)
            fail_msg("%s, prefilter %d: edge %s -> %s is %s by plain ACDC", program, keep,
                     g0->nodes[g0->edges[e].sender].name, g0->nodes[g0->edges[e].receiver].name,
                     g0->edges[e].present ? "kept" : "removed");
    *n_keep = keep, *n_counted = counted(g0), *trials_plain = a.n, *trials_pre = b.n;
    assert_true(b.n < a.n);
    free(a.t), free(b.t), free(truth), free(scores), free(rank), free(clean), free(corrupt), free(perm);
    mech_acdc_graph_free(gr);
    mech_acdc_graph_free(g0);
    mech_acdc_graph_free(g1);
    mech_pairs_free(pairs, N);
    mech_model_free(m);
    remove(path);
}

static void test_prefilter_compiled(void **state) {
    (void)state;
    static const char *const programs[] = {"reverse", "sort", "hist"};
    for (size_t k = 0; k < sizeof programs / sizeof *programs; k++)
        for (int shuffle = 0; shuffle < 2; shuffle++) {
            int keep, n, ta, tb;
            compiled_same_circuit(programs[k], shuffle, &keep, &n, &ta, &tb);
            print_message("%s%s: prefilter %d of %d edges (every truth edge): plain ACDC's circuit, %d trials "
                          "instead of %d\n", programs[k], shuffle ? " (position shuffle)" : "", keep, n, tb, ta);
        }
}

// ---------------------------------------------------------------------------
// The command

static char *sql1(const char *db, const char *q) {
    char *s = mech_test_sql_rows(db, q);
    size_t n = strlen(s);
    if (n && s[n - 1] == '\n') s[n - 1] = 0;
    return s;
}

static void sql_exec(const char *db, const char *q) {
    sqlite3 *h;
    assert_int_equal(sqlite3_open(db, &h), SQLITE_OK);
    if (sqlite3_exec(h, q, NULL, NULL, NULL) != SQLITE_OK) fail_msg("%s: %s", q, sqlite3_errmsg(h));
    sqlite3_close(h);
}

static void test_cli_prefilter(void **state) {
    (void)state;
    const char *rev = mech_test_tmpn("prefilter-rev.safetensors"), *db = mech_test_tmpn("prefilter.db");
    mech_test_rm_db(db);
    char *out = NULL;
    if (mech_test_cli(&out, NULL, "compile examples/rasp/reverse.rasp -o %s", rev)) fail_msg("%s", out);
    free(out);
    const char *base = "acdc --model %s --dataset compiled --n 40 --tau 0.01 --pos-shuffle off --db %s";
    char cmd[512];
    // run 1: plain; run 2: every edge (1.0); run 3: the top 20
    snprintf(cmd, sizeof cmd, base, rev, db);
    if (mech_test_cli(&out, NULL, "%s", cmd)) fail_msg("%s", out);
    free(out);
    if (mech_test_cli(&out, NULL, "%s --prefilter 1.0", cmd)) fail_msg("%s", out);
    free(out);
    if (mech_test_cli(&out, NULL, "%s --prefilter 20", cmd)) fail_msg("%s", out);
    assert_non_null(strstr(out, "prefilter: ACDC tried the top 20 of 68 edges by EAP"));
    free(out);
    char *p = sql1(db, "select json_extract(params, '$.prefilter') from runs order by id");
    assert_string_equal(p, "NULL\n68\n20");
    free(p);
    // every counted edge's EAP score, and the prefilter in the summary
    p = sql1(db, "select count(*), count(distinct site) from results where run_id = 3 and metric = 'eap_score' and item = -1");
    assert_string_equal(p, "68|68");
    free(p);
    p = sql1(db, "select value from results where run_id = 3 and site = 'circuit' and metric = 'prefilter'");
    assert_string_equal(p, "20.0");
    free(p);
    p = sql1(db, "select count(*) from results where run_id = 1 and metric in ('eap_score', 'prefilter')");
    assert_string_equal(p, "0");
    free(p);
    // the same circuit as plain ACDC (run 1), with fewer trials for run 3
    const char *circuit = "select group_concat(site, ' ') from (select site from results where run_id = %d and "
                          "metric = 'kept' order by site)";
    char q[512];
    snprintf(q, sizeof q, circuit, 1);
    char *c1 = sql1(db, q);
    assert_true(strlen(c1) > 20);
    for (int run = 2; run <= 3; run++) {
        snprintf(q, sizeof q, circuit, run);
        char *c = sql1(db, q);
        assert_string_equal(c, c1);
        free(c);
    }
    free(c1);
    p = sql1(db, "select (select value from results where run_id = 3 and site = 'circuit' and metric = 'trials') < "
                 "(select value from results where run_id = 1 and site = 'circuit' and metric = 'trials')");
    assert_string_equal(p, "1");
    free(p);
    // --resume reads the stored scores: cut run 3 back to its first trial
    sql_exec(db, "delete from results where run_id = 3 and (item >= 1 or metric = 'kept' or site = 'circuit'); "
                 "update runs set status = 'interrupted' where id = 3");
    if (mech_test_cli(&out, NULL, "acdc --resume 3 --db %s", db)) fail_msg("%s", out);
    assert_non_null(strstr(out, "(the run's stored scores)"));
    free(out);
    snprintf(q, sizeof q, circuit, 3);
    c1 = sql1(db, q);
    snprintf(q, sizeof q, circuit, 1);
    char *c0 = sql1(db, q);
    assert_string_equal(c1, c0);
    free(c1), free(c0);
    // refused: bad values, zero ablation, the position shuffle, --resume with it
    static const char *const bad[] = {"--prefilter 0", "--prefilter 1.5", "--prefilter abc", "--prefilter -3",
                                      "--prefilter 10 --ablation zero"};
    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
        assert_int_equal(mech_test_cli(&out, NULL, "%s %s", cmd, bad[k]), 2);
        free(out);
    }
    // with the position shuffle (the default): run 4
    if (mech_test_cli(&out, NULL, "acdc --model %s --dataset compiled --n 40 --tau 0.01 --prefilter 60 --db %s", rev, db))
        fail_msg("%s", out);
    free(out);
    sql_exec(db, "update runs set status = 'interrupted' where id = 3");
    assert_int_equal(mech_test_cli(&out, NULL, "acdc --resume 3 --prefilter 10 --db %s", db), 2);
    free(out);
    p = sql1(db, "select count(*) from runs");
    assert_string_equal(p, "4");
    free(p);
    mech_test_rm_db(db);
    remove(rev);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_prefilter_all_edges_is_plain),
        cmocka_unit_test(test_prefilter_fast_equals_naive),
        cmocka_unit_test(test_prefilter_ranking),
        cmocka_unit_test(test_prefilter_compiled),
        cmocka_unit_test(test_cli_prefilter),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
