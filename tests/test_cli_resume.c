/*
** tests/test_cli_resume.c: `--resume RUN` of the resumable commands (patch,
** acdc) as a user runs it: the run alone is enough (its options are stored),
** a given option must agree with the run's, the model file must still be
** the one the run was made with (content hash), and a resumed run stores
** what an uninterrupted one stores, bit for bit. A stopped run is made by
** deleting the second half of a finished run's rows, which is what a kill
** leaves (every committed item kept, nothing after it).
** The binary comes from $MECH_BIN (set by `make test`), else ./mech.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "mech.h"
#include "tests/support/check.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define mech(out, ...) mech_test_cli(out, NULL, __VA_ARGS__)

static void assert_has(const char *hay, const char *needle) {
    if (!strstr(hay, needle)) fail_msg("output does not contain '%s':\n%s", needle, hay);
}

// Runs sql on db; with a result, the first column of the first row as text
// (owned, "" for none).
static char *sql(const char *db, const char *q) {
    sqlite3 *h;
    if (sqlite3_open(db, &h) != SQLITE_OK) fail_msg("cannot open %s", db);
    sqlite3_busy_timeout(h, 5000);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(h, q, -1, &st, NULL) != SQLITE_OK) fail_msg("%s: %s", q, sqlite3_errmsg(h));
    char *r = strdup("");
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW && sqlite3_column_text(st, 0)) {
        free(r);
        r = strdup((const char *)sqlite3_column_text(st, 0));
    } else if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        fail_msg("%s: %s", q, sqlite3_errmsg(h));
    }
    sqlite3_finalize(st);
    sqlite3_close(h);
    return r;
}

static long sql_long(const char *db, const char *q) {
    char *s = sql(db, q);
    long v = atol(s);
    free(s);
    return v;
}

static void sql_do(const char *db, const char *q) { free(sql(db, q)); }

static void init_model(const char *path, int seed) {
    char *out;
    if (mech(&out, "init -o %s --layers 3 --heads 3 --d-model 32 --d-head 8 --d-mlp 64 --vocab 60 --n-ctx 32 --seed %d",
             path, seed))
        fail_msg("init: %s", out);
    free(out);
}

// Rows of a run equal to another run's (same item, site, position, metric and
// value), as a count.
static long same_rows(const char *db, int a, int b, const char *where) {
    char q[1024];
    snprintf(q, sizeof q, "select count(*) from results x join results y on x.item = y.item and x.site = y.site and "
                          "x.layer = y.layer and x.pos = y.pos and x.head = y.head and x.metric = y.metric and "
                          "x.value is y.value where x.run_id = %d and y.run_id = %d and %s", a, b, where);
    return sql_long(db, q);
}

// ---------------------------------------------------------------------------

// mech patch --resume RUN: nothing else needed; a given option must agree;
// --dataset compiled without --len works (one default for every command).
static void test_patch_resume_needs_only_the_run(void **state) {
    (void)state;
    char *out;
    const char *rev = mech_test_tmpn("resume_rev.safetensors"), *db = mech_test_tmpn("resume_patch.db");
    mech_test_rm_db(db);
    assert_int_equal(mech(&out, "compile examples/rasp/reverse.rasp -o %s", rev), 0);
    free(out);
    const char *args = "patch --model %s --dataset compiled --n 6 --seed 3 --sweep heads --metric kl --db %s";
    assert_int_equal(mech(&out, args, rev, db), 0); // run 1: stopped below
    free(out);
    assert_int_equal(mech(&out, args, rev, db), 0); // run 2: the reference
    free(out);
    // the default length: max_seq_len 5, less one, where reverse's outputs differ
    assert_int_equal(sql_long(db, "select json_extract(params, '$.len') from runs where id = 1"), 4);
    long rows = sql_long(db, "select count(*) from results where run_id = 2");
    assert_true(rows > 6);
    sql_do(db, "delete from results where run_id = 1 and item >= 3");
    sql_do(db, "delete from tensors where run_id = 1 and (name like 'pair3.%' or name like 'pair4.%' or name like 'pair5.%')");
    sql_do(db, "update runs set status = 'interrupted' where id = 1");

    // an option that differs from the run's is refused, and changes nothing
    assert_int_equal(mech(&out, "patch --resume 1 --db %s --sweep resid_pre", db), 2);
    assert_has(out, "not a patch run with these options");
    free(out);
    assert_int_equal(mech(&out, "patch --resume 1 --db %s --len 3", db), 2);
    free(out);
    assert_int_equal(sql_long(db, "select count(distinct item) from results where run_id = 1"), 3);
    // the run alone (and an option that agrees)
    assert_int_equal(mech(&out, "patch --resume 1 --db %s --metric kl", db), 0);
    assert_has(out, "run 1: heads patching of 3 pairs");
    free(out);
    assert_int_equal(sql_long(db, "select count(*) from results where run_id = 1"), rows);
    assert_int_equal(same_rows(db, 1, 2, "1"), rows);
    char *st = sql(db, "select status from runs where id = 1");
    assert_string_equal(st, "done");
    free(st);
    // not a patch run, no such run
    assert_int_equal(mech(&out, "acdc --model %s --dataset compiled --n 4 --tau 0.01 --ablation zero --db %s", rev, db), 0);
    free(out);
    assert_int_equal(mech(&out, "patch --resume 3 --db %s", db), 2);
    assert_has(out, "not a patch run");
    free(out);
    assert_int_equal(mech(&out, "patch --resume 99 --db %s", db), 2);
    free(out);
    unlink(rev);
    mech_test_rm_db(db);
}

// A run made with --prepend-bos resumes with it: the stored option is one of
// those the resume replays, so the remaining pairs get BOS as the first did.
static void test_patch_resume_keeps_prepend_bos(void **state) {
    (void)state;
    char *out;
    const char *model = mech_test_tmpn("resume_bos.safetensors"), *db = mech_test_tmpn("resume_bos.db");
    mech_test_rm_db(db);
    // GPT-2's vocabulary, so the model has <|endoftext|> for BOS
    assert_int_equal(mech(&out, "init -o %s --layers 2 --heads 2 --d-model 32 --d-head 8 --d-mlp 64 --n-ctx 16", model), 0);
    free(out);
    const char *args = "patch --model %s --pairs tests/fixtures/pairs_bos.jsonl --prepend-bos --db %s";
    FILE *f = fopen("tests/fixtures/pairs_bos.jsonl", "r");
    if (f) fclose(f);
    else fail_msg("missing tests/fixtures/pairs_bos.jsonl");
    assert_int_equal(mech(&out, args, model, db), 0); // run 1: stopped below
    free(out);
    assert_int_equal(mech(&out, args, model, db), 0); // run 2: the reference
    free(out);
    long rows = sql_long(db, "select count(*) from results where run_id = 2");
    assert_true(rows > 4);
    sql_do(db, "delete from results where run_id = 1 and item >= 2");
    sql_do(db, "delete from tensors where run_id = 1 and (name like 'pair2.%' or name like 'pair3.%')");
    sql_do(db, "update runs set status = 'interrupted' where id = 1");
    assert_int_equal(mech(&out, "patch --resume 1 --db %s", db), 0);
    free(out);
    assert_int_equal(sql_long(db, "select count(*) from results where run_id = 1"), rows);
    assert_int_equal(same_rows(db, 1, 2, "1"), rows);
    unlink(model);
    mech_test_rm_db(db);
}

// --resume refuses a model file that is not the run's (same path, other
// weights), naming the path and both hashes, for patch and acdc; with the
// run's own model back, an ACDC resume stores the uninterrupted run's values
// bit for bit (fast mode) and the whole run's cost.
static void test_resume_checks_the_model(void **state) {
    (void)state;
    char *out, *err;
    const char *m = mech_test_tmpn("resume_model.safetensors"), *db = mech_test_tmpn("resume_model.db");
    mech_test_rm_db(db);
    init_model(m, 1);
    char old_hash[65], new_hash[65];
    assert_int_equal(mech_store_model_hash(m, old_hash), MECH_OK);
    assert_int_equal(mech(&out, "patch --model %s --dataset induction --n 6 --len 4 --sweep resid_pre --metric logprob "
                                "--db %s", m, db), 0); // run 1
    free(out);
    assert_int_equal(mech(&out, "acdc --model %s --dataset induction --n 4 --len 4 --tau 1e-6 --db %s", m, db), 0); // run 2
    free(out);
    assert_int_equal(mech(&out, "acdc --model %s --dataset induction --n 4 --len 4 --tau 1e-6 --db %s", m, db), 0); // run 3
    free(out);
    char *h = sql(db, "select model_hash from runs where id = 1");
    assert_string_equal(h, old_hash);
    free(h);
    // stop runs 1 and 2 half-way
    sql_do(db, "delete from results where run_id = 1 and item >= 3");
    sql_do(db, "update runs set status = 'interrupted' where id = 1");
    long trials = sql_long(db, "select value from results where run_id = 2 and site = 'circuit' and metric = 'trials'");
    assert_true(trials > 40);
    char q[256];
    snprintf(q, sizeof q, "delete from results where run_id = 2 and (item >= %ld or item < 0)", trials / 2);
    sql_do(db, q);
    sql_do(db, "update runs set status = 'interrupted' where id = 2");
    long rows1 = sql_long(db, "select count(*) from results where run_id = 1");
    long rows2 = sql_long(db, "select count(*) from results where run_id = 2");

    init_model(m, 2); // other weights at the same path
    assert_int_equal(mech_store_model_hash(m, new_hash), MECH_OK);
    assert_string_not_equal(old_hash, new_hash);
    const char *cmds[2] = {"patch", "acdc"};
    for (int k = 0; k < 2; k++) {
        assert_int_equal(mech_test_cli(&out, &err, "%s --resume %d --db %s", cmds[k], k + 1, db), 1);
        assert_has(err, m);
        assert_has(err, old_hash);
        assert_has(err, new_hash);
        free(out);
        free(err);
    }
    // nothing written, nothing marked
    assert_int_equal(sql_long(db, "select count(*) from results where run_id = 1"), rows1);
    assert_int_equal(sql_long(db, "select count(*) from results where run_id = 2"), rows2);
    assert_int_equal(sql_long(db, "select count(*) from runs where status = 'interrupted'"), 2);

    init_model(m, 1); // the run's model again
    assert_int_equal(mech_store_model_hash(m, new_hash), MECH_OK);
    assert_string_equal(old_hash, new_hash);
    assert_int_equal(mech(&out, "patch --resume 1 --db %s", db), 0);
    free(out);
    assert_int_equal(mech(&out, "acdc --resume 2 --db %s", db), 0);
    assert_has(out, "(resumed)");
    free(out);
    // run 2 (stopped, resumed) against run 3 (uninterrupted): every trial
    // row, the circuit and the cost, equal bit for bit
    assert_int_equal(sql_long(db, "select count(*) from results where run_id = 3 and item >= 0"), 6 * trials);
    assert_int_equal(sql_long(db, "select count(*) from results where run_id = 2 and item >= 0"), 6 * trials);
    assert_int_equal(same_rows(db, 2, 3, "x.item >= 0 and x.metric != 'seconds'"), 5 * trials);
    assert_int_equal(same_rows(db, 2, 3, "x.metric = 'kept'"),
                     sql_long(db, "select count(*) from results where run_id = 3 and metric = 'kept'"));
    assert_int_equal(same_rows(db, 2, 3, "x.site = 'circuit' and x.metric in ('n_edges', 'metric_final', 'trials', "
                                         "'macs')"), 4);
    // the time covers the whole run too: at least that of the stored trials the resume continued from
    assert_true(sql_long(db, "select count(*) from results a, results b where a.run_id = 2 and a.site = 'circuit' and "
                             "a.metric = 'seconds' and b.run_id = 2 and b.item = 0 and b.metric = 'seconds' and "
                             "a.value >= b.value and b.value > 0") == 1);
    unlink(m);
    mech_test_rm_db(db);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_patch_resume_needs_only_the_run),
        cmocka_unit_test(test_patch_resume_keeps_prepend_bos),
        cmocka_unit_test(test_resume_checks_the_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
