/*
** tests/fuzz/fuzz_util.c: what the fuzz entries share: the target table,
** failure reasons, scratch files and stderr capture.
*/
#include "tests/fuzz/fuzz.h"

#include <dirent.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const mech_fuzz_target mech_fuzz_targets[] = {
    {"json", mech_fuzz_json, 1},
    {"safetensors", mech_fuzz_safetensors, 1},
    {"tokenizer_files", mech_fuzz_tokenizer_files, 1},
    {"tokenize", mech_fuzz_tokenize, 0},
    {"npy", mech_fuzz_npy, 1},
    {"spec", mech_fuzz_spec, 1},
    {"pairs", mech_fuzz_pairs, 1},
    {"rasp", mech_fuzz_rasp, 1},
    {NULL, NULL, 0},
};

char mech_fuzz_why[512];
int mech_fuzz_accepted;

int mech_fuzz_fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(mech_fuzz_why, sizeof mech_fuzz_why, fmt, ap);
    va_end(ap);
    return 1;
}

const char *mech_fuzz_path(const char *target, const char *name) {
    static char buf[4][1024];
    static int k;
    const char *tmp = getenv("MECH_FUZZ_TMPDIR"); // make fuzz: build-fuzz/tmp
    if (!tmp || !*tmp) tmp = getenv("TMPDIR");
    char *p = buf[k++ % 4];
    snprintf(p, sizeof buf[0], "%s/mech-fuzz-%d-%s", tmp && *tmp ? tmp : "/tmp", (int)getpid(), target);
    mkdir(p, 0700);
    size_t n = strlen(p);
    snprintf(p + n, sizeof buf[0] - n, "/%s", name);
    return p;
}

void mech_fuzz_cleanup(void) {
    for (const mech_fuzz_target *t = mech_fuzz_targets; t->name; t++) {
        char dir[1024];
        snprintf(dir, sizeof dir, "%s", mech_fuzz_path(t->name, ""));
        DIR *d = opendir(dir);
        if (!d) continue;
        for (struct dirent *e; (e = readdir(d));) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            char path[2048];
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            unlink(path);
        }
        closedir(d);
        rmdir(dir);
    }
}

int mech_fuzz_write(const char *path, const void *data, size_t size) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    int ok = !size || fwrite(data, 1, size, f) == size;
    return fclose(f) == 0 && ok ? 0 : -1;
}

static FILE *saved_stderr, *capture;
static char *captured;
static size_t captured_len;

void mech_fuzz_quiet_begin(void) {
    free(captured);
    captured = NULL, captured_len = 0;
    capture = open_memstream(&captured, &captured_len);
    if (!capture) return;
    saved_stderr = stderr;
    stderr = capture;
}

const char *mech_fuzz_quiet_end(size_t *len) {
    if (capture) {
        stderr = saved_stderr;
        fclose(capture);
        capture = NULL;
    }
    if (len) *len = captured_len;
    return captured ? captured : "";
}
