/*
** data/data.h: mech's data module: getting arrays in and out of the library
** in formats other tools read.
**
** Worked example: save two activations for NumPy, then read one back.
**
**   mech_err err = {0};
**   mech_npz *z;
**   int64_t shape[2] = {T, C};
**   if (mech_npz_create("acts.npz", &z, &err)) { fprintf(stderr, "%s\n", err.msg); return 1; }
**   if (mech_npz_add(z, "resid_pre.0", resid0, 2, shape, &err) ||
**       mech_npz_add(z, "resid_pre.1", resid1, 2, shape, &err)) {
**       mech_npz_abort(z); ...                   // nothing is left on disk
**   }
**   if (mech_npz_close(z, &err)) ...;           // acts.npz now exists, complete
**   // Python: np.load("acts.npz")["resid_pre.0"].shape == (T, C)
**
**   float *x; int nd; int64_t sh[MECH_MAX_DIMS];
**   if (mech_npy_read("x.npy", &x, &nd, sh, &err) == MECH_OK) { ...; mech_free(x); }
**
** All writers are atomic: they write path + ".tmp" and rename it over path
** only once everything is on disk, so a failed or abandoned write never
** leaves a half-written file under the real name.
*/
#ifndef MECH_DATA_H
#define MECH_DATA_H

#include "core/core.h"

#ifdef __cplusplus
extern "C" {
#endif

// ---------------------------------------------------------------------------
// Arrays: .npy and .npz (data/npy.c)
//
// NumPy's formats (numpy/lib/format.py): a .npy file is the magic
// "\x93NUMPY", a version, a little-endian header length, an ASCII Python
// dict literal {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
// padded with spaces and ended by '\n' so the data starts 64-byte aligned,
// then the raw data in C order. A .npz file is a ZIP archive of .npy
// members named NAME.npy (np.load(...)[NAME]). mech writes float32 only.

// Writes data (prod(shape) floats, C order) as a float32 little-endian .npy
// file, format version 1.0. ndim is 0..MECH_MAX_DIMS (0: a scalar, one
// float); shape entries must be >= 0. Written to path.tmp, then renamed.
// Errors: MECH_ERR_ARG (bad ndim/shape, NULL data with elements),
// MECH_ERR_IO (create, write or rename failed; path is left untouched).
mech_status mech_npy_write(const char *path, const float *data, int ndim, const int64_t *shape,
                           mech_err *err);

// Reads a float32 .npy file: descr '<f4' (float32, little-endian) only,
// fortran_order False, format versions 1.0, 2.0 and 3.0.
// OUT: *data (owned by the caller, mech_free; non-NULL even for zero
// elements), *ndim, shape[0..*ndim). Errors name the file and what is wrong:
// MECH_ERR_IO (cannot open/read), MECH_ERR_FORMAT (bad magic, unsupported
// version, malformed header, another dtype such as '<f8', Fortran order,
// more than MECH_MAX_DIMS dims, truncated or oversized data),
// MECH_ERR_NOMEM.
mech_status mech_npy_read(const char *path, float **data, int *ndim, int64_t shape[MECH_MAX_DIMS],
                          mech_err *err);

// A .npz archive being written. Members are stored uncompressed (as
// np.savez does), with CRC-32s, and ZIP64 records once a member or the
// archive reaches 4 GiB (np.load and Python's zipfile read both).
typedef struct mech_npz mech_npz;

// Starts writing path (through path.tmp). OUT: *out (owned; finish with
// mech_npz_close or mech_npz_abort). Errors: MECH_ERR_IO, MECH_ERR_NOMEM.
mech_status mech_npz_create(const char *path, mech_npz **out, mech_err *err);
// Appends array name (stored as "name.npy"; read back as np.load(p)[name]),
// float32, C order, shape as for mech_npy_write. Duplicate or empty names
// and bad shapes give MECH_ERR_ARG and leave the archive usable; an I/O
// error (MECH_ERR_IO) dooms it: close then fails and removes the temporary.
mech_status mech_npz_add(mech_npz *z, const char *name, const float *data, int ndim,
                         const int64_t *shape, mech_err *err);
// The same for int32 data ('<i4').
mech_status mech_npz_add_i32(mech_npz *z, const char *name, const int32_t *data, int ndim,
                             const int64_t *shape, mech_err *err);
// The same for UTF-8 strings, stored as numpy's fixed-width unicode ('<Uw',
// w the longest string's code points; invalid bytes become U+FFFD).
mech_status mech_npz_add_str(mech_npz *z, const char *name, const char *const *strs, int ndim,
                             const int64_t *shape, mech_err *err);
// Writes the central directory, syncs, renames path.tmp to path and frees
// z (always, even on error; on error nothing is left at path.tmp and an
// existing path is untouched). Errors: MECH_ERR_IO.
mech_status mech_npz_close(mech_npz *z, mech_err *err);
// Discards the archive: removes path.tmp and frees z. NULL is a no-op.
void mech_npz_abort(mech_npz *z);

// ---------------------------------------------------------------------------
// Results store (data/store.c, data/store_sha256.c)
//
// One SQLite file (default mech.db) holding runs, their prompts, scalar
// results and compressed tensors; the schema is in docs/schema.md and is
// plain enough for `sqlite3 mech.db 'select ...'`. WAL mode with
// synchronous=NORMAL: a committed transaction survives the process being
// killed (kill -9); the file is valid at every moment.
//
//   mech_store *s; int64_t run;
//   if (mech_store_open("mech.db", &s, &err)) ...;
//   if (mech_store_run_new(s, "patch", "model.safetensors", "mech patch ...", "{}", &run, &err)) ...;
//   for each batch: mech_store_begin; mech_store_result (many); mech_store_commit
//                   (on error: mech_store_rollback, which keeps earlier batches)
//   mech_store_run_finish(s, run, "done", &err); mech_store_close(s);
//
// A mech database is marked by PRAGMA application_id = 0x6D656368 ("mech")
// and versioned by PRAGMA user_version (the schema version, 1 today).

#define MECH_STORE_SCHEMA_VERSION 1
#define MECH_STORE_APPLICATION_ID 0x6D656368

typedef struct mech_store mech_store;

// Opens the results database at path for writing. Where no file exists it
// creates one (built beside path and linked into place, so no empty or
// half-made file is ever left at path). An existing file is first checked
// through a read-only connection and refused, untouched, when it is empty,
// not SQLite, another application's database (no mech application_id),
// marked with a schema version this code does not know (newer, or 0), or
// damaged: its size is not its page count times its page size, PRAGMA
// quick_check fails, or an index's entry count differs from its table's.
// Then it is switched to WAL mode and an older schema is brought up to
// MECH_STORE_SCHEMA_VERSION (one migration step per version, in one
// transaction). Once a statement meets a damaged page the store writes
// nothing more (writes return MECH_ERR_DB). OUT: *out (owned;
// mech_store_close). Errors: MECH_ERR_ARG (NULL or empty path), MECH_ERR_IO
// (cannot create or read the file), MECH_ERR_DB (all of the above, naming
// path and the reason), MECH_ERR_NOMEM.
mech_status mech_store_open(const char *path, mech_store **out, mech_err *err);
// Opens an existing mech database for reading only; never creates or
// modifies a file. Works on any file the user can read: a WAL database in
// a directory the user cannot write (where SQLite cannot create the -shm
// file) is opened immutable when its -wal file holds no commits. (A
// reader in a writable directory may leave SQLite's empty -wal and -shm
// files beside it, as any WAL reader does.) Write functions on it return
// MECH_ERR_ARG. Errors: MECH_ERR_ARG (NULL or empty path), MECH_ERR_IO
// (missing, not a regular file, unreadable), MECH_ERR_DB (empty file, not
// SQLite, foreign, other schema version), MECH_ERR_NOMEM.
mech_status mech_store_open_read(const char *path, mech_store **out, mech_err *err);
// Closes s, rolling back an open transaction. NULL is a no-op.
void mech_store_close(mech_store *s);
// The path s was opened with (borrowed; valid until mech_store_close).
const char *mech_store_path(const mech_store *s);
// The cheap checks mech_store_open makes before writing (size against page
// count, quick_check, index entry counts), on an open store (also a
// read-only one): what a reader runs once before it trusts a file. Reads
// the whole file. Errors: MECH_ERR_DB naming the damage, MECH_ERR_IO.
mech_status mech_store_check_quick(mech_store *s, mech_err *err);
// Runs the full PRAGMA integrity_check (every index entry against its row;
// slower than the checks mech_store_open makes). Errors: MECH_ERR_DB with SQLite's first
// complaint.
mech_status mech_store_check(mech_store *s, mech_err *err);

// Starts a run: kind (non-empty, e.g. "patch", "lens"), model_path, cmdline
// and params_json (valid JSON or NULL) as given, started = now (ISO-8601 UTC,
// "2026-11-23T20:49:13.123Z"), status "running", and model_hash =
// mech_store_model_hash(model_path) (NULL when it cannot be read). OUT:
// *run_id. Errors: MECH_ERR_ARG (empty kind, invalid JSON), MECH_ERR_DB.
mech_status mech_store_run_new(mech_store *s, const char *kind, const char *model_path,
                               const char *cmdline, const char *params_json, int64_t *run_id,
                               mech_err *err);
// Sets status ("done", "failed", "interrupted" or "running") and finished =
// now (NULL again for "running", as --resume does). Errors: MECH_ERR_ARG
// (other status), MECH_ERR_RANGE (no such run), MECH_ERR_DB.
mech_status mech_store_run_finish(mech_store *s, int64_t run_id, const char *status, mech_err *err);

// Content hash of a model file, fast for any size: lowercase hex SHA-256 of
//   u64le(file size) || bytes [0, min(size, 1 MiB))
//   || bytes [max(0, size - 1 MiB), size)
//   || the safetensors header (bytes [8, 8 + N) when the first 8 bytes are a
//      little-endian N with 8 + N <= size and N <= 100 MiB; else nothing).
// A directory hashes its model.safetensors. OUT: hex[65]. Returns MECH_OK,
// or MECH_ERR_IO when path is NULL or cannot be read (hex is then "").
mech_status mech_store_model_hash(const char *path, char hex[65]);

// One transaction per batch: begin, write, commit; rollback discards the
// batch and nothing else. Writes outside begin/commit autocommit one by one.
// Errors: MECH_ERR_DB (e.g. begin inside a transaction, commit outside).
mech_status mech_store_begin(mech_store *s, mech_err *err);
mech_status mech_store_commit(mech_store *s, mech_err *err);
mech_status mech_store_rollback(mech_store *s, mech_err *err);

// Records the prompt of item (>= 0) in role "clean", "corrupt" or "prompt":
// text (may be NULL) and n_tokens token ids, stored as a JSON array text
// ("[464,36,733]"). Replaces an earlier row with the same (run, item, role).
// Errors: MECH_ERR_ARG (role, item, n_tokens < 0), MECH_ERR_DB.
mech_status mech_store_prompt(mech_store *s, int64_t run_id, int item, const char *role,
                              const char *text, const int32_t *tokens, int n_tokens, mech_err *err);

// Reads the prompt of (run, item, role) back: its text (NULL when it was
// given as ids) and its token ids. OUT: *text (owned, mech_free; may be
// NULL), *tokens (owned, mech_free; non-NULL), *n_tokens. Errors:
// MECH_ERR_RANGE (no such prompt), MECH_ERR_DB (tokens not a JSON array of
// ids), MECH_ERR_NOMEM.
mech_status mech_store_prompt_get(mech_store *s, int64_t run_id, int item, const char *role, char **text,
                                  int32_t **tokens, int *n_tokens, mech_err *err);

// One scalar result: -1 in any integer field that does not apply (the
// database stores -1 too, so `where head = -1` works); site and metric are
// required ("blocks.3.hook_resid_pre", "logit_diff"). A NaN value is stored
// as NULL.
typedef struct mech_result {
    int item;
    const char *site;
    int layer, pos, head;
    int64_t token;
    int rank;
    const char *metric;
    double value;
} mech_result;

// Appends one row to the results table. Errors: MECH_ERR_ARG (NULL site or
// metric), MECH_ERR_DB.
mech_status mech_store_result(mech_store *s, int64_t run_id, const mech_result *r, mech_err *err);

// Stores a float32 tensor (prod(shape) floats, C order; ndim 0..
// MECH_MAX_DIMS) as dtype "f32": the little-endian bytes byte-shuffled (all
// first bytes, then all second bytes, ...) and zlib-compressed, with the raw
// byte count. Replaces a tensor of the same name in the run. Errors:
// MECH_ERR_ARG (name, ndim, shape), MECH_ERR_NOMEM, MECH_ERR_DB.
mech_status mech_store_tensor(mech_store *s, int64_t run_id, const char *name, const float *data,
                              int ndim, const int64_t *shape, mech_err *err);
// Reads one back, bit-exact. OUT: *data (owned, mech_free; non-NULL even
// with no elements), *ndim, shape[0..*ndim). Errors: MECH_ERR_RANGE (no
// such tensor), MECH_ERR_DB (bad row: unknown dtype or codec, size
// mismatch, zlib error), MECH_ERR_NOMEM.
mech_status mech_store_tensor_get(mech_store *s, int64_t run_id, const char *name, float **data,
                                  int *ndim, int64_t shape[MECH_MAX_DIMS], mech_err *err);
// The names of the run's tensors in insertion order. OUT: *names (owned:
// free with mech_store_strings_free(*names, *n)), *n.
mech_status mech_store_tensor_names(mech_store *s, int64_t run_id, char ***names, size_t *n,
                                    mech_err *err);
void mech_store_strings_free(char **strings, size_t n);

// The distinct items that have results in the run, ascending (for
// --resume). OUT: *items (owned, mech_free; NULL when *n == 0), *n.
mech_status mech_store_items_done(mech_store *s, int64_t run_id, int **items, size_t *n,
                                  mech_err *err);

// A run's row plus counts. Strings are owned by the struct (NULL when the
// column is NULL); release with mech_store_run_info_deinit.
typedef struct mech_run_info {
    int64_t id;
    char *kind, *model_path, *model_hash, *cmdline, *params_json;
    char *started, *finished, *status;
    int64_t n_results, n_items, n_prompts, n_tensors;
} mech_run_info;

// Fills *info (caller's storage). Errors: MECH_ERR_RANGE (no such run),
// MECH_ERR_DB, MECH_ERR_NOMEM.
mech_status mech_store_run_info(mech_store *s, int64_t run_id, mech_run_info *info, mech_err *err);
void mech_store_run_info_deinit(mech_run_info *info);
// Every run, by id. OUT: *runs (owned: mech_store_runs_free(*runs, *n)), *n.
mech_status mech_store_runs(mech_store *s, mech_run_info **runs, size_t *n, mech_err *err);
void mech_store_runs_free(mech_run_info *runs, size_t n);

// What a merge did with one run: run `from` of in_paths[input] is run `to`
// of the output.
typedef struct mech_merge_run {
    size_t input;
    int64_t from, to;
} mech_merge_run;

// How to merge: join (below), and runs[0..n_runs): only the runs with these
// ids in each input (n_runs 0: every run).
typedef struct mech_merge_opts {
    int join;
    const int64_t *runs;
    size_t n_runs;
} mech_merge_opts;

// Copies every run of in_paths[0..n) into out_path with their prompts,
// results and tensors. Run ids are renumbered: the runs are appended after
// out_path's runs, inputs in order, runs in id order (ids are never kept,
// so runs from different files cannot collide). Every input is opened
// read-only (mech_store_open_read rules) and checked before out_path is
// opened with mech_store_open (created if missing); one transaction per
// input, so a failure keeps the inputs already merged.
//
// opts (NULL: merge every run) may select runs by id (opts->runs), and
// opts->join: the (selected) runs must together be exactly the N shards of one
// sweep (`--shard K/N`): same kind, same model hash, parameters equal but
// for "shard", each K from 1 to N once, all "done". They become ONE run:
// parameters without "shard", cmdline the shards' command lines (one per
// line, in shard order), started the earliest, finished the latest, and
// every prompt, result and tensor of the shards; a failure part-way
// deletes the joined run. OUT (map may be NULL): *map (owned, mech_free),
// *n_map entries, one per run copied (join: every entry has the same to),
// in copy order. Errors: MECH_ERR_ARG (empty path, an input is the
// output), MECH_ERR_RANGE (a selected run id is in no input), MECH_ERR_IO
// (an input missing or unreadable), MECH_ERR_DB (foreign or damaged file,
// not shards of one sweep), MECH_ERR_NOMEM.
mech_status mech_store_merge(const char *out_path, const char *const *in_paths, size_t n,
                             const mech_merge_opts *opts, mech_merge_run **map, size_t *n_map, mech_err *err);

// Writes the run's results as CSV (RFC 4180): header
// run_id,item,site,layer,pos,head,token,rank,metric,value then one line per
// row ordered by item then insertion; value as %.17g, empty for NULL.
// Atomic (mech_outfile); path "-" writes to standard output. Errors: MECH_ERR_RANGE (no such run), MECH_ERR_IO,
// MECH_ERR_DB.
mech_status mech_store_export_csv(mech_store *s, int64_t run_id, const char *path, mech_err *err);
// Writes every tensor of the run into a .npz (np.load(path)[name]).
// Errors: MECH_ERR_RANGE (no such run), MECH_ERR_IO, MECH_ERR_DB.
mech_status mech_store_export_npz(mech_store *s, int64_t run_id, const char *path, mech_err *err);

// One row of the results table, read back. Strings are owned by the array
// the row is in; value is NaN for NULL.
typedef struct mech_result_row {
    int item;
    char *site;
    int layer, pos, head;
    int64_t token;
    int rank;
    char *metric;
    double value;
} mech_result_row;

// The run's results whose metric is metric (NULL: every row), in insertion
// order. OUT: *rows (owned: mech_store_results_free(*rows, *n); NULL when
// *n == 0), *n. Errors: MECH_ERR_RANGE (no such run), MECH_ERR_DB,
// MECH_ERR_NOMEM.
mech_status mech_store_results_get(mech_store *s, int64_t run_id, const char *metric, mech_result_row **rows,
                                   size_t *n, mech_err *err);
void mech_store_results_free(mech_result_row *rows, size_t n);
// The run's rows with metric (NULL: every metric) largest first: by |value|
// when by_abs, else by value (NaN last; ties in insertion order), at most
// limit (< 0: all). What a summary line needs without reading every row:
// one indexed query. OUT and errors as mech_store_results_get.
mech_status mech_store_results_top(mech_store *s, int64_t run_id, const char *metric, int by_abs, int limit,
                                   mech_result_row **rows, size_t *n, mech_err *err);

// One row of the prompts table, read back: the item, its role ("clean",
// "corrupt" or "prompt"), its text (NULL when given as ids) and its token
// ids. Strings and tokens are owned by the array the row is in.
typedef struct mech_prompt_row {
    int item;
    char *role, *text;
    int32_t *tokens; // [n_tokens]
    int n_tokens;
} mech_prompt_row;

// The run's prompts ordered by item, then role. OUT: *rows (owned:
// mech_store_prompts_free(*rows, *n); NULL when *n == 0), *n. Errors:
// MECH_ERR_RANGE (no such run), MECH_ERR_DB (also a tokens column that is not
// a JSON array of n_tokens ids), MECH_ERR_NOMEM.
mech_status mech_store_prompts_get(mech_store *s, int64_t run_id, mech_prompt_row **rows, size_t *n, mech_err *err);
void mech_store_prompts_free(mech_prompt_row *rows, size_t n);

#ifdef __cplusplus
}
#endif
#endif
