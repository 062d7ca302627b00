/*
** tests/support/check.c: numeric comparison in the manner of llm.c's
** check_tensor, without depending on cmocka's newer float asserts.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/support/check.h"
#include "mech.h"

#include <sqlite3.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdarg.h>
#include <unistd.h>
#include <dirent.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>

double mech_max_abs_diff(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (d > m || isnan(d)) m = isnan(d) ? INFINITY : d;
    }
    return m;
}

void mech_assert_close(const float *got, const float *want, size_t n, double atol, double rtol,
                       const char *label) {
    size_t bad = 0, worst = 0;
    double maxd = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)want[i]);
        int ok = d <= atol + rtol * fabs((double)want[i]);
        if (isnan(got[i]) != isnan(want[i])) ok = 0, d = INFINITY;
        if (!ok) {
            if (bad < 5) fprintf(stderr, "  %s[%zu]: got %.9g want %.9g\n", label, i, got[i], want[i]);
            bad++;
        }
        if (d > maxd) maxd = d, worst = i;
    }
    if (bad) fail_msg("%s: %zu of %zu values differ; max |diff| %.3g at %zu", label, bad, n, maxd, worst);
}

void *mech_test_read(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *p = malloc((size_t)n + 1);
    if (!p || fread(p, 1, (size_t)n, f) != (size_t)n) fail_msg("cannot read %s", path);
    ((char *)p)[n] = 0;
    fclose(f);
    if (len) *len = (size_t)n;
    return p;
}

const char *mech_test_tmp(const char *name) {
    static char path[512]; // tests are single-threaded
    mkdir("build", 0755);
    mkdir("build/tmp", 0755);
    snprintf(path, sizeof path, "build/tmp/%d-%s", (int)getpid(), name);
    return path;
}

const char *mech_test_tmpn(const char *name) {
    static char bufs[16][512];
    static int next;
    char *b = bufs[next++ % 16];
    snprintf(b, 512, "%s", mech_test_tmp(name));
    return b;
}

void mech_test_rm_db(const char *path) {
    char p[600];
    unlink(path);
    snprintf(p, sizeof p, "%s-wal", path);
    unlink(p);
    snprintf(p, sizeof p, "%s-shm", path);
    unlink(p);
}

int mech_test_leftovers(const char *path) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    const char *base = slash ? slash + 1 : path;
    char prefix[300];
    snprintf(prefix, sizeof prefix, ".%s.", slash ? strrchr(path, '/') + 1 : base);
    if (slash) *slash = 0;
    else snprintf(dir, sizeof dir, ".");
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (!strncmp(e->d_name, prefix, strlen(prefix))) n++;
    closedir(d);
    return n;
}

void mech_test_limit_file_size(long bytes) {
    static struct rlimit old; // tests are single-threaded
    static int saved;
    if (bytes > 0) {
        signal(SIGXFSZ, SIG_IGN);
        if (!saved) getrlimit(RLIMIT_FSIZE, &old), saved = 1;
        struct rlimit lim = old;
        lim.rlim_cur = (rlim_t)bytes;
        setrlimit(RLIMIT_FSIZE, &lim);
    } else if (saved) {
        setrlimit(RLIMIT_FSIZE, &old);
    }
}

int mech_test_cli(char **out, char **err, const char *fmt, ...) {
    char args[2048], cmd[4096], errfile[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    const char *b = getenv("MECH_BIN");
    snprintf(errfile, sizeof errfile, "%s", mech_test_tmp("cli_stderr.txt"));
    if (err) snprintf(cmd, sizeof cmd, "%s %s 2>%s", b && *b ? b : "./mech", args, errfile);
    else snprintf(cmd, sizeof cmd, "%s %s 2>&1", b && *b ? b : "./mech", args);
    FILE *p = popen(cmd, "r");
    if (!p) fail_msg("cannot run %s", cmd);
    size_t cap = 4096, len = 0, n;
    char *buf = malloc(cap);
    while (buf && (n = fread(buf + len, 1, cap - len - 1, p)) > 0) {
        len += n;
        if (cap - len < 2048) buf = realloc(buf, cap *= 2);
    }
    if (!buf) fail_msg("out of memory");
    buf[len] = 0;
    int st = pclose(p);
    if (out) *out = buf;
    else free(buf);
    if (err) {
        size_t elen;
        *err = mech_test_read(errfile, &elen);
        remove(errfile);
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

char *mech_test_sql_rows(const char *path, const char *sql) {
    sqlite3 *h = NULL;
    sqlite3_stmt *q = NULL;
    if (sqlite3_open_v2(path, &h, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) fail_msg("cannot open %s", path);
    if (sqlite3_prepare_v2(h, sql, -1, &q, NULL) != SQLITE_OK) fail_msg("%s: %s: %s", path, sql, sqlite3_errmsg(h));
    mech_buf b = {0};
    while (sqlite3_step(q) == SQLITE_ROW) {
        for (int c = 0; c < sqlite3_column_count(q); c++) {
            const unsigned char *t = sqlite3_column_text(q, c);
            mech_buf_printf(&b, "%s%s", c ? "|" : "", t ? (const char *)t : "NULL");
        }
        mech_buf_puts(&b, "\n");
    }
    sqlite3_finalize(q);
    sqlite3_close(h);
    char *s = strdup(b.data ? b.data : "");
    mech_buf_free(&b);
    return s;
}

static uint64_t rng_state;

void mech_test_seed(uint64_t state) { rng_state = state; }

double mech_test_urand(void) {
    rng_state ^= rng_state >> 12, rng_state ^= rng_state << 25, rng_state ^= rng_state >> 27;
    return (double)((rng_state * 2685821657736338717ull) >> 11) / 9007199254740992.0;
}

mech_model *mech_test_small_model(int layers, int heads, int attn_only, int layernorm, uint64_t seed) {
    mech_config c = mech_config_gpt2_small();
    c.n_layers = layers, c.n_heads = heads, c.d_model = 16, c.d_head = 4, c.d_mlp = attn_only ? 0 : 24;
    c.n_ctx = 8, c.d_vocab = 23, c.attn_only = attn_only, c.norm = layernorm ? MECH_NORM_LAYERNORM : MECH_NORM_NONE;
    mech_err err = {0};
    mech_model *m = NULL;
    if (mech_model_random(&c, seed, &m, &err)) fail_msg("model_random: %s", err.msg);
    mech_model_tensor *t = NULL;
    size_t n = 0;
    if (mech_model_tensors(m, &t, &n, &err)) fail_msg("model_tensors: %s", err.msg);
    rng_state = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < n; i++) {
        float *p = mech_model_param(m, t[i].name);
        if (!p || strstr(t[i].name, "ln_")) continue;
        size_t k = (size_t)t[i].shape[0] * (t[i].ndim == 2 ? (size_t)t[i].shape[1] : 1);
        int bias = strstr(t[i].name, ".bias") != NULL;
        float scale = layernorm ? 0.35f : 0.2f;
        for (size_t j = 0; j < k; j++)
            p[j] = bias ? (float)(0.2 * (mech_test_urand() - 0.5)) : p[j] / 0.02f * scale;
    }
    mech_free(t);
    return m;
}
