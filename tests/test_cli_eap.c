/*
** tests/test_cli_eap.c: `mech eap` as a user runs it: a compiled program's
** run stored with every edge's score, the circuit (the top-n by |score|),
** the truth, TPR/FPR and AUC, and the JSON export; prompts of different
** lengths scored as the mean of their groups; --method stored, and
** clean-corrupted as the mean of a pair and its swap; the faithfulness
** curve's stored points, CPR and CMD; usage errors (exit 2).
** The binary comes from $MECH_BIN (set by `make test`), else ./mech.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "mech.h"
#include "tests/support/check.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define mech(out, ...) mech_test_cli(out, NULL, __VA_ARGS__)

static void assert_has(const char *hay, const char *needle) {
    if (!strstr(hay, needle)) fail_msg("output does not contain '%s':\n%s", needle, hay);
}

static double query_num(const char *db, const char *sql) {
    char *s = mech_test_sql_rows(db, sql);
    double v = atof(s);
    free(s);
    return v;
}

static void test_eap_compiled_run(void **state) {
    (void)state;
    char *out;
    const char *m = mech_test_tmpn("eap_rev.safetensors"), *db = mech_test_tmpn("eap_rev.db"),
               *js = mech_test_tmpn("eap_rev.json");
    mech_test_rm_db(db);
    assert_int_equal(mech(&out, "compile examples/rasp/reverse.rasp -o %s", m), 0);
    free(out);
    assert_int_equal(mech(&out, "eap --model %s --dataset compiled --n 40 --top-n 3 --db %s --json %s", m, db, js), 0);
    assert_has(out, "run 1: EAP on 40 inputs, metric logit_diff");
    assert_has(out, "68 edges scored");
    free(out);
    assert_int_equal(query_num(db, "select count(*) from runs where kind='eap' and status='done'"), 1);
    // every counted edge scored once; the truth as `mech acdc` stores it
    assert_int_equal(query_num(db, "select count(*) from results where run_id=1 and metric='score'"), 68);
    assert_int_equal(query_num(db, "select count(distinct site) from results where run_id=1 and metric='score'"), 68);
    assert_int_equal(query_num(db, "select count(*) from results where run_id=1 and metric='truth'"), 14);
    assert_int_equal(query_num(db, "select count(*) from prompts where run_id=1 and role='corrupt'"), 40);
    // the circuit: the 3 edges of largest |score|, each with its score
    assert_int_equal(query_num(db, "select count(*) from results where run_id=1 and metric='kept'"), 3);
    assert_int_equal(query_num(db, "select count(*) from results k join results s on s.run_id=1 and s.site=k.site and "
                                   "s.metric='score' and s.value=k.value where k.run_id=1 and k.metric='kept'"), 3);
    assert_int_equal(query_num(db, "select count(*) from results k, results s where k.run_id=1 and k.metric='kept' and "
                                   "s.run_id=1 and s.metric='score' and s.site not in (select site from results where "
                                   "run_id=1 and metric='kept') and abs(s.value) > abs(k.value)"), 0);
    // TPR and FPR of that circuit, from the stored rows
    double tp = query_num(db, "select count(*) from results k join results t on t.run_id=1 and t.site=k.site and "
                              "t.metric='truth' where k.run_id=1 and k.metric='kept'");
    double tpr = query_num(db, "select value from results where run_id=1 and site='circuit' and metric='tpr'");
    double fpr = query_num(db, "select value from results where run_id=1 and site='circuit' and metric='fpr'");
    assert_true(fabs(tpr - tp / 14) < 1e-9);
    assert_true(fabs(fpr - (3 - tp) / (68 - 14)) < 1e-9);
    double auc = query_num(db, "select value from results where run_id=1 and site='circuit' and metric='auc'");
    assert_true(auc > 0 && auc <= 1);
    // the JSON export lists the circuit with truth flags
    size_t n;
    char *j = mech_test_read(js, &n);
    j = realloc(j, n + 1);
    j[n] = 0;
    assert_has(j, "\"n_edges\": 3");
    assert_has(j, "\"truth\": true");
    // `mech acdc export` rebuilds the same export from the stored run
    const char *js2 = mech_test_tmpn("eap_rev_export.json");
    assert_int_equal(mech(&out, "acdc export 1 --db %s --json %s", db, js2), 0);
    assert_has(out, "run 1: 3 edges");
    free(out);
    size_t n2;
    char *j2 = mech_test_read(js2, &n2);
    assert_int_equal(n2, n);
    assert_memory_equal(j, j2, n);
    free(j2);
    unlink(js2);
    free(j);
    unlink(js);
    // logprob of the clean output: the output head's value path carries it too
    assert_int_equal(mech(&out, "eap --model %s --dataset compiled --n 10 --metric logprob --top-n 1 --db %s", m, db), 0);
    assert_has(out, "EAP on 10 inputs, metric logprob");
    assert_has(out, "circuit: 1 of 68 edges (top-n 1)");
    free(out);
    // a numerical readout: answer and wrong are both output 0, so every score is 0
    const char *len = mech_test_tmpn("eap_len.safetensors");
    assert_int_equal(mech(&out, "compile examples/rasp/length.rasp -o %s", len), 0);
    free(out);
    assert_int_equal(mech(&out, "eap --model %s --dataset compiled --n 10 --db %s", len, db), 0);
    assert_has(out, "warning: every score is 0");
    free(out);
    unlink(len);
    unlink(m);
    mech_test_rm_db(db);
}

// A pair file of two lengths: the scores are the mean of each prompt's, as
// two runs of one prompt each give them.
static void test_eap_mixed_lengths(void **state) {
    (void)state;
    char *out;
    const char *m = mech_test_tmpn("eap_tiny.safetensors"), *db = mech_test_tmpn("eap_mixed.db");
    const char *both = mech_test_tmpn("eap_both.jsonl"), *one = mech_test_tmpn("eap_one.jsonl"),
               *two = mech_test_tmpn("eap_two.jsonl");
    mech_test_rm_db(db);
    assert_int_equal(mech(&out, "init -o %s --layers 2 --heads 2 --d-model 32 --d-head 16 --d-mlp 64 --seed 5", m), 0);
    free(out);
    const char *p1 = "{\"clean\": \"When Mary and John went to the store, John gave a drink to\", \"corrupt\": \"When "
                     "Paul and Laura went to the store, Kevin gave a drink to\", \"answer\": \" Mary\", \"wrong\": \" John\"}\n";
    const char *p2 = "{\"clean\": \"Then Mary and John had a party, John gave it to\", \"corrupt\": \"Then Paul and Laura "
                     "had a party, Kevin gave it to\", \"answer\": \" Mary\", \"wrong\": \" John\"}\n";
    FILE *f = fopen(both, "w");
    fputs(p1, f), fputs(p2, f), fclose(f);
    f = fopen(one, "w"), fputs(p1, f), fclose(f);
    f = fopen(two, "w"), fputs(p2, f), fclose(f);
    assert_int_equal(mech(&out, "eap --model %s --pairs %s --db %s", m, both, db), 0);
    free(out);
    assert_int_equal(query_num(db, "select count(distinct n_tokens) from prompts where run_id=1"), 2);
    assert_int_equal(mech(&out, "eap --model %s --pairs %s --db %s", m, one, db), 0);
    free(out);
    assert_int_equal(mech(&out, "eap --model %s --pairs %s --db %s", m, two, db), 0);
    free(out);
    // largest |both - (one + two) / 2| over edges, against the largest |score|
    double diff = query_num(db, "select max(abs(a.value - (b.value + c.value) / 2)) from results a join results b on "
                                "b.run_id=2 and b.site=a.site and b.metric='score' join results c on c.run_id=3 and "
                                "c.site=a.site and c.metric='score' where a.run_id=1 and a.metric='score'");
    double big = query_num(db, "select max(abs(value)) from results where run_id=1 and metric='score'");
    assert_true(big > 1e-4);
    if (!(diff <= 1e-4 * big)) fail_msg("mixed lengths: largest difference %g (largest score %g)", diff, big);
    // fewer edges than the default top-n 100: every edge of non-zero score is kept
    double nonzero = query_num(db, "select count(*) from results where run_id=1 and metric='score' and value != 0");
    assert_true(nonzero > 10 && nonzero < 100);
    assert_int_equal(query_num(db, "select count(*) from results where run_id=1 and metric='kept'"), nonzero);
    unlink(m), unlink(both), unlink(one), unlink(two);
    mech_test_rm_db(db);
}

// --method: stored in the run's parameters; clean-corrupted is the mean of
// the gradients at both ends, so its scores are (EAP(pair) - EAP(swapped
// pair)) / 2, the swapped pair's clean run being this pair's corrupted one.
static void test_eap_methods(void **state) {
    (void)state;
    char *out;
    const char *m = mech_test_tmpn("eap_meth.safetensors"), *db = mech_test_tmpn("eap_meth.db");
    const char *fwd = mech_test_tmpn("eap_fwd.jsonl"), *bwd = mech_test_tmpn("eap_bwd.jsonl");
    mech_test_rm_db(db);
    assert_int_equal(mech(&out, "init -o %s --layers 2 --heads 2 --d-model 32 --d-head 16 --d-mlp 64 --seed 9", m), 0);
    free(out);
    FILE *f = fopen(fwd, "w");
    fputs("{\"clean\": \"When Mary and John went to the store, John gave a drink to\", \"corrupt\": \"When Paul and "
          "Laura went to the store, Kevin gave a drink to\", \"answer\": \" Mary\", \"wrong\": \" John\"}\n", f);
    fclose(f);
    f = fopen(bwd, "w");
    fputs("{\"clean\": \"When Paul and Laura went to the store, Kevin gave a drink to\", \"corrupt\": \"When Mary and "
          "John went to the store, John gave a drink to\", \"answer\": \" Mary\", \"wrong\": \" John\"}\n", f);
    fclose(f);
    assert_int_equal(mech(&out, "eap --model %s --pairs %s --db %s", m, fwd, db), 0); // run 1
    free(out);
    assert_int_equal(mech(&out, "eap --model %s --pairs %s --db %s", m, bwd, db), 0); // run 2
    free(out);
    assert_int_equal(mech(&out, "eap --model %s --pairs %s --method clean-corrupted --db %s", m, fwd, db), 0); // run 3
    assert_has(out, "run 3: EAP clean-corrupted on 1 input");
    free(out);
    double diff = query_num(db, "select max(abs(c.value - (a.value - b.value) / 2)) from results c join results a on "
                                "a.run_id=1 and a.site=c.site and a.metric='score' join results b on b.run_id=2 and "
                                "b.site=c.site and b.metric='score' where c.run_id=3 and c.metric='score'");
    double big = query_num(db, "select max(abs(value)) from results where run_id=3 and metric='score'");
    assert_true(big > 1e-4);
    if (!(diff <= 1e-4 * big)) fail_msg("clean-corrupted: largest difference %g (largest score %g)", diff, big);
    assert_int_equal(mech(&out, "eap --model %s --pairs %s --method eap-ig-inputs --ig-steps 3 --db %s", m, fwd, db), 0);
    assert_has(out, "run 4: EAP-IG inputs (3 steps) on 1 input");
    free(out);
    assert_int_equal(mech(&out, "eap --model %s --pairs %s --method eap-ig-activations --db %s", m, fwd, db), 0);
    assert_has(out, "run 5: EAP-IG activations (5 steps) on 1 input");
    free(out);
    char *p = mech_test_sql_rows(db, "select params from runs where id=4");
    assert_has(p, "\"method\": \"eap-ig-inputs\", \"ig_steps\": 3");
    free(p);
    p = mech_test_sql_rows(db, "select params from runs where id=1");
    assert_has(p, "\"method\": \"eap\"");
    assert_null(strstr(p, "ig_steps"));
    free(p);
    assert_int_equal(query_num(db, "select count(*) from results where run_id=5 and metric='score'"),
                     query_num(db, "select count(*) from results where run_id=1 and metric='score'"));
    unlink(m), unlink(fwd), unlink(bwd);
    mech_test_rm_db(db);
}

// --faithfulness: the curve stored per size (edges, fraction, metric, f),
// its ends 0 and 1, CPR and CMD equal to the trapezoids of the stored
// points (computed here in SQL), the sizes in the run's parameters.
static void test_eap_faithfulness(void **state) {
    (void)state;
    char *out;
    const char *m = mech_test_tmpn("eap_faith.safetensors"), *db = mech_test_tmpn("eap_faith.db");
    mech_test_rm_db(db);
    assert_int_equal(mech(&out, "compile examples/rasp/reverse.rasp -o %s", m), 0);
    free(out);
    assert_int_equal(mech(&out, "eap --model %s --dataset compiled --n 30 --faithfulness --sizes 100%%,0,0.05,20%% --db %s",
                          m, db), 0);
    assert_has(out, "faithfulness (top edges by |score|");
    assert_has(out, "CPR ");
    free(out);
    assert_int_equal(query_num(db, "select count(*) from results where run_id=1 and site='faithfulness'"), 16);
    // sorted by size: item 0 the empty circuit, item 3 every edge
    assert_int_equal(query_num(db, "select value from results where run_id=1 and site='faithfulness' and item=0 and "
                                   "metric='edges'"), 0);
    assert_int_equal(query_num(db, "select value from results where run_id=1 and site='faithfulness' and item=3 and "
                                   "metric='edges'"), 68);
    assert_int_equal(query_num(db, "select value from results where run_id=1 and site='faithfulness' and item=2 and "
                                   "metric='edges'"), 13); // floor(0.2 * 68)
    assert_true(query_num(db, "select value from results where run_id=1 and site='faithfulness' and item=0 and metric='f'") == 0);
    assert_true(query_num(db, "select value from results where run_id=1 and site='faithfulness' and item=3 and metric='f'") == 1);
    // f from the stored metrics and ends
    double f_diff = query_num(db, "select max(abs(f.value - (x.value - e.value) / (a.value - e.value))) from results f "
                                  "join results x on x.run_id=1 and x.site='faithfulness' and x.item=f.item and "
                                  "x.metric='metric' join results a on a.run_id=1 and a.site='circuit' and "
                                  "a.metric='m_full' join results e on e.run_id=1 and e.site='circuit' and "
                                  "e.metric='m_empty' where f.run_id=1 and f.site='faithfulness' and f.metric='f'");
    assert_true(f_diff < 1e-9);
    // CPR and CMD: trapezoids between consecutive stored points
    const char *pts = "with p as (select x.item i, x.value x, f.value f from results x join results f on f.run_id=1 and "
                      "f.site='faithfulness' and f.item=x.item and f.metric='f' where x.run_id=1 and "
                      "x.site='faithfulness' and x.metric='fraction') ";
    char sql[1024];
    snprintf(sql, sizeof sql, "%sselect sum((b.x - a.x) * (a.f + b.f) / 2) from p a join p b on b.i = a.i + 1", pts);
    double cpr = query_num(db, sql);
    snprintf(sql, sizeof sql, "%sselect sum((b.x - a.x) * (abs(1 - a.f) + abs(1 - b.f)) / 2) from p a join p b on b.i = a.i + 1", pts);
    double cmd = query_num(db, sql);
    assert_true(fabs(cpr - query_num(db, "select value from results where run_id=1 and site='circuit' and metric='cpr'")) < 1e-9);
    assert_true(fabs(cmd - query_num(db, "select value from results where run_id=1 and site='circuit' and metric='cmd'")) < 1e-9);
    assert_true(cpr > 0.5); // reverse's value path, EAP's top edges, carries the output
    char *p = mech_test_sql_rows(db, "select params from runs where id=1");
    assert_has(p, "\"faithfulness\": true, \"sizes\": [1, 0, 0.05, 0.2]");
    free(p);
    unlink(m);
    mech_test_rm_db(db);
}

static void test_eap_usage_errors(void **state) {
    (void)state;
    char *out;
    const char *m = mech_test_tmpn("eap_rev2.safetensors"), *db = mech_test_tmpn("eap_usage.db");
    mech_test_rm_db(db);
    assert_int_equal(mech(&out, "compile examples/rasp/reverse.rasp -o %s", m), 0);
    free(out);
    static const struct { const char *args, *msg; } cases[] = {
        {"--dataset compiled", "--model is required"},
        {"--model M --dataset compiled --metric kl", "its gradient there and every EAP score are 0"},
        {"--model M --dataset compiled --metric l2", "expected logit_diff or logprob"},
        {"--model M --dataset compiled --top-n 3 --threshold 0.1", "not both"},
        {"--model M --dataset compiled --top-n -1", "--top-n"},
        {"--model M", "give --pairs FILE or --dataset"},
        {"--model M --pairs x.jsonl --corruption shuffle", "--corruption does not apply to --pairs"},
        {"--model M --dataset compiled --dot out.txt", "name the file FILE.dot"},
        {"--model M --dataset compiled --bogus", "unknown argument '--bogus'"},
        {"--model M --dataset compiled --method eap-ig", "expected eap, eap-ig-inputs, eap-ig-activations or clean-corrupted"},
        {"--model M --dataset compiled --ig-steps 3", "--ig-steps applies to --method eap-ig-inputs"},
        {"--model M --dataset compiled --method clean-corrupted --ig-steps 3", "not clean-corrupted"},
        {"--model M --dataset compiled --method eap-ig-inputs --ig-steps 0", "--ig-steps"},
        {"--model M --dataset compiled --sizes 1", "--sizes applies to --faithfulness"},
        {"--model M --dataset compiled --faithfulness --sizes 0.5,2", "'2' is not a fraction"},
        {"--model M --dataset compiled --faithfulness --sizes 5%,,1", "expected fractions or percentages"},
        {"--model M --dataset compiled --faithfulness --sizes 1,", "missing after the last comma"},
        {"--model M --dataset compiled --faithfulness --metric logprob", "use --metric logit_diff"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        char args[512];
        snprintf(args, sizeof args, "%s", cases[k].args);
        char *at = strstr(args, "--model M");
        char line[1024];
        if (at) snprintf(line, sizeof line, "eap --model %s%s --db %s", m, at + 9, db);
        else snprintf(line, sizeof line, "eap %s --db %s", args, db);
        int rc = mech(&out, "%s", line);
        if (rc != 2) fail_msg("%s: exit %d, want 2:\n%s", line, rc, out);
        assert_has(out, cases[k].msg);
        free(out);
    }
    assert_int_equal(access(db, F_OK), -1); // no run was started
    unlink(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_eap_compiled_run),
        cmocka_unit_test(test_eap_mixed_lengths),
        cmocka_unit_test(test_eap_methods),
        cmocka_unit_test(test_eap_faithfulness),
        cmocka_unit_test(test_eap_usage_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
