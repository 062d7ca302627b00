/*
** tests/test_tui_term_bad.c: `mech tui` on bad input. A foreign, newer or
** damaged database, a model that does not load: a message, exit 1, the
** terminal untouched or restored, and the file byte for byte as it was. A
** run of a kind the interface does not know opens as a table of its rows;
** a database damaged while the interface shows it turns into a message on
** the screen, not a crash.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "mech.h"
#include "tests/support/check.h"
#include "tests/support/tmux.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char model[600], db[600];

static int setup(void **state) {
    (void)state;
    tmux_init();
    snprintf(model, sizeof model, "%s", mech_test_tmpn("bad_tiny.safetensors"));
    snprintf(db, sizeof db, "%s", mech_test_tmpn("bad.db"));
    mech_test_rm_db(db);
    char *out = NULL;
    if (mech_test_cli(&out, NULL, "init -o %s", model)) fail_msg("mech init: %s", out);
    free(out);
    if (mech_test_cli(&out, NULL, "heads --model %s --prompt 'When Mary and John went to the store' --db %s", model, db))
        fail_msg("mech heads: %s", out);
    free(out);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    tmux_stop();
    unlink(model);
    mech_test_rm_db(db);
    return 0;
}

static void exec_sql(const char *path, const char *sql) {
    sqlite3 *h = NULL;
    assert_int_equal(sqlite3_open(path, &h), SQLITE_OK);
    char *msg = NULL;
    if (sqlite3_exec(h, sql, NULL, NULL, &msg) != SQLITE_OK) fail_msg("%s: %s", sql, msg);
    sqlite3_close(h);
}

// A copy of the test database, checkpointed into one file (no -wal).
static const char *copy_db(const char *name) {
    const char *path = mech_test_tmpn(name);
    mech_test_rm_db(path);
    char sql[800];
    snprintf(sql, sizeof sql, "vacuum into '%s'", path);
    exec_sql(db, sql);
    return path;
}

// `mech tui ARGS` without a terminal: exit 1, a message naming what, and
// path byte for byte unchanged.
static void refused(const char *path, const char *args, const char *want) {
    size_t len0 = 0, len1 = 0;
    char *before = mech_test_read(path, &len0), *out = NULL, *err = NULL;
    assert_non_null(before);
    assert_int_equal(mech_test_cli(&out, &err, "tui %s", args), 1);
    assert_non_null(strstr(err, "mech tui: error:"));
    if (!strstr(err, want)) fail_msg("no \"%s\" in: %s", want, err);
    assert_null(strstr(err, "needs a terminal")); // refused before the terminal is asked for
    char *after = mech_test_read(path, &len1);
    assert_int_equal(len0, len1);
    assert_memory_equal(before, after, len0);
    free(before), free(after), free(out), free(err);
}

static void test_tui_foreign_and_newer_databases(void **state) {
    (void)state;
    // another application's SQLite file
    const char *foreign = mech_test_tmpn("foreign.db");
    mech_test_rm_db(foreign);
    exec_sql(foreign, "create table notes(id integer primary key, body text); insert into notes values (1, 'hi');");
    refused(foreign, foreign, foreign);
    refused(foreign, foreign, "not a mech");
    // a mech database from a newer mech
    const char *newer = copy_db("newer.db");
    exec_sql(newer, "pragma user_version = 99");
    refused(newer, newer, "newer");
    // a truncated one
    const char *cut = copy_db("cut.db");
    size_t len = 0;
    char *bytes = mech_test_read(cut, &len);
    FILE *f = fopen(cut, "wb");
    fwrite(bytes, 1, len - 1000, f);
    fclose(f);
    free(bytes);
    refused(cut, cut, cut);
    mech_test_rm_db(foreign), mech_test_rm_db(newer), mech_test_rm_db(cut);
}

// A model that does not load (truncated, or not safetensors): exit 1 naming
// it, before the terminal; the database given beside it is not touched.
static void test_tui_model_fails_to_load(void **state) {
    (void)state;
    const char *broken = mech_test_tmpn("broken.safetensors");
    size_t len = 0;
    char *bytes = mech_test_read(model, &len);
    FILE *f = fopen(broken, "wb");
    fwrite(bytes, 1, len / 2, f);
    fclose(f);
    free(bytes);
    const char *copy = copy_db("with_model.db");
    char args[2000];
    snprintf(args, sizeof args, "%s --model %s --prompt 'When Mary'", copy, broken);
    refused(copy, args, broken);
    f = fopen(broken, "wb");
    fputs("{\"not\": \"a model\"}", f);
    fclose(f);
    refused(copy, args, broken);
    unlink(broken);
    mech_test_rm_db(copy);
}

// A run of a kind this mech does not know (a newer mech's, or written by
// hand): listed, and opened as its rows.
static void test_tui_unknown_kind_opens_as_rows(void **state) {
    (void)state;
    if (!tmux_have()) skip();
    const char *path = copy_db("unknown.db");
    exec_sql(path, "insert into runs(kind, params, started, status) values ('mystery', '{}', "
                   "'2026-12-04T10:00:00.000Z', 'done');"
                   "insert into results(run_id, item, site, layer, pos, head, token, rank, metric, value) "
                   "values (last_insert_rowid(), 0, 'somewhere', 1, 2, -1, -1, -1, 'oddity', 0.125);");
    char *id = mech_test_sql_rows(path, "select id from runs where kind='mystery'");
    id[strcspn(id, "\n")] = 0;
    size_t len0 = 0;
    char *before = mech_test_read(path, &len0);
    tmux_start(100, 30, path);
    tmux_wait_for("mystery");
    tmux_keys("G Enter"); // the last run is the new one
    tmux_wait_for("oddity");
    tmux_wait_for("somewhere");
    tmux_wait_for("0.125");
    tmux_keys("q");
    tmux_wait_for("mystery"); // back in the list
    tmux_keys("q");
    tmux_assert_restored("rc=0");
    size_t len1 = 0;
    char *after = mech_test_read(path, &len1);
    assert_int_equal(len0, len1);
    assert_memory_equal(before, after, len0);
    free(before), free(after), free(id);
    tmux_stop();
    mech_test_rm_db(path);
}

// The file is damaged while the interface shows it: the next refresh shows
// why the runs are gone; the program keeps answering and exits cleanly.
static void test_tui_database_damaged_while_open(void **state) {
    (void)state;
    if (!tmux_have()) skip();
    const char *path = copy_db("damaged.db");
    tmux_start(100, 30, path);
    tmux_wait_for("heads      done");
    size_t len = 0;
    char *bytes = mech_test_read(path, &len);
    memset(bytes + len / 2, 0x5a, len - len / 2); // the second half of the pages overwritten
    FILE *f = fopen(path, "wb");
    fwrite(bytes, 1, len, f);
    fclose(f);
    free(bytes);
    tmux_wait_for("cannot read");
    tmux_keys("'?'");
    tmux_wait_for("keys: runs view"); // still answering
    tmux_keys("x q");
    tmux_assert_restored("rc=0");
    tmux_stop();
    mech_test_rm_db(path);
}


// A crash (SIGSEGV) and a closed window (SIGHUP): the terminal comes back;
// a crash re-raises its signal (128 + 11), a hang-up ends the program as
// SIGTERM does (128 + 1).
static void test_tui_crash_and_hangup_restore(void **state) {
    (void)state;
    if (!tmux_have()) skip();
    const char *san = getenv("MECH_SANITIZED");
    const struct {
        const char *sig, *rc;
    } cases[] = {{"SEGV", "rc=139"}, {"HUP", "rc=129"}};
    for (int i = 0; i < 2; i++) {
        tmux_start(80, 24, db);
        tmux_wait_for("1 of 1 runs");
        char pid[32];
        tmux_sh(pid, sizeof pid, "cat %s", tmux_pidfile());
        assert_true(atoi(pid) > 1);
        assert_int_equal(tmux_sh(NULL, 0, "kill -%s %d", cases[i].sig, atoi(pid)), 0);
        // under AddressSanitizer its own SEGV report decides the exit status
        tmux_assert_restored(san && *san && i == 0 ? "rc=" : cases[i].rc);
        tmux_stop();
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tui_foreign_and_newer_databases),
        cmocka_unit_test(test_tui_model_fails_to_load),
        cmocka_unit_test(test_tui_unknown_kind_opens_as_rows),
        cmocka_unit_test(test_tui_database_damaged_while_open),
        cmocka_unit_test(test_tui_crash_and_hangup_restore),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
