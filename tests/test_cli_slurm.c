/*
** tests/test_cli_slurm.c: sweeps on a Slurm cluster. `--shard auto` maps a
** job array's task to its shard from the variables Slurm sets
** (SLURM_ARRAY_TASK_ID/_COUNT/_MIN/_MAX/_STEP), set here in the test's own
** environment, which the mech it runs inherits; the pairs each task ran are
** read back from the database and compared with the rule computed here.
** Then examples/slurm/ on a real one-node Slurm cluster started for the
** test (tests/slurm/cluster.sh: needs root and Debian's slurm-wlm and
** munge, as CI has; it fails saying what is missing rather than skip).
** The binary comes from $MECH_BIN (set by `make test`), else ./mech.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "mech.h"
#include "tests/support/check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *const vars[] = {"SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN",
                                   "SLURM_ARRAY_TASK_MAX", "SLURM_ARRAY_TASK_STEP"};

// The array task's variables as Slurm sets them; NULL leaves one unset.
static void array_env(const char *id, const char *count, const char *min, const char *max, const char *step) {
    const char *v[] = {id, count, min, max, step};
    for (int i = 0; i < 5; i++) {
        if (v[i]) setenv(vars[i], v[i], 1);
        else unsetenv(vars[i]);
    }
}

static void array_env_clear(void) { array_env(NULL, NULL, NULL, NULL, NULL); }

// The array --array=lo-hi:step, task id: every variable.
static void array_task(long id, long lo, long hi, long step) {
    char b[5][32];
    snprintf(b[0], 32, "%ld", id);
    snprintf(b[1], 32, "%ld", (hi - lo) / step + 1);
    snprintf(b[2], 32, "%ld", lo);
    snprintf(b[3], 32, "%ld", hi);
    snprintf(b[4], 32, "%ld", step);
    array_env(b[0], b[1], b[2], b[3], b[4]);
}

static const char *tiny(void) {
    static char path[512];
    if (!path[0]) {
        snprintf(path, sizeof path, "%s", mech_test_tmp("slurm_tiny.safetensors"));
        char *out;
        if (mech_test_cli(&out, NULL, "init -o %s --layers 2 --heads 2 --d-model 16 --d-head 8 --d-mlp 32 --vocab 60 "
                                      "--n-ctx 32 --seed 3", path))
            fail_msg("init: %s", out);
        free(out);
    }
    return path;
}

#define SWEEP "patch --model %s --dataset induction --n 10 --len 4 --sweep heads --shard auto --db %s"

// The one value a query returns, without the row's newline (owned).
static char *sql_one(const char *db, const char *q) {
    char *s = mech_test_sql_rows(db, q);
    size_t n = strlen(s);
    if (n && s[n - 1] == '\n') s[n - 1] = 0;
    return s;
}

// The items (pairs) of run 1 in db, "0,4,8", and its stored shard.
static void run_items(const char *db, char **items, char **shard) {
    *items = sql_one(db, "select group_concat(item) from (select distinct item from results where run_id = 1 "
                         "order by item)");
    *shard = sql_one(db, "select ifnull(json_extract(params, '$.shard'), 'none') from runs where id = 1");
}

// Every task of --array=lo-hi:step runs the pairs the rule gives it: task
// lo + j*step is shard j+1 of COUNT, and so runs pairs j, j + COUNT, ...
static void check_array(long lo, long hi, long step) {
    long count = (hi - lo) / step + 1;
    for (long id = lo; id <= hi; id += step) {
        const char *db = mech_test_tmpn("slurm_map.db");
        mech_test_rm_db(db);
        array_task(id, lo, hi, step);
        char *out, *err, *items, *shard;
        int rc = mech_test_cli(&out, &err, SWEEP, tiny(), db);
        if (rc) fail_msg("task %ld of %ld-%ld:%ld: exit %d\n%s%s", id, lo, hi, step, rc, out, err);
        long j = (id - lo) / step;
        char want_items[256] = "", want_shard[64], want_log[128];
        for (long p = j; p < 10; p += count)
            snprintf(want_items + strlen(want_items), sizeof want_items - strlen(want_items), "%s%ld",
                     *want_items ? "," : "", p);
        snprintf(want_shard, sizeof want_shard, "%ld/%ld", j + 1, count);
        snprintf(want_log, sizeof want_log, "array task %ld of %ld-%ld:%ld is shard %s", id, lo, hi, step, want_shard);
        run_items(db, &items, &shard);
        assert_string_equal(items, want_items);
        assert_string_equal(shard, count > 1 ? want_shard : "none");
        if (!strstr(err, want_log)) fail_msg("stderr lacks '%s':\n%s", want_log, err);
        free(out), free(err), free(items), free(shard);
        mech_test_rm_db(db);
    }
}

// --array=0-7 and --array=1-8 both number their tasks 1/8..8/8 from the
// first; a step (0-15:2, 3-9:3) counts tasks, not ids.
static void test_shard_auto_maps_tasks(void **state) {
    (void)state;
    check_array(0, 3, 1);
    check_array(1, 4, 1);
    check_array(0, 6, 2);
    check_array(3, 9, 3);
    check_array(5, 5, 1); // one task: the whole sweep, unsharded
    array_env_clear();
}

// Slurm always sets _STEP; without it the step comes from MIN, MAX and COUNT.
static void test_shard_auto_without_step(void **state) {
    (void)state;
    const char *db = mech_test_tmpn("slurm_nostep.db");
    mech_test_rm_db(db);
    array_env("6", "4", "0", "9", NULL); // 0-9:3 -> task 6 is shard 3/4
    char *out, *items, *shard;
    assert_int_equal(mech_test_cli(&out, NULL, SWEEP, tiny(), db), 0);
    run_items(db, &items, &shard);
    assert_string_equal(items, "2,6");
    assert_string_equal(shard, "3/4");
    free(out), free(items), free(shard);
    mech_test_rm_db(db);
    array_env_clear();
}

// Missing, malformed or inconsistent variables: exit 2 naming the
// variable, and no database is created.
static void test_shard_auto_refuses(void **state) {
    (void)state;
    static const struct {
        const char *env[5], *msg;
    } cases[] = {
        {{NULL, NULL, NULL, NULL, NULL}, "SLURM_ARRAY_TASK_ID is not set: this is not a task of a Slurm job array"},
        {{"1", NULL, "0", "3", "1"}, "SLURM_ARRAY_TASK_COUNT is not set"},
        {{"1", "4", NULL, "3", "1"}, "SLURM_ARRAY_TASK_MIN is not set"},
        {{"1", "4", "0", NULL, "1"}, "SLURM_ARRAY_TASK_MAX is not set"},
        {{"x", "4", "0", "3", "1"}, "SLURM_ARRAY_TASK_ID='x' is not a task index or count"},
        {{"-1", "4", "0", "3", "1"}, "SLURM_ARRAY_TASK_ID='-1' is not"},
        {{" 1", "4", "0", "3", "1"}, "SLURM_ARRAY_TASK_ID=' 1' is not"},
        {{"1", "4", "0", "3", "1x"}, "SLURM_ARRAY_TASK_STEP='1x' is not"},
        {{"1", "99999999999", "0", "3", "1"}, "SLURM_ARRAY_TASK_COUNT='99999999999' is not"},
        {{"1", "0", "0", "3", "1"}, "SLURM_ARRAY_TASK_COUNT=0 does not fit"},
        {{"1", "4", "3", "0", "1"}, "SLURM_ARRAY_TASK_COUNT=4 does not fit"},
        {{"1", "1", "0", "3", "1"}, "SLURM_ARRAY_TASK_COUNT=1 does not fit"},
        {{"1", "4", "1", "1", "1"}, "SLURM_ARRAY_TASK_COUNT=4 does not fit"},
        // --array=1,2,8 (3 tasks from 1 to 8): no step numbers them
        {{"2", "3", "1", "8", "1"}, "3 tasks from 1 to 8 are not evenly spaced"},
        // --array=1,4,7: Slurm sets step 1 for every list (22.05), evenly spaced or not
        {{"4", "3", "1", "7", "1"}, "SLURM_ARRAY_TASK_STEP=1, but 3 tasks from 1 to 7 are 3 apart"},
        {{"9", "4", "1", "4", "1"}, "SLURM_ARRAY_TASK_ID=9 is not a task of the array 1-4:1"},
        {{"0", "4", "1", "4", "1"}, "SLURM_ARRAY_TASK_ID=0 is not a task of the array 1-4:1"},
        {{"3", "8", "0", "14", "2"}, "SLURM_ARRAY_TASK_ID=3 is not a task of the array 0-14:2"},
        {{"4", "1", "5", "5", "1"}, "SLURM_ARRAY_TASK_ID=4 is not a task of the array 5-5:1"},
    };
    const char *db = mech_test_tmpn("slurm_refused.db");
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        mech_test_rm_db(db);
        array_env(cases[c].env[0], cases[c].env[1], cases[c].env[2], cases[c].env[3], cases[c].env[4]);
        char *out;
        int rc = mech_test_cli(&out, NULL, SWEEP, tiny(), db);
        if (rc != 2 || !strstr(out, cases[c].msg))
            fail_msg("case %zu: exit %d (want 2), output lacks '%s':\n%s", c, rc, cases[c].msg, out);
        assert_int_equal(access(db, F_OK), -1);
        free(out);
    }
    array_env_clear();
}

// A requeued task resumes its own shard: --resume takes the run's stored
// shard (K/N), and --shard auto given again must agree with it.
static void test_shard_auto_resume(void **state) {
    (void)state;
    const char *db = mech_test_tmpn("slurm_resume.db"), *ref = mech_test_tmpn("slurm_resume_ref.db");
    mech_test_rm_db(db), mech_test_rm_db(ref);
    char *out, *a, *b;
    array_task(4, 2, 8, 2); // 2-8:2: shard 2/4, pairs 1, 5, 9
    assert_int_equal(mech_test_cli(&out, NULL, SWEEP, tiny(), db), 0);
    free(out);
    array_env_clear();
    assert_int_equal(mech_test_cli(&out, NULL, "patch --model %s --dataset induction --n 10 --len 4 --sweep heads "
                                               "--shard 2/4 --db %s", tiny(), ref), 0);
    free(out);
    // what a kill after the first pair leaves
    char *cut = sql_one(db, "select count(*) from results where run_id = 1 and item = 1");
    assert_true(atoi(cut) > 0);
    free(cut);
    char q[512];
    snprintf(q, sizeof q, "sqlite3 %s \"delete from results where item > 1; delete from tensors where name not like "
                          "'pair1.%%'; update runs set status = 'interrupted'\"", db);
    assert_int_equal(system(q), 0);
    // outside the array, auto is refused even with --resume
    assert_int_equal(mech_test_cli(&out, NULL, "patch --resume 1 --shard auto --db %s", db), 2);
    free(out);
    array_task(4, 2, 8, 2);
    assert_int_equal(mech_test_cli(&out, NULL, "patch --resume 1 --shard auto --db %s", db), 0);
    free(out);
    array_task(6, 2, 8, 2); // another task's shard (3/4) is not this run's
    assert_int_equal(mech_test_cli(&out, NULL, "patch --resume 1 --shard auto --db %s", db), 2);
    free(out);
    array_env_clear();
    const char *rows = "select item, site, layer, pos, head, metric, value from results order by item, site, layer, "
                       "pos, head, metric";
    a = mech_test_sql_rows(db, rows), b = mech_test_sql_rows(ref, rows);
    assert_string_equal(a, b);
    free(a), free(b);
    a = mech_test_sql_rows(db, "select status, json_extract(params, '$.shard') from runs");
    assert_string_equal(a, "done|2/4\n");
    free(a);
    mech_test_rm_db(db), mech_test_rm_db(ref);
}

// The sbatch scripts of examples/slurm/ on a real Slurm: the joined shards
// of an array (an offset and a step) equal the unsharded run row for row,
// the ACDC grid's runs equal the runs made directly, and a task killed
// midway and requeued resumes its shard with no pair lost or run twice.
static void test_real_slurm_cluster(void **state) {
    (void)state;
    char *out = NULL;
    FILE *p = popen("bash tests/slurm/cluster.sh 2>&1", "r");
    assert_non_null(p);
    size_t cap = 1 << 16, len = 0, n;
    out = malloc(cap);
    while (out && (n = fread(out + len, 1, cap - len - 1, p)) > 0)
        if ((len += n) + 1 == cap) out = realloc(out, cap *= 2);
    assert_non_null(out);
    out[len] = 0;
    int st = pclose(p);
    if (!WIFEXITED(st) || WEXITSTATUS(st)) fail_msg("tests/slurm/cluster.sh failed:\n%s", out);
    printf("%s", out);
    assert_non_null(strstr(out, "ok: Slurm test passed"));
    free(out);
}

int main(void) {
    array_env_clear();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shard_auto_maps_tasks),
        cmocka_unit_test(test_shard_auto_without_step),
        cmocka_unit_test(test_shard_auto_refuses),
        cmocka_unit_test(test_shard_auto_resume),
        cmocka_unit_test(test_real_slurm_cluster),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
