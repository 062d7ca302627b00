/*
** tests/fuzz/fuzz_spec.c: cli/spec.c, a --spec file from bytes, expanded
** for `mech patch --spec FILE --db x.db`. It must give exit code 0, 1 or 2;
** on 0 a well-formed argv that ends with the command line's own options, on
** 2 a message naming the file.
*/
#include "tests/fuzz/fuzz.h"

#include "cli/cli.h"

#include <ctype.h>
#include <string.h>

int mech_fuzz_spec(const uint8_t *data, size_t size) {
    const char *path = mech_fuzz_path("spec", "spec.json");
    if (mech_fuzz_write(path, data, size)) return 0;
    char a0[] = "patch", a1[] = "--spec", a3[] = "--db", a4[] = "x.db";
    char a2[1024];
    snprintf(a2, sizeof a2, "%s", path);
    char *argv[] = {a0, a1, a2, a3, a4, NULL};
    int argc = 0;
    char **out = NULL;
    mech_fuzz_quiet_begin();
    int rc = cli_spec_expand("patch", 5, argv, &argc, &out);
    size_t ml;
    const char *msg = mech_fuzz_quiet_end(&ml);
    if (rc != 0 && rc != 1 && rc != 2) return mech_fuzz_fail("exit code %d", rc);
    if (rc) {
        if (out || argc) return mech_fuzz_fail("failed but returned an argv");
        if (rc == 2 && !strstr(msg, path)) return mech_fuzz_fail("usage error without naming the file: %s", msg);
        return 0;
    }
    mech_fuzz_accepted = 1;
    int bad = 0;
    // Every key became an option: it must be an option name and nothing
    // more ("model=x" would smuggle in --model=x, a NUL would cut the key).
    mech_json *j = NULL;
    if (mech_json_parse((const char *)data, size, &j, NULL) || j->type != MECH_JSON_OBJECT)
        bad = mech_fuzz_fail("accepted what is not a JSON object");
    for (size_t k = 0; !bad && k < j->n; k++) {
        const char *key = j->keys[k];
        int ok = strlen(key) == j->key_lens[k] && key[0] && key[0] != '-';
        for (const char *c = key; ok && *c; c++) ok = isalnum((unsigned char)*c) || *c == '_' || *c == '-';
        if (!ok) bad = mech_fuzz_fail("accepted the key '%s', which is no option name", key);
    }
    mech_json_free(j);
    if (argc < 3 || !out) bad = mech_fuzz_fail("argc %d", argc);
    for (int i = 0; !bad && i < argc; i++)
        if (!out[i]) bad = mech_fuzz_fail("argv[%d] is NULL", i);
    if (!bad && (strcmp(out[0], "patch") || strcmp(out[argc - 2], "--db") || strcmp(out[argc - 1], "x.db")))
        bad = mech_fuzz_fail("argv does not start with the command and end with the command line");
    if (!bad && argc > 3 && strncmp(out[1], "--", 2)) bad = mech_fuzz_fail("argv[1] '%s' is not an option", out[1]);
    cli_spec_free(argc, out);
    return bad;
}
