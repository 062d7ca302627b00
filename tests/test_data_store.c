/*
** tests/test_data_store.c: the SQLite results store (data/store.c,
** data/store_sha256.c): round trips of every call, checked independently
** through the sqlite3 API; refusal of newer, foreign and corrupt files with
** their bytes unchanged; rollback; crash safety under SIGKILL; merge; CSV and
** .npz export (the .npz checked with Python's zipfile when python3 exists).
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/support/check.h"

#include <math.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include "data/data.h"

// Not public: SHA-256 of a buffer (data/store_sha256.c).
void mech_store_sha256_(const void *data, size_t n, char hex[65]);

// ---------------------------------------------------------------------------
// Helpers

// mech_test_tmp's buffer is static: keep a copy per name.
static void assert_contains(const char *hay, const char *needle) {
    if (!strstr(hay, needle)) fail_msg("'%s' does not contain '%s'", hay, needle);
}

static void write_bytes(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    if (n) assert_int_equal(fwrite(data, 1, n, f), n);
    fclose(f);
}

// Runs sql on path with a plain sqlite3 connection (not mech's).
static void sql_exec(const char *path, const char *sql) {
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) fail_msg("%s: %s", sql, msg);
    sqlite3_close(db);
}

static int64_t sql_int(const char *path, const char *sql) {
    sqlite3 *db;
    sqlite3_stmt *q;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    if (sqlite3_prepare_v2(db, sql, -1, &q, NULL) != SQLITE_OK) fail_msg("%s: %s", sql, sqlite3_errmsg(db));
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    sqlite3_close(db);
    return v;
}

// First column of the first row as text ("(null)" for NULL); owned (free).
static char *sql_text(const char *path, const char *sql) {
    sqlite3 *db;
    sqlite3_stmt *q;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    if (sqlite3_prepare_v2(db, sql, -1, &q, NULL) != SQLITE_OK) fail_msg("%s: %s", sql, sqlite3_errmsg(db));
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    const char *t = (const char *)sqlite3_column_text(q, 0);
    char *r = strdup(t ? t : "(null)");
    sqlite3_finalize(q);
    sqlite3_close(db);
    return r;
}

static mech_store *open_ok(const char *path) {
    mech_err err = {0};
    mech_store *s = NULL;
    if (mech_store_open(path, &s, &err)) fail_msg("open %s: %s", path, err.msg);
    return s;
}

#define OK(call)                                                                                   \
    do {                                                                                           \
        mech_err e_ = {0};                                                                         \
        mech_status st_ = (call);                                                                  \
        if (st_) fail_msg("%s: %s (%s)", #call, mech_strerror(st_), e_.msg);                       \
    } while (0)
#define E (&e_)

static void open_refused(const char *path, const char *want) {
    size_t n0, n1;
    unsigned char *before = mech_test_read(path, &n0);
    mech_err err = {0};
    mech_store *s = (mech_store *)0x1;
    mech_status st = mech_store_open(path, &s, &err);
    if (st == MECH_OK) {
        mech_store_close(s);
        fail_msg("%s opened, expected refusal", path);
    }
    assert_int_equal(st, MECH_ERR_DB);
    assert_null(s);
    assert_contains(err.msg, path);
    assert_contains(err.msg, want);
    unsigned char *after = mech_test_read(path, &n1);
    assert_int_equal(n0, n1);
    assert_memory_equal(before, after, n0);
    free(before);
    free(after);
}

static mech_result res(int item, const char *site, int layer, int pos, int head, const char *metric,
                       double v) {
    mech_result r = {item, site, layer, pos, head, -1, -1, metric, v};
    return r;
}

// ---------------------------------------------------------------------------
// Hashing

static void test_store_sha256_known_answers(void **state) {
    (void)state;
    char hex[65];
    mech_store_sha256_("", 0, hex);
    assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    mech_store_sha256_("abc", 3, hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    mech_store_sha256_(m, strlen(m), hex);
    assert_string_equal(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

static void test_store_model_hash_scheme(void **state) {
    (void)state;
    char hex[65], want[65];
    assert_int_equal(mech_store_model_hash(NULL, hex), MECH_ERR_IO);
    assert_string_equal(hex, "");
    assert_int_equal(mech_store_model_hash(mech_test_tmpn("no-such-model"), hex), MECH_ERR_IO);

    // A small safetensors-shaped file: size || whole || whole || header.
    unsigned char f[8 + 10 + 6] = {10, 0, 0, 0, 0, 0, 0, 0};
    memcpy(f + 8, "{\"a\":1}   ", 10);
    memcpy(f + 18, "abcdef", 6);
    const char *p = mech_test_tmpn("m.safetensors");
    write_bytes(p, f, sizeof f);
    unsigned char in[8 + 2 * sizeof f + 10] = {sizeof f};
    memcpy(in + 8, f, sizeof f);
    memcpy(in + 8 + sizeof f, f, sizeof f);
    memcpy(in + 8 + 2 * sizeof f, f + 8, 10);
    mech_store_sha256_(in, sizeof in, want);
    OK(mech_store_model_hash(p, hex));
    assert_string_equal(hex, want);

    // Not safetensors (header length past the end): no header part.
    f[0] = 200;
    write_bytes(p, f, sizeof f);
    memcpy(in + 8, f, sizeof f);
    memcpy(in + 8 + sizeof f, f, sizeof f);
    mech_store_sha256_(in, 8 + 2 * sizeof f, want);
    OK(mech_store_model_hash(p, hex));
    assert_string_equal(hex, want);

    // A directory hashes its model.safetensors.
    const char *dir = mech_test_tmpn("hashdir");
    mkdir(dir, 0755);
    char inner[600];
    snprintf(inner, sizeof inner, "%s/model.safetensors", dir);
    write_bytes(inner, f, sizeof f);
    char hex2[65];
    OK(mech_store_model_hash(dir, hex2));
    assert_string_equal(hex, hex2);
    unlink(inner);
    rmdir(dir);

    // 3 MiB: the middle MiB is not hashed, the last byte is.
    size_t big = 3u << 20;
    unsigned char *b = calloc(big, 1);
    write_bytes(p, b, big);
    char h0[65], h1[65], h2[65];
    OK(mech_store_model_hash(p, h0));
    b[big / 2] = 1;
    write_bytes(p, b, big);
    OK(mech_store_model_hash(p, h1));
    b[big - 1] = 1;
    write_bytes(p, b, big);
    OK(mech_store_model_hash(p, h2));
    assert_string_equal(h0, h1);
    assert_string_not_equal(h1, h2);
    free(b);
    unlink(p);
}

// ---------------------------------------------------------------------------
// Open, versions, refusal

static void test_store_open_creates_wal_v1(void **state) {
    (void)state;
    const char *p = mech_test_tmpn("create.db");
    mech_test_rm_db(p);
    mech_store *s = open_ok(p);
    assert_string_equal(mech_store_path(s), p);
    OK(mech_store_check(s, E));
    mech_store_close(s);
    assert_int_equal(sql_int(p, "PRAGMA user_version"), MECH_STORE_SCHEMA_VERSION);
    assert_int_equal(sql_int(p, "PRAGMA application_id"), MECH_STORE_APPLICATION_ID);
    char *mode = sql_text(p, "PRAGMA journal_mode");
    assert_string_equal(mode, "wal");
    free(mode);
    assert_int_equal(sql_int(p, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN "
                                "('runs', 'prompts', 'results', 'tensors')"),
                     4);
    mech_store_close(open_ok(p)); // reopening is fine
    // An empty file is not mech's: refused, left empty (a database is
    // created only where no file exists).
    mech_test_rm_db(p);
    write_bytes(p, "", 0);
    open_refused(p, "empty file");
    // Creation leaves no temporary file beside the database.
    mech_test_rm_db(p);
    mech_store_close(open_ok(p));
    assert_int_equal(mech_test_leftovers(p), 0);
    mech_test_rm_db(p);
    mech_store_close(NULL);
}

// A mech-marked file whose user_version is 0 is refused with a short
// message (not the schema's CREATE statements), whether it has tables or not.
static void test_store_refuses_version_zero(void **state) {
    (void)state;
    const char *p = mech_test_tmpn("old.db");
    mech_test_rm_db(p);
    mech_store_close(open_ok(p));
    sql_exec(p, "PRAGMA user_version = 0");
    open_refused(p, "schema version (PRAGMA user_version) is 0");
    mech_err err = {0};
    mech_store *s = NULL;
    assert_int_equal(mech_store_open(p, &s, &err), MECH_ERR_DB);
    assert_null(strstr(err.msg, "CREATE"));
    assert_true(strlen(err.msg) < 300);
    assert_int_equal(mech_store_open_read(p, &s, &err), MECH_ERR_DB);
    assert_contains(err.msg, "is 0");
    mech_test_rm_db(p);
    char sql[128];
    snprintf(sql, sizeof sql, "PRAGMA application_id = %d", MECH_STORE_APPLICATION_ID);
    sql_exec(p, sql);
    open_refused(p, "is 0");
    mech_test_rm_db(p);
}

static void test_store_refuses_newer_version(void **state) {
    (void)state;
    const char *p = mech_test_tmpn("newer.db");
    mech_test_rm_db(p);
    mech_store_close(open_ok(p));
    sql_exec(p, "PRAGMA user_version = 99");
    open_refused(p, "newer");
    open_refused(p, "99");
    mech_test_rm_db(p);
}

static void test_store_refuses_foreign_sqlite(void **state) {
    (void)state;
    const char *p = mech_test_tmpn("foreign.db");
    mech_test_rm_db(p);
    sql_exec(p, "CREATE TABLE accounts (id INTEGER, name TEXT); INSERT INTO accounts VALUES (1, 'x')");
    open_refused(p, "not a mech results database");
    // Also in WAL mode.
    sql_exec(p, "PRAGMA journal_mode = WAL");
    open_refused(p, "not a mech results database");
    mech_test_rm_db(p);
}

static void test_store_refuses_corrupt_files(void **state) {
    (void)state;
    const char *p = mech_test_tmpn("corrupt.db");
    mech_test_rm_db(p);
    unsigned char junk[8192];
    for (size_t i = 0; i < sizeof junk; i++) junk[i] = (unsigned char)(i * 131 + 7);
    write_bytes(p, junk, sizeof junk);
    open_refused(p, "not an SQLite database");

    // The SQLite magic followed by garbage.
    memcpy(junk, "SQLite format 3", 16);
    write_bytes(p, junk, sizeof junk);
    open_refused(p, "SQLite");

    // A real store truncated: open or the first reads fail with MECH_ERR_DB.
    mech_test_rm_db(p);
    mech_store *s = open_ok(p);
    int64_t run;
    OK(mech_store_run_new(s, "patch", NULL, NULL, NULL, &run, E));
    OK(mech_store_begin(s, E));
    for (int i = 0; i < 20000; i++) {
        mech_result r = res(i / 100, "blocks.0.hook_resid_pre", i % 12, i % 7, -1, "logit_diff", i);
        OK(mech_store_result(s, run, &r, E));
    }
    OK(mech_store_commit(s, E));
    mech_store_close(s); // checkpoints the WAL into the file
    struct stat sb;
    assert_int_equal(stat(p, &sb), 0);
    assert_true(sb.st_size > 100000);
    assert_int_equal(truncate(p, sb.st_size / 3), 0);
    mech_err err = {0};
    s = NULL;
    mech_status st = mech_store_open(p, &s, &err);
    if (st == MECH_OK) {
        int *items = NULL;
        size_t n = 0;
        st = mech_store_items_done(s, run, &items, &n, &err);
        if (st == MECH_OK) st = mech_store_check(s, &err);
        mech_free(items);
        mech_store_close(s);
    }
    assert_int_equal(st, MECH_ERR_DB);
    assert_contains(err.msg, p);
    print_message("truncated store: %s\n", err.msg);
    mech_test_rm_db(p);
}

// Reading opens read-only: a missing path stays missing, refusals are those
// of mech_store_open, and nothing can be written through the handle.
static void test_store_open_read(void **state) {
    (void)state;
    const char *p = mech_test_tmpn("read.db");
    mech_test_rm_db(p);
    mech_err err = {0};
    mech_store *s = (mech_store *)0x1;
    assert_int_equal(mech_store_open_read(p, &s, &err), MECH_ERR_IO);
    assert_null(s);
    assert_contains(err.msg, p);
    assert_contains(err.msg, "no such file");
    struct stat sb;
    assert_int_not_equal(stat(p, &sb), 0);
    assert_int_equal(mech_store_open_read("", &s, &err), MECH_ERR_ARG);
    assert_contains(err.msg, "empty");
    assert_int_equal(mech_store_open("", &s, &err), MECH_ERR_ARG);
    write_bytes(p, "", 0);
    assert_int_equal(mech_store_open_read(p, &s, &err), MECH_ERR_DB);
    assert_contains(err.msg, "empty file");
    mech_test_rm_db(p);
    s = open_ok(p);
    int64_t run;
    OK(mech_store_run_new(s, "lens", NULL, NULL, NULL, &run, E));
    mech_store_close(s);
    size_t n0, n1;
    unsigned char *before = mech_test_read(p, &n0);
    OK(mech_store_open_read(p, &s, E));
    mech_run_info info;
    OK(mech_store_run_info(s, run, &info, E));
    assert_string_equal(info.kind, "lens");
    mech_store_run_info_deinit(&info);
    assert_int_equal(mech_store_run_new(s, "lens", NULL, NULL, NULL, &run, &err), MECH_ERR_ARG);
    assert_contains(err.msg, "reading only");
    assert_int_equal(mech_store_begin(s, &err), MECH_ERR_ARG);
    assert_int_equal(mech_store_run_finish(s, run, "failed", &err), MECH_ERR_ARG);
    mech_store_close(s);
    unsigned char *after = mech_test_read(p, &n1);
    assert_int_equal(n0, n1);
    assert_memory_equal(before, after, n0);
    free(before), free(after);
    mech_test_rm_db(p);
}

// A database one byte short (or one page short) is refused before any
// write, with the sizes in the message.
static void test_store_refuses_truncated(void **state) {
    (void)state;
    const char *p = mech_test_tmpn("short.db");
    mech_test_rm_db(p);
    mech_store *s = open_ok(p);
    int64_t run;
    OK(mech_store_run_new(s, "patch", NULL, NULL, NULL, &run, E));
    OK(mech_store_begin(s, E));
    for (int i = 0; i < 3000; i++) {
        mech_result r = res(i / 10, "blocks.0.hook_resid_pre", i % 12, i % 7, -1, "logit_diff", i);
        OK(mech_store_result(s, run, &r, E));
    }
    OK(mech_store_commit(s, E));
    mech_store_close(s);
    struct stat sb;
    assert_int_equal(stat(p, &sb), 0);
    assert_int_equal(truncate(p, sb.st_size - 1), 0);
    open_refused(p, "truncated or extended");
    assert_int_equal(truncate(p, sb.st_size - 4096), 0);
    open_refused(p, "damaged");
    mech_test_rm_db(p);
}

// Once a statement meets a damaged page, the store writes nothing more:
// not even the run's "failed" status.
static void test_store_stops_writing_when_damage_found(void **state) {
    (void)state;
    const char *p = mech_test_tmpn("damage.db");
    mech_test_rm_db(p);
    mech_store *s = open_ok(p);
    int64_t run;
    OK(mech_store_run_new(s, "patch", NULL, NULL, NULL, &run, E));
    OK(mech_store_begin(s, E));
    for (int i = 0; i < 3000; i++) {
        mech_result r = res(i / 10, "blocks.0.hook_resid_pre", i % 12, i % 7, -1, "logit_diff", i);
        OK(mech_store_result(s, run, &r, E));
    }
    OK(mech_store_commit(s, E));
    mech_store_close(s);
    int64_t root = sql_int(p, "SELECT rootpage FROM sqlite_master WHERE name = 'results'");
    int64_t page = sql_int(p, "PRAGMA page_size");
    s = open_ok(p); // intact so far
    // The results table's root page is overwritten behind SQLite's back.
    unsigned char junk[512];
    memset(junk, 0xA5, sizeof junk);
    FILE *f = fopen(p, "r+b");
    assert_non_null(f);
    assert_int_equal(fseek(f, (long)((root - 1) * page), SEEK_SET), 0);
    assert_int_equal(fwrite(junk, 1, sizeof junk, f), sizeof junk);
    fclose(f);
    size_t n0, n1;
    unsigned char *before = mech_test_read(p, &n0);
    mech_err err = {0};
    mech_result_row *rows = NULL;
    size_t n = 0;
    assert_int_equal(mech_store_results_get(s, run, NULL, &rows, &n, &err), MECH_ERR_DB);
    assert_contains(err.msg, "malformed");
    assert_int_equal(mech_store_run_finish(s, run, "failed", &err), MECH_ERR_DB);
    assert_contains(err.msg, "damaged");
    mech_result r = res(0, "x", 0, 0, -1, "m", 1);
    assert_int_equal(mech_store_result(s, run, &r, &err), MECH_ERR_DB);
    mech_store_close(s);
    unsigned char *after = mech_test_read(p, &n1);
    assert_int_equal(n0, n1);
    assert_memory_equal(before, after, n0);
    free(before), free(after);
    mech_test_rm_db(p);
}

// ---------------------------------------------------------------------------
// Runs, prompts, results

static void test_store_run_round_trip(void **state) {
    (void)state;
    const char *p = mech_test_tmpn("runs.db");
    const char *model = mech_test_tmpn("runs-model.bin");
    mech_test_rm_db(p);
    write_bytes(model, "weights", 7);
    mech_store *s = open_ok(p);
    int64_t a, b;
    OK(mech_store_run_new(s, "patch", model, "mech patch --x 1", "{\"sweep\":\"heads\"}", &a, E));
    OK(mech_store_run_new(s, "lens", NULL, NULL, NULL, &b, E));
    assert_true(b > a);

    mech_run_info info;
    OK(mech_store_run_info(s, a, &info, E));
    assert_int_equal(info.id, a);
    assert_string_equal(info.kind, "patch");
    assert_string_equal(info.model_path, model);
    char hex[65];
    OK(mech_store_model_hash(model, hex));
    assert_non_null(info.model_hash);
    assert_string_equal(info.model_hash, hex);
    assert_string_equal(info.cmdline, "mech patch --x 1");
    assert_string_equal(info.params_json, "{\"sweep\":\"heads\"}");
    assert_string_equal(info.status, "running");
    assert_null(info.finished);
    // ISO-8601 UTC: 2026-11-23T20:49:13.123Z
    assert_int_equal(strlen(info.started), 24);
    assert_int_equal(info.started[10], 'T');
    assert_int_equal(info.started[23], 'Z');
    mech_store_run_info_deinit(&info);

    OK(mech_store_run_finish(s, a, "done", E));
    OK(mech_store_run_info(s, a, &info, E));
    assert_string_equal(info.status, "done");
    assert_non_null(info.finished);
    assert_true(strcmp(info.finished, info.started) >= 0);
    mech_store_run_info_deinit(&info);
    OK(mech_store_run_info(s, b, &info, E));
    assert_null(info.model_path);
    assert_null(info.model_hash);
    assert_null(info.params_json);
    mech_store_run_info_deinit(&info);
    OK(mech_store_run_finish(s, b, "interrupted", E));
    OK(mech_store_run_finish(s, b, "running", E)); // --resume
    OK(mech_store_run_info(s, b, &info, E));
    assert_null(info.finished);
    mech_store_run_info_deinit(&info);

    mech_run_info *runs;
    size_t n;
    OK(mech_store_runs(s, &runs, &n, E));
    assert_int_equal(n, 2);
    assert_int_equal(runs[0].id, a);
    assert_string_equal(runs[1].kind, "lens");
    mech_store_runs_free(runs, n);

    // Errors.
    mech_err err = {0};
    assert_int_equal(mech_store_run_finish(s, a, "ok", &err), MECH_ERR_ARG);
    assert_contains(err.msg, "'ok'");
    assert_int_equal(mech_store_run_finish(s, 999, "done", &err), MECH_ERR_RANGE);
    assert_contains(err.msg, "no run 999");
    assert_int_equal(mech_store_run_info(s, 999, &info, &err), MECH_ERR_RANGE);
    assert_int_equal(mech_store_run_new(s, "", NULL, NULL, NULL, &a, &err), MECH_ERR_ARG);
    assert_int_equal(mech_store_run_new(s, "patch", NULL, NULL, "{bad", &a, &err), MECH_ERR_ARG);
    assert_contains(err.msg, "JSON");
    mech_store_close(s);
    mech_test_rm_db(p);
    unlink(model);
}

static void test_store_prompts_and_results(void **state) {
    (void)state;
    const char *p = mech_test_tmpn("results.db");
    mech_test_rm_db(p);
    mech_store *s = open_ok(p);
    int64_t run;
    OK(mech_store_run_new(s, "patch", NULL, NULL, NULL, &run, E));
    int32_t clean[] = {464, 36, 733}, corrupt[] = {464, 37, 733};
    OK(mech_store_prompt(s, run, 0, "clean", "The cat", clean, 3, E));
    OK(mech_store_prompt(s, run, 0, "corrupt", NULL, corrupt, 3, E));
    OK(mech_store_prompt(s, run, 1, "prompt", "", NULL, 0, E));
    OK(mech_store_begin(s, E));
    for (int item = 0; item < 3; item += 2)
        for (int l = 0; l < 2; l++)
            for (int t = 0; t < 3; t++) {
                mech_result r = res(item, "resid_pre", l, t, -1, "logit_diff", l * 10 + t + item * 0.5);
                OK(mech_store_result(s, run, &r, E));
            }
    mech_result r = {0, "blocks.1.attn.hook_z", 1, -1, 3, 50256, 2, "prob", NAN};
    OK(mech_store_result(s, run, &r, E));
    OK(mech_store_commit(s, E));

    int *items;
    size_t n;
    OK(mech_store_items_done(s, run, &items, &n, E));
    assert_int_equal(n, 2);
    assert_int_equal(items[0], 0);
    assert_int_equal(items[1], 2);
    mech_free(items);
    OK(mech_store_items_done(s, run + 1, &items, &n, E));
    assert_int_equal(n, 0);
    assert_null(items);

    mech_run_info info;
    OK(mech_store_run_info(s, run, &info, E));
    assert_int_equal(info.n_results, 13);
    assert_int_equal(info.n_items, 2);
    assert_int_equal(info.n_prompts, 3);
    assert_int_equal(info.n_tensors, 0);
    mech_store_run_info_deinit(&info);

    mech_err err = {0};
    assert_int_equal(mech_store_prompt(s, run, 0, "answer", "x", NULL, 0, &err), MECH_ERR_ARG);
    assert_contains(err.msg, "role 'answer'");
    mech_result bad = {0, NULL, 0, 0, 0, 0, 0, "m", 1};
    assert_int_equal(mech_store_result(s, run, &bad, &err), MECH_ERR_ARG);
    // A result for a run that does not exist violates the foreign key.
    mech_result orphan = res(0, "x", 0, 0, 0, "m", 1);
    assert_int_equal(mech_store_result(s, 12345, &orphan, &err), MECH_ERR_DB);
    assert_contains(err.msg, "FOREIGN KEY");
    mech_store_close(s);

    // Plain sqlite3 answers questions without mech.
    assert_int_equal(sql_int(p, "SELECT count(*) FROM results WHERE run_id = 1 AND metric = "
                                "'logit_diff' AND layer = 1 AND item = 0"),
                     3);
    char *v = sql_text(p, "SELECT value FROM results WHERE run_id = 1 AND item = 2 AND layer = 1 AND pos = 2");
    assert_string_equal(v, "13.0");
    free(v);
    v = sql_text(p, "SELECT value FROM results WHERE metric = 'prob'");
    assert_string_equal(v, "(null)");
    free(v);
    v = sql_text(p, "SELECT head || ',' || token || ',' || rank || ',' || pos FROM results WHERE metric = 'prob'");
    assert_string_equal(v, "3,50256,2,-1");
    free(v);
    v = sql_text(p, "SELECT tokens FROM prompts WHERE run_id = 1 AND item = 0 AND role = 'corrupt'");
    assert_string_equal(v, "[464,37,733]");
    free(v);
    v = sql_text(p, "SELECT tokens || n_tokens || text FROM prompts WHERE item = 1");
    assert_string_equal(v, "[]0");
    free(v);
    mech_test_rm_db(p);
}

static void test_store_rollback_leaves_nothing(void **state) {
    (void)state;
    const char *p = mech_test_tmpn("rollback.db");
    mech_test_rm_db(p);
    mech_store *s = open_ok(p);
    int64_t run;
    OK(mech_store_run_new(s, "patch", NULL, NULL, NULL, &run, E));
    OK(mech_store_begin(s, E));
    for (int i = 0; i < 100; i++) {
        mech_result r = res(0, "resid_pre", i, 0, -1, "kl", i);
        OK(mech_store_result(s, run, &r, E));
    }
    OK(mech_store_commit(s, E));
    OK(mech_store_begin(s, E));
    for (int i = 0; i < 100; i++) {
        mech_result r = res(1, "resid_pre", i, 0, -1, "kl", i);
        OK(mech_store_result(s, run, &r, E));
    }
    float x = 1;
    int64_t one = 1;
    OK(mech_store_tensor(s, run, "t", &x, 1, &one, E));
    OK(mech_store_prompt(s, run, 1, "prompt", "p", NULL, 0, E));
    OK(mech_store_rollback(s, E));
    mech_run_info info;
    OK(mech_store_run_info(s, run, &info, E));
    assert_int_equal(info.n_results, 100);
    assert_int_equal(info.n_items, 1);
    assert_int_equal(info.n_tensors, 0);
    assert_int_equal(info.n_prompts, 0);
    mech_store_run_info_deinit(&info);
    mech_err err = {0};
    assert_int_equal(mech_store_commit(s, &err), MECH_ERR_DB); // no transaction
    assert_contains(err.msg, p);
    assert_int_equal(mech_store_rollback(s, &err), MECH_ERR_DB);
    OK(mech_store_begin(s, E));
    assert_int_equal(mech_store_begin(s, &err), MECH_ERR_DB);
    mech_store_close(s); // rolls back the open transaction
    assert_int_equal(sql_int(p, "SELECT count(*) FROM results"), 100);
    mech_test_rm_db(p);
}

// ---------------------------------------------------------------------------
// Tensors

static void test_store_tensor_round_trip_exact(void **state) {
    (void)state;
    const char *p = mech_test_tmpn("tensors.db");
    mech_test_rm_db(p);
    mech_store *s = open_ok(p);
    int64_t run;
    OK(mech_store_run_new(s, "cache", NULL, NULL, NULL, &run, E));
    enum { N = 3 * 5 * 7 };
    float x[N];
    uint32_t seed = 12345;
    for (int i = 0; i < N; i++) {
        seed = seed * 1103515245u + 12345u;
        uint32_t u = seed ^ (seed >> 7);
        memcpy(&x[i], &u, 4); // every bit pattern: NaNs, denormals, infinities
    }
    int64_t sh3[3] = {3, 5, 7}, sh0[2] = {4, 0};
    float scalar = -2.5f;
    OK(mech_store_tensor(s, run, "blocks.0.hook_resid_pre", x, 3, sh3, E));
    OK(mech_store_tensor(s, run, "scalar", &scalar, 0, NULL, E));
    OK(mech_store_tensor(s, run, "empty", NULL, 2, sh0, E));

    float *got;
    int nd;
    int64_t sh[MECH_MAX_DIMS];
    OK(mech_store_tensor_get(s, run, "blocks.0.hook_resid_pre", &got, &nd, sh, E));
    assert_int_equal(nd, 3);
    assert_int_equal(sh[0], 3);
    assert_int_equal(sh[1], 5);
    assert_int_equal(sh[2], 7);
    assert_memory_equal(got, x, sizeof x);
    mech_free(got);
    OK(mech_store_tensor_get(s, run, "scalar", &got, &nd, sh, E));
    assert_int_equal(nd, 0);
    assert_memory_equal(got, &scalar, 4);
    mech_free(got);
    OK(mech_store_tensor_get(s, run, "empty", &got, &nd, sh, E));
    assert_non_null(got);
    assert_int_equal(nd, 2);
    assert_int_equal(sh[1], 0);
    mech_free(got);

    // Replacing keeps one row under the name.
    scalar = 7;
    OK(mech_store_tensor(s, run, "scalar", &scalar, 0, NULL, E));
    OK(mech_store_tensor_get(s, run, "scalar", &got, &nd, sh, E));
    assert_true(got[0] == 7);
    mech_free(got);

    char **names;
    size_t n;
    OK(mech_store_tensor_names(s, run, &names, &n, E));
    assert_int_equal(n, 3);
    assert_string_equal(names[0], "blocks.0.hook_resid_pre");
    assert_string_equal(names[1], "empty");
    assert_string_equal(names[2], "scalar");
    mech_store_strings_free(names, n);

    mech_err err = {0};
    assert_int_equal(mech_store_tensor_get(s, run, "nope", &got, &nd, sh, &err), MECH_ERR_RANGE);
    assert_null(got);
    assert_contains(err.msg, "'nope'");
    int64_t bad = -1;
    assert_int_equal(mech_store_tensor(s, run, "b", x, 1, &bad, &err), MECH_ERR_ARG);
    assert_int_equal(mech_store_tensor(s, run, "b", x, MECH_MAX_DIMS + 1, sh3, &err), MECH_ERR_ARG);
    assert_int_equal(mech_store_tensor(s, run, "", x, 1, sh3, &err), MECH_ERR_ARG);
    mech_store_close(s);

    // Damaged rows are reported, not trusted.
    sql_exec(p, "UPDATE tensors SET data = x'0102030405' WHERE name = 'blocks.0.hook_resid_pre'");
    sql_exec(p, "UPDATE tensors SET nbytes = 8 WHERE name = 'scalar'");
    s = open_ok(p);
    assert_int_equal(mech_store_tensor_get(s, run, "blocks.0.hook_resid_pre", &got, &nd, sh, &err),
                     MECH_ERR_DB);
    assert_contains(err.msg, "corrupt");
    assert_int_equal(mech_store_tensor_get(s, run, "scalar", &got, &nd, sh, &err), MECH_ERR_DB);
    assert_contains(err.msg, "8 bytes");
    mech_store_close(s);
    mech_test_rm_db(p);
}

static void test_store_tensor_shuffle_improves_ratio(void **state) {
    (void)state;
    const char *p = mech_test_tmpn("shuffle.db");
    mech_test_rm_db(p);
    enum { N = 1 << 16 };
    float *x = malloc(N * sizeof *x);
    for (int i = 0; i < N; i++) x[i] = sinf((float)i * 0.001f) * 3.0f + 0.25f * (float)i / N;
    mech_store *s = open_ok(p);
    int64_t run, sh = N;
    OK(mech_store_run_new(s, "cache", NULL, NULL, NULL, &run, E));
    OK(mech_store_tensor(s, run, "smooth", x, 1, &sh, E));
    mech_store_close(s);
    int64_t blob = sql_int(p, "SELECT length(data) FROM tensors WHERE name = 'smooth'");
    assert_int_equal(sql_int(p, "SELECT nbytes FROM tensors WHERE name = 'smooth'"), 4 * N);
    char *meta = sql_text(p, "SELECT dtype || ' ' || shape || ' ' || codec FROM tensors");
    assert_string_equal(meta, "f32 [65536] shuffle4+zlib");
    free(meta);
    uLongf plain = compressBound(4 * N);
    unsigned char *z = malloc(plain);
    assert_int_equal(compress2(z, &plain, (const unsigned char *)x, 4 * N, Z_DEFAULT_COMPRESSION), Z_OK);
    print_message("smooth f32: raw %d, zlib %lu, shuffle+zlib %lld bytes\n", 4 * N,
                  (unsigned long)plain, (long long)blob);
    assert_true(blob < (int64_t)plain);
    free(z);
    free(x);
    mech_test_rm_db(p);
}

// ---------------------------------------------------------------------------
// Crash safety

enum { BATCH = 100 };

static void crash_child(const char *path, int fd) {
    mech_store *s;
    mech_err err = {0};
    int64_t run;
    if (mech_store_open(path, &s, &err) || mech_store_run_new(s, "patch", NULL, NULL, NULL, &run, &err))
        _exit(3);
    for (int item = 0;; item++) {
        if (mech_store_begin(s, &err)) _exit(4);
        for (int i = 0; i < BATCH; i++) {
            mech_result r = res(item, "blocks.0.hook_resid_pre", i % 12, i / 12, -1, "logit_diff", i);
            if (mech_store_result(s, run, &r, &err)) _exit(5);
        }
        if (mech_store_commit(s, &err)) _exit(6);
        if (write(fd, "x", 1) != 1) _exit(7);
    }
}

static void test_store_survives_sigkill(void **state) {
    (void)state;
    const char *p = mech_test_tmpn("crash.db");
    mech_test_rm_db(p);
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        crash_child(p, fds[1]);
    }
    close(fds[1]);
    char c;
    for (int i = 0; i < 15; i++)
        if (read(fds[0], &c, 1) != 1) fail_msg("child died before 15 batches");
    usleep(1000); // land in the middle of a later batch
    kill(pid, SIGKILL);
    int wst;
    assert_int_equal(waitpid(pid, &wst, 0), pid);
    assert_true(WIFSIGNALED(wst));
    close(fds[0]);

    mech_store *s = open_ok(p);
    OK(mech_store_check(s, E));
    int *items;
    size_t n;
    OK(mech_store_items_done(s, 1, &items, &n, E));
    assert_true(n >= 15);
    for (size_t i = 0; i < n; i++) assert_int_equal(items[i], (int)i);
    mech_free(items);
    mech_run_info info;
    OK(mech_store_run_info(s, 1, &info, E));
    assert_string_equal(info.status, "running");
    assert_int_equal(info.n_results, (int64_t)n * BATCH);
    mech_store_run_info_deinit(&info);
    mech_store_close(s);
    char *ic = sql_text(p, "PRAGMA integrity_check");
    assert_string_equal(ic, "ok");
    free(ic);
    assert_int_equal(sql_int(p, "SELECT count(*) FROM (SELECT item FROM results GROUP BY item "
                                "HAVING count(*) != 100)"),
                     0);
    mech_test_rm_db(p);
}

// ---------------------------------------------------------------------------
// Merge and export

// A store with one run per kind[i]: item i has 3 results, one tensor, a prompt.
static void fill(const char *path, const char *const *kinds, int n, float base) {
    mech_store *s = open_ok(path);
    for (int k = 0; k < n; k++) {
        int64_t run;
        OK(mech_store_run_new(s, kinds[k], NULL, "mech x", "{}", &run, E));
        OK(mech_store_begin(s, E));
        for (int i = 0; i < 3; i++) {
            mech_result r = res(k, "resid_pre", i, 0, -1, "logit_diff", base + (float)(10 * k + i));
            OK(mech_store_result(s, run, &r, E));
        }
        float t[2] = {base, (float)k};
        int64_t sh = 2;
        OK(mech_store_tensor(s, run, "t", t, 1, &sh, E));
        int32_t tok = k;
        OK(mech_store_prompt(s, run, k, "prompt", kinds[k], &tok, 1, E));
        OK(mech_store_commit(s, E));
        OK(mech_store_run_finish(s, run, "done", E));
    }
    mech_store_close(s);
}

static void test_store_merge_renumbers(void **state) {
    (void)state;
    const char *a = mech_test_tmpn("merge-a.db"), *b = mech_test_tmpn("merge-b.db"), *out = mech_test_tmpn("merge-out.db");
    mech_test_rm_db(a), mech_test_rm_db(b), mech_test_rm_db(out);
    const char *ka[] = {"patch", "lens"}, *kb[] = {"heads"};
    fill(a, ka, 2, 100);
    fill(b, kb, 1, 200);
    const char *ins[] = {a, b};
    OK(mech_store_merge(out, ins, 2, NULL, NULL, NULL, E));
    mech_store *s = open_ok(out);
    mech_run_info *runs;
    size_t n;
    OK(mech_store_runs(s, &runs, &n, E));
    assert_int_equal(n, 3);
    assert_string_equal(runs[0].kind, "patch");
    assert_string_equal(runs[1].kind, "lens");
    assert_string_equal(runs[2].kind, "heads");
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(runs[i].id, (int64_t)i + 1);
        assert_int_equal(runs[i].n_results, 3);
        assert_int_equal(runs[i].n_tensors, 1);
        assert_int_equal(runs[i].n_prompts, 1);
        assert_string_equal(runs[i].status, "done");
        assert_non_null(runs[i].finished);
    }
    mech_store_runs_free(runs, n);
    float *t;
    int nd;
    int64_t sh[MECH_MAX_DIMS];
    OK(mech_store_tensor_get(s, 3, "t", &t, &nd, sh, E));
    assert_true(t[0] == 200 && t[1] == 0);
    mech_free(t);
    mech_store_close(s);
    assert_int_equal(sql_int(out, "SELECT value FROM results WHERE run_id = 3 AND layer = 2"), 202);
    assert_int_equal(sql_int(out, "SELECT value FROM results WHERE run_id = 2 AND layer = 1"), 111);

    // Merging again appends after the existing runs.
    OK(mech_store_merge(out, ins + 1, 1, NULL, NULL, NULL, E));
    assert_int_equal(sql_int(out, "SELECT max(id) FROM runs"), 4);
    assert_int_equal(sql_int(out, "SELECT count(*) FROM results WHERE run_id = 4"), 3);

    mech_err err = {0};
    const char *self[] = {out};
    assert_int_equal(mech_store_merge(out, self, 1, NULL, NULL, NULL, &err), MECH_ERR_ARG);
    const char *foreign = mech_test_tmpn("merge-foreign.db");
    mech_test_rm_db(foreign);
    sql_exec(foreign, "CREATE TABLE t (x)");
    const char *bad[] = {a, foreign};
    assert_int_equal(mech_store_merge(out, bad, 2, NULL, NULL, NULL, &err), MECH_ERR_DB);
    assert_contains(err.msg, foreign);
    // Every input is checked before anything is written.
    assert_int_equal(sql_int(out, "SELECT count(*) FROM runs"), 4);
    mech_test_rm_db(a), mech_test_rm_db(b), mech_test_rm_db(out), mech_test_rm_db(foreign);
}

static void test_store_export_csv(void **state) {
    (void)state;
    const char *p = mech_test_tmpn("csv.db"), *csv = mech_test_tmpn("out.csv");
    mech_test_rm_db(p);
    mech_store *s = open_ok(p);
    int64_t run;
    OK(mech_store_run_new(s, "patch", NULL, NULL, NULL, &run, E));
    mech_result r1 = {1, "a,b", 0, 1, -1, -1, -1, "logit_diff", 0.5};
    mech_result r0 = {0, "say \"hi\"", 2, -1, 3, 50256, 1, "prob", NAN};
    mech_result r2 = {0, "resid_pre", 1, 2, -1, -1, -1, "kl", 0.1};
    OK(mech_store_result(s, run, &r1, E));
    OK(mech_store_result(s, run, &r0, E));
    OK(mech_store_result(s, run, &r2, E));
    OK(mech_store_export_csv(s, run, csv, E));
    size_t n;
    char *text = mech_test_read(csv, &n);
    text = realloc(text, n + 1);
    text[n] = 0;
    assert_string_equal(text, "run_id,item,site,layer,pos,head,token,rank,metric,value\n"
                              "1,0,\"say \"\"hi\"\"\",2,-1,3,50256,1,prob,\n"
                              "1,0,resid_pre,1,2,-1,-1,-1,kl,0.10000000000000001\n"
                              "1,1,\"a,b\",0,1,-1,-1,-1,logit_diff,0.5\n");
    free(text);
    mech_err err = {0};
    assert_int_equal(mech_store_export_csv(s, 42, csv, &err), MECH_ERR_RANGE);
    assert_int_equal(mech_store_export_csv(s, run, "/nonexistent-dir/x.csv", &err), MECH_ERR_IO);
    mech_store_close(s);
    unlink(csv);
    mech_test_rm_db(p);
}

static void test_store_export_npz(void **state) {
    (void)state;
    const char *p = mech_test_tmpn("npz.db"), *npz = mech_test_tmpn("out.npz");
    mech_test_rm_db(p);
    mech_store *s = open_ok(p);
    int64_t run;
    OK(mech_store_run_new(s, "cache", NULL, NULL, NULL, &run, E));
    float a[6] = {1, 2, 3, 4, 5, 6}, b = 9;
    int64_t sh[2] = {2, 3};
    OK(mech_store_tensor(s, run, "blocks.0.hook_resid_pre", a, 2, sh, E));
    OK(mech_store_tensor(s, run, "scalar", &b, 0, NULL, E));
    OK(mech_store_export_npz(s, run, npz, E));
    mech_store_close(s);
    struct stat sb;
    assert_int_equal(stat(npz, &sb), 0);
    if (system("command -v python3 >/dev/null 2>&1") != 0) {
        print_message("python3 missing: .npz contents not checked\n");
    } else {
        char cmd[2048];
        snprintf(cmd, sizeof cmd,
                 "python3 -c \"import zipfile,struct,ast,sys\n"
                 "z=zipfile.ZipFile(sys.argv[1])\n"
                 "assert sorted(z.namelist())==['blocks.0.hook_resid_pre.npy','scalar.npy'],z.namelist()\n"
                 "d=z.read('blocks.0.hook_resid_pre.npy')\n"
                 "hl=struct.unpack('<H',d[8:10])[0]\n"
                 "h=ast.literal_eval(d[10:10+hl].decode())\n"
                 "assert h['shape']==(2,3) and h['descr']=='<f4',h\n"
                 "assert struct.unpack('<6f',d[10+hl:])==(1,2,3,4,5,6)\n"
                 "\" %s",
                 npz);
        assert_int_equal(system(cmd), 0);
    }
    unlink(npz);
    mech_test_rm_db(p);
}


// The largest rows of a run, one query: by |value| or by value, NULL last,
// ties in insertion order, limited; other runs and metrics are not read.
static void test_store_results_top(void **state) {
    (void)state;
    const char *path = mech_test_tmp("top.db");
    mech_test_rm_db(path);
    mech_err err = {0};
    mech_store *s = NULL;
    int64_t r1 = 0, r2 = 0;
    assert_int_equal(mech_store_open(path, &s, &err), MECH_OK);
    assert_int_equal(mech_store_run_new(s, "patch", NULL, "t", "{}", &r1, &err), MECH_OK);
    assert_int_equal(mech_store_run_new(s, "patch", NULL, "t", "{}", &r2, &err), MECH_OK);
    const double vals[] = {0.5, -2.0, NAN, 2.0, 1.0};
    for (int i = 0; i < 5; i++) {
        mech_result r = {.item = 0, .site = "s", .layer = i, .pos = -1, .head = -1, .token = -1, .rank = -1,
                         .metric = "effect", .value = vals[i]};
        assert_int_equal(mech_store_result(s, r1, &r, &err), MECH_OK);
        r.metric = "clean", r.value = 100 + i; // another metric
        assert_int_equal(mech_store_result(s, r1, &r, &err), MECH_OK);
        r.metric = "effect", r.value = -50; // another run
        assert_int_equal(mech_store_result(s, r2, &r, &err), MECH_OK);
    }
    mech_result_row *rows = NULL;
    size_t n = 0;
    assert_int_equal(mech_store_results_top(s, r1, "effect", 1, -1, &rows, &n, &err), MECH_OK);
    assert_int_equal(n, 5);
    int want_abs[] = {1, 3, 4, 0, 2}; // |-2| first (inserted before 2.0), NaN last
    for (int i = 0; i < 5; i++) assert_int_equal(rows[i].layer, want_abs[i]);
    assert_true(isnan(rows[4].value));
    mech_store_results_free(rows, n);
    assert_int_equal(mech_store_results_top(s, r1, "effect", 0, 2, &rows, &n, &err), MECH_OK);
    assert_int_equal(n, 2);
    assert_int_equal(rows[0].layer, 3);
    assert_int_equal(rows[1].layer, 4);
    assert_true(rows[0].value == 2.0 && !strcmp(rows[0].metric, "effect"));
    mech_store_results_free(rows, n);
    assert_int_equal(mech_store_results_top(s, r1, NULL, 0, 1, &rows, &n, &err), MECH_OK);
    assert_int_equal(n, 1);
    assert_true(rows[0].value == 104.0);
    mech_store_results_free(rows, n);
    assert_int_equal(mech_store_results_top(s, r1, "missing", 1, 1, &rows, &n, &err), MECH_OK);
    assert_int_equal(n, 0);
    assert_int_equal(mech_store_results_top(s, 999, "effect", 1, 1, &rows, &n, &err), MECH_ERR_RANGE);
    mech_store_close(s);
    mech_test_rm_db(path);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_store_sha256_known_answers),
        cmocka_unit_test(test_store_model_hash_scheme),
        cmocka_unit_test(test_store_open_creates_wal_v1),
        cmocka_unit_test(test_store_refuses_version_zero),
        cmocka_unit_test(test_store_refuses_newer_version),
        cmocka_unit_test(test_store_refuses_foreign_sqlite),
        cmocka_unit_test(test_store_refuses_corrupt_files),
        cmocka_unit_test(test_store_open_read),
        cmocka_unit_test(test_store_refuses_truncated),
        cmocka_unit_test(test_store_stops_writing_when_damage_found),
        cmocka_unit_test(test_store_run_round_trip),
        cmocka_unit_test(test_store_prompts_and_results),
        cmocka_unit_test(test_store_rollback_leaves_nothing),
        cmocka_unit_test(test_store_tensor_round_trip_exact),
        cmocka_unit_test(test_store_tensor_shuffle_improves_ratio),
        cmocka_unit_test(test_store_survives_sigkill),
        cmocka_unit_test(test_store_merge_renumbers),
        cmocka_unit_test(test_store_export_csv),
        cmocka_unit_test(test_store_export_npz),
        cmocka_unit_test(test_store_results_top),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
