/*
** tests/test_cli_acdc.c: `mech acdc` as a user runs it: edge counts of
** `mech init` models (the reference's 32,923 for GPT-2 small's shape and 305
** for a 2-layer attention-only model with 8 heads), a run on a compiled
** program that recovers its circuit and stores every trial, the sweep's AUC,
** export to Graphviz and JSON, resume after SIGINT and SIGKILL reaching the
** same circuit, and usage errors (exit 2 with the reason).
** The binary comes from $MECH_BIN (set by `make test`), else ./mech.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "mech.h"
#include "tests/support/check.h"

#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define mech(out, ...) mech_test_cli(out, NULL, __VA_ARGS__)

static void assert_has(const char *hay, const char *needle) {
    if (!strstr(hay, needle)) fail_msg("output does not contain '%s':\n%s", needle, hay);
}

// First column of the first row of sql, as text ("" for none); owned.
static char *query(const char *db, const char *sql) {
    sqlite3 *h;
    if (sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) fail_msg("cannot open %s", db);
    sqlite3_busy_timeout(h, 5000);
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(h, sql, -1, &q, NULL) != SQLITE_OK) fail_msg("%s: %s", sql, sqlite3_errmsg(h));
    char *r = strdup("");
    if (sqlite3_step(q) == SQLITE_ROW && sqlite3_column_text(q, 0)) {
        free(r);
        r = strdup((const char *)sqlite3_column_text(q, 0));
    }
    sqlite3_finalize(q);
    sqlite3_close(h);
    return r;
}

static long query_long(const char *db, const char *sql) {
    char *s = query(db, sql);
    long v = atol(s);
    free(s);
    return v;
}

// ---------------------------------------------------------------------------

static void test_acdc_count_edges(void **state) {
    (void)state;
    char *out;
    const char *m = mech_test_tmpn("acdc_small_shape.safetensors");
    // GPT-2 small's shape (12 layers x 12 heads, MLPs); widths do not matter
    assert_int_equal(mech(&out, "init -o %s --layers 12 --heads 12 --d-model 24 --d-head 2 --d-mlp 24 --vocab 16 "
                                "--n-ctx 8", m), 0);
    free(out);
    assert_int_equal(mech(&out, "acdc --count-edges --model %s", m), 0);
    assert_has(out, "32923 counted edges (32491 addition + 432 direct), 444 placeholder; 1034 nodes, 445 receivers");
    free(out);
    assert_int_equal(mech(&out, "init -o %s --layers 2 --heads 8 --d-model 16 --d-head 2 --vocab 16 --n-ctx 8 "
                                "--attn-only", m), 0);
    free(out);
    assert_int_equal(mech(&out, "acdc --count-edges --model %s", m), 0);
    assert_has(out, "305 counted edges (257 addition + 48 direct), 48 placeholder; 114 nodes, 49 receivers");
    free(out);
    // a compiled model: hook_embed and hook_pos_embed are two senders
    const char *rev = mech_test_tmpn("acdc_rev_count.safetensors");
    assert_int_equal(mech(&out, "compile examples/rasp/reverse.rasp -o %s", rev), 0);
    free(out);
    assert_int_equal(mech(&out, "acdc --count-edges --model %s", rev), 0);
    assert_has(out, "68 counted edges (59 addition + 9 direct), 12 placeholder");
    assert_has(out, "split embeddings");
    free(out);
    unlink(m);
    unlink(rev);
}

// Zero ablation on reverse recovers the compiler's circuit exactly; every
// trial is in the database, with the circuit and its truth.
static void test_acdc_compiled_run_and_export(void **state) {
    (void)state;
    char *out;
    const char *rev = mech_test_tmpn("acdc_rev.safetensors"), *db = mech_test_tmpn("acdc_rev.db");
    const char *dot = mech_test_tmpn("acdc_rev.dot"), *json = mech_test_tmpn("acdc_rev.json");
    mech_test_rm_db(db);
    assert_int_equal(mech(&out, "compile examples/rasp/reverse.rasp -o %s", rev), 0);
    free(out);
    assert_int_equal(mech(&out, "acdc --model %s --dataset compiled --n 12 --len 4 --tau 0.01 --ablation zero --db %s",
                          rev, db), 0);
    assert_has(out, "run 1: 14 of 68 edges kept (tau 0.01, l2, zero ablation)");
    assert_has(out, "TPR 1.000  FPR 0.0000  (14 of 14 truth edges found, 0 false positives)");
    assert_has(out, "blocks.1.hook_mlp_out[:] -> blocks.2.hook_q_input[:, :, 0]");
    free(out);
    assert_int_equal(query_long(db, "select count(*) from runs where kind='acdc' and status='done'"), 1);
    long trials = query_long(db, "select value from results where run_id=1 and site='circuit' and metric='trials'");
    assert_true(trials > 14);
    assert_int_equal(query_long(db, "select count(*) from results where run_id=1 and metric='removed'"), trials);
    assert_int_equal(query_long(db, "select count(*) from results where run_id=1 and metric='removed' and value=0"), 14);
    assert_int_equal(query_long(db, "select count(*) from results where run_id=1 and metric='kept'"), 14);
    assert_int_equal(query_long(db, "select count(*) from results where run_id=1 and metric='truth'"), 14);
    assert_int_equal(query_long(db, "select count(distinct item) from results where run_id=1 and metric='effect'"), trials);
    assert_int_equal(query_long(db, "select count(*) from prompts where run_id=1"), 24);
    char *p = query(db, "select json_extract(params, '$.tau') || ' ' || json_extract(params, '$.ablation') || ' ' || "
                        "json_extract(params, '$.n_out') from runs where id=1");
    assert_string_equal(p, "0.01 zero 4");
    free(p);
    // the first trial is the output's last writer, tried against resid_post
    p = query(db, "select site from results where run_id=1 and item=0 and metric='before'");
    assert_string_equal(p, "blocks.2.hook_mlp_out[:]->blocks.2.hook_resid_post[:]");
    free(p);

    assert_int_equal(mech(&out, "acdc export 1 --dot %s --json %s --db %s", dot, json, db), 0);
    assert_has(out, "run 1: 14 edges");
    free(out);
    size_t n;
    char *d = mech_test_read(dot, &n);
    assert_has(d, "digraph acdc {");
    assert_has(d, "subgraph layer2 { rank=same; \"a2.0\"; }");
    assert_has(d, "\"m1\" -> \"a2.0\" [label=\"q ");
    assert_null(strstr(d, "color=red"));
    free(d);
    char *j = mech_test_read(json, &n);
    mech_json *jj = NULL;
    mech_err err = {0};
    if (mech_json_parse(j, n, &jj, &err)) fail_msg("%s", err.msg);
    assert_int_equal((int)mech_json_get(jj, "edges")->n, 14);
    assert_int_equal((int)mech_json_get(jj, "n_counted")->inum, 68);
    mech_json_free(jj);
    free(j);

    // the sweep: AUC 1 under zero ablation
    assert_int_equal(mech(&out, "acdc --model %s --dataset compiled --n 12 --len 4 --sweep --taus 1e-4,0.01,1,10 "
                                "--ablations zero --db %s", rev, db), 0);
    assert_has(out, "truth: 14 edges");
    assert_has(out, "zero ablation: AUC 1.000");
    free(out);
    assert_int_equal(query_long(db, "select count(*) from runs where kind='acdc'"), 5);
    p = query(db, "select value from results r join runs on runs.id = r.run_id where kind='acdc-sweep' and "
                  "metric='auc' and site='zero'");
    assert_string_equal(p, "1.0");
    free(p);
    // a finished run whose circuit kept no edge exports an empty circuit
    assert_int_equal(mech(&out, "acdc --model %s --dataset compiled --n 12 --len 4 --tau 1000 --ablation zero --db %s",
                          rev, db), 0);
    assert_has(out, "run 7: 0 of 68 edges kept");
    free(out);
    assert_int_equal(mech(&out, "acdc export 7 --dot %s --json %s --db %s", dot, json, db), 0);
    assert_has(out, "run 7: 0 edges -> ");
    assert_null(strstr(out, "not finished"));
    free(out);
    d = mech_test_read(dot, &n);
    assert_has(d, "digraph acdc {");
    // only the truth's missed edges, dashed
    int drawn = 0;
    for (char *l = strstr(d, "\" -> \""); l; l = strstr(l + 1, "\" -> \"")) {
        char *eol = strchr(l, '\n');
        if (eol) *eol = 0;
        if (!strstr(l, "style=dashed")) fail_msg("the empty circuit's graph has an edge: %s", l);
        if (eol) *eol = '\n';
        drawn++;
    }
    assert_true(drawn > 0 && drawn <= 14);
    free(d);
    j = mech_test_read(json, &n);
    if (mech_json_parse(j, n, &jj, &err)) fail_msg("%s", err.msg);
    assert_int_equal((int)mech_json_get(jj, "edges")->n, 0);
    mech_json_free(jj);
    free(j);
    unlink(rev), unlink(dot), unlink(json);
    mech_test_rm_db(db);
}

// Starts mech in the background (stdout/stderr to /dev/null); returns its pid.
static pid_t spawn(const char *args) {
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        const char *b = getenv("MECH_BIN");
        char cmd[2048];
        snprintf(cmd, sizeof cmd, "exec %s %s >/dev/null 2>&1", b && *b ? b : "./mech", args);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    return pid;
}

// The kept edges of a run, sorted, as one string; owned.
static char *kept(const char *db, int run) {
    char sql[256];
    snprintf(sql, sizeof sql, "select group_concat(site, ' ') from (select site from results where run_id=%d and "
                              "metric='kept' order by site)", run);
    return query(db, sql);
}

// Interrupts a run once it has stored a few trials, then --resume reaches
// the circuit of an uninterrupted run.
static void resume_after(int sig) {
    char *out;
    const char *m = mech_test_tmpn("acdc_tiny.safetensors"), *db = mech_test_tmpn("acdc_resume.db");
    mech_test_rm_db(db);
    // naive mode on a model wide enough for ~150 trials of ~15 ms each, so
    // the run is caught mid-way
    assert_int_equal(mech(&out, "init -o %s --layers 3 --heads 4 --d-model 128 --d-head 32 --d-mlp 256 --vocab 4000 "
                                "--n-ctx 64 --seed 3", m), 0);
    free(out);
    char args[1024];
    snprintf(args, sizeof args, "acdc --model %s --dataset induction --n 8 --len 12 --tau 1e-5 --naive --db %s", m, db);
    assert_int_equal(mech(&out, "%s", args), 0); // run 1: the reference
    free(out);
    char *want = kept(db, 1);
    long want_trials = query_long(db, "select value from results where run_id=1 and site='circuit' and metric='trials'");
    assert_true(want_trials >= 100);

    pid_t pid = spawn(args); // run 2
    struct timespec nap = {0, 20 * 1000 * 1000};
    long have = 0;
    for (int i = 0; i < 3000 && have < 3; i++) {
        nanosleep(&nap, NULL);
        have = query_long(db, "select count(*) from results where run_id=2 and metric='removed'");
    }
    kill(pid, sig);
    int st;
    waitpid(pid, &st, 0);
    if (have < 3 || (sig == SIGINT && !(WIFEXITED(st) && WEXITSTATUS(st) == 130)) ||
        (sig == SIGKILL && !WIFSIGNALED(st)))
        fail_msg("run 2 was not interrupted mid-way (%ld trials seen, status %d)", have, st);
    char *status = query(db, "select status from runs where id=2");
    assert_string_equal(status, sig == SIGINT ? "interrupted" : "running");
    free(status);
    long before = query_long(db, "select count(*) from results where run_id=2 and metric='removed'");
    assert_true(before >= 3);
    if (before >= want_trials) fail_msg("run 2 finished before it was stopped (%ld trials)", before);
    assert_int_equal(query_long(db, "select count(*) from results where run_id=2 and metric='kept'"), 0);
    // a stopped run exports every edge no trial removed, and says it is not finished
    const char *dot = mech_test_tmpn("acdc_resume.dot");
    assert_int_equal(mech(&out, "acdc export 2 --dot %s --db %s", dot, db), 0);
    assert_has(out, "(run not finished)");
    free(out);
    unlink(dot);

    assert_int_equal(mech(&out, "acdc --resume 2 --db %s", db), 0);
    assert_has(out, "(resumed)");
    free(out);
    char *got = kept(db, 2);
    assert_string_equal(got, want);
    assert_int_equal(query_long(db, "select value from results where run_id=2 and site='circuit' and metric='trials'"),
                     want_trials);
    // one row per trial and metric: nothing repeated by the resume
    assert_int_equal(query_long(db, "select count(*) from results where run_id=2 and metric='removed'"), want_trials);
    assert_int_equal(query_long(db, "select count(distinct item) from results where run_id=2 and metric='before'"),
                     want_trials);
    char *s2 = query(db, "select status from runs where id=2");
    assert_string_equal(s2, "done");
    free(s2);
    // the same trial decisions, in the same order
    assert_int_equal(query_long(db, "select count(*) from results a join results b on a.item=b.item and "
                                    "a.metric=b.metric where a.run_id=1 and b.run_id=2 and a.metric='removed' and "
                                    "a.site=b.site and a.value=b.value"), want_trials);
    // the same values, bit for bit, and the cost of the whole run
    assert_int_equal(query_long(db, "select count(*) from results a join results b on a.item=b.item and "
                                    "a.metric=b.metric and a.site=b.site where a.run_id=1 and b.run_id=2 and a.item >= 0 and a.metric "
                                    "in ('before', 'after', 'effect', 'macs') and a.value=b.value"), 4 * want_trials);
    assert_int_equal(query_long(db, "select count(*) from results a join results b on a.metric=b.metric where "
                                    "a.run_id=1 and b.run_id=2 and a.site='circuit' and b.site='circuit' and "
                                    "a.metric in ('macs', 'metric_final', 'n_edges') and a.value=b.value"), 3);
    free(got);
    free(want);
    unlink(m);
    mech_test_rm_db(db);
}

static void test_acdc_resume_after_sigint(void **state) {
    (void)state;
    resume_after(SIGINT);
}

static void test_acdc_resume_after_sigkill(void **state) {
    (void)state;
    resume_after(SIGKILL);
}

// The GPT-2 datasets on a random-weight tiny GPT-2: IOI's templates differ in
// length, so the run keeps prompts of one length (15 tokens, as the reference).
static void test_acdc_gpt2_datasets(void **state) {
    (void)state;
    char *out;
    const char *m = mech_test_tmpn("acdc_tiny_gpt2.safetensors"), *db = mech_test_tmpn("acdc_gpt2.db");
    mech_test_rm_db(db);
    assert_int_equal(mech(&out, "init -o %s", m), 0);
    free(out);
    assert_int_equal(mech(&out, "acdc --model %s --dataset ioi --n 6 --tau 0.01 --metric logit_diff --db %s", m, db), 0);
    assert_has(out, "run 1: ACDC on 6 inputs of 15 tokens, tau 0.01, metric logit_diff, resample ablation");
    assert_has(out, "of 134 edges kept");
    free(out);
    assert_int_equal(query_long(db, "select count(distinct n_tokens) from prompts where run_id=1"), 1);
    assert_int_equal(query_long(db, "select count(*) from prompts where run_id=1 and role='clean'"), 6);
    assert_int_equal(mech(&out, "acdc --model %s --dataset induction --n 4 --len 6 --tau 0.01 --db %s", m, db), 0);
    assert_has(out, "ACDC on 4 inputs of 11 tokens, tau 0.01, metric kl");
    free(out);
    // no ground truth for a language model: the sweep prints edge counts only
    assert_int_equal(mech(&out, "acdc --model %s --dataset induction --n 4 --len 6 --sweep --taus 0,1e9 --ablations zero "
                                "--db %s", m, db), 0);
    assert_has(out, "(no ground truth: not a compiled model)");
    assert_has(out, "zero      0               4      134");
    assert_has(out, "zero      1e+09           5        0");
    assert_null(strstr(out, "AUC"));
    free(out);
    unlink(m);
    mech_test_rm_db(db);
}

// A pairs file of compiled-model inputs; --naive reaches the same circuit.
static void test_acdc_pairs_file_and_naive(void **state) {
    (void)state;
    char *out;
    const char *rev = mech_test_tmpn("acdc_rev_pairs.safetensors"), *db = mech_test_tmpn("acdc_pairs.db"), *pairs = mech_test_tmpn("acdc_ok.jsonl");
    mech_test_rm_db(db);
    assert_int_equal(mech(&out, "compile examples/rasp/reverse.rasp -o %s", rev), 0);
    free(out);
    FILE *f = fopen(pairs, "w");
    assert_non_null(f);
    fputs("{\"clean\": \"a b c d\", \"corrupt\": \"b c d a\"}\n{\"clean\": [\"d\", \"c\", \"b\", \"a\"], \"corrupt\": "
          "\"a a b b\"}\n{\"clean\": \"a b b c\", \"corrupt\": \"c c a d\"}\n", f);
    fclose(f);
    assert_int_equal(mech(&out, "acdc --model %s --pairs %s --tau 1e-3 --ablation zero --db %s", rev, pairs, db), 0);
    assert_has(out, "TPR 1.000  FPR 0.0000  (14 of 14 truth edges found, 0 false positives)");
    free(out);
    assert_int_equal(mech(&out, "acdc --model %s --pairs %s --tau 1e-3 --ablation zero --naive --db %s", rev, pairs, db),
                     0);
    assert_has(out, "TPR 1.000  FPR 0.0000");
    free(out);
    char *a = kept(db, 1), *b = kept(db, 2);
    assert_string_equal(a, b);
    free(a), free(b);
    // resample ablation keeps what differs between the clean run and the corrupted one: with the
    // reference's position shuffle (default) the positional path to the aggregate too, without it
    // only the value path; never a false positive
    assert_int_equal(mech(&out, "acdc --model %s --pairs %s --tau 1e-3 --db %s", rev, pairs, db), 0);
    assert_has(out, "(8 of 14 truth edges found, 0 false positives)");
    assert_has(out, "  x     x    hook_pos_embed[:] -> blocks.2.hook_k_input[:, :, 0]");
    free(out);
    assert_int_equal(mech(&out, "acdc --model %s --pairs %s --tau 1e-3 --pos-shuffle off --db %s", rev, pairs, db), 0);
    assert_has(out, "(3 of 14 truth edges found, 0 false positives)");
    free(out);
    char *p = query(db, "select json_extract(params, '$.pairs') || ' ' || json_extract(params, '$.B') || ' ' || "
                        "json_extract(params, '$.T') from runs where id=3");
    char want[600];
    snprintf(want, sizeof want, "%s 3 5", pairs);
    assert_string_equal(p, want);
    free(p);
    unlink(rev), unlink(pairs);
    mech_test_rm_db(db);
}

// --dataset compiled without --len and --n: the default length, where the
// clean outputs differ (a Dyck language's even one), 200 inputs, and a
// warning where the outputs cannot differ (a program that outputs the
// input's length).
static void test_acdc_compiled_default_len(void **state) {
    (void)state;
    char *out, *err;
    const char *m = mech_test_tmpn("acdc_dyck1.safetensors"), *db = mech_test_tmpn("acdc_default_len.db");
    mech_test_rm_db(db);
    assert_int_equal(mech(&out, "compile examples/rasp/shuffle_dyck1.rasp -o %s", m), 0);
    free(out);
    assert_int_equal(mech_test_cli(&out, &err, "acdc --model %s --dataset compiled --tau 0.001 --ablation zero --db %s", m,
                                   db), 0);
    assert_has(err, "ACDC on 200 inputs of 5 tokens"); // the default n; length 4 and BOS; max_seq_len 6
    assert_null(strstr(err, "warning"));
    assert_has(out, "TPR 1.000  FPR 0.0000  (38 of 38 truth edges found, 0 false positives)");
    free(out), free(err);
    assert_int_equal(query_long(db, "select json_extract(params, '$.len') from runs where id = 1"), 4);
    assert_int_equal(query_long(db, "select json_extract(params, '$.n') from runs where id = 1"), 200);
    assert_int_equal(mech(&out, "compile examples/rasp/length.rasp -o %s", m), 0);
    free(out);
    assert_int_equal(mech_test_cli(&out, &err, "acdc --model %s --dataset compiled --tau 0.001 --ablation zero --db %s", m,
                                   db), 0);
    assert_has(err, "warning: --dataset compiled: the program's output is the same on all 200 inputs of length 4");
    free(out), free(err);
    unlink(m);
    mech_test_rm_db(db);
}

static void test_acdc_usage_errors(void **state) {
    (void)state;
    char *out;
    const char *rev = mech_test_tmpn("acdc_rev_err.safetensors"), *db = mech_test_tmpn("acdc_err.db"), *pairs = mech_test_tmpn("acdc_pairs.jsonl");
    mech_test_rm_db(db);
    assert_int_equal(mech(&out, "compile examples/rasp/reverse.rasp -o %s", rev), 0);
    free(out);
    struct { const char *args, *msg; } cases[] = {
        {"acdc --dataset compiled --tau 1", "--model is required"},
        {"acdc --model %s --tau 1", "give --pairs FILE or --dataset"},
        {"acdc --model %s --dataset compiled", "give the threshold --tau T"},
        {"acdc --model %s --dataset compiled --tau -1", "--tau '-1': expected a number >= 0"},
        {"acdc --model %s --dataset compiled --tau 1 --metric mse", "--metric 'mse': expected kl, logit_diff or l2"},
        {"acdc --model %s --dataset compiled --tau 1 --ablation mean", "--ablation 'mean': expected resample or zero"},
        {"acdc --model %s --dataset compiled --tau 1 --metric logit_diff", "a compiled model's output is read with l2"},
        {"acdc --model %s --dataset compiled --sweep --taus 1,x", "--taus '1,x'"},
        {"acdc --model %s --dataset compiled --tau 1 --frobnicate", "unknown argument '--frobnicate'"},
        {"acdc --count-edges", "--count-edges needs --model MODEL"},
        {"acdc export", "give the run id"},
        {"acdc export 1", "give --dot FILE and/or --json FILE"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char args[512];
        snprintf(args, sizeof args, cases[i].args, rev);
        int rc = mech(&out, "%s --db %s", args, db);
        if (rc != 2 || !strstr(out, cases[i].msg))
            fail_msg("'%s': exit %d, expected 2 with '%s':\n%s", args, rc, cases[i].msg, out);
        free(out);
    }
    // pairs of different lengths cannot make one batch
    FILE *f = fopen(pairs, "w");
    assert_non_null(f);
    fputs("{\"clean\": \"a b c\", \"corrupt\": \"b c a\"}\n{\"clean\": \"a b\", \"corrupt\": \"b a\"}\n", f);
    fclose(f);
    assert_int_equal(mech(&out, "acdc --model %s --pairs %s --tau 0.1 --db %s", rev, pairs, db), 2);
    assert_has(out, ":2: error: ACDC runs one batch");
    free(out);
    // runs that do not exist or are not ACDC runs
    assert_int_equal(mech(&out, "acdc export 7 --dot x.dot --db %s", db), 2);
    assert_has(out, "no run 7");
    free(out);
    assert_int_equal(mech(&out, "acdc --resume 7 --db %s", db), 2);
    assert_has(out, "no run 7");
    free(out);
    assert_int_equal(mech(&out, "acdc --model %s --pairs %s --tau 0.1 --db %s --dataset compiled", rev, pairs, db), 2);
    free(out);
    assert_int_equal(mech(&out, "acdc --model %s --dataset compiled --n 4 --sweep --taus 1 --ablations zero --db %s",
                          rev, db), 0);
    free(out);
    assert_int_equal(mech(&out, "acdc export 1 --dot x.dot --db %s", db), 2); // run 1 is the sweep
    assert_has(out, "run 1 is of kind 'acdc-sweep', not an ACDC run");
    free(out);
    assert_int_equal(mech(&out, "acdc --resume 2 --db %s", db), 2); // run 2 is done
    assert_has(out, "the run is already done");
    free(out);
    // a missing model is a runtime error
    assert_int_equal(mech(&out, "acdc --model /nonexistent.safetensors --dataset compiled --tau 1 --db %s", db), 1);
    free(out);
    unlink(rev), unlink(pairs);
    mech_test_rm_db(db);
}

// --positions: the KL rows. On induction prompts the repeated half is a
// different metric from the last position (and from all positions), and
// the choice is part of the run's parameters.
static void test_acdc_kl_positions(void **state) {
    (void)state;
    char *out;
    const char *model = mech_test_tmpn("acdc_pos.safetensors"), *db = mech_test_tmpn("acdc_pos.db");
    mech_test_rm_db(db);
    assert_int_equal(mech(&out, "init -o %s --layers 2 --heads 2 --d-model 32 --d-head 16 --n-ctx 32 --vocab 300 "
                                "--attn-only", model), 0);
    free(out);
    const char *pos[3] = {"last", "all", "induction"};
    for (int i = 0; i < 3; i++) {
        int rc = mech(&out, "acdc --model %s --dataset induction --n 6 --len 5 --tau 1e9 --positions %s --db %s", model,
                      pos[i], db);
        if (rc) fail_msg("--positions %s: exit %d\n%s", pos[i], rc, out);
        free(out);
    }
    // tau 1e9 removes every edge: the final metric is the KL of the emptied model at those rows
    char *a = query(db, "select group_concat(json_extract(params, '$.positions'), ',') from runs order by id");
    assert_string_equal(a, "last,all,induction");
    free(a);
    long f1 = query_long(db, "select cast(value * 1e6 as int) from results where run_id=1 and metric='metric_final'");
    long f2 = query_long(db, "select cast(value * 1e6 as int) from results where run_id=2 and metric='metric_final'");
    long f3 = query_long(db, "select cast(value * 1e6 as int) from results where run_id=3 and metric='metric_final'");
    assert_true(f1 > 0 && f2 > 0 && f3 > 0);
    assert_true(f1 != f3 && f2 != f3);
    assert_int_equal(mech(&out, "acdc --model %s --dataset induction --tau 1 --positions middle --db %s", model, db), 2);
    assert_has(out, "expected last, all or induction");
    free(out);
    unlink(model);
    mech_test_rm_db(db);
}

// An option that does not apply to the chosen input or mode is refused
// (exit 2, before anything is loaded or stored), never dropped.
static void test_acdc_options_honoured_or_refused(void **state) {
    (void)state;
    char *out;
    char rev[512], db[512], pairs[512];
    snprintf(rev, sizeof rev, "%s", mech_test_tmpn("acdc_opt_rev.safetensors"));
    snprintf(db, sizeof db, "%s", mech_test_tmpn("acdc_opt.db"));
    snprintf(pairs, sizeof pairs, "%s", mech_test_tmpn("acdc_opt_pairs.jsonl"));
    const char *tiny = "tests/fixtures/gpt2-tiny";
    mech_test_rm_db(db);
    assert_int_equal(mech(&out, "compile examples/rasp/reverse.rasp -o %s", rev), 0);
    free(out);
    FILE *f = fopen(pairs, "w");
    assert_non_null(f);
    fputs("{\"clean\": \"a b\", \"corrupt\": \"b a\"}\n", f);
    fclose(f);
    struct { const char *args, *model, *msg; } cases[] = {
        {"--dataset compiled --n 5 --sweep --tau 0.1", rev, "--tau does not apply to --sweep"},
        {"--dataset compiled --n 5 --sweep --ablation zero", rev, "--ablation does not apply to --sweep"},
        {"--pairs P --tau 0.1 --corruption shuffle", rev, "--corruption does not apply to --pairs"},
        {"--pairs P --tau 0.1 --corruption random", rev, "--corruption does not apply to --pairs"},
        {"--pairs P --tau 0.1 --seed 3", rev, "--seed does not apply to --pairs"},
        {"--pairs P --tau 0.1 --n 5", rev, "--n does not apply to --pairs"},
        {"--pairs P --tau 0.1 --len 5", rev, "--len does not apply to --pairs"},
        {"--dataset ioi --tau 0.1 --len 5", tiny, "--len does not apply to --dataset ioi"},
        {"--dataset greater_than --tau 0.1 --len 5", tiny, "--len does not apply to --dataset greater_than"},
        {"--dataset induction --tau 0.1 --corruption random", tiny, "--corruption does not apply to --dataset induction"},
        {"--dataset compiled --n 4 --tau 0.1 --ablation zero --pos-shuffle 3", rev,
         "--pos-shuffle shuffles the corrupted pass of resample ablation"},
        {"--dataset compiled --n 4 --sweep --taus 1 --ablations zero --pos-shuffle off", rev,
         "--pos-shuffle shuffles the corrupted pass of resample ablation"},
        {"--dataset induction --tau 0.1 --pos-shuffle 3", tiny, "--pos-shuffle is for compiled RASP models"},
        {"--dataset ioi --tau 0.1 --positions induction", tiny, "--positions induction reads the repeated half"},
        {"--count-edges --tau 0.1 --dataset ioi", rev, "--tau does not apply to --count-edges"},
        {"--count-edges --threads 2", rev, "--threads does not apply to --count-edges"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char args[1024];
        const char *p = strstr(cases[i].args, "--pairs P");
        if (p) snprintf(args, sizeof args, "--pairs %s%s", pairs, p + 9);
        else snprintf(args, sizeof args, "%s", cases[i].args);
        int rc = mech(&out, "acdc --model %s %s --db %s", cases[i].model, args, db);
        if (rc != 2 || !strstr(out, cases[i].msg))
            fail_msg("'%s': exit %d, expected 2 with '%s':\n%s", args, rc, cases[i].msg, out);
        free(out);
        if (!access(db, F_OK)) fail_msg("'%s' created %s", args, db);
    }
    // what applies is honoured: --pos-shuffle under resample, --sweep's ablation list
    assert_int_equal(mech(&out, "acdc --model %s --dataset compiled --n 4 --len 4 --tau 0.01 --pos-shuffle 3 --db %s",
                          rev, db), 0);
    free(out);
    char *p = query(db, "select json_extract(params, '$.pos_shuffle') from runs where id=1");
    assert_string_equal(p, "3");
    free(p);
    assert_int_equal(mech(&out, "acdc --model %s --dataset compiled --n 4 --len 4 --sweep --taus 0.01 --ablations zero "
                                "--db %s", rev, db), 0);
    assert_has(out, "1 threshold x 1 ablation,");
    free(out);
    assert_int_equal(query_long(db, "select count(*) from runs where kind='acdc' and params like '%\"zero\"%'"), 1);
    assert_int_equal(query_long(db, "select count(*) from runs where kind='acdc'"), 2);
    // --resume continues with the run's own options: others are refused
    char sql[256];
    snprintf(sql, sizeof sql, "update runs set status='interrupted' where id=1");
    sqlite3 *h;
    assert_int_equal(sqlite3_open(db, &h), SQLITE_OK);
    assert_int_equal(sqlite3_exec(h, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(h);
    assert_int_equal(mech(&out, "acdc --resume 1 --n 5 --db %s", db), 2);
    assert_has(out, "--resume 1 continues the run with its own options; --n does not apply");
    free(out);
    assert_int_equal(mech(&out, "acdc --resume 1 --pos-shuffle=4 --db %s", db), 2);
    assert_has(out, "--pos-shuffle=4 does not apply");
    free(out);
    unlink(rev), unlink(pairs);
    mech_test_rm_db(db);
}

// export: - is stdout (for one of --dot and --json), a file name must end in
// its format's extension, and effects print in the fewest digits that read
// back as the stored float.
static void test_acdc_export_stdout_extensions_digits(void **state) {
    (void)state;
    char *out, *err;
    char rev[512], db[512], dot[512], txt[512], gv[512];
    snprintf(rev, sizeof rev, "%s", mech_test_tmpn("acdc_exp_rev.safetensors"));
    snprintf(db, sizeof db, "%s", mech_test_tmpn("acdc_exp.db"));
    snprintf(dot, sizeof dot, "%s", mech_test_tmpn("acdc_exp.dot"));
    snprintf(txt, sizeof txt, "%s", mech_test_tmpn("acdc_exp.txt"));
    snprintf(gv, sizeof gv, "%s", mech_test_tmpn("acdc_exp.gv"));
    mech_test_rm_db(db);
    remove(txt), remove(gv), remove("-");
    assert_int_equal(mech(&out, "compile examples/rasp/reverse.rasp -o %s", rev), 0);
    free(out);
    // one input: singular, and no "same on all 1 inputs" warning
    assert_int_equal(mech_test_cli(&out, &err, "acdc --model %s --dataset compiled --n 1 --len 4 --tau 0.01 "
                                               "--ablation zero --db %s", rev, db), 0);
    assert_has(err, "ACDC on 1 input of 5 tokens");
    assert_null(strstr(err, "same on all"));
    free(out), free(err);
    long kept = query_long(db, "select count(*) from results where run_id=1 and metric='kept'");
    assert_true(kept > 0);

    assert_int_equal(mech_test_cli(&out, &err, "acdc export 1 --json - --db %s", db), 0);
    assert_has(err, "-> stdout");
    mech_json *j = NULL;
    mech_err e = {0};
    if (mech_json_parse(out, strlen(out), &j, &e)) fail_msg("stdout is not JSON (%s):\n%s", e.msg, out);
    assert_int_equal((int)mech_json_get(j, "edges")->n, kept);
    mech_json_free(j);
    // every effect: the stored value's float, in as few digits as read back as it
    int n_eff = 0;
    for (const char *q = strstr(out, "\"effect\": "); q; q = strstr(q + 1, "\"effect\": ")) {
        const char *num = q + 10;
        if (!strncmp(num, "null", 4)) continue;
        char text[40];
        size_t len = strcspn(num, ",}");
        assert_true(len < sizeof text);
        memcpy(text, num, len);
        text[len] = 0;
        // the edge: the sender and receiver before it on the line
        const char *ls = q;
        while (ls > out && ls[-1] != '\n') ls--;
        char snd[160], rcv[160];
        assert_int_equal(sscanf(ls, " {\"sender\": \"%159[^\"]\", \"receiver\": \"%159[^\"]\"", snd, rcv), 2);
        char sql[512];
        snprintf(sql, sizeof sql, "select printf('%%.17g', value) from results where run_id=1 and metric='kept' and "
                                  "site='%s->%s'", snd, rcv);
        char *stored = query(db, sql);
        float want = (float)strtod(stored, NULL), got = (float)strtod(text, NULL);
        if (got != want) fail_msg("%s->%s: effect %s, stored %s", snd, rcv, text, stored);
        free(stored);
        int digits = 0;
        for (const char *c = text; *c && *c != 'e'; c++) digits += *c >= '0' && *c <= '9';
        for (const char *c = text; *c == '0' || *c == '.' || *c == '-'; c++) digits -= *c == '0';
        if (digits > 1) {
            char shorter[400];
            snprintf(shorter, sizeof shorter, "%.*g", digits - 1, (double)got);
            if ((float)strtod(shorter, NULL) == got) fail_msg("effect %s: %s reads back as the same float", text, shorter);
        }
        n_eff++;
    }
    assert_int_equal(n_eff, kept);
    free(out), free(err);
    assert_int_equal(mech_test_cli(&out, &err, "acdc export 1 --dot - --db %s", db), 0);
    assert_true(!strncmp(out, "digraph acdc {", 14));
    free(out), free(err);
    assert_false(!access("-", F_OK)); // no file named "-"
    assert_int_equal(mech(&out, "acdc export 1 --dot - --json - --db %s", db), 2);
    assert_has(out, "only one of them can go to stdout");
    free(out);
    // extensions
    assert_int_equal(mech(&out, "acdc export 1 --dot %s --db %s", txt, db), 2);
    assert_has(out, "the circuit is written as Graphviz; name the file FILE.dot");
    free(out);
    assert_int_equal(mech(&out, "acdc export 1 --dot %s --json %s --db %s", dot, txt, db), 2);
    assert_has(out, "the circuit is written as JSON; name the file FILE.json");
    free(out);
    assert_false(!access(txt, F_OK));
    assert_int_equal(mech(&out, "acdc export 1 --dot %s --db %s", gv, db), 0);
    assert_has(out, "edges -> ");
    free(out);
    char *d = mech_test_read(gv, NULL);
    assert_true(!strncmp(d, "digraph acdc {", 14));
    free(d);
    unlink(rev), unlink(dot), unlink(gv);
    mech_test_rm_db(db);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_acdc_count_edges),
        cmocka_unit_test(test_acdc_compiled_run_and_export),
        cmocka_unit_test(test_acdc_resume_after_sigint),
        cmocka_unit_test(test_acdc_resume_after_sigkill),
        cmocka_unit_test(test_acdc_gpt2_datasets),
        cmocka_unit_test(test_acdc_pairs_file_and_naive),
        cmocka_unit_test(test_acdc_compiled_default_len),
        cmocka_unit_test(test_acdc_usage_errors),
        cmocka_unit_test(test_acdc_kl_positions),
        cmocka_unit_test(test_acdc_options_honoured_or_refused),
        cmocka_unit_test(test_acdc_export_stdout_extensions_digits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
