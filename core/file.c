/*
** core/file.c: output files that are never left half-written. A regular
** file is written to a unique temporary file beside it (through a symlink to
** its target) and renamed over it on commit, so a failed or interrupted
** write leaves the old file untouched; a device or FIFO (/dev/stdout, a
** pipe) is written directly, since renaming over it would replace it.
*/
#include "core/core.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

mech_status mech_outfile_open(mech_outfile *o, const char *path, mech_err *err) {
    memset(o, 0, sizeof *o);
    if (!path || !*path) return mech_err_set(err, MECH_ERR_ARG, "output file name is empty");
    struct stat sb;
    int exists = stat(path, &sb) == 0;
    if (exists && S_ISDIR(sb.st_mode)) return mech_err_set(err, MECH_ERR_IO, "%s: is a directory, expected a file name", path);
    if (!(o->path = mech_strdup(path))) return mech_err_set(err, MECH_ERR_NOMEM, "%s: out of memory", path);
    if (exists && !S_ISREG(sb.st_mode)) {
        o->direct = 1;
        if (!(o->f = fopen(path, "wb"))) {
            mech_status rc = mech_err_set(err, MECH_ERR_IO, "%s: cannot open for writing: %s", path, strerror(errno));
            mech_outfile_abort(o);
            return rc;
        }
        return MECH_OK;
    }
    // Through a symlink the target is replaced, not the link.
    char *target = exists ? realpath(path, NULL) : NULL;
    o->target = target ? target : mech_strdup(path);
    const char *base = strrchr(o->target, '/');
    size_t dir_len = base ? (size_t)(base - o->target) + 1 : 0;
    base = base ? base + 1 : o->target;
    size_t n = dir_len + strlen(base) + 16;
    if (!o->target || !(o->tmp = mech_malloc(n))) {
        mech_outfile_abort(o);
        return mech_err_set(err, MECH_ERR_NOMEM, "%s: out of memory", path);
    }
    snprintf(o->tmp, n, "%.*s.%s.XXXXXX", (int)dir_len, o->target, base);
    int fd = mkstemp(o->tmp);
    if (fd < 0) {
        mech_status rc = mech_err_set(err, MECH_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
        mech_free(o->tmp);
        o->tmp = NULL;
        mech_outfile_abort(o);
        return rc;
    }
    // mkstemp makes 0600; give the file the mode a plain fopen would.
    mode_t mask = umask(022);
    umask(mask);
    if (fchmod(fd, 0666 & ~mask) != 0 || !(o->f = fdopen(fd, "wb"))) {
        mech_status rc = mech_err_set(err, MECH_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
        close(fd);
        mech_outfile_abort(o);
        return rc;
    }
    return MECH_OK;
}

mech_status mech_outfile_commit(mech_outfile *o, mech_err *err) {
    int ok = fflush(o->f) == 0 && !ferror(o->f);
    if (ok && !o->direct) ok = fsync(fileno(o->f)) == 0;
    int e = errno;
    if (fclose(o->f) != 0 && ok) ok = 0, e = errno;
    o->f = NULL;
    mech_status rc = MECH_OK;
    if (!ok) rc = mech_err_set(err, MECH_ERR_IO, "%s: write failed: %s", o->path, strerror(e ? e : EIO));
    else if (!o->direct && rename(o->tmp, o->target) != 0)
        rc = mech_err_set(err, MECH_ERR_IO, "%s: cannot replace it: %s", o->path, strerror(errno));
    if (rc == MECH_OK) {
        mech_free(o->tmp);
        o->tmp = NULL;
    }
    mech_outfile_abort(o);
    return rc;
}

void mech_outfile_abort(mech_outfile *o) {
    if (o->f) fclose(o->f);
    if (o->tmp) remove(o->tmp);
    mech_free(o->tmp);
    mech_free(o->target);
    mech_free(o->path);
    memset(o, 0, sizeof *o);
}
