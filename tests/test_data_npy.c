/*
** tests/test_data_npy.c: .npy round trips and exact header bytes, the reader
** on malformed files, and .npz archives checked independently with Python's
** standard library (zipfile + ast; numpy is not needed), including forced
** ZIP64 records.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/support/check.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "data/data.h"

// Not public: sizes at or above it use ZIP64 records (data/npy.c).
extern uint64_t mech_npz_zip64_limit_;

static void assert_contains(const char *hay, const char *needle) {
    if (!strstr(hay, needle)) fail_msg("message '%s' does not contain '%s'", hay, needle);
}

static void write_bytes(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    if (n) assert_int_equal(fwrite(data, 1, n, f), n);
    fclose(f);
}

static int file_exists(const char *path) { return access(path, F_OK) == 0; }

static void read_bad(const char *path, mech_status code, const char *want) {
    mech_err err = {0};
    float *d = (float *)0x1;
    int nd = -1;
    int64_t sh[MECH_MAX_DIMS];
    mech_status st = mech_npy_read(path, &d, &nd, sh, &err);
    if (st == MECH_OK) {
        mech_free(d);
        fail_msg("%s read, expected failure", path);
    }
    if (st != code) fail_msg("got %s (%s), expected %s", mech_strerror(st), err.msg, mech_strerror(code));
    assert_null(d);
    assert_contains(err.msg, path);
    assert_contains(err.msg, want);
}

// Builds a .npy by hand: magic, version major.minor, header dict text padded
// to 64 with '\n', then nbytes of data.
static size_t make_npy(unsigned char *out, int major, const char *dict, const void *data,
                       size_t nbytes) {
    size_t dl = strlen(dict), pre = major == 1 ? 10 : 12;
    size_t total = (pre + dl + 1 + 63) / 64 * 64, hl = total - pre;
    memcpy(out, "\x93NUMPY", 6);
    out[6] = (unsigned char)major;
    out[7] = 0;
    for (size_t i = 0; i < pre - 8; i++) out[8 + i] = (unsigned char)(hl >> (8 * i));
    memcpy(out + pre, dict, dl);
    memset(out + pre + dl, ' ', hl - dl - 1);
    out[total - 1] = '\n';
    memcpy(out + total, data, nbytes);
    return total + nbytes;
}

// ---------------------------------------------------------------------------
// .npy

static void test_npy_round_trip(void **state) {
    (void)state;
    const char *path = mech_test_tmp("rt.npy");
    struct {
        int ndim;
        int64_t shape[MECH_MAX_DIMS];
    } cases[] = {
        {2, {2, 3}}, {1, {5}}, {0, {0}}, {2, {0, 4}}, {8, {1, 2, 1, 3, 1, 2, 1, 2}}, {3, {7, 1, 9}},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        size_t n = 1;
        for (int i = 0; i < cases[c].ndim; i++) n *= (size_t)cases[c].shape[i];
        float *x = malloc((n ? n : 1) * sizeof *x);
        for (size_t i = 0; i < n; i++) x[i] = (float)i * 0.5f - 3.0f;
        if (n > 2) x[1] = NAN, x[2] = -INFINITY;
        mech_err err = {0};
        if (mech_npy_write(path, x, cases[c].ndim, cases[c].shape, &err)) fail_msg("%s", err.msg);
        float *y = NULL;
        int nd = -1;
        int64_t sh[MECH_MAX_DIMS];
        if (mech_npy_read(path, &y, &nd, sh, &err)) fail_msg("%s", err.msg);
        assert_non_null(y);
        assert_int_equal(nd, cases[c].ndim);
        for (int i = 0; i < nd; i++) assert_int_equal(sh[i], cases[c].shape[i]);
        if (n) assert_memory_equal(x, y, n * sizeof *x); // bit-exact, NaN included
        mech_free(y);
        free(x);
    }
    remove(path);
}

static void test_npy_header_bytes(void **state) {
    (void)state;
    const char *path = mech_test_tmp("hdr.npy");
    struct {
        int ndim;
        int64_t shape[2];
        const char *dict;
    } cases[] = {
        {2, {2, 3}, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"},
        {1, {5}, "{'descr': '<f4', 'fortran_order': False, 'shape': (5,), }"},
        {0, {0}, "{'descr': '<f4', 'fortran_order': False, 'shape': (), }"},
    };
    float x[6] = {1.0f, -2.0f, 0.5f, 3.0f, 4.0f, 5.5f};
    for (size_t c = 0; c < 3; c++) {
        mech_err err = {0};
        if (mech_npy_write(path, x, cases[c].ndim, cases[c].shape, &err)) fail_msg("%s", err.msg);
        size_t len;
        unsigned char *b = mech_test_read(path, &len);
        size_t dl = strlen(cases[c].dict);
        size_t total = (10 + dl + 1 + 63) / 64 * 64;
        assert_int_equal(total, 128); // as numpy's own: data at byte 128
        assert_memory_equal(b, "\x93NUMPY\x01\x00", 8);
        assert_int_equal(b[8] | b[9] << 8, total - 10);
        assert_memory_equal(b + 10, cases[c].dict, dl);
        for (size_t i = 10 + dl; i < total - 1; i++) assert_int_equal(b[i], ' ');
        assert_int_equal(b[total - 1], '\n');
        size_t n = c == 0 ? 6 : c == 1 ? 5 : 1;
        assert_int_equal(len, total + 4 * n);
        // 1.0f little-endian is 00 00 80 3F.
        assert_memory_equal(b + total, "\x00\x00\x80\x3f", 4);
        free(b);
    }
    // A long shape pushes the header to 128 bytes, still 64-aligned.
    int64_t big[8] = {1000000000, 1000000000, 1, 1, 1, 1, 1, 0};
    mech_err err = {0};
    if (mech_npy_write(path, NULL, 8, big, &err)) fail_msg("%s", err.msg);
    size_t len;
    unsigned char *b = mech_test_read(path, &len);
    assert_int_equal(len, 128);
    assert_int_equal(b[127], '\n');
    assert_non_null(strstr((char *)b + 10, "(1000000000, 1000000000, 1, 1, 1, 1, 1, 0), }"));
    free(b);
    remove(path);
}

static void test_npy_write_errors(void **state) {
    (void)state;
    const char *path = mech_test_tmp("werr.npy");
    float x[2] = {1, 2};
    int64_t sh[1] = {2};
    mech_err err = {0};
    int64_t neg[1] = {-2};
    assert_int_equal(mech_npy_write(path, x, 1, neg, &err), MECH_ERR_ARG);
    assert_contains(err.msg, "shape[0] = -2");
    assert_int_equal(mech_npy_write(path, x, 9, sh, &err), MECH_ERR_ARG);
    assert_contains(err.msg, "ndim 9");
    assert_int_equal(mech_npy_write(path, NULL, 1, sh, &err), MECH_ERR_ARG);
    assert_contains(err.msg, "data is NULL");
    assert_false(file_exists(path));
    assert_int_equal(mech_npy_write("build/tmp/no/such/dir/x.npy", x, 1, sh, &err), MECH_ERR_IO);
    assert_contains(err.msg, "no/such/dir/x.npy: cannot create");
    // A failed write (here: past the file size limit) leaves an existing
    // file as it was and no temporary behind.
    assert_int_equal(mech_npy_write(path, x, 1, sh, &err), MECH_OK);
    static float z[4096];
    int64_t szl[1] = {4096};
    mech_test_limit_file_size(1000);
    assert_int_equal(mech_npy_write(path, z, 1, szl, &err), MECH_ERR_IO);
    mech_test_limit_file_size(0);
    assert_contains(err.msg, path);
    assert_int_equal(mech_test_leftovers(path), 0);
    float *y;
    int nd;
    int64_t s2[MECH_MAX_DIMS];
    assert_int_equal(mech_npy_read(path, &y, &nd, s2, &err), MECH_OK);
    assert_true(y[0] == 1 && y[1] == 2);
    mech_free(y);
    remove(path);
}

// Headers other writers produce: version 2.0 and 3.0, double quotes, keys in
// another order, no trailing comma, Python 2 longs, numpy's growth padding.
static void test_npy_read_variants(void **state) {
    (void)state;
    const char *path = mech_test_tmp("var.npy");
    float x[6] = {1, 2, 3, 4, 5, 6};
    const struct {
        int major;
        const char *dict;
        int ndim;
        int64_t d0;
    } cases[] = {
        {2, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 2, 2},
        {3, "{'descr': '<f4', 'fortran_order': False, 'shape': (6,), }", 1, 6},
        {1, "{\"shape\": (3, 2), \"descr\": \"<f4\", \"fortran_order\": False}", 2, 3},
        {1, "{'descr':'<f4','fortran_order':False,'shape':(6L,)}", 1, 6},
        {1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }                    ", 2, 2},
        {1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,2,3) }", 3, 1},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        unsigned char b[512];
        size_t n = make_npy(b, cases[c].major, cases[c].dict, x, sizeof x);
        write_bytes(path, b, n);
        float *y;
        int nd;
        int64_t sh[MECH_MAX_DIMS];
        mech_err err = {0};
        if (mech_npy_read(path, &y, &nd, sh, &err)) fail_msg("case %zu: %s", c, err.msg);
        assert_int_equal(nd, cases[c].ndim);
        assert_int_equal(sh[0], cases[c].d0);
        assert_memory_equal(y, x, sizeof x);
        mech_free(y);
    }
    remove(path);
}

static void test_npy_read_malformed(void **state) {
    (void)state;
    const char *path = mech_test_tmp("bad.npy");
    float x[6] = {1, 2, 3, 4, 5, 6};
    unsigned char b[512];
    size_t n;

    read_bad(mech_test_tmp("missing.npy"), MECH_ERR_IO, "cannot open");
    read_bad("build", MECH_ERR_IO, "not a regular file");

    write_bytes(path, "PK\x03\x04 not npy at all", 20);
    read_bad(path, MECH_ERR_FORMAT, "magic");
    write_bytes(path, "\x93NUM", 4);
    read_bad(path, MECH_ERR_FORMAT, "too short for the magic");

    n = make_npy(b, 1, "{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }", x, 24);
    write_bytes(path, b, n);
    read_bad(path, MECH_ERR_FORMAT, "dtype '<f8' (float64), expected '<f4'");
    n = make_npy(b, 1, "{'descr': '>f4', 'fortran_order': False, 'shape': (6,), }", x, 24);
    write_bytes(path, b, n);
    read_bad(path, MECH_ERR_FORMAT, "'>f4' (big-endian float32)");
    n = make_npy(b, 1, "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (6,), }", x, 24);
    write_bytes(path, b, n);
    read_bad(path, MECH_ERR_FORMAT, "structured dtype");
    n = make_npy(b, 1, "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }", x, 24);
    write_bytes(path, b, n);
    read_bad(path, MECH_ERR_FORMAT, "fortran_order is True, expected False");
    n = make_npy(b, 1, "{'descr': '<f4', 'shape': (2, 3), }", x, 24);
    write_bytes(path, b, n);
    read_bad(path, MECH_ERR_FORMAT, "lacks 'fortran_order'");
    n = make_npy(b, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (6,), 'x': 1}", x, 24);
    write_bytes(path, b, n);
    read_bad(path, MECH_ERR_FORMAT, "unexpected key 'x'");
    n = make_npy(b, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (6, -1), }", x, 24);
    write_bytes(path, b, n);
    read_bad(path, MECH_ERR_FORMAT, "non-negative integer");
    n = make_npy(b, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,1,6), }", x, 24);
    write_bytes(path, b, n);
    read_bad(path, MECH_ERR_FORMAT, "more than 8 dimensions");
    n = make_npy(b, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (6,) } junk", x, 24);
    write_bytes(path, b, n);
    read_bad(path, MECH_ERR_FORMAT, "unexpected text after the header dict");
    n = make_npy(b, 1, "['descr', '<f4']", x, 24);
    write_bytes(path, b, n);
    read_bad(path, MECH_ERR_FORMAT, "expected '{'");
    n = make_npy(b, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (6,), }", x, 24);
    b[6] = 4;
    write_bytes(path, b, n);
    read_bad(path, MECH_ERR_FORMAT, "unsupported .npy format version 4.0");
    // Data size must match the shape exactly.
    n = make_npy(b, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (7,), }", x, 24);
    write_bytes(path, b, n);
    read_bad(path, MECH_ERR_FORMAT, "truncated data: 24 bytes, expected prod(shape (7,)) * 4 = 28");
    n = make_npy(b, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (5,), }", x, 24);
    write_bytes(path, b, n);
    read_bad(path, MECH_ERR_FORMAT, "extra bytes after the data: 24 bytes, expected");

    // A valid file cut at every length fails cleanly.
    int64_t sh[2] = {2, 3};
    mech_err err = {0};
    assert_int_equal(mech_npy_write(path, x, 2, sh, &err), MECH_OK);
    size_t len;
    unsigned char *full = mech_test_read(path, &len);
    for (size_t k = 0; k < len; k++) {
        write_bytes(path, full, k);
        float *y = (float *)0x1;
        int nd;
        int64_t s[MECH_MAX_DIMS];
        mech_status st = mech_npy_read(path, &y, &nd, s, &err);
        if (st != MECH_ERR_FORMAT) fail_msg("cut at %zu: %s", k, err.msg);
        assert_null(y);
        assert_contains(err.msg, path);
        if (k >= 10 && k < 128) assert_contains(err.msg, "truncated header");
        if (k >= 128) assert_contains(err.msg, "truncated data");
    }
    free(full);
    remove(path);
}

// ---------------------------------------------------------------------------
// .npz

static int have_python(void) { return system("python3 -c pass >/dev/null 2>&1") == 0; }

// Checks archive path with Python's zipfile (testzip: every CRC) and ast
// (every .npy header), comparing names, shapes and a few values. The script
// avoids single quotes so it can sit inside the shell's single quotes.
static void python_check_npz(const char *path, int expect_zip64) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "python3 -c '\n"
             "import zipfile, ast, struct, sys\n"
             "z = zipfile.ZipFile(sys.argv[1])\n"
             "bad = z.testzip()\n"
             "assert bad is None, bad\n"
             "names = z.namelist()\n"
             "assert names == [\"resid_pre.0.npy\", \"scalar.npy\", \"caf\\u00e9.npy\", \"empty.npy\"], names\n"
             "def load(n):\n"
             "    b = z.read(n)\n"
             "    assert b[:8] == b\"\\x93NUMPY\\x01\\x00\", b[:8]\n"
             "    hl = struct.unpack(\"<H\", b[8:10])[0]\n"
             "    assert (10 + hl) %% 64 == 0 and b[9 + hl:10 + hl] == b\"\\n\"\n"
             "    h = ast.literal_eval(b[10:10 + hl].decode(\"latin1\"))\n"
             "    assert h[\"descr\"] == \"<f4\" and h[\"fortran_order\"] is False, h\n"
             "    d = b[10 + hl:]\n"
             "    return h[\"shape\"], struct.unpack(\"<%%df\" %% (len(d) // 4), d)\n"
             "s, v = load(\"resid_pre.0.npy\")\n"
             "assert s == (2, 3), s\n"
             "assert v == (0.0, 0.5, 1.0, 1.5, 2.0, -2.5), v\n"
             "s, v = load(\"scalar.npy\")\n"
             "assert s == () and v == (42.0,), (s, v)\n"
             "s, v = load(\"caf\\u00e9.npy\")\n"
             "assert s == (3,) and v == (1.0, 2.0, 3.0), (s, v)\n"
             "s, v = load(\"empty.npy\")\n"
             "assert s == (0, 7) and v == (), (s, v)\n"
             "for i in z.infolist():\n"
             "    assert i.compress_type == zipfile.ZIP_STORED\n"
             "    assert i.file_size == i.compress_size\n"
             "    assert i.date_time == (1980, 1, 1, 0, 0, 0)\n"
             "z.close()\n"
             "data = open(sys.argv[1], \"rb\").read()\n"
             "assert (b\"PK\\x06\\x06\" in data) == %s, \"zip64 end record\"\n"
             "' '%s'",
             expect_zip64 ? "True" : "False", path);
    int rc = system(cmd);
    if (!(WIFEXITED(rc) && WEXITSTATUS(rc) == 0)) fail_msg("python3 rejected %s (status %d)", path, rc);
}

static void write_test_npz(const char *path) {
    mech_npz *z = NULL;
    mech_err err = {0};
    if (mech_npz_create(path, &z, &err)) fail_msg("%s", err.msg);
    float a[6] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, -2.5f};
    int64_t sa[2] = {2, 3};
    float s = 42.0f;
    float c[3] = {1, 2, 3};
    int64_t sc[1] = {3};
    int64_t se[2] = {0, 7};
    if (mech_npz_add(z, "resid_pre.0", a, 2, sa, &err)) fail_msg("%s", err.msg);
    // A duplicate is refused and the archive stays usable.
    assert_int_equal(mech_npz_add(z, "resid_pre.0", a, 2, sa, &err), MECH_ERR_ARG);
    assert_contains(err.msg, "'resid_pre.0'");
    assert_contains(err.msg, "twice");
    if (mech_npz_add(z, "scalar", &s, 0, NULL, &err)) fail_msg("%s", err.msg);
    if (mech_npz_add(z, "caf\xC3\xA9", c, 1, sc, &err)) fail_msg("%s", err.msg);
    if (mech_npz_add(z, "empty", NULL, 2, se, &err)) fail_msg("%s", err.msg);
    assert_int_equal(mech_test_leftovers(path), 1);
    if (mech_npz_close(z, &err)) fail_msg("%s", err.msg);
    assert_int_equal(mech_test_leftovers(path), 0);
    assert_true(file_exists(path));
}

static void test_npz_structure(void **state) {
    (void)state;
    // Without Python: walk the local headers and the end record by hand.
    const char *path = mech_test_tmp("s.npz");
    write_test_npz(path);
    size_t len;
    unsigned char *b = mech_test_read(path, &len);
    assert_memory_equal(b, "PK\x03\x04", 4);
    assert_int_equal(b[8] | b[9] << 8, 0); // stored
    uint32_t crc = (uint32_t)(b[14] | b[15] << 8 | b[16] << 16 | (uint32_t)b[17] << 24);
    uint32_t size = (uint32_t)(b[18] | b[19] << 8 | b[20] << 16 | (uint32_t)b[21] << 24);
    unsigned nl = b[26] | b[27] << 8, xl = b[28] | b[29] << 8;
    assert_int_equal(nl, strlen("resid_pre.0.npy"));
    assert_memory_equal(b + 30, "resid_pre.0.npy", nl);
    assert_int_equal(xl, 0);
    assert_int_equal(size, 128 + 24);
    const unsigned char *member = b + 30 + nl;
    assert_memory_equal(member, "\x93NUMPY", 6);
    // CRC-32 computed independently (bitwise, polynomial 0xEDB88320).
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < size; i++) {
        c ^= member[i];
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1)));
    }
    assert_int_equal(c ^ 0xFFFFFFFFu, crc);
    const unsigned char *e = b + len - 22;
    assert_memory_equal(e, "PK\x05\x06", 4);
    assert_int_equal(e[10] | e[11] << 8, 4); // entries
    uint32_t cd_off = (uint32_t)(e[16] | e[17] << 8 | e[18] << 16 | (uint32_t)e[19] << 24);
    assert_memory_equal(b + cd_off, "PK\x01\x02", 4);
    // The UTF-8 name sets general purpose bit 11 in its central header.
    const unsigned char *cd = b + cd_off;
    for (int i = 0; i < 2; i++) cd += 46 + (cd[28] | cd[29] << 8) + (cd[30] | cd[31] << 8);
    assert_memory_equal(cd + 46, "caf\xC3\xA9.npy", 9);
    assert_int_equal((cd[8] | cd[9] << 8) & 0x800, 0x800);
    free(b);
    remove(path);
}

static void test_npz_python_check(void **state) {
    (void)state;
    if (!have_python()) {
        fprintf(stderr, "python3 not found: skipping the independent .npz check\n");
        skip();
    }
    const char *path = mech_test_tmp("py.npz");
    write_test_npz(path);
    python_check_npz(path, 0);
    remove(path);
}

// Lowering the ZIP64 threshold makes every member and offset take the ZIP64
// path, which Python must still read (as it would a > 4 GiB archive).
static void test_npz_zip64_python_check(void **state) {
    (void)state;
    if (!have_python()) {
        fprintf(stderr, "python3 not found: skipping the ZIP64 .npz check\n");
        skip();
    }
    const char *path = mech_test_tmp("z64.npz");
    uint64_t saved = mech_npz_zip64_limit_;
    mech_npz_zip64_limit_ = 64;
    write_test_npz(path);
    mech_npz_zip64_limit_ = saved;
    python_check_npz(path, 1);
    // The first local header carries the ZIP64 extra with both sizes.
    size_t len;
    unsigned char *b = mech_test_read(path, &len);
    assert_memory_equal(b + 18, "\xff\xff\xff\xff\xff\xff\xff\xff", 8);
    assert_int_equal(b[28] | b[29] << 8, 20);
    assert_memory_equal(b + 30 + 15, "\x01\x00\x10\x00", 4);
    free(b);
    remove(path);
}

static void test_npz_abort_and_errors(void **state) {
    (void)state;
    const char *path = mech_test_tmp("ab.npz");
    mech_npz *z = NULL;
    mech_err err = {0};
    assert_int_equal(mech_npz_create(path, &z, &err), MECH_OK);
    float x[2] = {1, 2};
    int64_t sh[1] = {2};
    assert_int_equal(mech_npz_add(z, "x", x, 1, sh, &err), MECH_OK);
    assert_int_equal(mech_npz_add(z, "", x, 1, sh, &err), MECH_ERR_ARG);
    assert_contains(err.msg, "empty");
    int64_t neg[1] = {-1};
    assert_int_equal(mech_npz_add(z, "y", x, 1, neg, &err), MECH_ERR_ARG);
    assert_contains(err.msg, "array 'y'");
    assert_contains(err.msg, "negative");
    assert_int_equal(mech_npz_add(z, "y", NULL, 1, sh, &err), MECH_ERR_ARG);
    assert_contains(err.msg, "data is NULL");
    assert_int_equal(mech_test_leftovers(path), 1);
    mech_npz_abort(z);
    assert_int_equal(mech_test_leftovers(path), 0);
    assert_false(file_exists(path));
    mech_npz_abort(NULL);

    z = (mech_npz *)0x1;
    assert_int_equal(mech_npz_create("build/tmp/no/such/dir/a.npz", &z, &err), MECH_ERR_IO);
    assert_null(z);
    assert_contains(err.msg, "no/such/dir/a.npz: cannot create");

    // An empty archive is valid (np.savez with no arrays writes one too).
    assert_int_equal(mech_npz_create(path, &z, &err), MECH_OK);
    assert_int_equal(mech_npz_close(z, &err), MECH_OK);
    size_t len;
    unsigned char *b = mech_test_read(path, &len);
    assert_int_equal(len, 22);
    assert_memory_equal(b, "PK\x05\x06", 4);
    free(b);

    // The destination is a directory: refused up front, nothing created.
    remove(path);
    mkdir(path, 0755);
    assert_int_equal(mech_npz_create(path, &z, &err), MECH_ERR_IO);
    assert_contains(err.msg, "is a directory");
    assert_int_equal(mech_test_leftovers(path), 0);
    rmdir(path);
    // An archive that fails mid-way (file size limit) is discarded whole.
    static float big[8192];
    int64_t sb[1] = {8192};
    assert_int_equal(mech_npz_create(path, &z, &err), MECH_OK);
    mech_test_limit_file_size(4000);
    mech_status st = mech_npz_add(z, "big", big, 1, sb, &err);
    if (st == MECH_OK) st = mech_npz_close(z, &err);
    else mech_npz_abort(z);
    mech_test_limit_file_size(0);
    assert_int_equal(st, MECH_ERR_IO);
    assert_int_equal(mech_test_leftovers(path), 0);
    assert_false(file_exists(path));
}

// Devices and FIFOs are written into, never replaced; symlinks are written
// through to their target.
static void test_outfile_special_destinations(void **state) {
    (void)state;
    mech_err err = {0};
    float x[3] = {1, 2, 3};
    int64_t sh[1] = {3};
    assert_int_equal(mech_npy_write("/dev/null", x, 1, sh, &err), MECH_OK);
    struct stat sb;
    assert_int_equal(stat("/dev/null", &sb), 0);
    assert_true(S_ISCHR(sb.st_mode));
    char target[600], link[600];
    snprintf(target, sizeof target, "%s", mech_test_tmp("target.npy"));
    snprintf(link, sizeof link, "%s", mech_test_tmp("link.npy"));
    write_bytes(target, "old", 3);
    remove(link);
    char rel[600];
    snprintf(rel, sizeof rel, "%s", strrchr(target, '/') + 1);
    assert_int_equal(symlink(rel, link), 0);
    assert_int_equal(mech_npy_write(link, x, 1, sh, &err), MECH_OK);
    struct stat lb;
    assert_int_equal(lstat(link, &lb), 0);
    assert_true(S_ISLNK(lb.st_mode));
    float *y;
    int nd;
    int64_t s2[MECH_MAX_DIMS];
    assert_int_equal(mech_npy_read(target, &y, &nd, s2, &err), MECH_OK);
    assert_int_equal(s2[0], 3);
    assert_true(y[2] == 3.0f);
    mech_free(y);
    remove(link);
    remove(target);
    assert_int_equal(mech_npy_write("", x, 1, sh, &err), MECH_ERR_ARG);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_outfile_special_destinations),
        cmocka_unit_test(test_npy_round_trip),
        cmocka_unit_test(test_npy_header_bytes),
        cmocka_unit_test(test_npy_write_errors),
        cmocka_unit_test(test_npy_read_variants),
        cmocka_unit_test(test_npy_read_malformed),
        cmocka_unit_test(test_npz_structure),
        cmocka_unit_test(test_npz_python_check),
        cmocka_unit_test(test_npz_zip64_python_check),
        cmocka_unit_test(test_npz_abort_and_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
