/*
** data/store.c: the results store, one SQLite file of runs, prompts, scalar
** results and compressed tensors (schema: docs/schema.md).
**
** Invariants:
** - A database is mech's when PRAGMA application_id is 'mech' (0x6D656368);
**   its schema version is PRAGMA user_version (>= 1). An existing file is
**   inspected and checked (size against page count, quick_check, index
**   counts) through a read-only connection before the read-write one is
**   opened, so a refused file (empty, not SQLite, foreign, damaged, unknown
**   version) is never written, not even by the switch to WAL.
** - Only a missing path is created, and only as a complete database: built
**   in a temporary file beside it and linked into place (link(2) refuses an
**   existing name), so no empty or half-made file ever sits at the path.
** - Readers (mech_store_open_read, merge inputs) use mode=ro, or
**   immutable=1 where WAL's -shm cannot be set up and no -wal holds commits;
**   they never create or modify a file.
** - A statement that meets a damaged page (SQLITE_CORRUPT) stops all later
**   writes through that handle.
** - migrations[v] takes the schema from version v to v + 1; all pending steps
**   run in one IMMEDIATE transaction together with the user_version update,
**   so a crash mid-migration leaves the old version intact.
** - WAL + synchronous=NORMAL: each committed transaction survives kill -9 of
**   the writer (only power loss may drop the latest commits); the file is
**   valid at every moment. Callers batch results: begin, rows, commit.
** - Tensors are float32 only: little-endian bytes, byte-shuffled into four
**   planes (byte 0 of every float, then byte 1, ...), then zlib; smooth data
**   has near-constant exponent bytes, which deflate then packs well.
*/
#include "data/data.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

struct mech_store {
    sqlite3 *db;
    char *path;
    int read_only; // mech_store_open_read: a mode=ro or immutable connection
    int damaged;   // a statement met a damaged page: write nothing more
    sqlite3_stmt *ins_result; // cached: results are written by the thousand
    sqlite3_stmt *ins_prompt;
};

#define CODEC "shuffle4+zlib"

// ---------------------------------------------------------------------------
// Schema and migrations

// migrations[v]: version v -> v + 1. Version 2 appends its step here (ALTER
// TABLE / CREATE ... / UPDATE) and bumps MECH_STORE_SCHEMA_VERSION.
static const char *const migrations[] = {
    // 0 -> 1: the initial schema.
    "CREATE TABLE runs (\n"
    "  id INTEGER PRIMARY KEY,\n"
    "  kind TEXT NOT NULL,\n"
    "  model_path TEXT,\n"
    "  model_hash TEXT,\n"
    "  cmdline TEXT,\n"
    "  params TEXT,\n"
    "  started TEXT NOT NULL,\n"
    "  finished TEXT,\n"
    "  status TEXT NOT NULL\n"
    ");\n"
    "CREATE TABLE prompts (\n"
    "  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,\n"
    "  item INTEGER NOT NULL,\n"
    "  role TEXT NOT NULL,\n"
    "  text TEXT,\n"
    "  tokens TEXT NOT NULL,\n"
    "  n_tokens INTEGER NOT NULL,\n"
    "  PRIMARY KEY (run_id, item, role)\n"
    ");\n"
    "CREATE TABLE results (\n"
    "  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,\n"
    "  item INTEGER NOT NULL,\n"
    "  site TEXT NOT NULL,\n"
    "  layer INTEGER NOT NULL,\n"
    "  pos INTEGER NOT NULL,\n"
    "  head INTEGER NOT NULL,\n"
    "  token INTEGER NOT NULL,\n"
    "  rank INTEGER NOT NULL,\n"
    "  metric TEXT NOT NULL,\n"
    "  value REAL\n"
    ");\n"
    "CREATE INDEX results_run_item ON results (run_id, item);\n"
    "CREATE INDEX results_run_metric ON results (run_id, metric, site, layer, pos, head);\n"
    "CREATE TABLE tensors (\n"
    "  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,\n"
    "  name TEXT NOT NULL,\n"
    "  dtype TEXT NOT NULL,\n"
    "  shape TEXT NOT NULL,\n"
    "  codec TEXT NOT NULL,\n"
    "  nbytes INTEGER NOT NULL,\n"
    "  data BLOB NOT NULL,\n"
    "  PRIMARY KEY (run_id, name)\n"
    ");\n",
};

_Static_assert(sizeof migrations / sizeof *migrations == MECH_STORE_SCHEMA_VERSION,
               "one migration per schema version");

// ---------------------------------------------------------------------------
// Helpers

// A statement that meets a damaged page marks the store: nothing more is
// written to it (not even the run's "failed" status), so a file that
// failed is left as it was found.
static void note_damage(mech_store *s) {
    int rc = sqlite3_errcode(s->db) & 0xff;
    if (rc == SQLITE_CORRUPT || rc == SQLITE_NOTADB) s->damaged = 1;
}

static mech_status db_fail(sqlite3 *db, const char *path, const char *what, mech_err *err) {
    return mech_err_set(err, MECH_ERR_DB, "%s: %s: %s", path, what,
                        db ? sqlite3_errmsg(db) : "cannot open");
}

static mech_status fail(mech_store *s, const char *what, mech_err *err) {
    note_damage(s);
    return db_fail(s->db, s->path, what, err);
}

// Runs sql; on error the message names the file and what was being done
// (not the SQL, which may be a whole schema).
static mech_status exec(sqlite3 *db, const char *path, const char *what, const char *sql, mech_err *err) {
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) == SQLITE_OK) return MECH_OK;
    mech_status st = mech_err_set(err, MECH_ERR_DB, "%s: %s: %s", path, what, msg ? msg : sqlite3_errmsg(db));
    sqlite3_free(msg);
    return st;
}

// Refuses writes to a store opened for reading or found damaged.
static mech_status writable(mech_store *s, mech_err *err) {
    if (s->read_only)
        return mech_err_set(err, MECH_ERR_ARG, "%s: opened for reading only", s->path);
    if (s->damaged)
        return mech_err_set(err, MECH_ERR_DB, "%s: the database is damaged; nothing more is written to it", s->path);
    return MECH_OK;
}

static mech_status store_exec(mech_store *s, const char *what, const char *sql, mech_err *err) {
    mech_status st = exec(s->db, s->path, what, sql, err);
    if (st) note_damage(s);
    return st;
}

// Runs a query whose first row's first column is an integer.
static int query_int(sqlite3 *db, const char *sql, int64_t *v) {
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(db, sql, -1, &q, NULL) != SQLITE_OK) return -1;
    int rc = sqlite3_step(q);
    if (rc == SQLITE_ROW) *v = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    return rc == SQLITE_ROW ? 0 : -1;
}

static char *dup_col(sqlite3_stmt *q, int i, int *oom) {
    const unsigned char *t = sqlite3_column_text(q, i);
    if (!t) return NULL;
    char *d = mech_strdup((const char *)t);
    if (!d) *oom = 1;
    return d;
}

// ---------------------------------------------------------------------------
// Open: a file is classified and checked through a read-only connection
// before anything may write to it.

static mech_status check_path(const char *path, mech_err *err) {
    if (!path) return mech_err_set(err, MECH_ERR_ARG, "results database: no path given");
    if (!*path) return mech_err_set(err, MECH_ERR_ARG, "results database: the path is empty");
    return MECH_OK;
}

// Size of path + suffix, or -1 when it does not exist.
static long long file_size(const char *path, const char *suffix) {
    char p[PATH_MAX + 8];
    struct stat sb;
    snprintf(p, sizeof p, "%s%s", path, suffix);
    return stat(p, &sb) ? -1 : (long long)sb.st_size;
}

// An existing, readable, non-empty regular file, or an error naming why not.
// OUT: *size (bytes).
static mech_status check_file(const char *path, long long *size, mech_err *err) {
    struct stat sb;
    if (stat(path, &sb)) {
        if (errno == ENOENT)
            return mech_err_set(err, MECH_ERR_IO, "%s: no such file (a results database is created only "
                                "by commands that write results)", path);
        return mech_err_set(err, MECH_ERR_IO, "%s: %s", path, strerror(errno));
    }
    if (!S_ISREG(sb.st_mode)) return mech_err_set(err, MECH_ERR_IO, "%s: not a regular file", path);
    // open(2) names the reason (permissions) that SQLite's message hides.
    int fd = open(path, O_RDONLY);
    if (fd < 0) return mech_err_set(err, MECH_ERR_IO, "%s: cannot read: %s", path, strerror(errno));
    // SQLite takes a file shorter than its header for an empty database:
    // the magic is checked here.
    char head[16] = {0};
    ssize_t got = read(fd, head, sizeof head);
    close(fd);
    if (sb.st_size == 0)
        return mech_err_set(err, MECH_ERR_DB, "%s: an empty file, not a mech results database; the file was "
                            "not modified (mech creates a database only where no file exists)", path);
    if (got != (ssize_t)sizeof head || memcmp(head, "SQLite format 3", 16))
        return mech_err_set(err, MECH_ERR_DB, "%s: not an SQLite database (%lld bytes without the SQLite header), "
                            "so not a mech results database; the file was not modified", path,
                            (long long)sb.st_size);
    *size = (long long)sb.st_size;
    return MECH_OK;
}

// "file:" URI for path with query q (SQLite URI rules: percent-encode all
// but unreserved characters and '/').
static char *uri_for(const char *path, const char *q) {
    mech_buf b = {0};
    mech_buf_puts(&b, "file:");
    for (const unsigned char *p = (const unsigned char *)path; *p; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || strchr("-._~/", *p))
            mech_buf_printf(&b, "%c", *p);
        else
            mech_buf_printf(&b, "%%%02X", *p);
    }
    mech_buf_printf(&b, "?%s", q);
    if (b.oom) {
        mech_buf_free(&b);
        return NULL;
    }
    return b.data;
}

// Opens path for reading only and reads its schema table. A WAL database
// needs its -shm file; where SQLite can neither open nor create it (a
// read-only directory) and no -wal file holds commits, the file is opened
// immutable: nothing can be pending outside it. OUT: *db, *uri (owned,
// sqlite3_free; the URI that worked, for ATTACH).
static mech_status open_read_conn(const char *path, sqlite3 **db, char **uri, mech_err *err) {
    *db = NULL;
    *uri = NULL;
    const char *modes[] = {"mode=ro", "immutable=1"};
    mech_status st = MECH_OK;
    for (int m = 0; m < 2; m++) {
        char *u = uri_for(path, modes[m]);
        if (!u) return mech_err_set(err, MECH_ERR_NOMEM, "%s: out of memory", path);
        sqlite3 *h = NULL;
        int64_t ntab;
        int rc = sqlite3_open_v2(u, &h, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI, NULL);
        if (rc == SQLITE_OK) {
            sqlite3_extended_result_codes(h, 1);
            sqlite3_busy_timeout(h, 10000);
            // sqlite_master is read first: it is what fails on a file that is
            // not a database or whose schema pages are damaged.
            if (!query_int(h, "SELECT count(*) FROM sqlite_master", &ntab)) {
                *db = h;
                *uri = mech_strdup(u);
                mech_free(u);
                if (!*uri) {
                    sqlite3_close_v2(h);
                    *db = NULL;
                    return mech_err_set(err, MECH_ERR_NOMEM, "%s: out of memory", path);
                }
                return MECH_OK;
            }
            rc = sqlite3_extended_errcode(h);
        }
        int prim = rc & 0xff;
        if (m == 0 && (prim == SQLITE_READONLY || prim == SQLITE_CANTOPEN) && file_size(path, "-wal") <= 0) {
            sqlite3_close_v2(h);
            mech_free(u);
            continue;
        }
        if (prim == SQLITE_CORRUPT)
            st = mech_err_set(err, MECH_ERR_DB, "%s: a damaged SQLite database (%s); the file was not modified", path,
                              h ? sqlite3_errmsg(h) : sqlite3_errstr(rc));
        else if (prim == SQLITE_NOTADB)
            st = mech_err_set(err, MECH_ERR_DB, "%s: not a readable SQLite database: %s", path,
                              h ? sqlite3_errmsg(h) : sqlite3_errstr(rc));
        else if (prim == SQLITE_READONLY || prim == SQLITE_CANTOPEN)
            st = mech_err_set(err, MECH_ERR_DB, "%s: cannot read it: %s (its write-ahead log %s-wal holds "
                              "commits that need the -shm file, which cannot be opened or created here)",
                              path, h ? sqlite3_errmsg(h) : sqlite3_errstr(rc), path);
        else
            st = mech_err_set(err, MECH_ERR_DB, "%s: cannot read it: %s", path,
                              h ? sqlite3_errmsg(h) : sqlite3_errstr(rc));
        sqlite3_close_v2(h);
        mech_free(u);
        break;
    }
    return st;
}

// Refuses what is not a mech database of a schema this code knows. OUT:
// *version (1..MECH_STORE_SCHEMA_VERSION).
static mech_status inspect(sqlite3 *db, const char *path, int64_t *version, mech_err *err) {
    int64_t app = 0, ver = 0, ntab = 0;
    if (query_int(db, "SELECT count(*) FROM sqlite_master", &ntab) ||
        query_int(db, "PRAGMA application_id", &app) || query_int(db, "PRAGMA user_version", &ver))
        return mech_err_set(err, MECH_ERR_DB, "%s: not a readable SQLite database: %s", path, sqlite3_errmsg(db));
    if (app != MECH_STORE_APPLICATION_ID)
        return mech_err_set(err, MECH_ERR_DB,
                            "%s: not a mech results database (an SQLite database with application_id "
                            "0x%08llx, expected 0x%08x, and %lld schema objects); the file was not modified",
                            path, (unsigned long long)(uint32_t)app, MECH_STORE_APPLICATION_ID, (long long)ntab);
    if (ver > MECH_STORE_SCHEMA_VERSION)
        return mech_err_set(err, MECH_ERR_DB,
                            "%s: results database schema version %lld is newer than this mech supports "
                            "(%d); use a newer mech (the file was not modified)",
                            path, (long long)ver, MECH_STORE_SCHEMA_VERSION);
    if (ver < 1)
        return mech_err_set(err, MECH_ERR_DB,
                            "%s: a mech results database whose schema version (PRAGMA user_version) is %lld, "
                            "which mech never writes: the version marker was changed, so the schema cannot "
                            "be trusted; the file was not modified",
                            path, (long long)ver);
    *version = ver;
    return MECH_OK;
}

// The cheap checks run before any write (a full integrity_check reads
// every index entry back against its row, too slow for every command):
// the file's size against its page count, PRAGMA quick_check (page
// structure, records, freelist), and each index's entry count against its
// table's row count (what quick_check skips: a row missing from an index).
static mech_status check_intact(sqlite3 *db, const char *path, long long size, long long wal, mech_err *err) {
    int64_t page_size = 0, pages = 0;
    if (query_int(db, "PRAGMA page_size", &page_size) || query_int(db, "PRAGMA page_count", &pages) || page_size <= 0)
        return mech_err_set(err, MECH_ERR_DB, "%s: damaged (reading its page count: %s); the file was not modified",
                            path, sqlite3_errmsg(db));
    // Pages still in the write-ahead log may lie past the file's end, so the
    // exact size is known only when the log is empty.
    if (size % page_size || (wal <= 0 && size != pages * page_size))
        return mech_err_set(err, MECH_ERR_DB,
                            "%s: damaged: %lld bytes, but its header says %lld pages of %lld bytes (%lld bytes): "
                            "truncated or extended; the file was not modified",
                            path, size, (long long)pages, (long long)page_size, (long long)(pages * page_size));
    sqlite3_stmt *q = NULL;
    mech_status st = MECH_OK;
    if (sqlite3_prepare_v2(db, "PRAGMA quick_check(1)", -1, &q, NULL) != SQLITE_OK || sqlite3_step(q) != SQLITE_ROW) {
        st = mech_err_set(err, MECH_ERR_DB, "%s: damaged (quick_check: %s); the file was not modified", path,
                          sqlite3_errmsg(db));
        goto done;
    }
    const char *r = (const char *)sqlite3_column_text(q, 0);
    if (!r || strcmp(r, "ok")) {
        st = mech_err_set(err, MECH_ERR_DB, "%s: damaged (quick_check: %s); the file was not modified", path,
                          r ? r : "?");
        goto done;
    }
    sqlite3_finalize(q);
    // Partial indexes (a WHERE clause) legitimately hold fewer entries.
    if (sqlite3_prepare_v2(db,
                           "SELECT name, tbl_name FROM sqlite_master WHERE type = 'index' AND "
                           "(sql IS NULL OR sql NOT LIKE '%WHERE%')",
                           -1, &q, NULL) != SQLITE_OK) {
        st = db_fail(db, path, "listing indexes", err);
        q = NULL;
        goto done;
    }
    int rc;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        const char *idx = (const char *)sqlite3_column_text(q, 0), *tbl = (const char *)sqlite3_column_text(q, 1);
        int64_t n_idx = -1, n_tbl = -1;
        char *sql_i = sqlite3_mprintf("SELECT count(*) FROM \"%w\" INDEXED BY \"%w\"", tbl, idx);
        char *sql_t = sqlite3_mprintf("SELECT count(*) FROM \"%w\" NOT INDEXED", tbl);
        int bad = !sql_i || !sql_t || query_int(db, sql_i, &n_idx) || query_int(db, sql_t, &n_tbl);
        sqlite3_free(sql_i);
        sqlite3_free(sql_t);
        if (bad) {
            st = mech_err_set(err, MECH_ERR_DB, "%s: damaged (counting index %s: %s); the file was not modified",
                              path, idx, sqlite3_errmsg(db));
            goto done;
        }
        if (n_idx != n_tbl) {
            st = mech_err_set(err, MECH_ERR_DB,
                              "%s: damaged: index %s has %lld entries for %lld rows of table %s; the file was "
                              "not modified",
                              path, idx, (long long)n_idx, (long long)n_tbl, tbl);
            goto done;
        }
    }
    if (rc != SQLITE_DONE) st = db_fail(db, path, "listing indexes", err);
done:
    sqlite3_finalize(q);
    return st;
}

// Brings the schema to MECH_STORE_SCHEMA_VERSION inside one transaction.
// Re-reads the marker under the write lock (another process may have
// migrated the file since it was inspected).
static mech_status migrate(sqlite3 *db, const char *path, int fresh, mech_err *err) {
    mech_status st;
    int64_t app = 0, ver = 0, ntab = 0;
    if ((st = exec(db, path, "locking for the schema check", "BEGIN IMMEDIATE", err))) return st;
    if (query_int(db, "PRAGMA application_id", &app) || query_int(db, "PRAGMA user_version", &ver) ||
        query_int(db, "SELECT count(*) FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'", &ntab)) {
        st = db_fail(db, path, "reading the schema version", err);
        goto fail;
    }
    if (fresh ? (app || ver || ntab) : (app != MECH_STORE_APPLICATION_ID || ver < 1)) {
        st = mech_err_set(err, MECH_ERR_DB, "%s: not a mech results database", path);
        goto fail;
    }
    if (ver > MECH_STORE_SCHEMA_VERSION) {
        st = mech_err_set(err, MECH_ERR_DB, "%s: results database schema version %lld is newer than "
                          "this mech supports (%d)", path, (long long)ver, MECH_STORE_SCHEMA_VERSION);
        goto fail;
    }
    for (int64_t v = ver; v < MECH_STORE_SCHEMA_VERSION; v++) {
        char what[64];
        snprintf(what, sizeof what, "upgrading the schema to version %lld", (long long)v + 1);
        if ((st = exec(db, path, what, migrations[v], err))) goto fail;
    }
    if (ver < MECH_STORE_SCHEMA_VERSION) {
        char sql[128];
        snprintf(sql, sizeof sql, "PRAGMA application_id = %d; PRAGMA user_version = %d",
                 MECH_STORE_APPLICATION_ID, MECH_STORE_SCHEMA_VERSION);
        if ((st = exec(db, path, "marking the schema version", sql, err))) goto fail;
    }
    return exec(db, path, "committing the schema", "COMMIT", err);
fail:
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return st;
}

static mech_status set_wal(sqlite3 *db, const char *path, mech_err *err) {
    sqlite3_stmt *q = NULL;
    if (sqlite3_prepare_v2(db, "PRAGMA journal_mode = WAL", -1, &q, NULL) != SQLITE_OK ||
        sqlite3_step(q) != SQLITE_ROW) {
        sqlite3_finalize(q);
        return db_fail(db, path, "switching to WAL mode", err);
    }
    const char *mode = (const char *)sqlite3_column_text(q, 0);
    mech_status st = MECH_OK;
    if (!mode || strcmp(mode, "wal"))
        st = mech_err_set(err, MECH_ERR_DB, "%s: journal mode is '%s', expected 'wal'", path, mode ? mode : "?");
    sqlite3_finalize(q);
    return st;
}

static void remove_db_files(const char *p) {
    char x[PATH_MAX + 32];
    remove(p);
    snprintf(x, sizeof x, "%s-wal", p);
    remove(x);
    snprintf(x, sizeof x, "%s-shm", p);
    remove(x);
}

// Creates a complete, empty mech database at path where no file exists:
// it is built in a temporary file beside path and linked into place, which
// fails when a file appeared meanwhile (another process creating the same
// database: its file is then used). So mech never leaves an empty or
// half-initialised file at path, and an empty file there is never mech's.
static mech_status create_new(const char *path, mech_err *err) {
    const char *slash = strrchr(path, '/');
    size_t dir_len = slash ? (size_t)(slash - path) + 1 : 0;
    const char *base = slash ? slash + 1 : path;
    char tmp[PATH_MAX + 16];
    if (!*base) return mech_err_set(err, MECH_ERR_IO, "%s: a directory, expected a file name", path);
    if (snprintf(tmp, sizeof tmp, "%.*s.%s.XXXXXX", (int)dir_len, path, base) >= (int)sizeof tmp)
        return mech_err_set(err, MECH_ERR_IO, "%s: path too long", path);
    int fd = mkstemp(tmp);
    if (fd < 0) return mech_err_set(err, MECH_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    // mkstemp makes 0600; give the file the mode SQLite's own open would.
    mode_t mask = umask(022);
    umask(mask);
    int chmod_ok = fchmod(fd, 0644 & ~mask) == 0;
    close(fd);
    sqlite3 *db = NULL;
    mech_status st = MECH_OK;
    if (!chmod_ok) {
        st = mech_err_set(err, MECH_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
        goto done;
    }
    if (sqlite3_open_v2(tmp, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
        st = db_fail(db, path, "cannot create", err);
        goto done;
    }
    if ((st = set_wal(db, path, err)) || (st = migrate(db, path, 1, err))) goto done;
    if (sqlite3_close(db) != SQLITE_OK) {
        st = db_fail(db, path, "cannot create", err);
        goto done;
    }
    db = NULL;
    if (link(tmp, path) == 0 || errno == EEXIST) goto done;
    // A file system without hard links: rename, which cannot refuse an
    // existing file, so look first (a narrow race with another creator).
    if (errno == EPERM || errno == ENOTSUP || errno == EOPNOTSUPP || errno == EMLINK || errno == ENOSYS) {
        if (access(path, F_OK) == 0) goto done;
        if (rename(tmp, path) == 0) return MECH_OK;
    }
    st = mech_err_set(err, MECH_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
done:
    if (db) sqlite3_close_v2(db);
    remove_db_files(tmp);
    return st;
}

static mech_store *store_new(const char *path, mech_err *err) {
    mech_store *s = mech_calloc(1, sizeof *s);
    if (!s || !(s->path = mech_strdup(path))) {
        mech_free(s);
        mech_err_set(err, MECH_ERR_NOMEM, "%s: out of memory", path);
        return NULL;
    }
    return s;
}

mech_status mech_store_open(const char *path, mech_store **out, mech_err *err) {
    if (out) *out = NULL;
    mech_status st = check_path(path, err);
    if (st || !out) return st ? st : mech_err_set(err, MECH_ERR_ARG, "mech_store_open: no output pointer");
    struct stat sb;
    if (stat(path, &sb) && errno == ENOENT && (st = create_new(path, err))) return st;
    long long size = 0;
    if ((st = check_file(path, &size, err))) return st;
    long long wal = file_size(path, "-wal");
    sqlite3 *ro = NULL;
    char *uri = NULL;
    int64_t version = 0;
    if ((st = open_read_conn(path, &ro, &uri, err))) return st;
    st = inspect(ro, path, &version, err);
    if (!st) st = check_intact(ro, path, size, wal, err);
    sqlite3_close_v2(ro);
    mech_free(uri);
    if (st) return st;
    // Said plainly here rather than as SQLite's "attempt to write a
    // readonly database" at the first write.
    if (access(path, W_OK))
        return mech_err_set(err, MECH_ERR_IO, "%s: cannot write to it: %s (commands that only read it work)", path,
                            strerror(errno));
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');
    snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - path) + 1 : 1, slash ? path : ".");
    if (wal < 0 && access(dir, W_OK))
        return mech_err_set(err, MECH_ERR_IO, "%s: cannot write to it: its directory is not writable, and SQLite's "
                            "write-ahead log needs %s-wal and %s-shm beside it (commands that only read it work)",
                            path, path, path);
    mech_store *s = store_new(path, err);
    if (!s) return MECH_ERR_NOMEM;
    // No SQLITE_OPEN_CREATE: a file removed since it was checked is not
    // silently re-created empty.
    // Through a URI (mode=rw) so that any path is taken literally and
    // ATTACH (merge) may name its inputs read-only.
    char *wuri = uri_for(path, "mode=rw");
    if (!wuri) {
        st = mech_err_set(err, MECH_ERR_NOMEM, "%s: out of memory", path);
        goto fail;
    }
    int orc = sqlite3_open_v2(wuri, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_URI, NULL);
    mech_free(wuri);
    if (orc != SQLITE_OK) {
        st = fail(s, "cannot open for writing", err);
        goto fail;
    }
    sqlite3_extended_result_codes(s->db, 1);
    sqlite3_busy_timeout(s->db, 10000); // shards may share one file
    if ((st = set_wal(s->db, path, err)) ||
        (st = exec(s->db, path, "setting up", "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON", err)) ||
        (st = migrate(s->db, path, 0, err)))
        goto fail;
    *out = s;
    return MECH_OK;
fail:
    mech_store_close(s);
    return st;
}

mech_status mech_store_open_read(const char *path, mech_store **out, mech_err *err) {
    if (out) *out = NULL;
    mech_status st = check_path(path, err);
    if (st || !out) return st ? st : mech_err_set(err, MECH_ERR_ARG, "mech_store_open_read: no output pointer");
    long long size = 0;
    if ((st = check_file(path, &size, err))) return st;
    sqlite3 *ro = NULL;
    char *uri = NULL;
    int64_t version = 0;
    if ((st = open_read_conn(path, &ro, &uri, err))) return st;
    mech_free(uri);
    if ((st = inspect(ro, path, &version, err))) {
        sqlite3_close_v2(ro);
        return st;
    }
    if (version != MECH_STORE_SCHEMA_VERSION) {
        sqlite3_close_v2(ro);
        return mech_err_set(err, MECH_ERR_DB, "%s: results database schema version %lld; a command that writes "
                            "to it upgrades it to %d", path, (long long)version, MECH_STORE_SCHEMA_VERSION);
    }
    mech_store *s = store_new(path, err);
    if (!s) {
        sqlite3_close_v2(ro);
        return MECH_ERR_NOMEM;
    }
    s->db = ro;
    s->read_only = 1;
    *out = s;
    return MECH_OK;
}

void mech_store_close(mech_store *s) {
    if (!s) return;
    sqlite3_finalize(s->ins_result);
    sqlite3_finalize(s->ins_prompt);
    if (s->db && !sqlite3_get_autocommit(s->db)) sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    sqlite3_close_v2(s->db);
    mech_free(s->path);
    mech_free(s);
}

const char *mech_store_path(const mech_store *s) { return s->path; }

mech_status mech_store_check_quick(mech_store *s, mech_err *err) {
    long long size = 0;
    mech_status st = check_file(s->path, &size, err);
    return st ? st : check_intact(s->db, s->path, size, file_size(s->path, "-wal"), err);
}

mech_status mech_store_check(mech_store *s, mech_err *err) {
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(s->db, "PRAGMA integrity_check", -1, &q, NULL) != SQLITE_OK)
        return fail(s, "integrity check", err);
    mech_status st = MECH_OK;
    int rc = sqlite3_step(q);
    if (rc != SQLITE_ROW) {
        st = fail(s, "integrity check", err);
    } else {
        const char *r = (const char *)sqlite3_column_text(q, 0);
        if (!r || strcmp(r, "ok"))
            st = mech_err_set(err, MECH_ERR_DB, "%s: integrity check failed: %s", s->path, r ? r : "?");
    }
    sqlite3_finalize(q);
    return st;
}

// ---------------------------------------------------------------------------
// Transactions

mech_status mech_store_begin(mech_store *s, mech_err *err) {
    mech_status st = writable(s, err);
    return st ? st : store_exec(s, "starting a transaction", "BEGIN IMMEDIATE", err);
}

mech_status mech_store_commit(mech_store *s, mech_err *err) {
    return store_exec(s, "committing", "COMMIT", err);
}

mech_status mech_store_rollback(mech_store *s, mech_err *err) {
    return store_exec(s, "rolling back", "ROLLBACK", err);
}

// ---------------------------------------------------------------------------
// Runs

static int run_exists(mech_store *s, int64_t run_id, mech_err *err, mech_status *st) {
    sqlite3_stmt *q;
    *st = MECH_OK;
    if (sqlite3_prepare_v2(s->db, "SELECT 1 FROM runs WHERE id = ?", -1, &q, NULL) != SQLITE_OK) {
        *st = fail(s, "looking up a run", err);
        return 0;
    }
    sqlite3_bind_int64(q, 1, run_id);
    int rc = sqlite3_step(q);
    sqlite3_finalize(q);
    if (rc == SQLITE_ROW) return 1;
    if (rc == SQLITE_DONE)
        *st = mech_err_set(err, MECH_ERR_RANGE, "%s: no run %lld", s->path, (long long)run_id);
    else
        *st = fail(s, "looking up a run", err);
    return 0;
}

mech_status mech_store_run_new(mech_store *s, const char *kind, const char *model_path,
                               const char *cmdline, const char *params_json, int64_t *run_id,
                               mech_err *err) {
    mech_status ws = writable(s, err);
    if (ws) return ws;
    if (!kind || !*kind) return mech_err_set(err, MECH_ERR_ARG, "%s: run kind is empty", s->path);
    if (params_json) {
        mech_json *j = NULL;
        mech_err e = {0};
        if (mech_json_parse(params_json, strlen(params_json), &j, &e))
            return mech_err_set(err, MECH_ERR_ARG, "%s: run parameters are not valid JSON: %s", s->path,
                                e.msg);
        mech_json_free(j);
    }
    char hash[65];
    int have_hash = mech_store_model_hash(model_path, hash) == MECH_OK;
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(s->db,
                           "INSERT INTO runs (kind, model_path, model_hash, cmdline, params, started, "
                           "status) VALUES (?, ?, ?, ?, ?, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), "
                           "'running')",
                           -1, &q, NULL) != SQLITE_OK)
        return fail(s, "adding a run", err);
    sqlite3_bind_text(q, 1, kind, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(q, 2, model_path, -1, SQLITE_TRANSIENT);
    if (have_hash) sqlite3_bind_text(q, 3, hash, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(q, 4, cmdline, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(q, 5, params_json, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(q);
    sqlite3_finalize(q);
    if (rc != SQLITE_DONE) return fail(s, "adding a run", err);
    if (run_id) *run_id = sqlite3_last_insert_rowid(s->db);
    return MECH_OK;
}

mech_status mech_store_run_finish(mech_store *s, int64_t run_id, const char *status, mech_err *err) {
    mech_status ws = writable(s, err);
    if (ws) return ws;
    static const char *const ok[] = {"done", "failed", "interrupted", "running"};
    int known = 0;
    for (size_t i = 0; status && i < sizeof ok / sizeof *ok; i++) known |= !strcmp(status, ok[i]);
    if (!known)
        return mech_err_set(err, MECH_ERR_ARG,
                            "%s: run status '%s', expected done, failed, interrupted or running",
                            s->path, status ? status : "(null)");
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(s->db,
                           "UPDATE runs SET status = ?1, finished = CASE WHEN ?1 = 'running' THEN "
                           "NULL ELSE strftime('%Y-%m-%dT%H:%M:%fZ', 'now') END WHERE id = ?2",
                           -1, &q, NULL) != SQLITE_OK)
        return fail(s, "finishing a run", err);
    sqlite3_bind_text(q, 1, status, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(q, 2, run_id);
    int rc = sqlite3_step(q);
    sqlite3_finalize(q);
    if (rc != SQLITE_DONE) return fail(s, "finishing a run", err);
    if (sqlite3_changes(s->db) == 0)
        return mech_err_set(err, MECH_ERR_RANGE, "%s: no run %lld", s->path, (long long)run_id);
    return MECH_OK;
}

#define RUN_COLS                                                                                   \
    "SELECT id, kind, model_path, model_hash, cmdline, params, started, finished, status, "        \
    "(SELECT count(*) FROM results r WHERE r.run_id = runs.id), "                                  \
    "(SELECT count(DISTINCT item) FROM results r WHERE r.run_id = runs.id), "                      \
    "(SELECT count(*) FROM prompts p WHERE p.run_id = runs.id), "                                  \
    "(SELECT count(*) FROM tensors t WHERE t.run_id = runs.id) FROM runs "

// Fills info from a RUN_COLS row; 0 or -1 when out of memory.
static int run_row(sqlite3_stmt *q, mech_run_info *info) {
    int oom = 0;
    memset(info, 0, sizeof *info);
    info->id = sqlite3_column_int64(q, 0);
    char **str[] = {&info->kind,    &info->model_path, &info->model_hash,
                    &info->cmdline, &info->params_json, &info->started,
                    &info->finished, &info->status};
    for (int i = 0; i < 8; i++) *str[i] = dup_col(q, 1 + i, &oom);
    info->n_results = sqlite3_column_int64(q, 9);
    info->n_items = sqlite3_column_int64(q, 10);
    info->n_prompts = sqlite3_column_int64(q, 11);
    info->n_tensors = sqlite3_column_int64(q, 12);
    if (oom) mech_store_run_info_deinit(info);
    return oom ? -1 : 0;
}

void mech_store_run_info_deinit(mech_run_info *info) {
    if (!info) return;
    char *str[] = {info->kind,    info->model_path, info->model_hash, info->cmdline,
                   info->params_json, info->started, info->finished, info->status};
    for (int i = 0; i < 8; i++) mech_free(str[i]);
    memset(info, 0, sizeof *info);
}

mech_status mech_store_run_info(mech_store *s, int64_t run_id, mech_run_info *info, mech_err *err) {
    memset(info, 0, sizeof *info);
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(s->db, RUN_COLS "WHERE id = ?", -1, &q, NULL) != SQLITE_OK)
        return fail(s, "reading a run", err);
    sqlite3_bind_int64(q, 1, run_id);
    mech_status st = MECH_OK;
    int rc = sqlite3_step(q);
    if (rc == SQLITE_ROW) {
        if (run_row(q, info)) st = mech_err_set(err, MECH_ERR_NOMEM, "%s: out of memory", s->path);
    } else if (rc == SQLITE_DONE) {
        st = mech_err_set(err, MECH_ERR_RANGE, "%s: no run %lld", s->path, (long long)run_id);
    } else {
        st = fail(s, "reading a run", err);
    }
    sqlite3_finalize(q);
    return st;
}

void mech_store_runs_free(mech_run_info *runs, size_t n) {
    for (size_t i = 0; runs && i < n; i++) mech_store_run_info_deinit(&runs[i]);
    mech_free(runs);
}

mech_status mech_store_runs(mech_store *s, mech_run_info **runs, size_t *n, mech_err *err) {
    *runs = NULL;
    *n = 0;
    mech_run_info *v = NULL;
    size_t len = 0, cap = 0;
    mech_status st = MECH_OK;
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(s->db, RUN_COLS "ORDER BY id", -1, &q, NULL) != SQLITE_OK)
        return fail(s, "listing runs", err);
    int rc;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        if (len == cap) {
            size_t nc = cap ? 2 * cap : 16;
            mech_run_info *nv = mech_realloc(v, nc * sizeof *v);
            if (!nv) goto oom;
            v = nv, cap = nc;
        }
        if (run_row(q, &v[len])) goto oom;
        len++;
    }
    if (rc != SQLITE_DONE) {
        st = fail(s, "listing runs", err);
        goto fail;
    }
    sqlite3_finalize(q);
    *runs = v;
    *n = len;
    return MECH_OK;
oom:
    st = mech_err_set(err, MECH_ERR_NOMEM, "%s: out of memory", s->path);
fail:
    sqlite3_finalize(q);
    mech_store_runs_free(v, len);
    return st;
}

// ---------------------------------------------------------------------------
// Prompts and results

mech_status mech_store_prompt(mech_store *s, int64_t run_id, int item, const char *role,
                              const char *text, const int32_t *tokens, int n_tokens, mech_err *err) {
    mech_status ws = writable(s, err);
    if (ws) return ws;
    if (!role || (strcmp(role, "clean") && strcmp(role, "corrupt") && strcmp(role, "prompt")))
        return mech_err_set(err, MECH_ERR_ARG, "%s: prompt role '%s', expected clean, corrupt or prompt",
                            s->path, role ? role : "(null)");
    if (item < 0 || n_tokens < 0 || (n_tokens > 0 && !tokens))
        return mech_err_set(err, MECH_ERR_ARG, "%s: prompt item %d with %d tokens", s->path, item,
                            n_tokens);
    mech_buf b = {0};
    mech_buf_puts(&b, "[");
    for (int i = 0; i < n_tokens; i++) mech_buf_printf(&b, i ? ",%ld" : "%ld", (long)tokens[i]);
    mech_buf_puts(&b, "]");
    if (b.oom) {
        mech_buf_free(&b);
        return mech_err_set(err, MECH_ERR_NOMEM, "%s: out of memory", s->path);
    }
    mech_status st = MECH_OK;
    if (!s->ins_prompt &&
        sqlite3_prepare_v3(s->db,
                           "INSERT OR REPLACE INTO prompts (run_id, item, role, text, tokens, n_tokens) "
                           "VALUES (?, ?, ?, ?, ?, ?)",
                           -1, SQLITE_PREPARE_PERSISTENT, &s->ins_prompt, NULL) != SQLITE_OK) {
        st = fail(s, "adding a prompt", err);
        goto done;
    }
    sqlite3_stmt *q = s->ins_prompt;
    sqlite3_bind_int64(q, 1, run_id);
    sqlite3_bind_int(q, 2, item);
    sqlite3_bind_text(q, 3, role, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(q, 4, text, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(q, 5, b.data, (int)b.len, SQLITE_TRANSIENT);
    sqlite3_bind_int(q, 6, n_tokens);
    if (sqlite3_step(q) != SQLITE_DONE) st = fail(s, "adding a prompt", err);
    sqlite3_reset(q);
    sqlite3_clear_bindings(q);
done:
    mech_buf_free(&b);
    return st;
}

mech_status mech_store_prompt_get(mech_store *s, int64_t run_id, int item, const char *role, char **text,
                                  int32_t **tokens, int *n_tokens, mech_err *err) {
    // one reader of the prompts table (mech_store_prompts_get): a run has
    // a few rows per item, so finding one among them costs nothing
    *text = NULL, *tokens = NULL, *n_tokens = 0;
    mech_prompt_row *rows = NULL;
    size_t n = 0;
    mech_status st = mech_store_prompts_get(s, run_id, &rows, &n, err);
    if (st) return st;
    size_t i = 0;
    while (i < n && !(rows[i].item == item && role && !strcmp(rows[i].role ? rows[i].role : "", role))) i++;
    if (i == n)
        st = mech_err_set(err, MECH_ERR_RANGE, "%s: run %lld has no %s prompt %d", s->path, (long long)run_id,
                          role ? role : "(null)", item);
    else {
        // the row's text and tokens change hands; the rest is freed
        *text = rows[i].text, *tokens = rows[i].tokens, *n_tokens = rows[i].n_tokens;
        rows[i].text = NULL, rows[i].tokens = NULL;
    }
    mech_store_prompts_free(rows, n);
    return st;
}

mech_status mech_store_result(mech_store *s, int64_t run_id, const mech_result *r, mech_err *err) {
    mech_status ws = writable(s, err);
    if (ws) return ws;
    if (!r || !r->site || !r->metric)
        return mech_err_set(err, MECH_ERR_ARG, "%s: result without %s", s->path,
                            !r ? "a row" : !r->site ? "a site" : "a metric");
    if (!s->ins_result &&
        sqlite3_prepare_v3(s->db,
                           "INSERT INTO results (run_id, item, site, layer, pos, head, token, rank, "
                           "metric, value) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                           -1, SQLITE_PREPARE_PERSISTENT, &s->ins_result, NULL) != SQLITE_OK)
        return fail(s, "adding a result", err);
    sqlite3_stmt *q = s->ins_result;
    sqlite3_bind_int64(q, 1, run_id);
    sqlite3_bind_int(q, 2, r->item);
    sqlite3_bind_text(q, 3, r->site, -1, SQLITE_STATIC);
    sqlite3_bind_int(q, 4, r->layer);
    sqlite3_bind_int(q, 5, r->pos);
    sqlite3_bind_int(q, 6, r->head);
    sqlite3_bind_int64(q, 7, r->token);
    sqlite3_bind_int(q, 8, r->rank);
    sqlite3_bind_text(q, 9, r->metric, -1, SQLITE_STATIC);
    if (isnan(r->value))
        sqlite3_bind_null(q, 10);
    else
        sqlite3_bind_double(q, 10, r->value);
    mech_status st = MECH_OK;
    if (sqlite3_step(q) != SQLITE_DONE) st = fail(s, "adding a result", err);
    sqlite3_reset(q);
    sqlite3_clear_bindings(q); // the STATIC strings are the caller's
    return st;
}

mech_status mech_store_items_done(mech_store *s, int64_t run_id, int **items, size_t *n,
                                  mech_err *err) {
    *items = NULL;
    *n = 0;
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(s->db, "SELECT DISTINCT item FROM results WHERE run_id = ? ORDER BY item",
                           -1, &q, NULL) != SQLITE_OK)
        return fail(s, "listing finished items", err);
    sqlite3_bind_int64(q, 1, run_id);
    int *v = NULL, rc;
    size_t len = 0, cap = 0;
    mech_status st = MECH_OK;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        if (len == cap) {
            size_t nc = cap ? 2 * cap : 64;
            int *nv = mech_realloc(v, nc * sizeof *v);
            if (!nv) {
                st = mech_err_set(err, MECH_ERR_NOMEM, "%s: out of memory", s->path);
                goto fail;
            }
            v = nv, cap = nc;
        }
        v[len++] = sqlite3_column_int(q, 0);
    }
    if (rc != SQLITE_DONE) {
        st = fail(s, "listing finished items", err);
        goto fail;
    }
    sqlite3_finalize(q);
    *items = v;
    *n = len;
    return MECH_OK;
fail:
    sqlite3_finalize(q);
    mech_free(v);
    return st;
}

// ---------------------------------------------------------------------------
// Tensors

// n floats -> 4 planes of n bytes: plane k holds byte k (little-endian) of
// every float.
static void shuffle4(const float *x, size_t n, unsigned char *out) {
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &x[i], 4);
        for (int k = 0; k < 4; k++) out[(size_t)k * n + i] = (unsigned char)(u >> (8 * k));
    }
}

static void unshuffle4(const unsigned char *in, size_t n, float *x) {
    for (size_t i = 0; i < n; i++) {
        uint32_t u = 0;
        for (int k = 0; k < 4; k++) u |= (uint32_t)in[(size_t)k * n + i] << (8 * k);
        memcpy(&x[i], &u, 4);
    }
}

mech_status mech_store_tensor(mech_store *s, int64_t run_id, const char *name, const float *data,
                              int ndim, const int64_t *shape, mech_err *err) {
    mech_status ws = writable(s, err);
    if (ws) return ws;
    if (!name || !*name) return mech_err_set(err, MECH_ERR_ARG, "%s: tensor without a name", s->path);
    if (ndim < 0 || ndim > MECH_MAX_DIMS || (ndim > 0 && !shape))
        return mech_err_set(err, MECH_ERR_ARG, "%s: tensor '%s': ndim %d, expected 0..%d", s->path, name,
                            ndim, MECH_MAX_DIMS);
    uint64_t count = 1;
    mech_buf sh = {0};
    mech_buf_puts(&sh, "[");
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0 || (shape[i] > 0 && count > (UINT64_MAX / 8) / (uint64_t)shape[i])) {
            mech_buf_free(&sh);
            return mech_err_set(err, MECH_ERR_ARG, "%s: tensor '%s': bad shape[%d] = %lld", s->path,
                                name, i, (long long)shape[i]);
        }
        count *= (uint64_t)shape[i];
        mech_buf_printf(&sh, i ? ",%lld" : "%lld", (long long)shape[i]);
    }
    mech_buf_puts(&sh, "]");
    if (count > 0 && !data) {
        mech_buf_free(&sh);
        return mech_err_set(err, MECH_ERR_ARG, "%s: tensor '%s': no data", s->path, name);
    }
    uint64_t nbytes = count * 4;
    if (nbytes > (uint64_t)INT_MAX) {
        mech_buf_free(&sh);
        return mech_err_set(err, MECH_ERR_ARG, "%s: tensor '%s': %llu bytes, more than an SQLite "
                            "blob holds", s->path, name, (unsigned long long)nbytes);
    }
    mech_status st = MECH_OK;
    uLongf zlen = compressBound((uLong)nbytes);
    unsigned char *plane = mech_malloc(nbytes ? nbytes : 1), *z = mech_malloc(zlen);
    sqlite3_stmt *q = NULL;
    if (!plane || !z || sh.oom) {
        st = mech_err_set(err, MECH_ERR_NOMEM, "%s: tensor '%s': out of memory", s->path, name);
        goto done;
    }
    shuffle4(data, (size_t)count, plane);
    if (compress2(z, &zlen, plane, (uLong)nbytes, Z_DEFAULT_COMPRESSION) != Z_OK) {
        st = mech_err_set(err, MECH_ERR_NOMEM, "%s: tensor '%s': zlib failed", s->path, name);
        goto done;
    }
    if (sqlite3_prepare_v2(s->db,
                           "INSERT OR REPLACE INTO tensors (run_id, name, dtype, shape, codec, nbytes, "
                           "data) VALUES (?, ?, 'f32', ?, '" CODEC "', ?, ?)",
                           -1, &q, NULL) != SQLITE_OK) {
        st = fail(s, "adding a tensor", err);
        goto done;
    }
    sqlite3_bind_int64(q, 1, run_id);
    sqlite3_bind_text(q, 2, name, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 3, sh.data, (int)sh.len, SQLITE_STATIC);
    sqlite3_bind_int64(q, 4, (sqlite3_int64)nbytes);
    sqlite3_bind_blob(q, 5, z, (int)zlen, SQLITE_STATIC);
    if (sqlite3_step(q) != SQLITE_DONE) st = fail(s, "adding a tensor", err);
done:
    sqlite3_finalize(q);
    mech_free(plane);
    mech_free(z);
    mech_buf_free(&sh);
    return st;
}

mech_status mech_store_tensor_get(mech_store *s, int64_t run_id, const char *name, float **data,
                                  int *ndim, int64_t shape[MECH_MAX_DIMS], mech_err *err) {
    *data = NULL;
    *ndim = 0;
    sqlite3_stmt *q = NULL;
    mech_json *j = NULL;
    unsigned char *plane = NULL;
    float *x = NULL;
    mech_status st = MECH_OK;
    if (!name) return mech_err_set(err, MECH_ERR_ARG, "%s: tensor without a name", s->path);
    if (sqlite3_prepare_v2(s->db,
                           "SELECT dtype, shape, codec, nbytes, data FROM tensors WHERE run_id = ? AND "
                           "name = ?",
                           -1, &q, NULL) != SQLITE_OK)
        return fail(s, "reading a tensor", err);
    sqlite3_bind_int64(q, 1, run_id);
    sqlite3_bind_text(q, 2, name, -1, SQLITE_STATIC);
    int rc = sqlite3_step(q);
    if (rc == SQLITE_DONE) {
        st = mech_err_set(err, MECH_ERR_RANGE, "%s: run %lld has no tensor '%s'", s->path,
                          (long long)run_id, name);
        goto done;
    }
    if (rc != SQLITE_ROW) {
        st = fail(s, "reading a tensor", err);
        goto done;
    }
    const char *dtype = (const char *)sqlite3_column_text(q, 0);
    const char *shape_s = (const char *)sqlite3_column_text(q, 1);
    const char *codec = (const char *)sqlite3_column_text(q, 2);
    int64_t nbytes = sqlite3_column_int64(q, 3);
    const void *blob = sqlite3_column_blob(q, 4);
    int blen = sqlite3_column_bytes(q, 4);
    if (!dtype || strcmp(dtype, "f32") || !codec || strcmp(codec, CODEC)) {
        st = mech_err_set(err, MECH_ERR_DB, "%s: tensor '%s': dtype '%s' codec '%s', expected 'f32' '"
                          CODEC "'", s->path, name, dtype ? dtype : "", codec ? codec : "");
        goto done;
    }
    mech_err je = {0};
    if (!shape_s || mech_json_parse(shape_s, strlen(shape_s), &j, &je) || j->type != MECH_JSON_ARRAY ||
        j->n > MECH_MAX_DIMS) {
        st = mech_err_set(err, MECH_ERR_DB, "%s: tensor '%s': bad shape '%s'", s->path, name,
                          shape_s ? shape_s : "");
        goto done;
    }
    uint64_t count = 1;
    for (size_t i = 0; i < j->n; i++) {
        const mech_json *d = &j->items[i];
        if (d->type != MECH_JSON_NUMBER || !d->is_int || d->inum < 0 ||
            (d->inum > 0 && count > (UINT64_MAX / 8) / (uint64_t)d->inum)) {
            st = mech_err_set(err, MECH_ERR_DB, "%s: tensor '%s': bad shape '%s'", s->path, name, shape_s);
            goto done;
        }
        shape[i] = d->inum;
        count *= (uint64_t)d->inum;
    }
    if ((uint64_t)nbytes != count * 4 || nbytes > (int64_t)INT_MAX || !blob) {
        st = mech_err_set(err, MECH_ERR_DB, "%s: tensor '%s': %lld bytes recorded, shape %s needs %llu",
                          s->path, name, (long long)nbytes, shape_s, (unsigned long long)(count * 4));
        goto done;
    }
    plane = mech_malloc(nbytes ? (size_t)nbytes : 1);
    x = mech_malloc(nbytes ? (size_t)nbytes : 4);
    if (!plane || !x) {
        st = mech_err_set(err, MECH_ERR_NOMEM, "%s: tensor '%s': out of memory", s->path, name);
        goto done;
    }
    uLongf got = (uLongf)nbytes;
    int zrc = uncompress(plane, &got, blob, (uLong)blen);
    if (zrc != Z_OK || got != (uLongf)nbytes) {
        st = mech_err_set(err, MECH_ERR_DB, "%s: tensor '%s': compressed data is corrupt (%s)", s->path,
                          name, zrc != Z_OK ? zError(zrc) : "short");
        goto done;
    }
    unshuffle4(plane, (size_t)count, x);
    *ndim = (int)j->n;
    *data = x;
    x = NULL;
done:
    sqlite3_finalize(q);
    mech_json_free(j);
    mech_free(plane);
    mech_free(x);
    return st;
}

void mech_store_strings_free(char **strings, size_t n) {
    for (size_t i = 0; strings && i < n; i++) mech_free(strings[i]);
    mech_free(strings);
}

mech_status mech_store_tensor_names(mech_store *s, int64_t run_id, char ***names, size_t *n,
                                    mech_err *err) {
    *names = NULL;
    *n = 0;
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(s->db, "SELECT name FROM tensors WHERE run_id = ? ORDER BY rowid", -1, &q,
                           NULL) != SQLITE_OK)
        return fail(s, "listing tensors", err);
    sqlite3_bind_int64(q, 1, run_id);
    char **v = NULL;
    size_t len = 0, cap = 0;
    int rc, oom = 0;
    mech_status st = MECH_OK;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        if (len == cap) {
            size_t nc = cap ? 2 * cap : 16;
            char **nv = mech_realloc(v, nc * sizeof *v);
            if (!nv) {
                oom = 1;
                break;
            }
            v = nv, cap = nc;
        }
        v[len] = dup_col(q, 0, &oom);
        if (oom) break;
        len++;
    }
    if (oom)
        st = mech_err_set(err, MECH_ERR_NOMEM, "%s: out of memory", s->path);
    else if (rc != SQLITE_DONE)
        st = fail(s, "listing tensors", err);
    sqlite3_finalize(q);
    if (st) {
        mech_store_strings_free(v, len);
        return st;
    }
    *names = v;
    *n = len;
    return MECH_OK;
}

// ---------------------------------------------------------------------------
// Merge and join

// The rows of one run, copied from the attached database "src" into run
// `to` of main.
static mech_status copy_run_rows(mech_store *s, int64_t from, int64_t to, const char *in_path, mech_err *err) {
    static const char *const copy[] = {
        "INSERT INTO main.prompts (run_id, item, role, text, tokens, n_tokens) SELECT ?2, item, role, "
        "text, tokens, n_tokens FROM src.prompts WHERE run_id = ?1 ORDER BY rowid",
        "INSERT INTO main.results (run_id, item, site, layer, pos, head, token, rank, metric, value) "
        "SELECT ?2, item, site, layer, pos, head, token, rank, metric, value FROM src.results WHERE "
        "run_id = ?1 ORDER BY rowid",
        "INSERT INTO main.tensors (run_id, name, dtype, shape, codec, nbytes, data) SELECT ?2, name, "
        "dtype, shape, codec, nbytes, data FROM src.tensors WHERE run_id = ?1 ORDER BY rowid",
    };
    for (size_t i = 0; i < sizeof copy / sizeof *copy; i++) {
        sqlite3_stmt *q = NULL;
        int rc = sqlite3_prepare_v2(s->db, copy[i], -1, &q, NULL);
        if (rc == SQLITE_OK) {
            sqlite3_bind_int64(q, 1, from);
            sqlite3_bind_int64(q, 2, to);
            rc = sqlite3_step(q);
        }
        sqlite3_finalize(q);
        if (rc != SQLITE_DONE) {
            note_damage(s);
            return mech_err_set(err, MECH_ERR_DB, "%s: copying run %lld of %s: %s", s->path, (long long)from,
                                in_path, sqlite3_errmsg(s->db));
        }
    }
    return MECH_OK;
}

// Inserts a runs row; NULL strings stay NULL. OUT: *id.
static mech_status insert_run(mech_store *s, const mech_run_info *r, const char *cmdline, const char *params,
                              int64_t *id, mech_err *err) {
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(s->db,
                           "INSERT INTO runs (kind, model_path, model_hash, cmdline, params, started, finished, "
                           "status) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                           -1, &q, NULL) != SQLITE_OK)
        return fail(s, "adding a run", err);
    const char *v[] = {r->kind, r->model_path, r->model_hash, cmdline, params, r->started, r->finished, r->status};
    for (int i = 0; i < 8; i++) sqlite3_bind_text(q, i + 1, v[i], -1, SQLITE_STATIC);
    int rc = sqlite3_step(q);
    sqlite3_finalize(q);
    if (rc != SQLITE_DONE) return fail(s, "adding a run", err);
    *id = sqlite3_last_insert_rowid(s->db);
    return MECH_OK;
}

static mech_status attach(mech_store *s, const char *uri, const char *in_path, mech_err *err) {
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(s->db, "ATTACH DATABASE ? AS src", -1, &q, NULL) != SQLITE_OK)
        return fail(s, "attach", err);
    sqlite3_bind_text(q, 1, uri, -1, SQLITE_STATIC);
    int rc = sqlite3_step(q);
    sqlite3_finalize(q);
    if (rc != SQLITE_DONE)
        return mech_err_set(err, MECH_ERR_DB, "%s: cannot read %s: %s", s->path, in_path, sqlite3_errmsg(s->db));
    return MECH_OK;
}

static void detach(mech_store *s) { sqlite3_exec(s->db, "DETACH DATABASE src", NULL, NULL, NULL); }

static int same_file(const char *a, const char *b) {
    struct stat sa, sb;
    return !stat(a, &sa) && !stat(b, &sb) && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

// An input, checked and listed before the output is touched.
typedef struct merge_input {
    char *uri; // how to ATTACH it read-only (mode=ro or immutable=1)
    mech_run_info *runs;
    size_t n_runs;
} merge_input;

static void inputs_free(merge_input *in, size_t n) {
    for (size_t i = 0; in && i < n; i++) {
        mech_free(in[i].uri);
        mech_store_runs_free(in[i].runs, in[i].n_runs);
    }
    mech_free(in);
}

static mech_status read_input(const char *path, merge_input *in, mech_err *err) {
    long long size;
    sqlite3 *ro = NULL;
    int64_t version;
    mech_status st;
    if ((st = check_file(path, &size, err)) || (st = open_read_conn(path, &ro, &in->uri, err))) return st;
    if ((st = inspect(ro, path, &version, err))) goto done;
    if (version != MECH_STORE_SCHEMA_VERSION) {
        st = mech_err_set(err, MECH_ERR_DB, "%s: schema version %lld; run a command that writes to it once to "
                          "upgrade it to %d before merging", path, (long long)version, MECH_STORE_SCHEMA_VERSION);
        goto done;
    }
    mech_store tmp = {.db = ro, .path = (char *)path, .read_only = 1};
    st = mech_store_runs(&tmp, &in->runs, &in->n_runs, err);
done:
    sqlite3_close_v2(ro);
    return st;
}

// JSON text of j with ", " and ": " between members, as mech writes run
// parameters; the member skip (if any) of the top-level object is left out.
static void json_write(mech_buf *b, const mech_json *j, const char *skip) {
    switch (j->type) {
    case MECH_JSON_NULL: mech_buf_puts(b, "null"); break;
    case MECH_JSON_BOOL: mech_buf_puts(b, j->boolean ? "true" : "false"); break;
    case MECH_JSON_NUMBER:
        if (j->is_int) mech_buf_printf(b, "%lld", (long long)j->inum);
        else mech_buf_printf(b, "%.17g", j->num);
        break;
    case MECH_JSON_STRING: mech_buf_json_string(b, j->str, j->len); break;
    case MECH_JSON_ARRAY:
        mech_buf_puts(b, "[");
        for (size_t i = 0; i < j->n; i++) {
            if (i) mech_buf_puts(b, ", ");
            json_write(b, &j->items[i], NULL);
        }
        mech_buf_puts(b, "]");
        break;
    case MECH_JSON_OBJECT: {
        mech_buf_puts(b, "{");
        int first = 1;
        for (size_t i = 0; i < j->n; i++) {
            if (skip && !strcmp(j->keys[i], skip)) continue;
            if (!first) mech_buf_puts(b, ", ");
            first = 0;
            mech_buf_json_string(b, j->keys[i], j->key_lens[i]);
            mech_buf_puts(b, ": ");
            json_write(b, &j->items[i], NULL);
        }
        mech_buf_puts(b, "}");
        break;
    }
    }
}

// A shard of a sweep: its parameters without "shard" (owned, mech_free)
// and its K of N.
typedef struct shard {
    size_t input;
    const mech_run_info *run;
    char *params;
    long k, n;
} shard;

static int str_eq(const char *a, const char *b) { return a == b || (a && b && !strcmp(a, b)); }

static mech_status shard_of(const char *in_path, const mech_run_info *r, shard *sh, mech_err *err) {
    mech_json *j = NULL;
    const mech_json *v;
    char *end1, *end2;
    if (!r->params_json || mech_json_parse(r->params_json, strlen(r->params_json), &j, NULL) ||
        j->type != MECH_JSON_OBJECT || !(v = mech_json_get(j, "shard")) || v->type != MECH_JSON_STRING) {
        mech_json_free(j);
        return mech_err_set(err, MECH_ERR_DB, "%s: run %lld (%s) is not a shard: its parameters have no "
                            "\"shard\": \"K/N\"", in_path, (long long)r->id, r->kind);
    }
    sh->k = strtol(v->str, &end1, 10);
    sh->n = *end1 == '/' ? strtol(end1 + 1, &end2, 10) : 0;
    if (*end1 != '/' || *end2 || sh->n < 1 || sh->k < 1 || sh->k > sh->n) {
        mech_status st = mech_err_set(err, MECH_ERR_DB, "%s: run %lld: shard '%s', expected K/N", in_path,
                                      (long long)r->id, v->str);
        mech_json_free(j);
        return st;
    }
    mech_buf b = {0};
    json_write(&b, j, "shard");
    mech_json_free(j);
    if (b.oom) {
        mech_buf_free(&b);
        return mech_err_set(err, MECH_ERR_NOMEM, "%s: out of memory", in_path);
    }
    sh->params = b.data;
    sh->run = r;
    return MECH_OK;
}

static int shard_cmp(const void *a, const void *b) {
    const shard *x = a, *y = b;
    return (x->k > y->k) - (x->k < y->k);
}

// Checks that the inputs' runs are exactly the N shards of one sweep (same
// kind, model hash and parameters but the shard, each K once, all done).
// OUT: *out (owned, mech_free, each params too), sorted by K.
static mech_status check_shards(const char *const *paths, const merge_input *in, size_t n, shard **out,
                                size_t *n_out, mech_err *err) {
    size_t total = 0;
    for (size_t i = 0; i < n; i++) total += in[i].n_runs;
    *out = NULL;
    *n_out = 0;
    if (!total) return mech_err_set(err, MECH_ERR_DB, "%s: no runs to join", paths[0]);
    shard *v = mech_calloc(total, sizeof *v);
    if (!v) return mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
    size_t m = 0;
    mech_status st = MECH_OK;
    for (size_t i = 0; i < n && !st; i++)
        for (size_t r = 0; r < in[i].n_runs && !st; r++) {
            v[m].input = i;
            if (!(st = shard_of(paths[i], &in[i].runs[r], &v[m], err))) m++;
        }
    for (size_t i = 1; i < m && !st; i++) {
        const shard *a = &v[0], *b = &v[i];
        const char *pa = paths[a->input], *pb = paths[b->input];
        long long ia = (long long)a->run->id, ib = (long long)b->run->id;
        if (strcmp(a->run->kind, b->run->kind))
            st = mech_err_set(err, MECH_ERR_DB, "not shards of one sweep: %s run %lld is a %s run, %s run %lld a %s run",
                              pa, ia, a->run->kind, pb, ib, b->run->kind);
        else if (!str_eq(a->run->model_hash, b->run->model_hash))
            st = mech_err_set(err, MECH_ERR_DB, "not shards of one sweep: %s run %lld and %s run %lld ran different "
                              "models (hash %.12s, %.12s)", pa, ia, pb, ib,
                              a->run->model_hash ? a->run->model_hash : "unknown",
                              b->run->model_hash ? b->run->model_hash : "unknown");
        else if (strcmp(a->params, b->params))
            st = mech_err_set(err, MECH_ERR_DB, "not shards of one sweep: %s run %lld and %s run %lld differ in more "
                              "than the shard: %s vs %s", pa, ia, pb, ib, a->params, b->params);
        else if (a->n != b->n)
            st = mech_err_set(err, MECH_ERR_DB, "not shards of one sweep: %s run %lld is a shard of %ld, %s run %lld "
                              "of %ld", pa, ia, a->n, pb, ib, b->n);
    }
    if (!st) {
        qsort(v, m, sizeof *v, shard_cmp);
        for (size_t i = 0; i < m && !st; i++) {
            const shard *a = &v[i];
            if (i > 0 && a->k == v[i - 1].k)
                st = mech_err_set(err, MECH_ERR_DB, "shard %ld/%ld twice: %s run %lld and %s run %lld", a->k, a->n,
                                  paths[v[i - 1].input], (long long)v[i - 1].run->id, paths[a->input],
                                  (long long)a->run->id);
            else if (strcmp(a->run->status, "done"))
                st = mech_err_set(err, MECH_ERR_DB, "%s run %lld (shard %ld/%ld) is %s, not done: finish it "
                                  "(--resume) before joining", paths[a->input], (long long)a->run->id, a->k, a->n,
                                  a->run->status);
        }
        if (!st && (long)m != v[0].n) {
            mech_buf b = {0};
            long want = 1;
            for (size_t i = 0; i <= m && b.len < 200; i++) {
                long have = i < m ? v[i].k : v[0].n + 1;
                for (; want < have && b.len < 200; want++) mech_buf_printf(&b, "%s%ld", b.len ? ", " : "", want);
                want = have + 1;
            }
            st = mech_err_set(err, MECH_ERR_DB, "%zu of %ld shards: missing shard %s of %ld", m, v[0].n,
                              b.data ? b.data : "?", v[0].n);
            mech_buf_free(&b);
        }
    }
    if (st) {
        for (size_t i = 0; i < m; i++) mech_free(v[i].params);
        mech_free(v);
        return st;
    }
    *out = v;
    *n_out = m;
    return MECH_OK;
}

// The joined run: one row whose results, prompts and tensors are the
// shards', in shard order.
static mech_status join_shards(mech_store *s, const char *const *paths, const merge_input *in, const shard *sh,
                               size_t m, mech_merge_run *map, mech_err *err) {
    mech_run_info row = *sh[0].run;
    mech_buf cmd = {0};
    for (size_t i = 0; i < m; i++) {
        const mech_run_info *r = sh[i].run;
        if (r->started && (!row.started || strcmp(r->started, row.started) < 0)) row.started = r->started;
        if (r->finished && (!row.finished || strcmp(r->finished, row.finished) > 0)) row.finished = r->finished;
        mech_buf_printf(&cmd, "%s%s", i ? "\n" : "", r->cmdline ? r->cmdline : "");
    }
    if (cmd.oom) {
        mech_buf_free(&cmd);
        return mech_err_set(err, MECH_ERR_NOMEM, "%s: out of memory", s->path);
    }
    int64_t id = 0;
    mech_status st;
    if ((st = mech_store_begin(s, err))) goto done;
    st = insert_run(s, &row, cmd.data, sh[0].params, &id, err);
    if (!st) st = mech_store_commit(s, err);
    else mech_store_rollback(s, NULL);
    if (st) goto done;
    // Each shard in its own transaction (ATTACH cannot run inside one); a
    // failure deletes the joined run, whose rows cascade.
    for (size_t i = 0; i < m && !st; i++) {
        const char *p = paths[sh[i].input];
        if ((st = attach(s, in[sh[i].input].uri, p, err))) break;
        if (!(st = mech_store_begin(s, err))) {
            if ((st = copy_run_rows(s, sh[i].run->id, id, p, err))) mech_store_rollback(s, NULL);
            else st = mech_store_commit(s, err);
        }
        detach(s);
        map[i] = (mech_merge_run){.input = sh[i].input, .from = sh[i].run->id, .to = id};
    }
    if (st && !s->damaged) {
        sqlite3_stmt *q;
        if (sqlite3_prepare_v2(s->db, "DELETE FROM runs WHERE id = ?", -1, &q, NULL) == SQLITE_OK) {
            sqlite3_bind_int64(q, 1, id);
            sqlite3_step(q);
        }
        sqlite3_finalize(q);
    }
done:
    mech_buf_free(&cmd);
    return st;
}

// Keeps only the runs listed in opts (when it lists any); each listed id
// must be in some input.
static mech_status select_runs(const char *const *paths, merge_input *in, size_t n, const mech_merge_opts *o,
                               mech_err *err) {
    if (!o || !o->n_runs) return MECH_OK;
    for (size_t k = 0; k < o->n_runs; k++) {
        int found = 0;
        for (size_t i = 0; i < n && !found; i++)
            for (size_t r = 0; r < in[i].n_runs && !found; r++) found = in[i].runs[r].id == o->runs[k];
        if (!found)
            return mech_err_set(err, MECH_ERR_RANGE, "no run %lld in %s%s", (long long)o->runs[k], paths[0],
                                n > 1 ? " or the other inputs" : "");
    }
    for (size_t i = 0; i < n; i++) {
        size_t m = 0;
        for (size_t r = 0; r < in[i].n_runs; r++) {
            int keep = 0;
            for (size_t k = 0; k < o->n_runs && !keep; k++) keep = in[i].runs[r].id == o->runs[k];
            if (keep) {
                mech_run_info t = in[i].runs[m];
                in[i].runs[m++] = in[i].runs[r];
                in[i].runs[r] = t;
            }
        }
        for (size_t r = m; r < in[i].n_runs; r++) mech_store_run_info_deinit(&in[i].runs[r]);
        in[i].n_runs = m;
    }
    return MECH_OK;
}

mech_status mech_store_merge(const char *out_path, const char *const *in_paths, size_t n,
                             const mech_merge_opts *opts, mech_merge_run **map, size_t *n_map, mech_err *err) {
    if (map) *map = NULL;
    if (n_map) *n_map = 0;
    int join = opts && opts->join;
    mech_status st = check_path(out_path, err);
    if (st) return st;
    if (!n) return mech_err_set(err, MECH_ERR_ARG, "%s: no databases to merge into it", out_path);
    for (size_t i = 0; i < n; i++) {
        if ((st = check_path(in_paths[i], err))) return st;
        if (same_file(in_paths[i], out_path))
            return mech_err_set(err, MECH_ERR_ARG, "%s: cannot merge a database into itself", in_paths[i]);
    }
    // Every input is checked and listed before the output is created or
    // written: a mistyped input leaves no trace.
    merge_input *in = mech_calloc(n, sizeof *in);
    if (!in) return mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
    mech_store *s = NULL;
    shard *sh = NULL;
    size_t m = 0, total = 0;
    mech_merge_run *v = NULL;
    for (size_t i = 0; i < n && !st; i++) st = read_input(in_paths[i], &in[i], err);
    if (!st) st = select_runs(in_paths, in, n, opts, err);
    for (size_t i = 0; i < n; i++) total += in[i].n_runs;
    if (!st && join) st = check_shards(in_paths, in, n, &sh, &m, err);
    if (st) goto done;
    if (!(v = mech_calloc(total ? total : 1, sizeof *v))) {
        st = mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
        goto done;
    }
    if ((st = mech_store_open(out_path, &s, err))) goto done;
    if (join) {
        st = join_shards(s, in_paths, in, sh, m, v, err);
    } else {
        // One transaction per input: a failure keeps the inputs merged before.
        size_t k = 0;
        for (size_t i = 0; i < n && !st; i++) {
            if (!in[i].n_runs) continue;
            if ((st = attach(s, in[i].uri, in_paths[i], err))) break;
            if (!(st = mech_store_begin(s, err))) {
                size_t k0 = k;
                for (size_t r = 0; r < in[i].n_runs && !st; r++, k++) {
                    const mech_run_info *ri = &in[i].runs[r];
                    v[k] = (mech_merge_run){.input = i, .from = ri->id};
                    if (!(st = insert_run(s, ri, ri->cmdline, ri->params_json, &v[k].to, err)))
                        st = copy_run_rows(s, ri->id, v[k].to, in_paths[i], err);
                }
                if (st) {
                    mech_store_rollback(s, NULL);
                    k = k0;
                } else {
                    st = mech_store_commit(s, err);
                }
            }
            detach(s);
        }
        total = k;
    }
    if (!st && map) {
        *map = v;
        v = NULL;
        if (n_map) *n_map = join ? m : total;
    }
done:
    mech_store_close(s);
    for (size_t i = 0; i < m; i++) mech_free(sh[i].params);
    mech_free(sh);
    mech_free(v);
    inputs_free(in, n);
    return st;
}

// ---------------------------------------------------------------------------
// Export

static void csv_field(FILE *f, const char *t) {
    if (!t) return;
    if (!strpbrk(t, ",\"\r\n")) {
        fputs(t, f);
        return;
    }
    fputc('"', f);
    for (; *t; t++) {
        if (*t == '"') fputc('"', f);
        fputc(*t, f);
    }
    fputc('"', f);
}

mech_status mech_store_export_csv(mech_store *s, int64_t run_id, const char *path, mech_err *err) {
    mech_status st;
    if (!run_exists(s, run_id, err, &st)) return st;
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT run_id, item, site, layer, pos, head, token, rank, metric, value "
                           "FROM results WHERE run_id = ? ORDER BY item, rowid",
                           -1, &q, NULL) != SQLITE_OK)
        return fail(s, "exporting results", err);
    sqlite3_bind_int64(q, 1, run_id);
    // "-" is standard output, written directly.
    mech_outfile o = {0};
    if (path && !strcmp(path, "-")) {
        o.f = stdout;
    } else if ((st = mech_outfile_open(&o, path, err))) {
        sqlite3_finalize(q);
        return st;
    }
    fputs("run_id,item,site,layer,pos,head,token,rank,metric,value\n", o.f);
    int rc;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        fprintf(o.f, "%lld,%d,", (long long)sqlite3_column_int64(q, 0), sqlite3_column_int(q, 1));
        csv_field(o.f, (const char *)sqlite3_column_text(q, 2));
        fprintf(o.f, ",%d,%d,%d,%lld,%d,", sqlite3_column_int(q, 3), sqlite3_column_int(q, 4),
                sqlite3_column_int(q, 5), (long long)sqlite3_column_int64(q, 6),
                sqlite3_column_int(q, 7));
        csv_field(o.f, (const char *)sqlite3_column_text(q, 8));
        if (sqlite3_column_type(q, 9) != SQLITE_NULL) fprintf(o.f, ",%.17g\n", sqlite3_column_double(q, 9));
        else fputs(",\n", o.f);
    }
    st = rc != SQLITE_DONE ? fail(s, "exporting results", err) : MECH_OK;
    sqlite3_finalize(q);
    if (o.f == stdout) {
        if (!st && (fflush(stdout) || ferror(stdout)))
            st = mech_err_set(err, MECH_ERR_IO, "standard output: write failed: %s", strerror(errno));
        return st;
    }
    if (st) {
        mech_outfile_abort(&o);
        return st;
    }
    return mech_outfile_commit(&o, err);
}

mech_status mech_store_export_npz(mech_store *s, int64_t run_id, const char *path, mech_err *err) {
    mech_status st;
    if (!run_exists(s, run_id, err, &st)) return st;
    char **names = NULL;
    size_t n = 0;
    mech_npz *z = NULL;
    if ((st = mech_store_tensor_names(s, run_id, &names, &n, err))) return st;
    if ((st = mech_npz_create(path, &z, err))) goto done;
    for (size_t i = 0; i < n; i++) {
        float *x;
        int nd;
        int64_t sh[MECH_MAX_DIMS];
        if ((st = mech_store_tensor_get(s, run_id, names[i], &x, &nd, sh, err))) goto done;
        st = mech_npz_add(z, names[i], x, nd, sh, err);
        mech_free(x);
        if (st) goto done;
    }
    st = mech_npz_close(z, err);
    z = NULL;
done:
    mech_npz_abort(z);
    mech_store_strings_free(names, n);
    return st;
}

// ---------------------------------------------------------------------------
// Reading results back (--resume and export of runs that store their state
// as results, e.g. ACDC's trials)

void mech_store_results_free(mech_result_row *rows, size_t n) {
    if (!rows) return;
    for (size_t i = 0; i < n; i++) mech_free(rows[i].site), mech_free(rows[i].metric);
    mech_free(rows);
}

// The rows of run_id (with metric when not NULL) in the order `order`, at
// most limit (< 0: all).
static mech_status results_query(mech_store *s, int64_t run_id, const char *metric, const char *order, int limit,
                                 mech_result_row **rows, size_t *n, mech_err *err) {
    *rows = NULL;
    *n = 0;
    mech_status st;
    if (!run_exists(s, run_id, err, &st)) return st;
    sqlite3_stmt *q;
    char *sql = sqlite3_mprintf("SELECT item, site, layer, pos, head, token, rank, metric, value FROM results "
                                "WHERE run_id = ?1 %s ORDER BY %s LIMIT ?3",
                                metric ? "AND metric = ?2" : "", order);
    if (!sql) return mech_err_set(err, MECH_ERR_NOMEM, "%s: out of memory reading results", s->path);
    int prc = sqlite3_prepare_v2(s->db, sql, -1, &q, NULL);
    sqlite3_free(sql);
    if (prc != SQLITE_OK) return fail(s, "reading results", err);
    sqlite3_bind_int64(q, 1, run_id);
    if (metric) sqlite3_bind_text(q, 2, metric, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(q, 3, limit);
    mech_result_row *v = NULL;
    size_t len = 0, cap = 0;
    int rc, oom = 0;
    st = MECH_OK;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        if (len == cap) {
            size_t nc = cap ? 2 * cap : 256;
            mech_result_row *nv = mech_realloc(v, nc * sizeof *v);
            if (!nv) {
                oom = 1;
                break;
            }
            v = nv, cap = nc;
        }
        mech_result_row *r = &v[len++];
        r->item = sqlite3_column_int(q, 0);
        r->site = dup_col(q, 1, &oom);
        r->layer = sqlite3_column_int(q, 2);
        r->pos = sqlite3_column_int(q, 3);
        r->head = sqlite3_column_int(q, 4);
        r->token = sqlite3_column_int64(q, 5);
        r->rank = sqlite3_column_int(q, 6);
        r->metric = dup_col(q, 7, &oom);
        r->value = sqlite3_column_type(q, 8) == SQLITE_NULL ? NAN : sqlite3_column_double(q, 8);
        if (oom) break;
    }
    if (oom) st = mech_err_set(err, MECH_ERR_NOMEM, "%s: out of memory reading results", s->path);
    else if (rc != SQLITE_DONE) st = fail(s, "reading results", err);
    sqlite3_finalize(q);
    if (st) {
        mech_store_results_free(v, len);
        return st;
    }
    *rows = v;
    *n = len;
    return MECH_OK;
}

mech_status mech_store_results_get(mech_store *s, int64_t run_id, const char *metric, mech_result_row **rows,
                                   size_t *n, mech_err *err) {
    return results_query(s, run_id, metric, "rowid", -1, rows, n, err);
}

mech_status mech_store_results_top(mech_store *s, int64_t run_id, const char *metric, int by_abs, int limit,
                                   mech_result_row **rows, size_t *n, mech_err *err) {
    // NULL values (an undefined effect) sort last in both orders
    return results_query(s, run_id, metric,
                         by_abs ? "value IS NULL, abs(value) DESC, rowid" : "value IS NULL, value DESC, rowid", limit,
                         rows, n, err);
}

// ---------------------------------------------------------------------------
// Reading prompts back (the interface's token labels)

void mech_store_prompts_free(mech_prompt_row *rows, size_t n) {
    if (!rows) return;
    for (size_t i = 0; i < n; i++) mech_free(rows[i].role), mech_free(rows[i].text), mech_free(rows[i].tokens);
    mech_free(rows);
}

// The JSON array text mech_store_prompt wrote ("[464,36,733]") back into ids.
// 0 when it is not such an array (a row written by another program).
static int parse_ids(const char *s, int32_t *ids, int cap) {
    int n = 0;
    while (*s == ' ') s++;
    if (*s++ != '[') return -1;
    for (;;) {
        while (*s == ' ' || *s == ',') s++;
        if (*s == ']') return n;
        char *e;
        long v = strtol(s, &e, 10);
        if (e == s || n >= cap || v < INT32_MIN || v > INT32_MAX) return -1;
        ids[n++] = (int32_t)v, s = e;
    }
}

mech_status mech_store_prompts_get(mech_store *s, int64_t run_id, mech_prompt_row **rows, size_t *n, mech_err *err) {
    *rows = NULL;
    *n = 0;
    mech_status st;
    if (!run_exists(s, run_id, err, &st)) return st;
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT item, role, text, tokens, n_tokens FROM prompts WHERE run_id = ? ORDER BY item, role",
                           -1, &q, NULL) != SQLITE_OK)
        return fail(s, "reading prompts", err);
    sqlite3_bind_int64(q, 1, run_id);
    mech_prompt_row *v = NULL;
    size_t len = 0, cap = 0;
    int rc, oom = 0, bad = 0;
    st = MECH_OK;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        if (len == cap) {
            size_t nc = cap ? 2 * cap : 16;
            mech_prompt_row *nv = mech_realloc(v, nc * sizeof *v);
            if (!nv) {
                oom = 1;
                break;
            }
            v = nv, cap = nc;
        }
        mech_prompt_row *r = &v[len++];
        memset(r, 0, sizeof *r);
        r->item = sqlite3_column_int(q, 0);
        r->role = dup_col(q, 1, &oom);
        r->text = dup_col(q, 2, &oom);
        int nt = sqlite3_column_int(q, 4);
        const char *tj = (const char *)sqlite3_column_text(q, 3);
        if (nt < 0 || !tj) nt = 0;
        if (!(r->tokens = mech_malloc(((size_t)nt + 1) * sizeof *r->tokens))) oom = 1;
        if (oom) break;
        if ((r->n_tokens = tj ? parse_ids(tj, r->tokens, nt) : 0) != nt) {
            bad = 1;
            break;
        }
    }
    if (oom) st = mech_err_set(err, MECH_ERR_NOMEM, "%s: out of memory reading prompts", s->path);
    else if (bad)
        st = mech_err_set(err, MECH_ERR_DB, "%s: run %lld: prompt of item %d: tokens is not a JSON array of n_tokens ids",
                          s->path, (long long)run_id, v[len - 1].item);
    else if (rc != SQLITE_DONE) st = fail(s, "reading prompts", err);
    sqlite3_finalize(q);
    if (st) {
        mech_store_prompts_free(v, len);
        return st;
    }
    *rows = v;
    *n = len;
    return MECH_OK;
}
