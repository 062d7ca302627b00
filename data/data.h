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
// Writes the central directory, syncs, renames path.tmp to path and frees
// z (always, even on error; on error nothing is left at path.tmp and an
// existing path is untouched). Errors: MECH_ERR_IO.
mech_status mech_npz_close(mech_npz *z, mech_err *err);
// Discards the archive: removes path.tmp and frees z. NULL is a no-op.
void mech_npz_abort(mech_npz *z);

#ifdef __cplusplus
}
#endif
#endif
