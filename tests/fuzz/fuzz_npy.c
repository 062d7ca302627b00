/*
** tests/fuzz/fuzz_npy.c: data/npy.c's reader (mech reads .npy; it writes
** .npz but never reads one). An array that reads must hold prod(shape)
** floats that ASan lets us touch, and write back and read back bit-equal; a
** failure must name the file.
*/
#include "tests/fuzz/fuzz.h"

#include "data/data.h"

#include <string.h>

int mech_fuzz_npy(const uint8_t *data, size_t size) {
    const char *path = mech_fuzz_path("npy", "x.npy");
    const char *path2 = mech_fuzz_path("npy", "y.npy");
    if (mech_fuzz_write(path, data, size)) return 0;
    mech_err err = {0};
    float *x = NULL;
    int nd = -1;
    int64_t sh[MECH_MAX_DIMS];
    if (mech_npy_read(path, &x, &nd, sh, &err)) {
        if (x) return mech_fuzz_fail("read failed but returned data");
        if (!err.msg[0] || !strstr(err.msg, path)) return mech_fuzz_fail("read failed without naming the file: %s", err.msg);
        return 0;
    }
    mech_fuzz_accepted = 1;
    if (!x) return mech_fuzz_fail("read ok but data is NULL");
    if (nd < 0 || nd > MECH_MAX_DIMS) return mech_fuzz_fail("ndim %d", nd);
    size_t n = 1;
    for (int i = 0; i < nd; i++) {
        if (sh[i] < 0) return mech_fuzz_fail("negative dim %lld", (long long)sh[i]);
        n *= (size_t)sh[i];
    }
    if (n * sizeof(float) > size) return mech_fuzz_fail("%zu floats from a file of %zu bytes", n, size);
    volatile float sum = 0;
    for (size_t i = 0; i < n; i++) sum += x[i];
    (void)sum;
    int rc = 0;
    if (mech_npy_write(path2, x, nd, sh, &err)) {
        rc = mech_fuzz_fail("cannot write back what was read: %s", err.msg);
    } else {
        float *y = NULL;
        int nd2 = -1;
        int64_t sh2[MECH_MAX_DIMS];
        if (mech_npy_read(path2, &y, &nd2, sh2, &err)) rc = mech_fuzz_fail("cannot read back what was written: %s", err.msg);
        else if (nd2 != nd || memcmp(sh, sh2, (size_t)nd * sizeof *sh) || (n && memcmp(x, y, n * sizeof *x)))
            rc = mech_fuzz_fail("written and read back differs");
        mech_free(y);
    }
    mech_free(x);
    return rc;
}
