/*
** tests/test_fuzz_regress.c: every fuzz target's seed corpus
** (tests/fuzz/corpus/<target>/) and every input that once crashed, hung or
** broke a parser's contract (tests/fuzz/regress/<target>/), replayed through
** the same entry functions the libFuzzer binaries use (tests/fuzz/fuzz.h).
** Built without libFuzzer, so `make test` and `make test SANITIZE=1` run
** them. A new finding becomes a test by dropping its file into regress/.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/support/check.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/fuzz/fuzz.h"

typedef struct replay {
    int files, accepted, failed;
    char first_failure[1600];
} replay;

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

// Runs every file of dir through t (in name order, so failures reproduce).
static void replay_dir(const mech_fuzz_target *t, const char *dir, replay *r) {
    DIR *d = opendir(dir);
    if (!d) return;
    char **names = NULL;
    size_t n = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        names = realloc(names, (n + 1) * sizeof *names);
        names[n++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof *names, by_name);
    for (size_t i = 0; i < n; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        size_t len = 0;
        unsigned char *data = mech_test_read(path, &len);
        // an exact-size copy, so ASan sees any read past the input
        unsigned char *copy = malloc(len ? len : 1);
        memcpy(copy, data, len);
        free(data);
        mech_fuzz_accepted = 0;
        mech_fuzz_why[0] = 0;
        int bad = t->run(copy, len);
        free(copy);
        r->files++;
        r->accepted += mech_fuzz_accepted;
        if (bad && !r->failed++)
            snprintf(r->first_failure, sizeof r->first_failure, "%s: %s", path, mech_fuzz_why);
        free(names[i]);
    }
    free(names);
}

static void test_fuzz_regress_target(void **state) {
    const mech_fuzz_target *t = *state;
    char dir[256];
    replay seeds = {0}, found = {0};
    snprintf(dir, sizeof dir, "tests/fuzz/corpus/%s", t->name);
    replay_dir(t, dir, &seeds);
    snprintf(dir, sizeof dir, "tests/fuzz/regress/%s", t->name);
    replay_dir(t, dir, &found);
    if (seeds.failed) fail_msg("%d of %d seeds broke %s's contract; first: %s", seeds.failed, seeds.files, t->name,
                               seeds.first_failure);
    if (found.failed) fail_msg("%d of %d regression inputs broke %s's contract; first: %s", found.failed, found.files,
                               t->name, found.first_failure);
    // The seeds must reach past the parser's checks (some accepted) and
    // exercise its errors (some refused); otherwise fuzzing from them is weak.
    if (seeds.files < 2 || !seeds.accepted || (t->refuses && seeds.accepted == seeds.files))
        fail_msg("%s: %d seeds, %d accepted: want accepted and refused ones", t->name, seeds.files, seeds.accepted);
}

int main(void) {
    static struct CMUnitTest tests[16];
    size_t n = 0;
    for (const mech_fuzz_target *t = mech_fuzz_targets; t->name; t++) {
        tests[n] = (struct CMUnitTest)cmocka_unit_test_prestate(test_fuzz_regress_target, (void *)t);
        tests[n].name = t->name;
        n++;
    }
    int failed = _cmocka_run_group_tests("fuzz_regress", tests, n, NULL, NULL);
    mech_fuzz_cleanup();
    return failed;
}
