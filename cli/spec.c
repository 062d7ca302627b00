/*
** cli/spec.c: --spec FILE, an experiment's whole specification as a JSON
** object of option names and values, so a script can keep experiments as
** files:  {"model": "gpt2/", "pairs": "ioi.jsonl", "sweep": "heads", "db": "out.db"}
** A string or number is --key VALUE, true is the bare flag --key, false and
** null leave the option out, an array repeats it (--prompt a --prompt b).
** Options on the command line come after the spec's, so they override it
** (every command keeps the last value of an option).
*/
#include "cli/cli.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

static int push(char ***v, int *n, int *cap, char *s) {
    if (!s) return -1;
    if (*n == *cap) {
        int nc = *cap ? 2 * *cap : 16;
        char **g = realloc(*v, (size_t)nc * sizeof *g);
        if (!g) {
            mech_free(s);
            return -1;
        }
        *v = g, *cap = nc;
    }
    (*v)[(*n)++] = s;
    return 0;
}

static char *flag(const char *key) {
    size_t n = strlen(key);
    char *s = mech_malloc(n + 3);
    if (!s) return NULL;
    memcpy(s, "--", 2);
    memcpy(s + 2, key, n + 1);
    // spec keys may use underscores: "heads_ascending" is --heads-ascending
    for (char *p = s + 2; *p; p++)
        if (*p == '_') *p = '-';
    return s;
}

// An option name: letters, digits, '_' and '-', not starting with '-'. Anything
// else would change what the command line means: "model=x" would become
// --model=x, and a key holding a NUL would be cut short.
static int key_ok(const char *key, size_t len) {
    if (!len || strlen(key) != len || key[0] == '-') return 0;
    for (const char *p = key; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '_' && *p != '-') return 0;
    return 1;
}

static char *scalar(const char *path, const char *key, const mech_json *x) {
    if (x->type == MECH_JSON_STRING) {
        if (strlen(x->str) != x->len) {
            fprintf(stderr, "%s: error: '%s': a NUL character in the value\n", path, key);
            return NULL;
        }
        return mech_strdup(x->str);
    }
    if (x->type == MECH_JSON_NUMBER) {
        char buf[64];
        if (x->is_int) snprintf(buf, sizeof buf, "%lld", (long long)x->inum);
        else cli_shortest(buf, x->num);
        return mech_strdup(buf);
    }
    fprintf(stderr, "%s: error: '%s': expected a string, a number, true/false or an array of those\n", path, key);
    return NULL;
}

// Whether the command's --help names the option: a misspelled key is then
// reported with the file and the key, before the command runs.
static int known_option(const char *cmd, const char *opt) {
    const cli_cmd *c = cli_find(cmd);
    if (!c) return 1;
    size_t n = strlen(opt);
    for (const char *p = c->usage; (p = strstr(p, opt)); p += n) {
        char next = p[n];
        if (!(next >= 'a' && next <= 'z') && !(next >= '0' && next <= '9') && next != '-' && next != '_') return 1;
    }
    return 0;
}

// The spec file of the command being run (borrowed from its argv), so that a
// usage error in one of its values names the file.
static const char *spec_path;

const char *cli_spec_path(void) { return spec_path; }

int cli_spec_expand(const char *cmd, int argc, char **argv, int *out_argc, char ***out_argv) {
    const char *path = NULL;
    int at = -1;
    for (int i = 1; i < argc; i++) {
        int r = cli_opt(cmd, argc, argv, &i, "--spec", &path);
        if (r < 0) return 2;
        if (r) {
            if (at >= 0) return cli_usage(cmd, "--spec given twice");
            at = i;
        }
    }
    *out_argc = 0, *out_argv = NULL;
    if (!path) return 0;
    mech_err err = {0};
    char *text = NULL;
    size_t len = 0;
    mech_json *j = NULL;
    if (mech_read_file(path, &text, &len, &err)) return cli_fail(cmd, &err);
    if (mech_json_parse(text, len, &j, &err)) {
        fprintf(stderr, "%s: error: %s\n", path, err.msg);
        mech_free(text);
        return 2;
    }
    mech_free(text);
    if (j->type != MECH_JSON_OBJECT) {
        fprintf(stderr, "%s: error: expected a JSON object of options, e.g. {\"model\": \"gpt2/\", \"db\": \"out.db\"}\n",
                path);
        mech_json_free(j);
        return 2;
    }
    char **v = NULL;
    int n = 0, cap = 0, rc = 0;
    rc = push(&v, &n, &cap, mech_strdup(argv[0])) ? 1 : 0;
    for (size_t k = 0; !rc && k < j->n; k++) {
        const char *key = j->keys[k];
        const mech_json *x = &j->items[k];
        if (!strcmp(key, "command")) {
            // lets one file say what it is for; it must agree with the command run
            if (x->type != MECH_JSON_STRING || strcmp(x->str, cmd)) {
                fprintf(stderr, "%s: error: 'command' is %s%s%s but this is `mech %s`\n", path,
                        x->type == MECH_JSON_STRING ? "'" : "", x->type == MECH_JSON_STRING ? x->str : "not a string",
                        x->type == MECH_JSON_STRING ? "'" : "", cmd);
                rc = 2;
            }
            continue;
        }
        if (!key_ok(key, j->key_lens[k]) || !strcmp(key, "spec")) {
            mech_buf kb = {0}; // escaped, so a NUL or a newline in the key shows
            mech_buf_json_string(&kb, key, j->key_lens[k]);
            fprintf(stderr, "%s: error: key '%.*s': expected an option name without dashes, e.g. \"model\"\n", path,
                    kb.len >= 2 ? (int)kb.len - 2 : 0, kb.len >= 2 ? kb.data + 1 : "");
            mech_buf_free(&kb);
            rc = 2;
            break;
        }
        char *opt = flag(key);
        int known = opt && known_option(cmd, opt);
        if (opt && !known)
            fprintf(stderr, "%s: error: unknown key '%s': `mech %s` has no option %s (see mech %s --help)\n", path, key,
                    cmd, opt, cmd);
        mech_free(opt);
        if (!known) {
            rc = opt ? 2 : 1;
            break;
        }
        if (x->type == MECH_JSON_BOOL || x->type == MECH_JSON_NULL) {
            if (x->type == MECH_JSON_BOOL && x->boolean && push(&v, &n, &cap, flag(key))) rc = 1;
            continue;
        }
        const mech_json *items = x->type == MECH_JSON_ARRAY ? x->items : x;
        size_t ni = x->type == MECH_JSON_ARRAY ? x->n : 1;
        for (size_t i = 0; !rc && i < ni; i++) {
            char *val = scalar(path, key, &items[i]);
            if (!val) rc = 2;
            else if (push(&v, &n, &cap, flag(key)) || push(&v, &n, &cap, val)) rc = 1;
        }
    }
    mech_json_free(j);
    // then the command line, without --spec FILE
    for (int i = 1; !rc && i < argc; i++) {
        if (!strcmp(argv[i], "--spec")) {
            i++;
            continue;
        }
        if (!strncmp(argv[i], "--spec=", 7)) continue;
        if (push(&v, &n, &cap, mech_strdup(argv[i]))) rc = 1;
    }
    if (rc) {
        if (rc == 1) fprintf(stderr, "mech %s: error: out of memory\n", cmd);
        cli_spec_free(n, v);
        return rc;
    }
    *out_argc = n, *out_argv = v;
    spec_path = path;
    return 0;
}

void cli_spec_free(int argc, char **argv) {
    spec_path = NULL;
    for (int i = 0; i < argc; i++) mech_free(argv[i]);
    free(argv);
}
