/*
** tests/support/check.h: helpers shared by the cmocka suites.
** Include after <cmocka.h>.
*/
#ifndef MECH_TEST_CHECK_H
#define MECH_TEST_CHECK_H
#include <stddef.h>
#include <stdint.h>

// Fails the test (fail_msg) unless |got - want| <= atol + rtol*|want| for all
// n elements; prints the first mismatches and the largest difference.
void mech_assert_close(const float *got, const float *want, size_t n, double atol, double rtol,
                       const char *label);
// Largest absolute difference between two arrays.
double mech_max_abs_diff(const float *a, const float *b, size_t n);
// Reads a whole binary file into a heap buffer (test fails if missing).
void *mech_test_read(const char *path, size_t *len);
// Path of a scratch file under build/ unique to this process.
const char *mech_test_tmp(const char *name);
// The same in one of 16 rotating buffers, so a test can hold several paths.
const char *mech_test_tmpn(const char *name);
// Removes a SQLite database and its -wal and -shm files.
void mech_test_rm_db(const char *path);

// Every row of an SQL query on the database at path (opened read-only), one
// line each, columns joined by '|', NULL as "NULL" (owned; free()).
char *mech_test_sql_rows(const char *path, const char *sql);

// Temporary files that mech_outfile left beside path (".NAME.XXXXXX").
int mech_test_leftovers(const char *path);
// Limits the size of files this process may write (RLIMIT_FSIZE, with
// SIGXFSZ ignored so writes fail with EFBIG); 0 restores the old limit.
void mech_test_limit_file_size(long bytes);
// Runs `$MECH_BIN ARGS` (default ./mech) through the shell; *out gets its
// stdout (owned; with err NULL, stderr too), *err its stderr when err is not
// NULL. Returns the exit status, -1 when killed by a signal.
int mech_test_cli(char **out, char **err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

// A seeded uniform stream in [0, 1) (xorshift64*), shared by the helpers
// below so a suite's draws after mech_test_small_model stay reproducible.
void mech_test_seed(uint64_t state);
double mech_test_urand(void);
// A small random model (d_model 16, 4-wide heads, d_mlp 24 unless attn_only,
// n_ctx 8, vocab 23) with weights large enough for every site and edge to
// matter: matrices at 0.35 (LayerNorm) or 0.2 (none) of unit scale, biases
// uniform in +-0.1; reseeds the stream from seed. Owned (mech_model_free).
struct mech_model *mech_test_small_model(int layers, int heads, int attn_only, int layernorm, uint64_t seed);
#endif
