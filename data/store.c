/*
** data/store.c: the results store, one SQLite file of runs, prompts, scalar
** results and compressed tensors (schema: docs/schema.md).
**
** Invariants:
** - A database is mech's when PRAGMA application_id is 'mech' (0x6D656368);
**   its schema version is PRAGMA user_version. An existing file is inspected
**   through a read-only connection before the read-write one is opened, so a
**   refused file (not SQLite, corrupt, foreign, newer schema) is never
**   written, not even by the switch to WAL.
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
#include <limits.h>
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

struct mech_store {
    sqlite3 *db;
    char *path;
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

static mech_status db_fail(sqlite3 *db, const char *path, const char *what, mech_err *err) {
    return mech_err_set(err, MECH_ERR_DB, "%s: %s: %s", path, what,
                        db ? sqlite3_errmsg(db) : "cannot open");
}

static mech_status fail(mech_store *s, const char *what, mech_err *err) {
    return db_fail(s->db, s->path, what, err);
}

static mech_status exec(sqlite3 *db, const char *path, const char *sql, mech_err *err) {
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) == SQLITE_OK) return MECH_OK;
    mech_status st = mech_err_set(err, MECH_ERR_DB, "%s: %s: %s", path, sql,
                                  msg ? msg : sqlite3_errmsg(db));
    sqlite3_free(msg);
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
// Open: inspect read-only, then open read-write and migrate

typedef struct inspection {
    int fresh; // missing, empty file, or SQLite with no tables and no marker
    int64_t version;
} inspection;

// Classifies path without writing to it (SQLITE_OPEN_READONLY).
static mech_status inspect(const char *path, inspection *in, mech_err *err) {
    struct stat sb;
    in->fresh = 0;
    in->version = 0;
    if (stat(path, &sb)) {
        if (errno == ENOENT) return in->fresh = 1, MECH_OK;
        return mech_err_set(err, MECH_ERR_DB, "%s: %s", path, strerror(errno));
    }
    if (!S_ISREG(sb.st_mode)) return mech_err_set(err, MECH_ERR_DB, "%s: not a regular file", path);
    if (sb.st_size == 0) return in->fresh = 1, MECH_OK;
    sqlite3 *db = NULL;
    int64_t app = 0, ver = 0, ntab = 0;
    mech_status st = MECH_OK;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        st = db_fail(db, path, "cannot open", err);
        goto done;
    }
    sqlite3_busy_timeout(db, 5000);
    // sqlite_master is read first: it is what fails on a file that is not a
    // database or whose schema pages are damaged.
    if (query_int(db, "SELECT count(*) FROM sqlite_master", &ntab) ||
        query_int(db, "PRAGMA application_id", &app) || query_int(db, "PRAGMA user_version", &ver)) {
        st = mech_err_set(err, MECH_ERR_DB, "%s: not a readable SQLite database: %s", path,
                          sqlite3_errmsg(db));
        goto done;
    }
    if (app == MECH_STORE_APPLICATION_ID) {
        if (ver > MECH_STORE_SCHEMA_VERSION) {
            st = mech_err_set(err, MECH_ERR_DB,
                              "%s: results database schema version %lld is newer than this mech "
                              "supports (%d); use a newer mech (the file was not modified)",
                              path, (long long)ver, MECH_STORE_SCHEMA_VERSION);
            goto done;
        }
        in->version = ver;
    } else if (app == 0 && ntab == 0 && ver == 0) {
        in->fresh = 1;
    } else {
        st = mech_err_set(err, MECH_ERR_DB,
                          "%s: not a mech results database (application_id 0x%08llx, expected "
                          "0x%08x; %lld schema objects); the file was not modified",
                          path, (unsigned long long)(uint32_t)app, MECH_STORE_APPLICATION_ID,
                          (long long)ntab);
    }
done:
    sqlite3_close_v2(db);
    return st;
}

// Brings the schema to MECH_STORE_SCHEMA_VERSION inside one transaction.
// Re-reads the marker under the write lock: another process may have
// initialised the file since inspect().
static mech_status migrate(sqlite3 *db, const char *path, mech_err *err) {
    mech_status st;
    int64_t app = 0, ver = 0, ntab = 0;
    if ((st = exec(db, path, "BEGIN IMMEDIATE", err))) return st;
    if (query_int(db, "PRAGMA application_id", &app) || query_int(db, "PRAGMA user_version", &ver) ||
        query_int(db, "SELECT count(*) FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'", &ntab)) {
        st = db_fail(db, path, "reading the schema version", err);
        goto fail;
    }
    if (app != MECH_STORE_APPLICATION_ID && (app != 0 || ntab != 0 || ver != 0)) {
        st = mech_err_set(err, MECH_ERR_DB, "%s: not a mech results database", path);
        goto fail;
    }
    if (app != MECH_STORE_APPLICATION_ID) ver = 0;
    if (ver > MECH_STORE_SCHEMA_VERSION) {
        st = mech_err_set(err, MECH_ERR_DB, "%s: results database schema version %lld is newer than "
                          "this mech supports (%d)", path, (long long)ver, MECH_STORE_SCHEMA_VERSION);
        goto fail;
    }
    for (int64_t v = ver; v < MECH_STORE_SCHEMA_VERSION; v++)
        if ((st = exec(db, path, migrations[v], err))) goto fail;
    if (ver < MECH_STORE_SCHEMA_VERSION) {
        char sql[128];
        snprintf(sql, sizeof sql, "PRAGMA application_id = %d; PRAGMA user_version = %d",
                 MECH_STORE_APPLICATION_ID, MECH_STORE_SCHEMA_VERSION);
        if ((st = exec(db, path, sql, err))) goto fail;
    }
    return exec(db, path, "COMMIT", err);
fail:
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return st;
}

mech_status mech_store_open(const char *path, mech_store **out, mech_err *err) {
    if (out) *out = NULL;
    if (!path || !*path || !out) return mech_err_set(err, MECH_ERR_ARG, "mech_store_open: no path");
    inspection in;
    mech_status st = inspect(path, &in, err);
    if (st) return st;
    mech_store *s = mech_calloc(1, sizeof *s);
    if (!s || !(s->path = mech_strdup(path))) {
        mech_free(s);
        return mech_err_set(err, MECH_ERR_NOMEM, "%s: out of memory", path);
    }
    if (sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK) {
        st = fail(s, "cannot open for writing", err);
        goto fail;
    }
    sqlite3_extended_result_codes(s->db, 1);
    sqlite3_busy_timeout(s->db, 10000); // shards may share one file
    char *mode = NULL;
    sqlite3_stmt *q = NULL;
    if (sqlite3_prepare_v2(s->db, "PRAGMA journal_mode = WAL", -1, &q, NULL) != SQLITE_OK ||
        sqlite3_step(q) != SQLITE_ROW) {
        sqlite3_finalize(q);
        st = fail(s, "switching to WAL mode", err);
        goto fail;
    }
    mode = (char *)sqlite3_column_text(q, 0);
    if (!mode || strcmp(mode, "wal")) {
        st = mech_err_set(err, MECH_ERR_DB, "%s: journal mode is '%s', expected 'wal'", path,
                          mode ? mode : "?");
        sqlite3_finalize(q);
        goto fail;
    }
    sqlite3_finalize(q);
    if ((st = exec(s->db, path, "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON", err)) ||
        (st = migrate(s->db, path, err)))
        goto fail;
    *out = s;
    return MECH_OK;
fail:
    mech_store_close(s);
    return st;
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
    return exec(s->db, s->path, "BEGIN IMMEDIATE", err);
}

mech_status mech_store_commit(mech_store *s, mech_err *err) { return exec(s->db, s->path, "COMMIT", err); }

mech_status mech_store_rollback(mech_store *s, mech_err *err) {
    return exec(s->db, s->path, "ROLLBACK", err);
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

mech_status mech_store_result(mech_store *s, int64_t run_id, const mech_result *r, mech_err *err) {
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
// Merge

// Copies every run of the attached database "src" into main, renumbered.
static mech_status merge_runs(mech_store *s, const char *in_path, mech_err *err) {
    static const char *const copy[] = {
        "INSERT INTO main.prompts (run_id, item, role, text, tokens, n_tokens) SELECT ?2, item, role, "
        "text, tokens, n_tokens FROM src.prompts WHERE run_id = ?1 ORDER BY rowid",
        "INSERT INTO main.results (run_id, item, site, layer, pos, head, token, rank, metric, value) "
        "SELECT ?2, item, site, layer, pos, head, token, rank, metric, value FROM src.results WHERE "
        "run_id = ?1 ORDER BY rowid",
        "INSERT INTO main.tensors (run_id, name, dtype, shape, codec, nbytes, data) SELECT ?2, name, "
        "dtype, shape, codec, nbytes, data FROM src.tensors WHERE run_id = ?1 ORDER BY rowid",
    };
    sqlite3_stmt *ids = NULL, *run = NULL, *q = NULL;
    mech_status st = MECH_OK;
    if (sqlite3_prepare_v2(s->db, "SELECT id FROM src.runs ORDER BY id", -1, &ids, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(s->db,
                           "INSERT INTO main.runs (kind, model_path, model_hash, cmdline, params, "
                           "started, finished, status) SELECT kind, model_path, model_hash, cmdline, "
                           "params, started, finished, status FROM src.runs WHERE id = ?",
                           -1, &run, NULL) != SQLITE_OK)
        goto dberr;
    int rc;
    while ((rc = sqlite3_step(ids)) == SQLITE_ROW) {
        int64_t old = sqlite3_column_int64(ids, 0);
        sqlite3_bind_int64(run, 1, old);
        if (sqlite3_step(run) != SQLITE_DONE) goto dberr;
        sqlite3_reset(run);
        int64_t id = sqlite3_last_insert_rowid(s->db);
        for (size_t i = 0; i < sizeof copy / sizeof *copy; i++) {
            if (sqlite3_prepare_v2(s->db, copy[i], -1, &q, NULL) != SQLITE_OK) goto dberr;
            sqlite3_bind_int64(q, 1, old);
            sqlite3_bind_int64(q, 2, id);
            if (sqlite3_step(q) != SQLITE_DONE) goto dberr;
            sqlite3_finalize(q);
            q = NULL;
        }
    }
    if (rc != SQLITE_DONE) goto dberr;
    goto done;
dberr:
    st = mech_err_set(err, MECH_ERR_DB, "%s: merging %s: %s", s->path, in_path, sqlite3_errmsg(s->db));
done:
    sqlite3_finalize(ids);
    sqlite3_finalize(run);
    sqlite3_finalize(q);
    return st;
}

static int same_file(const char *a, const char *b) {
    struct stat sa, sb;
    return !stat(a, &sa) && !stat(b, &sb) && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

mech_status mech_store_merge(const char *out_path, const char *const *in_paths, size_t n,
                             mech_err *err) {
    for (size_t i = 0; i < n; i++)
        if (!in_paths[i] || same_file(in_paths[i], out_path))
            return mech_err_set(err, MECH_ERR_ARG, "%s: cannot merge a database into itself",
                                in_paths[i] ? in_paths[i] : "(null)");
    mech_store *s;
    mech_status st = mech_store_open(out_path, &s, err);
    if (st) return st;
    for (size_t i = 0; i < n && !st; i++) {
        const char *in = in_paths[i];
        inspection insp;
        if ((st = inspect(in, &insp, err))) break;
        struct stat sb;
        if (stat(in, &sb)) {
            st = mech_err_set(err, MECH_ERR_DB, "%s: %s", in, strerror(errno));
            break;
        }
        if (insp.fresh) continue; // an empty file holds no runs
        if (insp.version != MECH_STORE_SCHEMA_VERSION) {
            st = mech_err_set(err, MECH_ERR_DB, "%s: schema version %lld; open it with this mech once "
                              "to upgrade it to %d before merging", in, (long long)insp.version,
                              MECH_STORE_SCHEMA_VERSION);
            break;
        }
        sqlite3_stmt *q;
        if (sqlite3_prepare_v2(s->db, "ATTACH DATABASE ? AS src", -1, &q, NULL) != SQLITE_OK) {
            st = fail(s, "attach", err);
            break;
        }
        sqlite3_bind_text(q, 1, in, -1, SQLITE_STATIC);
        int rc = sqlite3_step(q);
        sqlite3_finalize(q);
        if (rc != SQLITE_DONE) {
            st = mech_err_set(err, MECH_ERR_DB, "%s: cannot attach %s: %s", s->path, in,
                              sqlite3_errmsg(s->db));
            break;
        }
        if (!(st = mech_store_begin(s, err))) {
            if ((st = merge_runs(s, in, err)))
                sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
            else
                st = mech_store_commit(s, err);
        }
        sqlite3_exec(s->db, "DETACH DATABASE src", NULL, NULL, NULL);
    }
    mech_store_close(s);
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
    mech_outfile o;
    if ((st = mech_outfile_open(&o, path, err))) {
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
    if (rc != SQLITE_DONE) {
        st = fail(s, "exporting results", err);
        sqlite3_finalize(q);
        mech_outfile_abort(&o);
        return st;
    }
    sqlite3_finalize(q);
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

mech_status mech_store_results_get(mech_store *s, int64_t run_id, const char *metric, mech_result_row **rows,
                                   size_t *n, mech_err *err) {
    *rows = NULL;
    *n = 0;
    mech_status st;
    if (!run_exists(s, run_id, err, &st)) return st;
    sqlite3_stmt *q;
    const char *sql = metric ? "SELECT item, site, layer, pos, head, token, rank, metric, value FROM results "
                               "WHERE run_id = ? AND metric = ? ORDER BY rowid"
                             : "SELECT item, site, layer, pos, head, token, rank, metric, value FROM results "
                               "WHERE run_id = ? ORDER BY rowid";
    if (sqlite3_prepare_v2(s->db, sql, -1, &q, NULL) != SQLITE_OK) return fail(s, "reading results", err);
    sqlite3_bind_int64(q, 1, run_id);
    if (metric) sqlite3_bind_text(q, 2, metric, -1, SQLITE_TRANSIENT);
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
