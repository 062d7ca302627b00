/*
** tests/fuzz/fuzz.h: the fuzz targets' entry functions, one per parser.
** The same functions run under libFuzzer (tests/fuzz/libfuzzer.c, built by
** `make fuzz`) and in the cmocka suite tests/test_fuzz_regress.c, which
** replays tests/fuzz/corpus/<target>/ and tests/fuzz/regress/<target>/ under
** `make test` (and SANITIZE=1), so an input that once crashed stays a test.
**
** An entry returns 0 when the parser kept its contract on the input (a clean
** result, or an error code with a message), 1 when it did not (the reason in
** mech_fuzz_why). Memory errors are left to ASan/UBSan.
*/
#ifndef MECH_FUZZ_H
#define MECH_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

int mech_fuzz_json(const uint8_t *data, size_t size);
int mech_fuzz_safetensors(const uint8_t *data, size_t size);
int mech_fuzz_tokenizer_files(const uint8_t *data, size_t size);
int mech_fuzz_tokenize(const uint8_t *data, size_t size);
int mech_fuzz_npy(const uint8_t *data, size_t size);
int mech_fuzz_spec(const uint8_t *data, size_t size);
int mech_fuzz_pairs(const uint8_t *data, size_t size);
int mech_fuzz_rasp(const uint8_t *data, size_t size);

typedef struct mech_fuzz_target {
    const char *name; // tests/fuzz/corpus/<name>/, build-fuzz/fuzz/<name>
    int (*run)(const uint8_t *data, size_t size);
    int refuses; // the parser refuses some inputs (every seed corpus then holds some)
} mech_fuzz_target;
extern const mech_fuzz_target mech_fuzz_targets[]; // ends with {NULL, NULL}

// Set by an entry when the parser accepted the input (so the suite can check
// that a corpus reaches past the parser's first checks).
extern int mech_fuzz_accepted;
// Why the last entry returned 1.
extern char mech_fuzz_why[512];
// Formats the reason into mech_fuzz_why; returns 1.
int mech_fuzz_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

// A scratch path unique to this process and target: $MECH_FUZZ_TMPDIR (else
// $TMPDIR, else /tmp)/mech-fuzz-<pid>-<target>/<name>; the directory is made
// on first use. libFuzzer may exit without running atexit handlers, so
// `make fuzz` points MECH_FUZZ_TMPDIR into build-fuzz/ and clears it.
const char *mech_fuzz_path(const char *target, const char *name);
// Removes every scratch directory this process made.
void mech_fuzz_cleanup(void);
// Writes data[0..size) to path; 0 or -1.
int mech_fuzz_write(const char *path, const void *data, size_t size);

// Sends what the CLI code prints on stderr into a buffer instead (sanitizer
// reports still go to fd 2), so that the fuzzer's and the suite's output stay
// readable and the entry can check that a failure said something.
void mech_fuzz_quiet_begin(void);
// Restores stderr; returns the captured text (valid until the next begin).
const char *mech_fuzz_quiet_end(size_t *len);

#endif
