/*
** tests/test_cli_tuned_lens.c: `mech tuned-lens` and `mech lens --tuned`
** with the real binary: the file it writes is the lens the library trains
** on the same sequences, bit for bit; the held-out KL table and the stored
** lens runs hold the library's values; bad lens files and bad options are
** refused before anything is written; no database is created without
** --db where none should be; Ctrl-C writes nothing.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "mech.h"
#include "interp/interp.h"
#include "tests/support/check.h"

#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { NSEQ = 12, SLEN = 10, HELD = 2, STEPS = 20, BATCH = 4 };

static char model_path[PATH_MAX], lens_path[PATH_MAX], ids_args[2048];
static int32_t seq[NSEQ][SLEN];

static int file_exists(const char *p) { return access(p, F_OK) == 0; }

// The model, the sequences and a lens trained by the binary, shared by the tests.
static int setup(void **state) {
    snprintf(model_path, sizeof model_path, "%s", mech_test_tmpn("tl_model.safetensors"));
    snprintf(lens_path, sizeof lens_path, "%s", mech_test_tmpn("tl_lens.safetensors"));
    char *out = NULL;
    int rc = mech_test_cli(&out, NULL, "init -o %s --layers 2 --heads 2 --d-model 32 --d-head 16 --d-mlp 64 --vocab 200 "
                                       "--n-ctx 32 --seed 5", model_path);
    if (rc) fail_msg("mech init: %s", out);
    free(out);
    size_t at = 0;
    uint64_t s = 17;
    for (int i = 0; i < NSEQ; i++) {
        at += (size_t)snprintf(ids_args + at, sizeof ids_args - at, " --ids ");
        for (int t = 0; t < SLEN; t++) {
            s = s * 6364136223846793005ULL + 1442695040888963407ULL;
            seq[i][t] = (int32_t)((s >> 33) % 200);
            at += (size_t)snprintf(ids_args + at, sizeof ids_args - at, "%s%d", t ? "," : "", (int)seq[i][t]);
        }
    }
    return 0;
}

static int teardown(void **state) {
    unlink(model_path);
    unlink(lens_path);
    return 0;
}

static mech_model *load_model(void) {
    mech_err err = {0};
    mech_model *m = NULL;
    if (mech_model_load(model_path, &m, &err)) fail_msg("%s", err.msg);
    return m;
}

static void train_cli(void) {
    char *out = NULL, *err = NULL;
    unlink(lens_path);
    int rc = mech_test_cli(&out, &err, "tuned-lens --model %s -o %s%s --heldout %d --steps %d --batch %d --threads 1",
                           model_path, lens_path, ids_args, HELD, STEPS, BATCH);
    if (rc) fail_msg("exit %d: %s%s", rc, out, err);
    free(out);
    free(err);
}

// ---------------------------------------------------------------------------

static void test_cli_tuned_lens_file_is_the_library_lens(void **state) {
    char *out = NULL;
    unlink(lens_path);
    int rc = mech_test_cli(&out, NULL, "tuned-lens --model %s -o %s%s --heldout %d --steps %d --batch %d --threads 1",
                           model_path, lens_path, ids_args, HELD, STEPS, BATCH);
    if (rc) fail_msg("exit %d: %s", rc, out);
    mech_model *m = load_model();
    int L = m->cfg.n_layers, C = m->cfg.d_model;
    const int32_t *p[NSEQ];
    int lens[NSEQ];
    for (int i = 0; i < NSEQ; i++) p[i] = seq[i], lens[i] = SLEN;
    mech_tuned_lens_opts o = mech_tuned_lens_defaults();
    o.steps = STEPS, o.batch = BATCH, o.threads = 1;
    mech_err err = {0};
    mech_tuned_lens *want = NULL, *got = NULL;
    if (mech_tuned_lens_fit(m, p, lens, NSEQ - HELD, &o, &want, &err)) fail_msg("%s", err.msg);
    if (mech_tuned_lens_load(lens_path, m, &got, &err)) fail_msg("%s", err.msg);
    assert_memory_equal(got->weight, want->weight, (size_t)L * C * C * sizeof(float));
    assert_memory_equal(got->bias, want->bias, (size_t)L * C * sizeof(float));
    // the translators moved away from the logit lens
    double norm = 0;
    for (size_t i = 0; i < (size_t)L * C; i++) norm += fabs(got->bias[i]);
    assert_true(norm > 0);
    // the held-out table: the library's figures on the last HELD sequences
    double kl_logit[L + 1], kl_tuned[L + 1];
    if (mech_tuned_lens_eval(m, want, p + NSEQ - HELD, lens + NSEQ - HELD, HELD, kl_logit, kl_tuned, &err))
        fail_msg("%s", err.msg);
    for (int l = 0; l <= L; l++) {
        char line[128];
        snprintf(line, sizeof line, "%6d %12.4g %12.4g\n", l, kl_logit[l], kl_tuned[l]);
        if (!strstr(out, line)) fail_msg("no line '%s' in:\n%s", line, out);
    }
    for (int l = 0; l < L; l++) assert_true(kl_logit[l] > 0);
    // and in the file's metadata, to 9 digits
    mech_safetensors *st = NULL;
    if (mech_safetensors_open(lens_path, &st, &err)) fail_msg("%s", err.msg);
    const char *train = mech_safetensors_meta(st, "mech.tuned_lens.train");
    assert_non_null(train);
    char want_s[64];
    snprintf(want_s, sizeof want_s, "\"heldout_kl_tuned\": [%.9g, ", kl_tuned[0]);
    if (!strstr(train, want_s)) fail_msg("'%s' not in %s", want_s, train);
    assert_non_null(strstr(train, "\"steps\": 20, \"batch\": 4"));
    mech_safetensors_close(st);
    free(out);
    mech_tuned_lens_free(want);
    mech_tuned_lens_free(got);
    mech_model_free(m);
}

// mech lens --tuned: two lens runs whose stored values are the library's.
static void check_run(mech_store *s, int64_t run, const mech_lens_row *rows, size_t n_rows, int L) {
    mech_err err = {0};
    mech_result_row *r = NULL;
    size_t n = 0;
    if (mech_store_results_get(s, run, "kl", &r, &n, &err)) fail_msg("%s", err.msg);
    assert_int_equal(n, n_rows);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(r[i].layer, rows[i].layer);
        assert_int_equal(r[i].item, rows[i].batch);
        assert_int_equal(r[i].pos, rows[i].pos);
        assert_true(r[i].value == rows[i].kl);
    }
    mech_store_results_free(r, n);
    if (mech_store_results_get(s, run, "prob", &r, &n, &err)) fail_msg("%s", err.msg);
    assert_int_equal(n, n_rows * 5);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(r[i].token, rows[i / 5].top_ids[i % 5]);
        assert_true(r[i].value == rows[i / 5].top_probs[i % 5]);
    }
    mech_store_results_free(r, n);
    double kl[L + 1];
    mech_lens_kl_by_layer(rows, n_rows, L, kl);
    if (mech_store_results_get(s, run, "kl_mean", &r, &n, &err)) fail_msg("%s", err.msg);
    assert_int_equal(n, L + 1);
    for (int l = 0; l <= L; l++) assert_true(r[l].layer == l && r[l].pos == -1 && r[l].value == kl[l]);
    mech_store_results_free(r, n);
    float *t = NULL;
    int nd = 0;
    int64_t shape[MECH_MAX_DIMS];
    if (mech_store_tensor_get(s, run, "kl_by_layer", &t, &nd, shape, &err)) fail_msg("%s", err.msg);
    assert_int_equal(nd, 1);
    assert_int_equal(shape[0], L + 1);
    for (int l = 0; l <= L; l++) assert_true(t[l] == (float)kl[l]);
    mech_free(t);
}

static void test_cli_lens_tuned_values_are_the_library_values(void **state) {
    if (!file_exists(lens_path)) train_cli();
    const char *db = mech_test_tmpn("tl_lens.db");
    mech_test_rm_db(db);
    char *out = NULL;
    // held-out sequences 10 and 11, as the training left them
    int rc = mech_test_cli(&out, NULL, "lens --model %s --ids %d,%d,%d,%d --ids %d,%d,%d --tuned %s --db %s", model_path,
                           seq[10][0], seq[10][1], seq[10][2], seq[10][3], seq[11][0], seq[11][1], seq[11][2], lens_path, db);
    if (rc) fail_msg("exit %d: %s", rc, out);
    assert_non_null(strstr(out, "run 1: logit lens"));
    assert_non_null(strstr(out, "run 2: tuned lens"));
    mech_model *m = load_model();
    int L = m->cfg.n_layers;
    mech_err err = {0};
    mech_tuned_lens *t = NULL;
    if (mech_tuned_lens_load(lens_path, m, &t, &err)) fail_msg("%s", err.msg);
    int32_t ids[2 * 4] = {seq[10][0], seq[10][1], seq[10][2], seq[10][3], seq[11][0], seq[11][1], seq[11][2], 0};
    uint8_t mask[8] = {1, 1, 1, 1, 1, 1, 1, 0};
    mech_run *run = NULL;
    mech_lens_row *a = NULL, *b = NULL;
    size_t na = 0, nb = 0;
    if (mech_run_new(m, 2, 4, &run, &err) || mech_run_set_mask(run, mask, &err) || mech_lens_cache(run, &err) ||
        mech_run_forward(run, ids, &err) || mech_lens_logit(m, run, 5, NULL, &a, &na, &err) ||
        mech_lens_tuned(m, run, t, 5, NULL, &b, &nb, &err))
        fail_msg("%s", err.msg);
    mech_store *s = NULL;
    if (mech_store_open_read(db, &s, &err)) fail_msg("%s", err.msg);
    check_run(s, 1, a, na, L);
    check_run(s, 2, b, nb, L);
    mech_run_info ri = {0};
    if (mech_store_run_info(s, 2, &ri, &err)) fail_msg("%s", err.msg);
    assert_string_equal(ri.kind, "lens");
    assert_non_null(strstr(ri.params_json, "\"tuned\": \""));
    assert_non_null(strstr(ri.params_json, "\"logit_run\": 1"));
    mech_store_run_info_deinit(&ri);
    mech_store_close(s);
    // the printed per-layer table
    double kla[L + 1], klb[L + 1];
    mech_lens_kl_by_layer(a, na, L, kla);
    mech_lens_kl_by_layer(b, nb, L, klb);
    for (int l = 0; l <= L; l++) {
        char line[128];
        snprintf(line, sizeof line, "%6d %12.4g %12.4g\n", l, kla[l], klb[l]);
        if (!strstr(out, line)) fail_msg("no line '%s' in:\n%s", line, out);
    }
    free(out);
    mech_free(a);
    mech_free(b);
    mech_run_free(run);
    mech_tuned_lens_free(t);
    mech_model_free(m);
    mech_test_rm_db(db);
}

// A command that must fail with status want, mention msg, and leave db missing.
static void refused(int want, const char *msg, const char *db, const char *fmt, ...) {
    char args[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    char *out = NULL, *err = NULL;
    int rc = mech_test_cli(&out, &err, "%s", args);
    if (rc != want || !strstr(err, msg)) fail_msg("mech %s: exit %d (want %d), stderr '%s' (want '%s')", args, rc, want, err, msg);
    if (db && file_exists(db)) fail_msg("mech %s created %s", args, db);
    free(out);
    free(err);
}

static void test_cli_tuned_lens_bad_files_and_options(void **state) {
    if (!file_exists(lens_path)) train_cli();
    const char *db = mech_test_tmpn("tl_bad.db"), *cut = mech_test_tmpn("tl_cut.safetensors");
    const char *other = mech_test_tmpn("tl_other.safetensors"), *olens = mech_test_tmpn("tl_olens.safetensors");
    mech_test_rm_db(db);
    // a lens file that is missing, truncated, not a lens, or for another model
    refused(1, "cannot open", db, "lens --model %s --ids 1,2,3 --tuned %s --db %s", model_path,
            mech_test_tmpn("tl_missing.safetensors"), db);
    size_t len = 0;
    char *bytes = mech_test_read(lens_path, &len);
    FILE *f = fopen(cut, "wb");
    fwrite(bytes, 1, len - 100, f);
    fclose(f);
    free(bytes);
    refused(1, cut, db, "lens --model %s --ids 1,2,3 --tuned %s --db %s", model_path, cut, db);
    refused(1, "not a tuned lens", db, "lens --model %s --ids 1,2,3 --tuned %s --db %s", model_path, model_path, db);
    char *out = NULL;
    assert_int_equal(mech_test_cli(&out, NULL, "init -o %s --layers 2 --heads 2 --d-model 16 --d-head 8 --d-mlp 32 "
                                               "--vocab 200 --n-ctx 32 --seed 5", other), 0);
    free(out);
    refused(1, "d_model 32; this model has 16", db, "lens --model %s --ids 1,2,3 --tuned %s --db %s", other, lens_path, db);
    // the same config, other weights: its own lens is refused for our model
    assert_int_equal(mech_test_cli(&out, NULL, "init -o %s --layers 2 --heads 2 --d-model 32 --d-head 16 --d-mlp 64 "
                                               "--vocab 200 --n-ctx 32 --seed 6", other), 0);
    free(out);
    assert_int_equal(mech_test_cli(&out, NULL, "tuned-lens --model %s -o %s --ids 1,2,3,4 --steps 2", other, olens), 0);
    free(out);
    refused(1, "fingerprint", db, "lens --model %s --ids 1,2,3 --tuned %s --db %s", model_path, olens, db);
    refused(2, "--tuned", db, "lens --model %s --input \"a b\" --tuned %s --db %s", model_path, lens_path, db);
    refused(2, "--tuned", db, "lens --model %s --ids 1,2 --tuned", model_path);

    // training: usage errors, nothing written
    const char *o = mech_test_tmpn("tl_never.safetensors");
    unlink(o);
    refused(2, "-o LENS.safetensors is required", NULL, "tuned-lens --model %s --ids 1,2,3", model_path);
    refused(2, ".safetensors", NULL, "tuned-lens --model %s --ids 1,2,3 -o %s.txt", model_path, o);
    refused(2, "--momentum", NULL, "tuned-lens --model %s --ids 1,2,3 -o %s --momentum 1", model_path, o);
    refused(2, "--steps", NULL, "tuned-lens --model %s --ids 1,2,3 -o %s --steps 0", model_path, o);
    refused(2, "--heldout 2 leaves no sequence", NULL, "tuned-lens --model %s --ids 1,2,3 --ids 4,5 -o %s --heldout 2",
            model_path, o);
    refused(2, "training text", NULL, "tuned-lens --model %s -o %s", model_path, o);
    refused(2, "the model itself", NULL, "tuned-lens --model %s --ids 1,2,3 -o %s", model_path, model_path);
    refused(2, "unknown argument", NULL, "tuned-lens --model %s --ids 1,2,3 -o %s --bogus", model_path, o);
    refused(2, "--padding-side", NULL, "tuned-lens --model %s --ids 1,2,3 -o %s --padding-side left", model_path, o);
    const char *txt = mech_test_tmpn("tl_short.txt");
    f = fopen(txt, "w");
    fputs("two words", f);
    fclose(f);
    refused(2, "fewer than one sequence", NULL, "tuned-lens --model %s --text %s -o %s --seq-len 30", model_path, txt, o);
    refused(2, "outside this model's vocabulary", NULL, "tuned-lens --model %s --text %s -o %s --seq-len 2", model_path,
            txt, o);
    unlink(txt);
    refused(1, "cannot", NULL, "tuned-lens --model %s --text %s -o %s", model_path, mech_test_tmpn("tl_nofile.txt"), o);
    refused(2, "outside the model's vocabulary", NULL, "tuned-lens --model %s --ids 1,2,300 -o %s", model_path, o);
    assert_false(file_exists(o));
    assert_int_equal(mech_test_leftovers(o), 0);
    unlink(cut), unlink(other), unlink(olens);
}

// Runs mech with the working directory dir; returns the exit status.
static int run_in(const char *dir, const char *args) {
    const char *b = getenv("MECH_BIN");
    char bin[PATH_MAX], cmd[16384];
    if (!realpath(b && *b ? b : "./mech", bin)) fail_msg("no mech binary");
    snprintf(cmd, sizeof cmd, "cd %s && %s %s >/dev/null 2>&1", dir, bin, args);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

// Training writes the lens and nothing else: no database; a lens run that
// fails on its --tuned file creates none either.
static void test_cli_tuned_lens_writes_no_database(void **state) {
    char dir[PATH_MAX], args[8192], p[PATH_MAX + 32], model[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", mech_test_tmpn("tl_dir"));
    mkdir(dir, 0755);
    if (!realpath(model_path, model)) fail_msg("%s", model_path);
    snprintf(args, sizeof args, "tuned-lens --model %s -o lens.safetensors --ids 1,2,3,4 --ids 5,6,7 --steps 3", model);
    assert_int_equal(run_in(dir, args), 0);
    snprintf(p, sizeof p, "%s/lens.safetensors", dir);
    assert_true(file_exists(p));
    unlink(p);
    snprintf(args, sizeof args, "lens --model %s --ids 1,2,3 --tuned missing.safetensors", model);
    assert_int_equal(run_in(dir, args), 1);
    snprintf(p, sizeof p, "%s/mech.db", dir);
    assert_false(file_exists(p));
    // the directory is empty again
    assert_int_equal(rmdir(dir), 0);
}

// Ctrl-C in the middle of training: exit 130, no file, no temporary left.
static void test_cli_tuned_lens_interrupted_writes_nothing(void **state) {
    const char *o = mech_test_tmpn("tl_int.safetensors");
    unlink(o);
    int st = 0, ok = 0;
    for (int attempt = 0; attempt < 4 && !ok; attempt++) {
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            const char *b = getenv("MECH_BIN");
            char cmd[8192];
            snprintf(cmd, sizeof cmd, "exec %s tuned-lens --model %s -o %s%s --steps 1000000 >/dev/null 2>&1",
                     b && *b ? b : "./mech", model_path, o, ids_args);
            execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
            _exit(127);
        }
        // long enough for the model to load and training to start (more on each attempt)
        struct timespec nap = {0, (250L << attempt) * 1000 * 1000};
        nanosleep(&nap, NULL);
        kill(pid, SIGINT);
        waitpid(pid, &st, 0);
        ok = WIFEXITED(st) && WEXITSTATUS(st) == 130;
    }
    if (!ok) fail_msg("training was not interrupted cleanly (status %d)", st);
    assert_false(file_exists(o));
    assert_int_equal(mech_test_leftovers(o), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cli_tuned_lens_file_is_the_library_lens),
        cmocka_unit_test(test_cli_lens_tuned_values_are_the_library_values),
        cmocka_unit_test(test_cli_tuned_lens_bad_files_and_options),
        cmocka_unit_test(test_cli_tuned_lens_writes_no_database),
        cmocka_unit_test(test_cli_tuned_lens_interrupted_writes_nothing),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
