/*
** tests/test_tui_runs_load.c: the runs browser's rows read from a database
** built with the store's own API: every run with its kind, status, model,
** date and key figure; a missing file is an error that creates nothing; an
** open never changes the file; an empty database loads as no rows.
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
#include <sys/stat.h>
#include <unistd.h>

static void result_at(mech_store *s, int64_t run, const char *site, const char *metric, int layer, int pos, int head,
                      double v) {
    mech_err err = {0};
    mech_result r = {.item = 0, .site = site, .layer = layer, .pos = pos, .head = head, .token = -1, .rank = -1,
                     .metric = metric, .value = v};
    if (mech_store_result(s, run, &r, &err)) fail_msg("%s", err.msg);
}

static void result(mech_store *s, int64_t run, const char *metric, int layer, int pos, int head, double v) {
    mech_err err = {0};
    mech_result r = {.item = 0, .site = "x", .layer = layer, .pos = pos, .head = head, .token = -1, .rank = -1,
                     .metric = metric, .value = v};
    if (mech_store_result(s, run, &r, &err)) fail_msg("%s", err.msg);
}

static void test_tui_runs_load_kinds_and_figures(void **state) {
    (void)state;
    const char *path = mech_test_tmp("runs.db");
    mech_test_rm_db(path);
    mech_err err = {0};
    mech_store *s = NULL;
    int64_t r1, r2, r3, r4, r5, r6, r7, r8;
    if (mech_store_open(path, &s, &err) ||
        mech_store_run_new(s, "patch", "/models/gpt2.safetensors", "mech patch", "{}", &r1, &err) ||
        mech_store_run_new(s, "heads", "tiny.safetensors", "mech heads", "{}", &r2, &err) ||
        mech_store_run_new(s, "lens", "tiny.safetensors", "mech lens", "{}", &r3, &err) ||
        mech_store_run_new(s, "acdc", "rev.safetensors", "mech acdc", "{}", &r4, &err) ||
        mech_store_run_new(s, "acdc-sweep", "rev.safetensors", "mech acdc", "{}", &r5, &err) ||
        mech_store_run_new(s, "attrib", "tiny.safetensors", "mech attrib", "{}", &r6, &err) ||
        mech_store_run_new(s, "lens", "rev.safetensors", "mech lens", "{}", &r7, &err) ||
        mech_store_run_new(s, "eap", "rev.safetensors", "mech eap", "{}", &r8, &err))
        fail_msg("%s", err.msg);
    // each kind's figure from its own rows
    result_at(s, r4, "circuit", "n_edges", -1, -1, -1, 14);
    result_at(s, r4, "circuit", "tpr", -1, -1, -1, 0.875);
    result_at(s, r4, "circuit", "fpr", -1, -1, -1, 0.0625);
    result_at(s, r4, "L0H0->L1H0", "effect", -1, -1, -1, 5); // a trial, not the summary
    result_at(s, r5, "zero", "auc", -1, -1, -1, 1.0);
    result_at(s, r5, "resample", "auc", -1, -1, -1, 0.571);
    result_at(s, r6, "L0H1", "head", 0, -1, 1, 0.25);
    result_at(s, r6, "L1H2", "head", 1, -1, 2, -0.75);
    result_at(s, r6, "mlp", "mlp", 1, -1, -1, 3.0); // an MLP, not a head
    result_at(s, r8, "circuit", "n_edges", -1, -1, -1, 10);
    result_at(s, r8, "circuit", "tpr", -1, -1, -1, 0.5);
    result_at(s, r8, "tok->out", "score", -1, -1, -1, 3.0); // an edge's score, not the summary
    result_at(s, r7, "decoder_lens", "reverse", 3, 0, -1, 1);
    result_at(s, r7, "decoder_lens", "opp", 2, 0, -1, 1);
    result_at(s, r7, "decoder_lens", "reverse", 2, 1, -1, 0);
    result(s, r1, "effect", 0, 2, -1, 0.25);
    result(s, r1, "effect", 3, 5, -1, -1.5); // the largest |effect|, negative
    result(s, r1, "effect", 1, 1, -1, 0.75);
    result(s, r1, "effect", 2, 2, -1, NAN);       // an undefined effect (clean = corrupted) is no maximum
    result(s, r1, "logit_diff", 2, 2, -1, -9.0);  // the raw metric is not the effect
    result(s, r2, "induction", 0, -1, 1, 0.125);
    result(s, r2, "induction", 1, -1, 3, 0.625);
    result(s, r2, "previous_token", 0, -1, 0, 0.99); // not the induction figure
    result(s, r2, "induction", 1, -1, 2, -0.9);       // the best is the largest, not the largest |value|
    result(s, r3, "kl", 0, 0, -1, 1.0);
    result(s, r3, "kl", 0, 1, -1, 3.0);
    result(s, r3, "kl", 1, 0, -1, 9.0); // a later layer
    if (mech_store_run_finish(s, r1, "done", &err) || mech_store_run_finish(s, r2, "interrupted", &err))
        fail_msg("%s", err.msg);
    mech_store_close(s);

    struct stat before, after;
    assert_int_equal(stat(path, &before), 0);
    mech_tui_run_row *rows = NULL;
    size_t n = 0;
    if (mech_tui_runs_load(path, &rows, &n, &err)) fail_msg("%s", err.msg);
    assert_int_equal(n, 8);
    assert_int_equal(rows[0].id, r1);
    assert_string_equal(rows[0].kind, "patch");
    assert_string_equal(rows[0].status, "done");
    assert_string_equal(rows[0].model, "/models/gpt2.safetensors");
    assert_int_equal(strlen(rows[0].date), 19);
    assert_int_equal(rows[0].date[10], ' ');
    assert_string_equal(rows[0].figure, "max |effect| -1.5 at L3 pos 5");
    assert_string_equal(rows[1].status, "interrupted");
    assert_string_equal(rows[1].figure, "induction L1H3 0.625");
    assert_string_equal(rows[2].status, "running");
    assert_string_equal(rows[2].figure, "KL to final: layer 0 2");
    assert_string_equal(rows[3].figure, "14 edges  TPR 0.875 FPR 0.062");
    assert_string_equal(rows[4].figure, "AUC zero 1.000  AUC resample 0.571");
    assert_string_equal(rows[5].figure, "top head L1H2 -0.75");
    assert_string_equal(rows[6].figure, "decoder lens: 2 variables, layers 0..3");
    assert_string_equal(rows[7].figure, "10 edges  TPR 0.500 FPR 0.000");
    mech_free(rows);
    // reading changed nothing
    assert_int_equal(stat(path, &after), 0);
    assert_int_equal(before.st_size, after.st_size);
    assert_true(before.st_mtim.tv_sec == after.st_mtim.tv_sec && before.st_mtim.tv_nsec == after.st_mtim.tv_nsec);
    mech_test_rm_db(path);
}

static void test_tui_runs_load_missing_creates_nothing(void **state) {
    (void)state;
    const char *path = mech_test_tmp("missing.db");
    mech_test_rm_db(path);
    mech_tui_run_row *rows = NULL;
    size_t n = 7;
    mech_err err = {0};
    assert_int_equal(mech_tui_runs_load(path, &rows, &n, &err), MECH_ERR_IO);
    assert_null(rows);
    assert_int_equal(n, 0);
    assert_int_not_equal(access(path, F_OK), 0);
    // not a database: an error, the file untouched
    const char *junk = "not sqlite at all, just text that is long enough to look like a header.......\n";
    FILE *f = fopen(path, "w");
    fputs(junk, f);
    fclose(f);
    assert_int_equal(mech_tui_runs_load(path, &rows, &n, &err), MECH_ERR_DB);
    size_t len = 0;
    char *back = mech_test_read(path, &len);
    assert_int_equal(len, strlen(junk));
    assert_memory_equal(back, junk, len);
    free(back);
    mech_test_rm_db(path);
}

static void test_tui_runs_load_empty(void **state) {
    (void)state;
    const char *path = mech_test_tmp("empty.db");
    mech_test_rm_db(path);
    mech_err err = {0};
    mech_store *s = NULL;
    if (mech_store_open(path, &s, &err)) fail_msg("%s", err.msg);
    mech_store_close(s);
    mech_tui_run_row *rows = NULL;
    size_t n = 7;
    if (mech_tui_runs_load(path, &rows, &n, &err)) fail_msg("%s", err.msg);
    assert_int_equal(n, 0);
    mech_free(rows);
    // the app says what to run to fill it
    mech_tui_app app = {0};
    app.has_runs = 1, app.db_path = path;
    mech_tui_app_reload(&app);
    assert_non_null(strstr(app.runs.message, "holds no runs yet"));
    assert_non_null(strstr(app.runs.message, "mech heads --model"));
    mech_tui_app_deinit(&app);
    mech_test_rm_db(path);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tui_runs_load_kinds_and_figures),
        cmocka_unit_test(test_tui_runs_load_missing_creates_nothing),
        cmocka_unit_test(test_tui_runs_load_empty),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
