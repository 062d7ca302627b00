/*
** tests/test_cli_db.c: the results database from the command line, as a
** user meets it: reading commands never create or modify a file; a file
** that is not a mech database (empty, foreign, damaged) is refused and left
** byte-identical by every command; databases the user may only read are
** read (as an unprivileged user); merge says where every run went, and
** --join makes the shards of one sweep one run equal to an unsharded run.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "mech.h"
#include "tests/support/check.h"

#include <dirent.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define mech(out, ...) mech_test_cli(out, NULL, __VA_ARGS__)

static int exists(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0;
}

static void sql_exec(const char *path, const char *sql) {
    sqlite3 *db = NULL;
    char *msg = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) fail_msg("%s: %s: %s", path, sql, msg);
    sqlite3_close(db);
}

// Every row of a query, one line each, columns joined by '|' (owned).
static char *sql_rows(const char *path, const char *sql) { return mech_test_sql_rows(path, sql); }

static long long sql_int(const char *path, const char *sql) {
    char *s = sql_rows(path, sql);
    long long v = atoll(s);
    free(s);
    return v;
}

// A mech database with one finished "lens" run of n result rows.
static void make_db(const char *path, int n) {
    mech_err err = {0};
    mech_store *s = NULL;
    int64_t run;
    mech_test_rm_db(path);
    if (mech_store_open(path, &s, &err) || mech_store_run_new(s, "lens", NULL, "mech lens", "{}", &run, &err) ||
        mech_store_begin(s, &err))
        fail_msg("%s", err.msg);
    for (int i = 0; i < n; i++) {
        mech_result r = {.item = i / 10, .site = "lens", .layer = i % 10, .pos = 0, .head = -1, .token = -1,
                         .rank = -1, .metric = "logprob", .value = i * 0.5};
        if (mech_store_result(s, run, &r, &err)) fail_msg("%s", err.msg);
    }
    if (mech_store_commit(s, &err) || mech_store_run_finish(s, run, "done", &err)) fail_msg("%s", err.msg);
    mech_store_close(s);
}

// Runs `mech ARGS` (exit status; *out gets stdout and stderr) and checks
// that path kept its bytes.
static int run_keeps(const char *path, char **out, const char *args) {
    size_t n0, n1;
    unsigned char *before = mech_test_read(path, &n0);
    int rc = mech(out, "%s", args);
    unsigned char *after = mech_test_read(path, &n1);
    if (n0 != n1 || memcmp(before, after, n0)) fail_msg("`mech %s` changed %s (%zu -> %zu bytes)", args, path, n0, n1);
    free(before);
    free(after);
    return rc;
}

// ---------------------------------------------------------------------------
// Reading never creates

static void test_db_reading_never_creates(void **state) {
    (void)state;
    char missing[512], out_db[512], csv[512], args[4096], *out;
    snprintf(missing, sizeof missing, "%s", mech_test_tmp("typo.db"));
    snprintf(out_db, sizeof out_db, "%s", mech_test_tmp("merge-out.db"));
    snprintf(csv, sizeof csv, "%s", mech_test_tmp("never.csv"));
    mech_test_rm_db(missing), mech_test_rm_db(out_db), remove(csv);
    const char *cmds[] = {"db --db %s ls", "db --db %s show 1", "db --db %s export 1 --csv %s",
                          "acdc export 1 --json %s.json --db %s"};
    for (size_t i = 0; i < sizeof cmds / sizeof *cmds; i++) {
        if (i == 3) snprintf(args, sizeof args, cmds[i], csv, missing);
        else snprintf(args, sizeof args, cmds[i], missing, csv);
        assert_int_equal(mech(&out, "%s", args), 1);
        assert_non_null(strstr(out, missing));
        assert_non_null(strstr(out, "no such file"));
        free(out);
        assert_false(exists(missing));
    }
    assert_false(exists(csv));
    // A mistyped merge input: an error, and neither file appears.
    assert_int_equal(mech(&out, "db merge %s %s", out_db, missing), 1);
    assert_non_null(strstr(out, missing));
    assert_null(strstr(out, "merged"));
    free(out);
    assert_false(exists(missing));
    assert_false(exists(out_db));
}

// ---------------------------------------------------------------------------
// Files that are not mech databases, and damaged ones

static void test_db_foreign_files_untouched(void **state) {
    (void)state;
    char p[512], args[2048], *out;
    snprintf(p, sizeof p, "%s", mech_test_tmp("f.db"));
    mech_test_rm_db(p);
    const char *lens = "lens --model tests/fixtures/gpt2-tiny --prompt 'a b' --db";
    // One byte, as `printf x > f.db` leaves.
    FILE *f = fopen(p, "wb");
    fputc('x', f);
    fclose(f);
    snprintf(args, sizeof args, "db --db %s ls", p);
    assert_int_equal(run_keeps(p, &out, args), 1);
    assert_non_null(strstr(out, p));
    assert_non_null(strstr(out, "not an SQLite database"));
    free(out);
    snprintf(args, sizeof args, "%s %s", lens, p);
    assert_int_equal(run_keeps(p, &out, args), 1);
    assert_non_null(strstr(out, "not an SQLite database"));
    free(out);
    // An empty file is not mech's either, for readers and writers alike.
    f = fopen(p, "wb");
    fclose(f);
    snprintf(args, sizeof args, "%s %s", lens, p);
    assert_int_equal(run_keeps(p, &out, args), 1);
    assert_non_null(strstr(out, "empty file"));
    free(out);
    snprintf(args, sizeof args, "db --db %s ls", p);
    assert_int_equal(run_keeps(p, &out, args), 1);
    free(out);
    // Another application's SQLite database, as input and as output.
    remove(p);
    sql_exec(p, "CREATE TABLE accounts (id INTEGER); INSERT INTO accounts VALUES (7)");
    snprintf(args, sizeof args, "%s %s", lens, p);
    assert_int_equal(run_keeps(p, &out, args), 1);
    assert_non_null(strstr(out, "not a mech results database"));
    free(out);
    char good[512];
    snprintf(good, sizeof good, "%s", mech_test_tmp("good.db"));
    make_db(good, 3);
    snprintf(args, sizeof args, "db merge %s %s", p, good);
    assert_int_equal(run_keeps(p, &out, args), 1);
    free(out);
    // The message names the file and says why, in a line, never the schema.
    sql_exec(good, "PRAGMA user_version = 0");
    snprintf(args, sizeof args, "db --db %s ls", good);
    assert_int_equal(run_keeps(good, &out, args), 1);
    assert_non_null(strstr(out, good));
    assert_non_null(strstr(out, "user_version) is 0"));
    assert_null(strstr(out, "CREATE"));
    assert_true(strlen(out) < 400);
    free(out);
    snprintf(args, sizeof args, "%s %s", lens, good);
    assert_int_equal(run_keeps(good, &out, args), 1);
    assert_null(strstr(out, "CREATE"));
    free(out);
    mech_test_rm_db(p), mech_test_rm_db(good);
}

static void test_db_empty_path_is_usage(void **state) {
    (void)state;
    char *out;
    const char *cmds[] = {"db --db '' ls", "lens --model tests/fixtures/gpt2-tiny --prompt 'a b' --db ''",
                          "acdc export 1 --json x.json --db ''", "db merge '' x.db"};
    for (size_t i = 0; i < sizeof cmds / sizeof *cmds; i++) {
        assert_int_equal(mech(&out, "%s", cmds[i]), 2);
        assert_non_null(strstr(out, "empty"));
        assert_null(strstr(out, "mech_store_open"));
        free(out);
    }
}

// A database one byte short: every command refuses it and leaves it as it was.
static void test_db_truncated_refused(void **state) {
    (void)state;
    char p[512], args[2048], *out;
    snprintf(p, sizeof p, "%s", mech_test_tmp("trunc.db"));
    make_db(p, 2000);
    struct stat sb;
    assert_int_equal(stat(p, &sb), 0);
    assert_int_equal(truncate(p, sb.st_size - 1), 0);
    snprintf(args, sizeof args,
             "patch --model tests/fixtures/gpt2-tiny --dataset induction --n 2 --len 4 --sweep resid_pre --db %s", p);
    assert_int_equal(run_keeps(p, &out, args), 1);
    assert_non_null(strstr(out, p));
    assert_non_null(strstr(out, "damaged"));
    assert_non_null(strstr(out, "truncated"));
    free(out);
    char other[512];
    snprintf(other, sizeof other, "%s", mech_test_tmp("trunc-into.db"));
    make_db(other, 1);
    snprintf(args, sizeof args, "db merge %s %s", p, other);
    assert_int_equal(run_keeps(p, &out, args), 1);
    assert_non_null(strstr(out, "damaged"));
    free(out);
    mech_test_rm_db(p), mech_test_rm_db(other);
}

// Hides index results_run_item, adds a row, restores the index: the row is
// missing from it, which quick_check does not see and integrity_check does.
static void drop_row_from_index(const char *path) {
    char *root = sql_rows(path, "SELECT rootpage FROM sqlite_master WHERE name = 'results_run_item'");
    char *idx_sql = sql_rows(path, "SELECT sql FROM sqlite_master WHERE name = 'results_run_item'");
    long long ver = sql_int(path, "PRAGMA schema_version");
    idx_sql[strcspn(idx_sql, "\n")] = 0;
    char sql[1024];
    snprintf(sql, sizeof sql,
             "PRAGMA writable_schema = ON; DELETE FROM sqlite_master WHERE name = 'results_run_item'; "
             "PRAGMA schema_version = %lld",
             ver + 1);
    sql_exec(path, sql);
    sql_exec(path, "INSERT INTO results VALUES (1, 500, 'lens', 0, 0, -1, -1, -1, 'logprob', 1.0)");
    snprintf(sql, sizeof sql,
             "PRAGMA writable_schema = ON; INSERT INTO sqlite_master VALUES ('index', 'results_run_item', 'results', "
             "%lld, '%s'); PRAGMA schema_version = %lld",
             atoll(root), idx_sql, ver + 3);
    sql_exec(path, sql);
    free(root);
    free(idx_sql);
}

static void test_db_index_damage_refused(void **state) {
    (void)state;
    char p[512], args[2048], *out;
    snprintf(p, sizeof p, "%s", mech_test_tmp("index.db"));
    make_db(p, 500);
    drop_row_from_index(p);
    char *ic = sql_rows(p, "PRAGMA integrity_check");
    assert_non_null(strstr(ic, "missing from index results_run_item"));
    free(ic);
    ic = sql_rows(p, "PRAGMA quick_check");
    assert_string_equal(ic, "ok\n"); // what the cheap check alone would miss
    free(ic);
    snprintf(args, sizeof args,
             "patch --model tests/fixtures/gpt2-tiny --dataset induction --n 2 --len 4 --sweep resid_pre --db %s", p);
    assert_int_equal(run_keeps(p, &out, args), 1);
    assert_non_null(strstr(out, p));
    assert_non_null(strstr(out, "damaged: index results_run_"));
    assert_non_null(strstr(out, "has 500 entries for 501 rows"));
    free(out);
    // Reading it is still allowed (it is how a user gets the data out).
    snprintf(args, sizeof args, "db --db %s ls", p);
    assert_int_equal(run_keeps(p, &out, args), 0);
    free(out);
    mech_test_rm_db(p);
}

// ---------------------------------------------------------------------------
// Databases the user may only read

static char *abs_path(const char *p) {
    char *r = realpath(p, NULL);
    assert_non_null(r);
    return r;
}

static int count_entries(const char *dir) {
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n;
}

// Runs mech as an unprivileged user: nobody through setpriv when the tests
// run as root (root ignores file modes), else this user, for whom the
// modes already bind.
static int mech_as_user(char **out, const char *mech_abs, const char *fmt, const char *a, const char *b) {
    char bin[2048], args[4096];
    if (geteuid() == 0)
        snprintf(bin, sizeof bin, "setpriv --reuid=65534 --regid=65534 --clear-groups %s", mech_abs);
    else
        snprintf(bin, sizeof bin, "%s", mech_abs);
    const char *old = getenv("MECH_BIN");
    char *saved = old ? strdup(old) : NULL;
    setenv("MECH_BIN", bin, 1);
    snprintf(args, sizeof args, fmt, a, b);
    int rc = mech(out, "%s", args);
    if (saved) setenv("MECH_BIN", saved, 1);
    else unsetenv("MECH_BIN");
    free(saved);
    return rc;
}

static void test_db_read_only_as_unprivileged_user(void **state) {
    (void)state;
    const char *b = getenv("MECH_BIN");
    char *mech_abs = abs_path(b && *b ? b : "./mech");
    char dir[512], outdir[512], db[1100], csv[1100], merged[1100], json[1100], *out;
    snprintf(dir, sizeof dir, "%s", mech_test_tmp("ro-dir"));
    snprintf(outdir, sizeof outdir, "%s", mech_test_tmp("ro-out"));
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "chmod -R u+w %s 2>/dev/null; rm -rf %s %s", dir, dir, outdir);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(mkdir(dir, 0755), 0);
    assert_int_equal(mkdir(outdir, 0777), 0);
    assert_int_equal(chmod(outdir, 0777), 0); // past the umask: nobody writes here
    char *dabs = abs_path(dir), *oabs = abs_path(outdir);
    snprintf(db, sizeof db, "%s/r.db", dabs);
    snprintf(csv, sizeof csv, "%s/r.csv", oabs);
    snprintf(merged, sizeof merged, "%s/merged.db", oabs);
    snprintf(json, sizeof json, "%s/a.json", oabs);
    make_db(db, 5);
    assert_int_equal(chmod(db, 0444), 0);
    assert_int_equal(chmod(dir, 0555), 0);

    // A 0444 WAL database in a directory the user cannot write, no -shm.
    assert_int_equal(mech_as_user(&out, mech_abs, "db --db %s ls%s", db, ""), 0);
    assert_non_null(strstr(out, "lens"));
    assert_null(strstr(out, "readonly"));
    free(out);
    assert_int_equal(mech_as_user(&out, mech_abs, "db --db %s show 1%s", db, ""), 0);
    assert_non_null(strstr(out, "results:    5"));
    free(out);
    assert_int_equal(mech_as_user(&out, mech_abs, "db --db %s export 1 --csv %s", db, csv), 0);
    free(out);
    char *text = mech_test_read(csv, NULL);
    assert_non_null(strstr(text, "1,0,lens,4,0,-1,-1,-1,logprob,2\n"));
    free(text);
    // acdc export opens it too (and then finds a lens run: a usage error).
    assert_int_equal(mech_as_user(&out, mech_abs, "acdc export 1 --json %s --db %s", json, db), 2);
    assert_non_null(strstr(out, "not an ACDC run"));
    free(out);
    assert_int_equal(mech_as_user(&out, mech_abs, "db merge %s %s", merged, db), 0);
    free(out);
    assert_int_equal(sql_int(merged, "SELECT count(*) FROM results"), 5);
    // Writing is refused with a reason, not SQLite's "readonly database".
    assert_int_equal(mech_as_user(&out, mech_abs, "lens --model tests/fixtures/gpt2-tiny --prompt 'a b' --db %s%s", db,
                                  ""),
                     1);
    assert_non_null(strstr(out, "cannot write to it"));
    free(out);
    assert_int_equal(count_entries(dir), 1); // nothing was created beside it

    // A writer still holds commits in the WAL (-wal and -shm exist): the
    // reader sees them, so it did not fall back to an immutable open.
    assert_int_equal(chmod(dir, 0755), 0);
    assert_int_equal(chmod(db, 0644), 0);
    mech_err err = {0};
    mech_store *w = NULL;
    int64_t run;
    if (mech_store_open(db, &w, &err) || mech_store_run_new(w, "heads", NULL, NULL, NULL, &run, &err))
        fail_msg("%s", err.msg);
    snprintf(cmd, sizeof cmd, "chmod 0444 %s %s-wal %s-shm", db, db, db);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(chmod(dir, 0555), 0);
    assert_int_equal(mech_as_user(&out, mech_abs, "db --db %s ls%s", db, ""), 0);
    assert_non_null(strstr(out, "heads"));
    free(out);
    assert_int_equal(chmod(dir, 0755), 0);
    mech_store_close(w);
    // A 0444 file in a directory the user may write: read through mode=ro.
    assert_int_equal(chmod(db, 0444), 0);
    assert_int_equal(chmod(dir, 0777), 0);
    assert_int_equal(mech_as_user(&out, mech_abs, "db --db %s show 2%s", db, ""), 0);
    assert_non_null(strstr(out, "kind:       heads"));
    free(out);

    snprintf(cmd, sizeof cmd, "chmod -R u+w %s; rm -rf %s %s", dir, dir, outdir);
    assert_int_equal(system(cmd), 0);
    free(dabs), free(oabs), free(mech_abs);
}

// ---------------------------------------------------------------------------
// ls, merge and join

static void test_db_ls_header_and_merge_ids(void **state) {
    (void)state;
    char a[512], b[512], m[512], *out;
    snprintf(a, sizeof a, "%s", mech_test_tmp("ids-a.db"));
    snprintf(b, sizeof b, "%s", mech_test_tmp("ids-b.db"));
    snprintf(m, sizeof m, "%s", mech_test_tmp("ids-m.db"));
    make_db(a, 2);
    make_db(b, 3);
    mech_test_rm_db(m);
    assert_int_equal(mech(&out, "db --db %s ls", a), 0);
    // a header row naming the columns, then the run
    assert_true(!strncmp(out, "   run  kind     status      started", 36));
    assert_non_null(strstr(out, "results  model\n     1  lens"));
    free(out);
    assert_int_equal(mech(&out, "db merge %s %s %s", m, a, b), 0);
    char want[2048];
    snprintf(want, sizeof want, "%s run 1 -> run 1\n%s run 1 -> run 2\n", a, b);
    assert_non_null(strstr(out, want));
    assert_non_null(strstr(out, "new ids"));
    free(out);
    assert_int_equal(mech(&out, "db merge %s %s", m, b), 0);
    snprintf(want, sizeof want, "%s run 1 -> run 3\n", b);
    assert_non_null(strstr(out, want));
    free(out);
    assert_int_equal(sql_int(m, "SELECT count(*) FROM results WHERE run_id = 3"), 3);
    assert_int_equal(mech(&out, "db --db %s ls --join", a), 2);
    free(out);
    // --csv - is standard output, not a file named "-".
    remove("-");
    assert_int_equal(mech_test_cli(&out, NULL, "db --db %s export 1 --csv - 2>/dev/null", a), 0);
    const char *head = "run_id,item,site,layer,pos,head,token,rank,metric,value\n1,0,lens,0,0,-1,-1,-1,logprob,0\n";
    assert_true(!strncmp(out, head, strlen(head)));
    free(out);
    assert_false(exists("-"));
    assert_int_equal(mech(&out, "db --db %s export 1 --npz -", a), 2);
    free(out);
    mech_test_rm_db(a), mech_test_rm_db(b), mech_test_rm_db(m);
}

// Export files are written only in the format their name says, and ls's
// columns line up whatever the kinds' lengths.
static void test_db_export_extensions_and_ls_columns(void **state) {
    (void)state;
    char a[512], txt[512], npz[512], csv[512], *out;
    snprintf(a, sizeof a, "%s", mech_test_tmp("ext.db"));
    snprintf(txt, sizeof txt, "%s", mech_test_tmp("ext-x.txt"));
    snprintf(npz, sizeof npz, "%s", mech_test_tmp("ext-out.npz"));
    snprintf(csv, sizeof csv, "%s", mech_test_tmp("ext-out.csv"));
    make_db(a, 3);
    remove(txt), remove(npz), remove(csv);
    assert_int_equal(mech(&out, "db --db %s export 1 --npz %s", a, txt), 2);
    assert_non_null(strstr(out, "the tensors are written as .npz; name the file FILE.npz"));
    free(out);
    assert_int_equal(mech(&out, "db --db %s export 1 --csv %s", a, npz), 2);
    assert_non_null(strstr(out, "the results are written as CSV; name the file FILE.csv"));
    free(out);
    assert_int_equal(mech(&out, "db --db %s export 1 --csv %s --npz %s", a, txt, npz), 2);
    free(out);
    // export's options with another subcommand, and --db with merge (OUT is its argument)
    assert_int_equal(mech(&out, "db --db %s ls --csv %s", a, csv), 2);
    assert_non_null(strstr(out, "--csv goes with export"));
    free(out);
    assert_int_equal(mech(&out, "db --db %s show 1 --npz %s", a, npz), 2);
    assert_non_null(strstr(out, "--npz goes with export"));
    free(out);
    assert_int_equal(mech(&out, "db --db %s merge %s.m.db %s", a, a, a), 2);
    assert_non_null(strstr(out, "--db does not apply to merge"));
    free(out);
    assert_false(exists(txt));
    assert_false(exists(npz));
    assert_false(exists(csv));
    assert_int_equal(mech(&out, "db --db %s export 1 --csv %s", a, csv), 0);
    free(out);
    char *text = mech_test_read(csv, NULL);
    assert_true(!strncmp(text, "run_id,item,site,", 17));
    free(text);
    remove(csv);

    // a kind longer than the column's 8 characters
    mech_err err = {0};
    mech_store *s = NULL;
    int64_t run;
    if (mech_store_open(a, &s, &err) || mech_store_run_new(s, "acdc-sweep", NULL, "mech acdc", "{}", &run, &err) ||
        mech_store_run_finish(s, run, "done", &err) || mech_store_run_new(s, "x", NULL, "mech x", "{}", &run, &err) ||
        mech_store_run_finish(s, run, "done", &err))
        fail_msg("%s", err.msg);
    mech_store_close(s);
    assert_int_equal(mech(&out, "db --db %s ls", a), 0);
    // the status column starts at one offset on every line, header included
    const char *hdr = strstr(out, "status");
    assert_non_null(hdr);
    long col = (long)(hdr - out);
    int lines = 0;
    for (char *l = strchr(out, '\n'); l && l[1]; l = strchr(l + 1, '\n')) {
        const char *d = strstr(l + 1, " done ");
        assert_non_null(d);
        if ((long)(d + 1 - (l + 1)) != col) fail_msg("status column at %ld, not %ld:\n%s", (long)(d + 1 - (l + 1)), col, out);
        lines++;
    }
    assert_int_equal(lines, 3);
    assert_non_null(strstr(out, "acdc-sweep done"));
    free(out);
    mech_test_rm_db(a);
}

// Runs that are all the shards of one sweep become one run with every
// pair: the same rows, prompts, tensors and parameters as one unsharded run.
static void test_db_join_shards_equals_unsharded(void **state) {
    (void)state;
    char one[512], joined[512], again[512], all[512], bad[512], shard[3][512], *out;
    snprintf(one, sizeof one, "%s", mech_test_tmp("join-one.db"));
    snprintf(joined, sizeof joined, "%s", mech_test_tmp("join-joined.db"));
    snprintf(again, sizeof again, "%s", mech_test_tmp("join-again.db"));
    snprintf(all, sizeof all, "%s", mech_test_tmp("join-all.db"));
    snprintf(bad, sizeof bad, "%s", mech_test_tmp("join-bad.db"));
    mech_test_rm_db(one), mech_test_rm_db(joined), mech_test_rm_db(again), mech_test_rm_db(all);
    const char *common = "patch --model tests/fixtures/gpt2-tiny --dataset induction --n 7 --len 4 --seed 3 "
                         "--sweep resid_pre --metric logit_diff";
    assert_int_equal(mech(&out, "%s --db %s", common, one), 0);
    free(out);
    for (int k = 0; k < 3; k++) {
        char name[32];
        snprintf(name, sizeof name, "join-shard%d.db", k);
        snprintf(shard[k], sizeof shard[k], "%s", mech_test_tmp(name));
        mech_test_rm_db(shard[k]);
        assert_int_equal(mech(&out, "%s --shard %d/3 --db %s", common, k + 1, shard[k]), 0);
        free(out);
    }
    // Given in any order.
    assert_int_equal(mech(&out, "db merge --join %s %s %s %s", joined, shard[2], shard[0], shard[1]), 0);
    assert_non_null(strstr(out, "joined 3 shards into run 1"));
    free(out);
    assert_int_equal(sql_int(joined, "SELECT count(*) FROM runs"), 1);
    const char *same[] = {
        "SELECT kind, model_path, model_hash, params, status FROM runs",
        "SELECT item, site, layer, pos, head, token, rank, metric, quote(value) FROM results ORDER BY item, rowid",
        "SELECT item, role, text, tokens, n_tokens FROM prompts ORDER BY item, role",
        "SELECT name, dtype, shape, codec, nbytes, hex(data) FROM tensors ORDER BY name",
    };
    for (size_t i = 0; i < sizeof same / sizeof *same; i++) {
        char *x = sql_rows(one, same[i]), *y = sql_rows(joined, same[i]);
        assert_true(strlen(x) > 10);
        assert_string_equal(x, y);
        free(x), free(y);
    }
    assert_int_equal(sql_int(joined, "SELECT count(*) FROM results"), 7 * (2 + 2 * 2 * 7));
    // show lists the shards' command lines, one per line.
    assert_int_equal(mech(&out, "db --db %s show 1", joined), 0);
    assert_non_null(strstr(out, "--shard 1/3 --db"));
    assert_non_null(strstr(out, "\n            mech patch --model tests/fixtures/gpt2-tiny"));
    assert_non_null(strstr(out, "--shard 3/3 --db"));
    free(out);
    // The exported CSV is the unsharded run's, byte for byte.
    char csv1[512], csv2[512];
    snprintf(csv1, sizeof csv1, "%s", mech_test_tmp("join-one.csv"));
    snprintf(csv2, sizeof csv2, "%s", mech_test_tmp("join-joined.csv"));
    assert_int_equal(mech(&out, "db --db %s export 1 --csv %s", one, csv1), 0);
    free(out);
    assert_int_equal(mech(&out, "db --db %s export 1 --csv %s", joined, csv2), 0);
    free(out);
    char *c1 = mech_test_read(csv1, NULL), *c2 = mech_test_read(csv2, NULL);
    assert_string_equal(c1, c2);
    free(c1), free(c2);
    // Shards that share one file with another run (here: merged into one,
    // runs 2..4 after the unsharded run 1) are picked with --runs.
    assert_int_equal(mech(&out, "db merge %s %s %s %s %s", all, one, shard[0], shard[1], shard[2]), 0);
    free(out);
    assert_int_equal(mech(&out, "db merge --join %s %s", again, all), 1);
    assert_non_null(strstr(out, "run 1 (patch) is not a shard"));
    free(out);
    assert_false(exists(again));
    assert_int_equal(mech(&out, "db merge --join --runs 9 %s %s", again, all), 2);
    assert_non_null(strstr(out, "no run 9"));
    free(out);
    assert_false(exists(again));
    assert_int_equal(mech(&out, "db merge --join --runs 4,2,3 %s %s", again, all), 0);
    free(out);
    char *x = sql_rows(joined, same[1]), *y = sql_rows(again, same[1]);
    assert_string_equal(x, y);
    free(x), free(y);
    // --runs without --join copies just those runs.
    mech_test_rm_db(again);
    assert_int_equal(mech(&out, "db merge --runs 1 %s %s", again, all), 0);
    free(out);
    x = sql_rows(one, same[1]), y = sql_rows(again, same[1]);
    assert_string_equal(x, y);
    free(x), free(y);

    // What is not the complete set of one sweep's shards is refused, and
    // the output is not created.
    mech_test_rm_db(again);
    struct {
        const char *args, *want;
    } refused[] = {
        {"%s %s", "missing shard 3 of 3"},
        {"%s %s %s %s", "shard 1/3 twice"},
        {"%s %s %s", "is not a shard"},
    };
    char args[4096];
    snprintf(args, sizeof args, "db merge --join %s %s %s", again, shard[0], shard[1]);
    assert_int_equal(mech(&out, "%s", args), 1);
    assert_non_null(strstr(out, refused[0].want));
    free(out);
    snprintf(args, sizeof args, "db merge --join %s %s %s %s %s", again, shard[0], shard[0], shard[1], shard[2]);
    assert_int_equal(mech(&out, "%s", args), 1);
    assert_non_null(strstr(out, refused[1].want));
    free(out);
    snprintf(args, sizeof args, "db merge --join %s %s %s %s %s", again, one, shard[0], shard[1], shard[2]);
    assert_int_equal(mech(&out, "%s", args), 1);
    assert_non_null(strstr(out, refused[2].want));
    free(out);
    // Another model, or other parameters (a different seed), is another sweep.
    const char *tamper[][2] = {{"UPDATE runs SET model_hash = 'feed'", "different models"},
                               {"UPDATE runs SET params = replace(params, '\"seed\": 3', '\"seed\": 4')",
                                "differ in more than the shard"}};
    for (int t = 0; t < 2; t++) {
        mech_test_rm_db(bad);
        snprintf(args, sizeof args, "cp %s %s", shard[1], bad);
        assert_int_equal(system(args), 0);
        sql_exec(bad, tamper[t][0]);
        snprintf(args, sizeof args, "db merge --join %s %s %s %s", again, shard[0], bad, shard[2]);
        assert_int_equal(mech(&out, "%s", args), 1);
        assert_non_null(strstr(out, tamper[t][1]));
        free(out);
    }
    // An unfinished shard.
    mech_test_rm_db(bad);
    snprintf(args, sizeof args, "cp %s %s", shard[1], bad);
    assert_int_equal(system(args), 0);
    sql_exec(bad, "UPDATE runs SET status = 'interrupted'");
    snprintf(args, sizeof args, "db merge --join %s %s %s %s", again, shard[0], bad, shard[2]);
    assert_int_equal(mech(&out, "%s", args), 1);
    assert_non_null(strstr(out, "interrupted, not done"));
    free(out);
    assert_false(exists(again));
    mech_test_rm_db(one), mech_test_rm_db(joined), mech_test_rm_db(all), mech_test_rm_db(bad);
    for (int k = 0; k < 3; k++) mech_test_rm_db(shard[k]);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_db_reading_never_creates),
        cmocka_unit_test(test_db_foreign_files_untouched),
        cmocka_unit_test(test_db_empty_path_is_usage),
        cmocka_unit_test(test_db_truncated_refused),
        cmocka_unit_test(test_db_index_damage_refused),
        cmocka_unit_test(test_db_read_only_as_unprivileged_user),
        cmocka_unit_test(test_db_ls_header_and_merge_ids),
        cmocka_unit_test(test_db_join_shards_equals_unsharded),
        cmocka_unit_test(test_db_export_extensions_and_ls_columns),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
