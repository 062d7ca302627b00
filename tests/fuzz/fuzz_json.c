/*
** tests/fuzz/fuzz_json.c: core/json.c on arbitrary bytes. A parsed tree must
** be well formed, print back to JSON that parses to the same tree, and go
** through mech_config_from_json (config.json) without harm; a failure must
** say where.
*/
#include "tests/fuzz/fuzz.h"

#include "core/core.h"

#include <stdio.h>
#include <string.h>

static void print(mech_buf *b, const mech_json *j) {
    switch (j->type) {
    case MECH_JSON_NULL: mech_buf_puts(b, "null"); break;
    case MECH_JSON_BOOL: mech_buf_puts(b, j->boolean ? "true" : "false"); break;
    case MECH_JSON_NUMBER:
        if (j->is_int) mech_buf_printf(b, "%lld", (long long)j->inum);
        else {
            // keep it a non-integer on reparsing: 0e-05 is 0.0, not 0
            char num[64];
            snprintf(num, sizeof num, "%.17g", j->num);
            mech_buf_printf(b, "%s%s", num, strpbrk(num, ".e") ? "" : ".0");
        }
        break;
    case MECH_JSON_STRING: mech_buf_json_string(b, j->str, j->len); break;
    case MECH_JSON_ARRAY:
    case MECH_JSON_OBJECT:
        mech_buf_puts(b, j->type == MECH_JSON_ARRAY ? "[" : "{");
        for (size_t i = 0; i < j->n; i++) {
            if (i) mech_buf_puts(b, ",");
            if (j->type == MECH_JSON_OBJECT) {
                mech_buf_json_string(b, j->keys[i], j->key_lens[i]);
                mech_buf_puts(b, ":");
            }
            print(b, &j->items[i]);
        }
        mech_buf_puts(b, j->type == MECH_JSON_ARRAY ? "]" : "}");
        break;
    }
}

// 0 when a and b are the same tree; checks each node's invariants on the way.
static int same(const mech_json *a, const mech_json *b) {
    if (a->type != b->type) return mech_fuzz_fail("reparsed: type %d became %d", (int)a->type, (int)b->type);
    switch (a->type) {
    case MECH_JSON_NULL: return 0;
    case MECH_JSON_BOOL:
        return a->boolean != b->boolean ? mech_fuzz_fail("reparsed: bool changed") : 0;
    case MECH_JSON_NUMBER:
        if (a->is_int && (double)a->inum != a->num)
            return mech_fuzz_fail("int %lld has num %.17g", (long long)a->inum, a->num);
        if (a->is_int != b->is_int || (a->is_int && a->inum != b->inum) || a->num != b->num)
            return mech_fuzz_fail("reparsed: number %.17g (int %d) became %.17g (int %d)", a->num, a->is_int, b->num,
                                  b->is_int);
        return 0;
    case MECH_JSON_STRING:
        if (!a->str || a->str[a->len]) return mech_fuzz_fail("string not NUL-terminated at its length");
        if (a->len != b->len || memcmp(a->str, b->str, a->len)) return mech_fuzz_fail("reparsed: string changed");
        return 0;
    case MECH_JSON_ARRAY:
    case MECH_JSON_OBJECT:
        if (a->n != b->n) return mech_fuzz_fail("reparsed: %zu items became %zu", a->n, b->n);
        for (size_t i = 0; i < a->n; i++) {
            if (a->type == MECH_JSON_OBJECT) {
                if (!a->keys[i] || a->keys[i][a->key_lens[i]]) return mech_fuzz_fail("key not NUL-terminated");
                if (a->key_lens[i] != b->key_lens[i] || memcmp(a->keys[i], b->keys[i], a->key_lens[i]))
                    return mech_fuzz_fail("reparsed: key changed");
                // with duplicate keys get finds the first; an embedded NUL ends the lookup key
                if (strlen(a->keys[i]) == a->key_lens[i] && !mech_json_get(a, a->keys[i]))
                    return mech_fuzz_fail("mech_json_get cannot find key %zu", i);
            }
            if (same(&a->items[i], &b->items[i])) return 1;
        }
        return 0;
    }
    return mech_fuzz_fail("unknown type %d", (int)a->type);
}

int mech_fuzz_json(const uint8_t *data, size_t size) {
    mech_err err = {0};
    mech_json *j = (mech_json *)&err; // must be set to NULL or a tree
    mech_status st = mech_json_parse((const char *)data, size, &j, &err);
    if (st) {
        if (err.code != st || !err.msg[0]) return mech_fuzz_fail("parse failed (%d) without a message", (int)st);
        if (st != MECH_ERR_NOMEM && !strstr(err.msg, "line")) return mech_fuzz_fail("no position in: %s", err.msg);
        return 0;
    }
    mech_fuzz_accepted = 1;
    int rc = 0;
    mech_buf b = {0};
    print(&b, j);
    mech_json *k = NULL;
    if (!b.oom) {
        if (mech_json_parse(b.data, b.len, &k, &err)) rc = mech_fuzz_fail("printed tree does not parse: %s", err.msg);
        else rc = same(j, k);
    }
    mech_json_free(k);
    mech_buf_free(&b);
    // config.json is the main consumer of arbitrary JSON
    mech_config cfg = mech_config_gpt2_small();
    mech_err cerr = {0};
    if (mech_config_from_json(j, &cfg, &cerr) == MECH_OK) {
        if (mech_config_validate(&cfg, &cerr) == MECH_OK) (void)mech_config_n_params(&cfg);
        else if (!cerr.msg[0]) rc = rc ? rc : mech_fuzz_fail("mech_config_validate failed without a message");
    } else if (!cerr.msg[0]) {
        rc = rc ? rc : mech_fuzz_fail("mech_config_from_json failed without a message");
    }
    mech_json_free(j);
    return rc;
}
