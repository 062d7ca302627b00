/*
** tests/test_core_safetensors.c: safetensors round trips, the exact header
** bytes, every validation error on files built here byte by byte, and the
** f16/bf16 conversions (known bit patterns, exhaustive round trips, and a
** brute-force nearest-even reference).
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/support/check.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/core.h"

static void assert_contains(const char *hay, const char *needle) {
    if (!strstr(hay, needle)) fail_msg("message '%s' does not contain '%s'", hay, needle);
}

static void write_bytes(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    if (n) assert_int_equal(fwrite(data, 1, n, f), n);
    fclose(f);
}

// Writes a safetensors file by hand: the 8-byte length of hdr (or hlen when
// not UINT64_MAX), hdr, then data_len bytes counting 0, 1, 2, ...
static void write_raw(const char *path, const char *hdr, uint64_t hlen, size_t data_len) {
    size_t hl = strlen(hdr);
    if (hlen == UINT64_MAX) hlen = hl;
    size_t n = 8 + hl + data_len;
    unsigned char *b = malloc(n);
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)(hlen >> (8 * i));
    memcpy(b + 8, hdr, hl);
    for (size_t i = 0; i < data_len; i++) b[8 + hl + i] = (unsigned char)i;
    write_bytes(path, b, n);
    free(b);
}

// Opens path expecting code; checks the message names the file and each of
// the NULL-terminated substrings.
static void open_bad(const char *path, mech_status code, ...) {
    mech_err err = {0};
    mech_safetensors *st = (mech_safetensors *)0x1;
    mech_status got = mech_safetensors_open(path, &st, &err);
    if (got == MECH_OK) {
        mech_safetensors_close(st);
        fail_msg("%s opened, expected %s", path, mech_strerror(code));
    }
    assert_null(st);
    if (got != code) fail_msg("got %s (%s), expected %s", mech_strerror(got), err.msg, mech_strerror(code));
    assert_int_equal(err.code, code);
    assert_contains(err.msg, path);
    va_list ap;
    va_start(ap, code);
    const char *s;
    while ((s = va_arg(ap, const char *))) assert_contains(err.msg, s);
    va_end(ap);
}

static mech_safetensors *open_ok(const char *path) {
    mech_err err = {0};
    mech_safetensors *st = NULL;
    if (mech_safetensors_open(path, &st, &err)) fail_msg("%s", err.msg);
    return st;
}

// ---------------------------------------------------------------------------
// Round trips and the header bytes

static void test_safetensors_round_trip(void **state) {
    (void)state;
    const char *path = mech_test_tmp("rt.safetensors");
    float a[6] = {1.5f, -2.0f, 3.25f, 0.0f, -0.0f, 1e-30f};
    uint16_t h[4] = {0x3C00, 0x7BFF, 0x0001, 0xFC00};
    uint16_t bf[4] = {0x3F80, 0xBF80, 0x7F80, 0x0001};
    int32_t ii[3] = {-7, 0, 2147483647};
    uint8_t scalar = 42;
    mech_st_write w[] = {
        {.name = "h.0.attn.c_attn.weight", .dtype = MECH_DT_F32, .ndim = 2, .shape = {2, 3}, .data = a},
        {.name = "half", .dtype = MECH_DT_F16, .ndim = 1, .shape = {4}, .data = h},
        {.name = "brain", .dtype = MECH_DT_BF16, .ndim = 2, .shape = {2, 2}, .data = bf},
        {.name = "ints", .dtype = MECH_DT_I32, .ndim = 3, .shape = {1, 3, 1}, .data = ii},
        {.name = "scalar \xC3\xA9", .dtype = MECH_DT_U8, .ndim = 0, .data = &scalar},
        {.name = "empty", .dtype = MECH_DT_F32, .ndim = 2, .shape = {0, 5}, .data = NULL},
    };
    const char *mk[] = {"format", "note"};
    const char *mv[] = {"pt", "quote \" backslash \\ newline \n \xE2\x82\xAC"};
    mech_err err = {0};
    if (mech_safetensors_write(path, w, 6, mk, mv, 2, &err)) fail_msg("%s", err.msg);

    assert_int_equal(mech_test_leftovers(path), 0); // renamed away

    mech_safetensors *st = open_ok(path);
    assert_string_equal(st->path, path);
    assert_int_equal(st->n, 6);
    for (size_t i = 0; i < 6; i++) {
        const mech_st_tensor *t = &st->tensors[i]; // header order is write order
        assert_string_equal(t->name, w[i].name);
        assert_int_equal(t->dtype, w[i].dtype);
        assert_int_equal(t->ndim, w[i].ndim);
        size_t count = 1;
        for (int d = 0; d < t->ndim; d++) {
            assert_int_equal(t->shape[d], w[i].shape[d]);
            count *= (size_t)t->shape[d];
        }
        assert_int_equal(t->nbytes, count * mech_dtype_size(t->dtype));
        if (t->nbytes) assert_memory_equal(t->data, w[i].data, t->nbytes);
        assert_ptr_equal(mech_safetensors_find(st, w[i].name), t);
        // mech's writer pads the header so the data section is 8-aligned, and
        // orders the data by element size, so every tensor is aligned.
        assert_int_equal(((const char *)t->data - (const char *)st->map) % mech_dtype_size(t->dtype), 0);
    }
    assert_null(mech_safetensors_find(st, "nope"));
    assert_null(mech_safetensors_find(st, ""));
    assert_int_equal(st->n_meta, 2);
    assert_string_equal(mech_safetensors_meta(st, "format"), "pt");
    assert_string_equal(mech_safetensors_meta(st, "note"), mv[1]);
    assert_null(mech_safetensors_meta(st, "missing"));
    mech_safetensors_close(st);
    mech_safetensors_close(NULL);

    // No metadata, no tensors: "{}" padded, still valid.
    if (mech_safetensors_write(path, NULL, 0, NULL, NULL, 0, &err)) fail_msg("%s", err.msg);
    st = open_ok(path);
    assert_int_equal(st->n, 0);
    assert_int_equal(st->n_meta, 0);
    assert_int_equal(st->map_len, 16);
    assert_null(mech_safetensors_find(st, "x"));
    mech_safetensors_close(st);
    remove(path);
}

static void test_safetensors_many_tensors_find(void **state) {
    (void)state;
    enum { N = 1000 };
    const char *path = mech_test_tmp("many.safetensors");
    static mech_st_write w[N];
    static char names[N][32];
    static float vals[N];
    for (int i = 0; i < N; i++) {
        snprintf(names[i], sizeof names[i], "blocks.%d.w", (i * 7919) % N);
        vals[i] = (float)i;
        w[i] = (mech_st_write){.name = names[i], .dtype = MECH_DT_F32, .ndim = 1, .shape = {1}, .data = &vals[i]};
    }
    mech_err err = {0};
    if (mech_safetensors_write(path, w, N, NULL, NULL, 0, &err)) fail_msg("%s", err.msg);
    mech_safetensors *st = open_ok(path);
    for (int i = 0; i < N; i++) {
        const mech_st_tensor *t = mech_safetensors_find(st, names[i]);
        assert_non_null(t);
        float v;
        memcpy(&v, t->data, 4);
        assert_true(v == (float)i);
    }
    mech_safetensors_close(st);
    remove(path);
}

static void test_safetensors_header_bytes(void **state) {
    (void)state;
    const char *path = mech_test_tmp("hdr.safetensors");
    float a[2] = {1.0f, 2.0f};
    mech_st_write w = {.name = "a", .dtype = MECH_DT_F32, .ndim = 1, .shape = {2}, .data = a};
    const char *mk[] = {"k"}, *mv[] = {"v"};
    mech_err err = {0};
    if (mech_safetensors_write(path, &w, 1, mk, mv, 1, &err)) fail_msg("%s", err.msg);
    size_t len;
    unsigned char *b = mech_test_read(path, &len);
    const char *json = "{\"__metadata__\":{\"k\":\"v\"},\"a\":{\"dtype\":\"F32\",\"shape\":[2],"
                       "\"data_offsets\":[0,8]}}";
    size_t jl = strlen(json), padded = (jl + 7) / 8 * 8;
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | b[i];
    assert_int_equal(n, padded);
    assert_int_equal(n % 8, 0);
    assert_int_equal(len, 8 + padded + 8);
    assert_memory_equal(b + 8, json, jl);
    for (size_t i = jl; i < padded; i++) assert_int_equal(b[8 + i], ' ');
    assert_memory_equal(b + 8 + padded, a, 8);
    // Little-endian on disk regardless of host: 1.0f is 00 00 80 3F.
    assert_int_equal(b[8 + padded + 2], 0x80);
    assert_int_equal(b[8 + padded + 3], 0x3F);
    // The header is valid JSON by our own parser too.
    mech_json *j = NULL;
    assert_int_equal(mech_json_parse((char *)b + 8, n, &j, &err), MECH_OK);
    assert_int_equal(mech_json_get(mech_json_get(j, "a"), "data_offsets")->items[1].inum, 8);
    mech_json_free(j);
    free(b);

    // Without metadata there is no __metadata__ key at all.
    if (mech_safetensors_write(path, &w, 1, NULL, NULL, 0, &err)) fail_msg("%s", err.msg);
    b = mech_test_read(path, &len);
    assert_null(strstr((char *)b + 8, "__metadata__"));
    assert_memory_equal(b + 8, "{\"a\":{\"dtype\":\"F32\"", 19);
    free(b);
    remove(path);
}

// A hand-made file in the exact form the Python library writes, with the
// data section deliberately not 8-aligned (no padding) and tensors listed out
// of offset order.
static void test_safetensors_foreign_file(void **state) {
    (void)state;
    const char *path = mech_test_tmp("foreign.safetensors");
    const char *hdr = "{\"b\":{\"dtype\":\"I8\",\"shape\":[3],\"data_offsets\":[4,7]},"
                      "\"a\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4],\"extra\":1},"
                      "\"z\":{\"dtype\":\"BOOL\",\"shape\":[0],\"data_offsets\":[7,7]}}";
    write_raw(path, hdr, UINT64_MAX, 7);
    mech_safetensors *st = open_ok(path);
    assert_int_equal(st->n, 3);
    assert_string_equal(st->tensors[0].name, "b");
    const mech_st_tensor *b = mech_safetensors_find(st, "b");
    assert_int_equal(b->nbytes, 3);
    assert_ptr_equal(b->data, (const char *)st->map + 8 + strlen(hdr) + 4);
    assert_int_equal(((const signed char *)b->data)[2], 6);
    assert_int_equal(mech_safetensors_find(st, "z")->nbytes, 0);
    mech_safetensors_close(st);
    remove(path);
}

// ---------------------------------------------------------------------------
// Write errors

static void test_safetensors_write_errors(void **state) {
    (void)state;
    const char *path = mech_test_tmp("werr.safetensors");
    float a[2] = {1, 2};
    mech_err err = {0};
    mech_st_write w[2] = {
        {.name = "x", .dtype = MECH_DT_F32, .ndim = 1, .shape = {2}, .data = a},
        {.name = "x", .dtype = MECH_DT_F32, .ndim = 1, .shape = {2}, .data = a},
    };
    assert_int_equal(mech_safetensors_write(path, w, 2, NULL, NULL, 0, &err), MECH_ERR_ARG);
    assert_contains(err.msg, "'x'");
    assert_contains(err.msg, "more than once");
    assert_int_equal(access(path, F_OK), -1);

    w[1].name = "y";
    w[1].shape[0] = -1;
    assert_int_equal(mech_safetensors_write(path, w, 2, NULL, NULL, 0, &err), MECH_ERR_ARG);
    assert_contains(err.msg, "'y'");
    assert_contains(err.msg, "negative");
    w[1].shape[0] = 2;
    w[1].ndim = 9;
    assert_int_equal(mech_safetensors_write(path, w, 2, NULL, NULL, 0, &err), MECH_ERR_ARG);
    assert_contains(err.msg, "ndim 9");
    w[1].ndim = 1;
    w[1].data = NULL;
    assert_int_equal(mech_safetensors_write(path, w, 2, NULL, NULL, 0, &err), MECH_ERR_ARG);
    assert_contains(err.msg, "data is NULL");
    w[1].data = a;
    w[1].name = "__metadata__";
    assert_int_equal(mech_safetensors_write(path, w, 2, NULL, NULL, 0, &err), MECH_ERR_ARG);
    w[1].name = "bad\xFF";
    assert_int_equal(mech_safetensors_write(path, w, 2, NULL, NULL, 0, &err), MECH_ERR_ARG);
    assert_contains(err.msg, "UTF-8");
    w[1].name = "y";
    w[1].dtype = MECH_DT_COUNT_;
    assert_int_equal(mech_safetensors_write(path, w, 2, NULL, NULL, 0, &err), MECH_ERR_ARG);
    assert_contains(err.msg, "dtype");
    w[1].dtype = MECH_DT_F32;
    assert_int_equal(access(path, F_OK), -1);

    // Unwritable destination: I/O error, nothing left behind.
    assert_int_equal(mech_safetensors_write("build/tmp/no/such/dir/x.safetensors", w, 2, NULL, NULL, 0, &err),
                     MECH_ERR_IO);
    assert_contains(err.msg, "no/such/dir/x.safetensors: cannot create");

    // A failed write (past the file size limit) leaves an existing file
    // untouched and no temporary behind.
    assert_int_equal(mech_safetensors_write(path, w, 1, NULL, NULL, 0, &err), MECH_OK);
    size_t len0;
    void *before = mech_test_read(path, &len0);
    mech_test_limit_file_size((long)len0);
    assert_int_equal(mech_safetensors_write(path, w, 2, NULL, NULL, 0, &err), MECH_ERR_IO);
    mech_test_limit_file_size(0);
    assert_int_equal(mech_test_leftovers(path), 0);
    size_t len1;
    void *after = mech_test_read(path, &len1);
    assert_int_equal(len0, len1);
    assert_memory_equal(before, after, len0);
    free(before);
    free(after);
    remove(path);
}

// ---------------------------------------------------------------------------
// Malformed files

static void test_safetensors_bad_paths(void **state) {
    (void)state;
    const char *path = mech_test_tmp("empty.safetensors");
    write_bytes(path, "", 0);
    open_bad(path, MECH_ERR_FORMAT, "0 bytes", "empty", NULL);
    write_bytes(path, "\x10\0\0", 3);
    open_bad(path, MECH_ERR_FORMAT, "3 bytes", "at least 8", NULL);
    remove(path);
    open_bad(path, MECH_ERR_IO, "cannot open", NULL);
    open_bad("build", MECH_ERR_IO, "is a directory", NULL);
    mech_err err = {0};
    assert_int_equal(mech_safetensors_open(NULL, &(mech_safetensors *){0}, &err), MECH_ERR_ARG);
}

// A valid file cut short at every length must fail cleanly with FORMAT.
static void test_safetensors_truncated_everywhere(void **state) {
    (void)state;
    const char *path = mech_test_tmp("full.safetensors");
    const char *cut = mech_test_tmp("cut.safetensors");
    float a[6] = {1, 2, 3, 4, 5, 6};
    uint16_t h[3] = {1, 2, 3};
    mech_st_write w[] = {
        {.name = "wte", .dtype = MECH_DT_F32, .ndim = 2, .shape = {2, 3}, .data = a},
        {.name = "h16", .dtype = MECH_DT_F16, .ndim = 1, .shape = {3}, .data = h},
    };
    const char *mk[] = {"format"}, *mv[] = {"pt"};
    mech_err err = {0};
    assert_int_equal(mech_safetensors_write(path, w, 2, mk, mv, 1, &err), MECH_OK);
    size_t len;
    unsigned char *b = mech_test_read(path, &len);
    for (size_t k = 0; k < len; k++) {
        write_bytes(cut, b, k);
        mech_safetensors *st = NULL;
        mech_status s = mech_safetensors_open(cut, &st, &err);
        if (s == MECH_OK) fail_msg("prefix of %zu bytes of %zu opened", k, len);
        assert_int_equal(s, MECH_ERR_FORMAT);
        assert_null(st);
        assert_contains(err.msg, cut);
        if (k < 8) assert_contains(err.msg, "at least 8");
        else if (k < len - 30) assert_contains(err.msg, "past the end of the file");
        else {
            // Data section cut: the first tensor whose end is past it is named.
            assert_contains(err.msg, "end past the data section");
            assert_contains(err.msg, k < len - 6 ? "'wte'" : "'h16'");
        }
    }
    free(b);
    remove(path);
    remove(cut);
}

static void test_safetensors_bad_header_length(void **state) {
    (void)state;
    const char *path = mech_test_tmp("hlen.safetensors");
    write_raw(path, "{}", 100, 0);
    open_bad(path, MECH_ERR_FORMAT, "header length 100", "past the end", "10 bytes", NULL);
    write_raw(path, "{}", (uint64_t)1 << 40, 0);
    open_bad(path, MECH_ERR_FORMAT, "absurdly large", NULL);
    write_raw(path, "{}", UINT64_MAX - 1, 0);
    open_bad(path, MECH_ERR_FORMAT, "absurdly large", NULL);
    write_raw(path, "", 0, 0);
    open_bad(path, MECH_ERR_FORMAT, "does not start with '{'", NULL);
    remove(path);
}

static void test_safetensors_bad_json(void **state) {
    (void)state;
    const char *path = mech_test_tmp("json.safetensors");
    write_raw(path, "{\"a\": {\"dtype\": \"F32\",", UINT64_MAX, 0);
    open_bad(path, MECH_ERR_FORMAT, "not valid JSON", "expected", NULL);
    write_raw(path, "{\"a\": 1} trailing", UINT64_MAX, 0);
    open_bad(path, MECH_ERR_FORMAT, "not valid JSON", "end of input after the top-level value", NULL);
    write_raw(path, "[]      ", UINT64_MAX, 0);
    open_bad(path, MECH_ERR_FORMAT, "does not start with '{'", NULL);
    write_raw(path, "  {}    ", UINT64_MAX, 0);
    open_bad(path, MECH_ERR_FORMAT, "does not start with '{'", NULL);
    write_raw(path, "{\"a\":\"\xFF\"}", UINT64_MAX, 0);
    open_bad(path, MECH_ERR_FORMAT, "invalid UTF-8", NULL);
    write_raw(path, "{\"a\": 5}", UINT64_MAX, 0);
    open_bad(path, MECH_ERR_FORMAT, "tensor 'a'", "entry is a number", NULL);
    write_raw(path, "{\"a\\u0000b\": {}}", UINT64_MAX, 0);
    open_bad(path, MECH_ERR_FORMAT, "NUL byte", NULL);
    // Padding with NULs (instead of spaces) is not valid JSON.
    write_bytes(path, "\x04\0\0\0\0\0\0\0{}\0\0", 12);
    open_bad(path, MECH_ERR_FORMAT, "not valid JSON", NULL);
    remove(path);
}

// Writes one tensor entry "t" (header hdr) with data_len data bytes and
// expects open to fail naming tensor t and each substring.
#define BAD_ENTRY(path, hdr, data_len, ...)                                                       \
    do {                                                                                          \
        write_raw(path, hdr, UINT64_MAX, data_len);                                               \
        open_bad(path, MECH_ERR_FORMAT, __VA_ARGS__, NULL);                                       \
    } while (0)

static void test_safetensors_bad_entries(void **state) {
    (void)state;
    const char *p = mech_test_tmp("entry.safetensors");
    BAD_ENTRY(p, "{\"t\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "tensor 't'",
              "missing field 'dtype'", "F32, F16");
    BAD_ENTRY(p, "{\"t\":{\"dtype\":7,\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "tensor 't'",
              "'dtype' is a number, expected a string");
    BAD_ENTRY(p, "{\"t\":{\"dtype\":\"F8_E4M3\",\"shape\":[2],\"data_offsets\":[0,2]}}", 2,
              "tensor 't'", "unknown dtype 'F8_E4M3'", "BF16");
    BAD_ENTRY(p, "{\"t\":{\"dtype\":\"f32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
              "unknown dtype 'f32'");
    BAD_ENTRY(p, "{\"t\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", 8, "tensor 't'",
              "missing field 'shape'");
    BAD_ENTRY(p, "{\"t\":{\"dtype\":\"F32\",\"shape\":2,\"data_offsets\":[0,8]}}", 8, "tensor 't'",
              "'shape' is a number");
    BAD_ENTRY(p, "{\"t\":{\"dtype\":\"F32\",\"shape\":[2,-1],\"data_offsets\":[0,8]}}", 8,
              "tensor 't'", "shape[1] is -1, expected a non-negative integer");
    BAD_ENTRY(p, "{\"t\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,8]}}", 8,
              "shape[0] is 2.5 (not an integer");
    BAD_ENTRY(p, "{\"t\":{\"dtype\":\"F32\",\"shape\":[\"2\"],\"data_offsets\":[0,8]}}", 8,
              "shape[0] is a string");
    BAD_ENTRY(p, "{\"t\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", 1,
              "tensor 't'", "9 dimensions", "at most 8");
    BAD_ENTRY(p, "{\"t\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, "tensor 't'",
              "missing field 'data_offsets'");
    BAD_ENTRY(p, "{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}", 8, "tensor 't'",
              "fewer than 2");
    BAD_ENTRY(p, "{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4,8]}}", 8,
              "more than 2");
    BAD_ENTRY(p, "{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":{}}}", 8,
              "'data_offsets' is an object");
    BAD_ENTRY(p, "{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[-8,0]}}", 8,
              "data_offsets[0] is -8");
    BAD_ENTRY(p, "{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,1e1]}}", 8,
              "data_offsets[1] is 10 (not an integer");
    BAD_ENTRY(p, "{\"t\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,0]}}", 8, "tensor 't'",
              "[8, 0] has begin after end");
    // Offsets out of range: end past the data section.
    BAD_ENTRY(p, "{\"t\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8, "tensor 't'",
              "[0, 16] end past the data section (8 bytes)");
    BAD_ENTRY(p, "{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,99999999999999]}}", 8,
              "end past the data section");
    // Span does not match the shape.
    BAD_ENTRY(p, "{\"t\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,20]}}", 20,
              "tensor 't'", "data_offsets [0, 20] span 20 bytes", "prod(shape [2, 3]) * 4 (F32) = 24");
    BAD_ENTRY(p, "{\"t\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[0,3]}}", 3,
              "span 3 bytes", "* 2 (BF16) = 6");
    BAD_ENTRY(p,
              "{\"t\":{\"dtype\":\"F64\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,8]}}",
              8, "tensor 't'", "more than 2^64");
    remove(p);
}

static void test_safetensors_bad_layout(void **state) {
    (void)state;
    const char *p = mech_test_tmp("layout.safetensors");
    // Overlap: b starts inside a.
    BAD_ENTRY(p,
              "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
              "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
              12, "tensor 'b'", "[4, 12] overlap tensor 'a' [0, 8]");
    // Two tensors on the same bytes.
    BAD_ENTRY(p,
              "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
              "\"b\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
              8, "overlap tensor 'a'");
    // Gap between tensors.
    BAD_ENTRY(p,
              "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
              "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[12,16]}}",
              16, "tensor 'b'", "gap of 4 bytes after tensor 'a'");
    // Gap at the start.
    BAD_ENTRY(p, "{\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "tensor 'b'",
              "gap of 4 bytes at the start");
    // Trailing bytes after the last tensor.
    BAD_ENTRY(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 9,
              "data section is 9 bytes", "cover only 4", "'a'", "5 trailing bytes");
    BAD_ENTRY(p, "{}", 3, "data section is 3 bytes", "no tensors");
    // Duplicate names.
    BAD_ENTRY(p,
              "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
              "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
              8, "tensor 'a'", "more than once");
    remove(p);
}

static void test_safetensors_bad_metadata(void **state) {
    (void)state;
    const char *p = mech_test_tmp("meta.safetensors");
    BAD_ENTRY(p, "{\"__metadata__\":{\"format\":\"pt\",\"step\":5}}", 0, "'__metadata__'",
              "key 'step' has a number value, expected a string");
    BAD_ENTRY(p, "{\"__metadata__\":{\"x\":null}}", 0, "key 'x' has null value");
    BAD_ENTRY(p, "{\"__metadata__\":[\"a\"]}", 0, "'__metadata__' is an array, expected an object");
    BAD_ENTRY(p, "{\"__metadata__\":{},\"__metadata__\":{}}", 0, "'__metadata__' appears twice");
    // A valid one with only metadata.
    write_raw(p, "{\"__metadata__\":{\"a\":\"1\",\"b\":\"\"}}", UINT64_MAX, 0);
    mech_safetensors *st = open_ok(p);
    assert_int_equal(st->n, 0);
    assert_string_equal(mech_safetensors_meta(st, "b"), "");
    assert_string_equal(mech_safetensors_meta(st, "a"), "1");
    mech_safetensors_close(st);
    remove(p);
}

// ---------------------------------------------------------------------------
// Conversions

static uint32_t bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static void test_dtype_names_sizes(void **state) {
    (void)state;
    const char *names[] = {"F32", "F16", "BF16", "F64", "I64", "I32", "I16", "I8", "U8", "BOOL"};
    size_t sizes[] = {4, 2, 2, 8, 8, 4, 2, 1, 1, 1};
    for (int i = 0; i < MECH_DT_COUNT_; i++) {
        assert_string_equal(mech_dtype_name((mech_dtype)i), names[i]);
        assert_int_equal(mech_dtype_size((mech_dtype)i), sizes[i]);
    }
    assert_int_equal(mech_dtype_size(MECH_DT_COUNT_), 0);
}

static void test_f16_known_values(void **state) {
    (void)state;
    assert_true(mech_f16_to_f32(0x3C00) == 1.0f);
    assert_true(mech_f16_to_f32(0xC000) == -2.0f);
    assert_true(mech_f16_to_f32(0x7BFF) == 65504.0f);
    assert_true(mech_f16_to_f32(0x0001) == ldexpf(1, -24));
    assert_true(mech_f16_to_f32(0x03FF) == 1023 * ldexpf(1, -24));
    assert_true(mech_f16_to_f32(0x0400) == ldexpf(1, -14));
    assert_true(mech_f16_to_f32(0x3555) == 0.333251953125f);
    assert_int_equal(bits(mech_f16_to_f32(0x0000)), 0);
    assert_int_equal(bits(mech_f16_to_f32(0x8000)), 0x80000000u);
    assert_true(isinf(mech_f16_to_f32(0x7C00)) && mech_f16_to_f32(0x7C00) > 0);
    assert_true(isinf(mech_f16_to_f32(0xFC00)) && mech_f16_to_f32(0xFC00) < 0);
    assert_true(isnan(mech_f16_to_f32(0x7E00)));
    assert_true(isnan(mech_f16_to_f32(0x7C01))); // signalling NaN stays NaN

    assert_int_equal(mech_f32_to_f16(1.0f), 0x3C00);
    assert_int_equal(mech_f32_to_f16(-2.0f), 0xC000);
    assert_int_equal(mech_f32_to_f16(65504.0f), 0x7BFF);
    assert_int_equal(mech_f32_to_f16(65519.99f), 0x7BFF);
    assert_int_equal(mech_f32_to_f16(65520.0f), 0x7C00); // tie -> even -> inf
    assert_int_equal(mech_f32_to_f16(1e6f), 0x7C00);
    assert_int_equal(mech_f32_to_f16(-1e6f), 0xFC00);
    assert_int_equal(mech_f32_to_f16(INFINITY), 0x7C00);
    assert_int_equal(mech_f32_to_f16(-INFINITY), 0xFC00);
    assert_int_equal(mech_f32_to_f16(0.0f), 0x0000);
    assert_int_equal(mech_f32_to_f16(-0.0f), 0x8000);
    uint16_t nan = mech_f32_to_f16(NAN);
    assert_int_equal(nan & 0x7C00, 0x7C00);
    assert_true((nan & 0x3FF) != 0);
    // Subnormals and their rounding.
    assert_int_equal(mech_f32_to_f16(ldexpf(1, -24)), 0x0001);
    assert_int_equal(mech_f32_to_f16(ldexpf(1, -25)), 0x0000);              // tie -> even 0
    assert_int_equal(mech_f32_to_f16(nextafterf(ldexpf(1, -25), 1)), 0x0001); // just above tie
    assert_int_equal(mech_f32_to_f16(3 * ldexpf(1, -25)), 0x0002);          // 1.5 units -> 2
    assert_int_equal(mech_f32_to_f16(5 * ldexpf(1, -25)), 0x0002);          // 2.5 units -> 2
    assert_int_equal(mech_f32_to_f16(ldexpf(1, -26)), 0x0000);
    assert_int_equal(mech_f32_to_f16(ldexpf(1, -14)), 0x0400);
    assert_int_equal(mech_f32_to_f16(ldexpf(1, -14) - ldexpf(1, -25)), 0x0400); // rounds up to normal
    assert_int_equal(mech_f32_to_f16(-ldexpf(1, -24)), 0x8001);
    assert_int_equal(mech_f32_to_f16(1e-30f), 0x0000);
    // Normal rounding: 1 + 2^-11 is halfway between 1 and 1 + 2^-10.
    assert_int_equal(mech_f32_to_f16(1.0f + ldexpf(1, -11)), 0x3C00);
    assert_int_equal(mech_f32_to_f16(1.0f + 3 * ldexpf(1, -11)), 0x3C02);
    assert_int_equal(mech_f32_to_f16(nextafterf(1.0f + ldexpf(1, -11), 2)), 0x3C01);
    assert_int_equal(mech_f32_to_f16(0.1f), 0x2E66);
    assert_int_equal(mech_f32_to_f16(2047.5f), 0x67FF + 1); // 2047.5 -> tie -> 2048 (even)
}

static void test_bf16_known_values(void **state) {
    (void)state;
    assert_true(mech_bf16_to_f32(0x3F80) == 1.0f);
    assert_true(mech_bf16_to_f32(0xC000) == -2.0f);
    assert_true(mech_bf16_to_f32(0x0001) == ldexpf(1, -133)); // bf16 subnormal
    assert_true(isinf(mech_bf16_to_f32(0x7F80)));
    assert_true(isnan(mech_bf16_to_f32(0x7FC0)));
    assert_int_equal(mech_f32_to_bf16(1.0f), 0x3F80);
    assert_int_equal(mech_f32_to_bf16(-2.0f), 0xC000);
    assert_int_equal(mech_f32_to_bf16(1.0f + ldexpf(1, -8)), 0x3F80);      // tie -> even
    assert_int_equal(mech_f32_to_bf16(1.0f + 3 * ldexpf(1, -8)), 0x3F82);  // tie -> even (up)
    assert_int_equal(mech_f32_to_bf16(nextafterf(1.0f + ldexpf(1, -8), 2)), 0x3F81);
    assert_int_equal(mech_f32_to_bf16(3.14159265f), 0x4049);
    assert_int_equal(mech_f32_to_bf16(FLT_MAX), 0x7F80); // rounds up to inf
    assert_int_equal(mech_f32_to_bf16(INFINITY), 0x7F80);
    assert_int_equal(mech_f32_to_bf16(-INFINITY), 0xFF80);
    assert_int_equal(mech_f32_to_bf16(-0.0f), 0x8000);
    assert_int_equal(mech_f32_to_bf16(ldexpf(1, -133)), 0x0001);
    uint16_t nan = mech_f32_to_bf16(NAN);
    assert_true((nan & 0x7F80) == 0x7F80 && (nan & 0x7F));
    // A NaN whose payload sits only in the low 16 bits must stay NaN.
    float snan;
    uint32_t u = 0x7F800001;
    memcpy(&snan, &u, 4);
    assert_true(isnan(mech_bf16_to_f32(mech_f32_to_bf16(snan))));
}

// Every half converts to float and back to itself; NaNs stay NaN.
static void test_f16_bf16_exhaustive_round_trip(void **state) {
    (void)state;
    for (uint32_t i = 0; i < 65536; i++) {
        uint16_t h = (uint16_t)i;
        float f = mech_f16_to_f32(h);
        if ((h & 0x7C00) == 0x7C00 && (h & 0x3FF)) {
            assert_true(isnan(f));
            assert_true(isnan(mech_f16_to_f32(mech_f32_to_f16(f))));
        } else if (mech_f32_to_f16(f) != h) {
            fail_msg("f16 0x%04X -> %g -> 0x%04X", h, f, mech_f32_to_f16(f));
        }
        float g = mech_bf16_to_f32(h);
        if ((h & 0x7F80) == 0x7F80 && (h & 0x7F)) assert_true(isnan(g));
        else if (mech_f32_to_bf16(g) != h) fail_msg("bf16 0x%04X -> %g -> 0x%04X", h, g, mech_f32_to_bf16(g));
    }
}

// f32 -> f16 against brute force: the nearest of all finite halves (ties to
// the even bit pattern), overflow to inf past 65520.
static void test_f16_rounding_brute_force(void **state) {
    (void)state;
    static double vals[0x7C00]; // non-negative finite halves in increasing order
    for (int i = 0; i < 0x7C00; i++) vals[i] = (double)mech_f16_to_f32((uint16_t)i);
    uint32_t seed = 1;
    for (int trial = 0; trial < 300000; trial++) {
        seed = seed * 1664525u + 1013904223u;
        // Exponents concentrated around the half range.
        uint32_t x = (seed & 0x807FFFFF) | ((uint32_t)(100 + (seed >> 8) % 50) << 23);
        if (trial % 4 == 0) x = seed; // and anything at all
        float f;
        memcpy(&f, &x, 4);
        if (isnan(f)) continue;
        double a = fabs((double)f);
        uint16_t want;
        if (a >= 65520.0) {
            want = 0x7C00;
        } else {
            int lo = 0, hi = 0x7BFF;
            while (lo < hi) { // first index with vals >= a
                int mid = (lo + hi) / 2;
                if (vals[mid] < a) lo = mid + 1;
                else hi = mid;
            }
            int best = lo;
            if (lo > 0) {
                double dlo = a - vals[lo - 1], dhi = vals[lo] - a;
                if (dlo < dhi || (dlo == dhi && ((lo - 1) & 1) == 0)) best = lo - 1;
            }
            want = (uint16_t)best;
        }
        if (signbit(f)) want |= 0x8000;
        uint16_t got = mech_f32_to_f16(f);
        if (got != want) fail_msg("f32 0x%08X (%g): got 0x%04X want 0x%04X", x, f, got, want);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_safetensors_round_trip),
        cmocka_unit_test(test_safetensors_many_tensors_find),
        cmocka_unit_test(test_safetensors_header_bytes),
        cmocka_unit_test(test_safetensors_foreign_file),
        cmocka_unit_test(test_safetensors_write_errors),
        cmocka_unit_test(test_safetensors_bad_paths),
        cmocka_unit_test(test_safetensors_truncated_everywhere),
        cmocka_unit_test(test_safetensors_bad_header_length),
        cmocka_unit_test(test_safetensors_bad_json),
        cmocka_unit_test(test_safetensors_bad_entries),
        cmocka_unit_test(test_safetensors_bad_layout),
        cmocka_unit_test(test_safetensors_bad_metadata),
        cmocka_unit_test(test_dtype_names_sizes),
        cmocka_unit_test(test_f16_known_values),
        cmocka_unit_test(test_bf16_known_values),
        cmocka_unit_test(test_f16_bf16_exhaustive_round_trip),
        cmocka_unit_test(test_f16_rounding_brute_force),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
