/*
** tests/test_data_store_acdc.c: reading results back from the store
** (mech_store_results_get, what `mech acdc --resume` and `mech acdc export`
** use): every column round-trips, insertion order is kept across
** transactions and items, the metric filter, NULL values, unknown runs and
** runs without results; rows written by another connection are seen.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/support/check.h"

#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/data.h"

static const char *db_path(void) {
    static char path[512];
    snprintf(path, sizeof path, "%s", mech_test_tmp("acdc_store.db"));
    mech_test_rm_db(path);
    return path;
}

static mech_store *open_db(const char *path) {
    mech_store *s = NULL;
    mech_err err = {0};
    if (mech_store_open(path, &s, &err)) fail_msg("%s", err.msg);
    return s;
}

static void put(mech_store *s, int64_t run, int item, const char *site, int layer, int head, const char *metric,
                double v) {
    mech_err err = {0};
    mech_result r = {.item = item, .site = site, .layer = layer, .pos = -1, .head = head, .token = -1, .rank = -1,
                     .metric = metric, .value = v};
    if (mech_store_result(s, run, &r, &err)) fail_msg("%s", err.msg);
}

static void test_results_round_trip_in_order(void **state) {
    (void)state;
    const char *path = db_path();
    mech_store *s = open_db(path);
    mech_err err = {0};
    int64_t run, other;
    assert_int_equal(mech_store_run_new(s, "acdc", NULL, "mech acdc", "{\"tau\": 0.1}", &run, &err), MECH_OK);
    assert_int_equal(mech_store_run_new(s, "acdc", NULL, "mech acdc", NULL, &other, &err), MECH_OK);
    // two batches, items out of order, a row of another run in between
    assert_int_equal(mech_store_begin(s, &err), MECH_OK);
    put(s, run, 1, "hook_embed[:]->blocks.0.hook_mlp_in[:]", 0, -1, "before", 0.25);
    put(s, run, 1, "hook_embed[:]->blocks.0.hook_mlp_in[:]", 0, -1, "removed", 1);
    put(s, other, 0, "x", -1, -1, "before", 9);
    assert_int_equal(mech_store_commit(s, &err), MECH_OK);
    assert_int_equal(mech_store_begin(s, &err), MECH_OK);
    put(s, run, 0, "blocks.1.attn.hook_result[:, :, 3]->blocks.2.hook_q_input[:, :, 0]", 2, 0, "before", -1.5);
    put(s, run, -1, "circuit", -1, -1, "metric_final", NAN);
    assert_int_equal(mech_store_commit(s, &err), MECH_OK);

    mech_result_row *rows = NULL;
    size_t n = 0;
    assert_int_equal(mech_store_results_get(s, run, NULL, &rows, &n, &err), MECH_OK);
    assert_int_equal(n, 4);
    assert_int_equal(rows[0].item, 1);
    assert_string_equal(rows[0].site, "hook_embed[:]->blocks.0.hook_mlp_in[:]");
    assert_string_equal(rows[0].metric, "before");
    assert_true(rows[0].value == 0.25);
    assert_int_equal(rows[0].layer, 0);
    assert_int_equal(rows[0].head, -1);
    assert_int_equal(rows[0].pos, -1);
    assert_int_equal(rows[0].token, -1);
    assert_int_equal(rows[0].rank, -1);
    assert_string_equal(rows[1].metric, "removed");
    assert_true(rows[1].value == 1);
    assert_int_equal(rows[2].item, 0);
    assert_int_equal(rows[2].layer, 2);
    assert_int_equal(rows[2].head, 0);
    assert_true(rows[2].value == -1.5);
    assert_int_equal(rows[3].item, -1);
    assert_true(isnan(rows[3].value)); // stored as NULL
    mech_store_results_free(rows, n);

    // only one metric
    assert_int_equal(mech_store_results_get(s, run, "before", &rows, &n, &err), MECH_OK);
    assert_int_equal(n, 2);
    assert_int_equal(rows[0].item, 1);
    assert_int_equal(rows[1].item, 0);
    mech_store_results_free(rows, n);
    assert_int_equal(mech_store_results_get(s, run, "no-such-metric", &rows, &n, &err), MECH_OK);
    assert_int_equal(n, 0);
    assert_null(rows);
    mech_store_close(s);
}

static void test_results_errors_and_empty(void **state) {
    (void)state;
    const char *path = db_path();
    mech_store *s = open_db(path);
    mech_err err = {0};
    mech_result_row *rows = (mech_result_row *)&err; // must be reset
    size_t n = 7;
    assert_int_equal(mech_store_results_get(s, 42, NULL, &rows, &n, &err), MECH_ERR_RANGE);
    assert_null(rows);
    assert_int_equal(n, 0);
    assert_non_null(strstr(err.msg, "no run 42"));
    int64_t run;
    assert_int_equal(mech_store_run_new(s, "acdc", NULL, NULL, NULL, &run, &err), MECH_OK);
    assert_int_equal(mech_store_results_get(s, run, NULL, &rows, &n, &err), MECH_OK);
    assert_int_equal(n, 0);
    mech_store_results_free(NULL, 0);
    mech_store_close(s);
}

// A second connection (as `mech acdc --resume` in a new process) sees the
// committed rows and not an open transaction's.
static void test_results_other_connection(void **state) {
    (void)state;
    const char *path = db_path();
    mech_store *a = open_db(path), *b = NULL;
    mech_err err = {0};
    int64_t run;
    assert_int_equal(mech_store_run_new(a, "acdc", NULL, NULL, NULL, &run, &err), MECH_OK);
    for (int i = 0; i < 300; i++) put(a, run, i, "s", -1, -1, "effect", i * 0.5);
    b = open_db(path);
    assert_int_equal(mech_store_begin(a, &err), MECH_OK);
    put(a, run, 300, "s", -1, -1, "effect", 1);
    mech_result_row *rows = NULL;
    size_t n = 0;
    assert_int_equal(mech_store_results_get(b, run, "effect", &rows, &n, &err), MECH_OK);
    assert_int_equal(n, 300); // the open batch is not visible
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(rows[i].item, (int)i);
        assert_true(rows[i].value == (double)i * 0.5);
    }
    mech_store_results_free(rows, n);
    mech_store_rollback(a, &err);
    mech_store_close(a);
    mech_store_close(b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_results_round_trip_in_order),
        cmocka_unit_test(test_results_errors_and_empty),
        cmocka_unit_test(test_results_other_connection),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
