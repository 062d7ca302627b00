/*
** tests/test_cli_train.c: `mech train` through the real binary: usage
** errors, an induction run (progress, checkpoint, the run in the database),
** a run split by --stop-at and --resume equal to one straight run byte for
** byte, Ctrl-C saving the finished steps, the text and RASP tasks.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "mech.h"
#include "tests/support/check.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

// a small attention-only model for the induction task
#define TINY "--task induction --attn-only --layers 1 --heads 2 --d-model 16 --d-head 8 --vocab 16 --seq 16 " \
             "--batch 4 --threads 1"

static void rm_ckpt(const char *p) {
    char *o = mech_trainer_optim_path(p);
    unlink(p);
    unlink(o);
    mech_free(o);
}

static int same_file(const char *a, const char *b) {
    size_t na, nb;
    char *x = mech_test_read(a, &na), *y = mech_test_read(b, &nb);
    int eq = na == nb && !memcmp(x, y, na);
    free(x);
    free(y);
    return eq;
}

static void expect_usage(const char *args, const char *needle) {
    char *out = NULL, *err = NULL;
    int st = mech_test_cli(&out, &err, "train %s", args);
    if (st != 2 || !strstr(err, needle)) fail_msg("mech train %s: exit %d, stderr '%s' (wanted 2 and '%s')", args, st, err, needle);
    free(out);
    free(err);
}

static void test_usage(void **state) {
    (void)state;
    const char *db = mech_test_tmpn("usage.db"), *ck = mech_test_tmpn("usage.safetensors");
    char a[1024];
    expect_usage("--out x.safetensors", "--task induction|rasp:FILE|text:FILE is required");
    expect_usage("--task induction", "--out FILE.safetensors is required");
    expect_usage("--task nope --out x.safetensors", "--task 'nope': expected induction");
    expect_usage("--task induction --out x.bin", "expected a .safetensors file");
    expect_usage("--resume x.safetensors --lr 0.1", "--lr: a resumed run keeps the checkpoint's settings");
    expect_usage("--resume x.safetensors --layers 3", "--layers: a resumed run trains the checkpoint's model");
    expect_usage("--task text:foo.txt --vocab 10 --out x.safetensors", "--vocab: the text task fixes the vocabulary");
    expect_usage("--task induction --attn-only --d-mlp 8 --out x.safetensors", "--d-mlp: an --attn-only model has no MLP");
    expect_usage("--task induction --steps 0 --out x.safetensors", "--steps");
    expect_usage("--task induction --lr nan --out x.safetensors", "--lr");
    expect_usage("--task induction --bogus --out x.safetensors", "unknown argument '--bogus'");
    snprintf(a, sizeof a, TINY " --n-ctx 8 --out %s --db %s", ck, db);
    expect_usage(a, "--seq 16 is longer than the model's context (n_ctx 8)");
    snprintf(a, sizeof a, TINY " --steps 5 --stop-at 6 --out %s --db %s", ck, db);
    expect_usage(a, "--stop-at 6");
    snprintf(a, sizeof a, "--task induction --seq 6 --out %s --db %s", ck, db);
    expect_usage(a, "too short");
    snprintf(a, sizeof a, TINY " --lr 0.001 --min-lr 0.01 --out %s --db %s", ck, db);
    expect_usage(a, "--min-lr");
    // nothing was written by the refused commands
    assert_int_equal(access(ck, F_OK), -1);
    assert_int_equal(access(db, F_OK), -1);
    // a missing checkpoint is a runtime error naming the file
    char *out = NULL, *err = NULL;
    assert_int_equal(mech_test_cli(&out, &err, "train --resume %s --db %s", ck, db), 1);
    assert_non_null(strstr(err, ck));
    free(out);
    free(err);
}

static void test_induction_run(void **state) {
    (void)state;
    const char *db = mech_test_tmpn("ind.db"), *ck = mech_test_tmpn("ind.safetensors");
    mech_test_rm_db(db);
    char *out = NULL, *err = NULL;
    int st = mech_test_cli(&out, &err, "train " TINY " --steps 30 --lr 0.01 --eval 16 --out %s --db %s", ck, db);
    if (st) fail_msg("exit %d: %s", st, err);
    // progress on stderr: step, loss, tokens/s, ETA
    assert_non_null(strstr(err, "step 1/30  loss "));
    assert_non_null(strstr(err, "step 30/30  loss "));
    assert_non_null(strstr(err, "tok/s  ETA "));
    assert_non_null(strstr(out, "trained 30 steps"));
    assert_non_null(strstr(out, "held-out (16 rows): next-token accuracy"));
    // the checkpoint is a model every command loads
    free(out);
    assert_int_equal(mech_test_cli(&out, NULL, "info %s", ck), 0);
    assert_non_null(strstr(out, "d_vocab"));
    free(out);
    free(err);
    // the run: kind train, a loss per step, the curve as a tensor whose
    // first value is close to ln 16 (near-uniform initial predictions)
    char *rows = mech_test_sql_rows(db, "select kind, status from runs");
    assert_string_equal(rows, "train|done\n");
    free(rows);
    rows = mech_test_sql_rows(db, "select count(*), min(item), max(item) from results where metric = 'loss'");
    assert_string_equal(rows, "30|1|30\n");
    free(rows);
    rows = mech_test_sql_rows(db, "select value from results where metric = 'loss' and item = 1");
    double first = atof(rows);
    free(rows);
    assert_true(fabs(first - log(16.0)) < 0.3);
    rows = mech_test_sql_rows(db, "select count(*) from results where metric in ('lr', 'grad_norm', 'eval_token_acc')");
    assert_string_equal(rows, "61\n");
    free(rows);
    rows = mech_test_sql_rows(db, "select json_extract(params, '$.task'), json_extract(params, '$.steps'), "
                                  "json_extract(params, '$.lr'), json_extract(params, '$.config.attn_only') from runs");
    assert_string_equal(rows, "induction|30|0.01|1\n");
    free(rows);
    mech_store *s = NULL;
    mech_err e = {0};
    assert_int_equal(mech_store_open_read(db, &s, &e), MECH_OK);
    float *curve = NULL;
    int nd = 0;
    int64_t shape[MECH_MAX_DIMS];
    assert_int_equal(mech_store_tensor_get(s, 1, "loss_curve", &curve, &nd, shape, &e), MECH_OK);
    assert_int_equal(nd, 1);
    assert_int_equal(shape[0], 30);
    assert_true(fabs(curve[0] - first) < 1e-6);
    mech_free(curve);
    mech_store_close(s);
    mech_test_rm_db(db);
    rm_ckpt(ck);
}

static void test_resume_exact(void **state) {
    (void)state;
    const char *db = mech_test_tmpn("res.db"), *a = mech_test_tmpn("straight.safetensors"),
               *b = mech_test_tmpn("split.safetensors");
    mech_test_rm_db(db);
    const char *set = TINY " --steps 16 --accum 2 --lr 0.01 --warmup 4 --clip 0.5 --eval 0";
    char *out = NULL, *err = NULL;
    if (mech_test_cli(&out, &err, "train %s --out %s --db %s", set, a, db)) fail_msg("%s", err);
    free(out), free(err);
    if (mech_test_cli(&out, &err, "train %s --stop-at 7 --out %s --db %s", set, b, db)) fail_msg("%s", err);
    assert_non_null(strstr(out, "trained 7 steps (0 -> 7 of 16)"));
    free(out), free(err);
    assert_false(same_file(a, b));
    if (mech_test_cli(&out, &err, "train --resume %s --threads 1 --db %s --eval 0", b, db)) fail_msg("%s", err);
    assert_non_null(strstr(out, "trained 9 steps (7 -> 16 of 16)"));
    free(out), free(err);
    // model and moments: the same bytes as the straight run
    assert_true(same_file(a, b));
    char *oa = mech_trainer_optim_path(a), *ob = mech_trainer_optim_path(b);
    assert_true(same_file(oa, ob));
    mech_free(oa), mech_free(ob);
    // the resumed run's losses are the straight run's steps 8..16
    char *r1 = mech_test_sql_rows(db, "select value from results where run_id = 1 and metric = 'loss' and item > 7 order by item");
    char *r3 = mech_test_sql_rows(db, "select value from results where run_id = 3 and metric = 'loss' order by item");
    assert_string_equal(r1, r3);
    free(r1), free(r3);
    // at the end already: a usage error
    assert_int_equal(mech_test_cli(&out, &err, "train --resume %s --db %s", b, db), 2);
    assert_non_null(strstr(err, "at step 16 already"));
    free(out), free(err);
    mech_test_rm_db(db);
    rm_ckpt(a), rm_ckpt(b);
}

static void test_interrupt(void **state) {
    (void)state;
    const char *db = mech_test_tmpn("int.db"), *ck = mech_test_tmpn("int.safetensors"),
               *log = mech_test_tmpn("int.log");
    mech_test_rm_db(db);
    const char *bin = getenv("MECH_BIN") && *getenv("MECH_BIN") ? getenv("MECH_BIN") : "./mech";
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (!pid) {
        FILE *f = freopen(log, "w", stderr);
        (void)f;
        if (!freopen("/dev/null", "w", stdout)) _exit(127);
        execl(bin, bin, "train", "--task", "induction", "--attn-only", "--layers", "1", "--heads", "2", "--d-model",
              "16", "--d-head", "8", "--vocab", "16", "--seq", "16", "--batch", "4", "--threads", "1", "--steps",
              "100000000", "--log-every", "1", "--out", ck, "--db", db, (char *)NULL);
        _exit(127);
    }
    // wait for a few steps, then Ctrl-C
    for (int i = 0; i < 600; i++) {
        size_t n = 0;
        FILE *f = fopen(log, "r");
        if (f) {
            char buf[8192];
            n = fread(buf, 1, sizeof buf - 1, f);
            buf[n] = 0;
            fclose(f);
            if (strstr(buf, "step 3/")) break;
        }
        struct timespec ts = {0, 50000000};
        nanosleep(&ts, NULL);
    }
    kill(pid, SIGINT);
    int st = 0;
    waitpid(pid, &st, 0);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 130);
    size_t n;
    char *text = mech_test_read(log, &n);
    assert_non_null(strstr(text, "interrupted: checkpoint of step"));
    free(text);
    // the checkpoint holds the finished steps, and the run says so
    char *rows = mech_test_sql_rows(db, "select status, json_extract(params, '$.end_step') from runs");
    assert_non_null(strstr(rows, "interrupted|"));
    long steps = atol(strchr(rows, '|') + 1);
    assert_true(steps >= 3);
    free(rows);
    mech_trainer *t = NULL;
    mech_err e = {0};
    if (mech_trainer_load(ck, NULL, &t, &e)) fail_msg("%s", e.msg);
    assert_int_equal(mech_trainer_steps_done(t), steps);
    mech_trainer_free(t);
    mech_test_rm_db(db);
    rm_ckpt(ck);
    unlink(log);
}

static void test_text_task(void **state) {
    (void)state;
    const char *db = mech_test_tmpn("text.db"), *ck = mech_test_tmpn("text.safetensors"),
               *txt = mech_test_tmpn("corpus.txt"), *tiny = mech_test_tmpn("tiny.txt");
    mech_test_rm_db(db);
    FILE *f = fopen(txt, "w");
    for (int i = 0; i < 20; i++) fprintf(f, "The quick brown fox jumps over the lazy dog number %d.\n", i);
    fclose(f);
    f = fopen(tiny, "w");
    fputs("two words", f);
    fclose(f);
    char *out = NULL, *err = NULL;
    int st = mech_test_cli(&out, &err,
                           "train --task text:%s --attn-only --layers 1 --heads 1 --d-model 8 --d-head 8 --seq 16 "
                           "--batch 2 --steps 3 --eval 4 --threads 1 --out %s --db %s", txt, ck, db);
    if (st) fail_msg("exit %d: %s", st, err);
    assert_non_null(strstr(out, "held-out (4 rows): next-token accuracy"));
    free(out), free(err);
    mech_model *m = NULL;
    mech_err e = {0};
    assert_int_equal(mech_model_load(ck, &m, &e), MECH_OK);
    assert_int_equal(m->cfg.d_vocab, 50257);
    mech_model_free(m);
    // too short for one window of --seq + 1 tokens
    assert_int_equal(mech_test_cli(&out, &err, "train --task text:%s --seq 16 --out %s --db %s", tiny, ck, db), 2);
    assert_non_null(strstr(err, "fewer than T + 1 = 17"));
    free(out), free(err);
    // a missing file: a runtime error naming it
    assert_int_equal(mech_test_cli(&out, &err, "train --task text:%s.missing --out %s --db %s", tiny, ck, db), 1);
    assert_non_null(strstr(err, "tiny.txt.missing"));
    free(out), free(err);
    mech_test_rm_db(db);
    rm_ckpt(ck);
    unlink(txt), unlink(tiny);
}

static void test_rasp_task(void **state) {
    (void)state;
    const char *db = mech_test_tmpn("rasp.db"), *ck = mech_test_tmpn("rasp.safetensors");
    mech_test_rm_db(db);
    char *out = NULL, *err = NULL;
    // reverse: vocab {a, b, c, d}, max_seq_len 5: rows of 12 tokens; 4 + 2 + 4 ids
    int st = mech_test_cli(&out, &err,
                           "train --task rasp:examples/rasp/reverse.rasp --layers 2 --heads 2 --d-model 32 --d-head 16 "
                           "--d-mlp 64 --batch 32 --steps 300 --lr 0.01 --threads 1 --eval 64 --out %s --db %s", ck, db);
    if (st) fail_msg("exit %d: %s", st, err);
    assert_non_null(strstr(out, "held-out accuracy against the reference interpreter (64 inputs, greedy decoding)"));
    char *acc = strstr(out, "decoding): ");
    double tok_acc = atof(acc + strlen("decoding): "));
    // chance is 1/4 per output token
    assert_true(tok_acc > 0.6);
    free(out), free(err);
    mech_model *m = NULL;
    mech_err e = {0};
    assert_int_equal(mech_model_load(ck, &m, &e), MECH_OK);
    assert_int_equal(m->cfg.d_vocab, 10);
    assert_int_equal(m->cfg.n_ctx, 12);
    mech_model_free(m);
    // --seq must be 2n + 2
    assert_int_equal(mech_test_cli(&out, &err, "train --task rasp:examples/rasp/reverse.rasp --seq 13 --out %s --db %s",
                                   ck, db), 2);
    assert_non_null(strstr(err, "T must be 2n + 2"));
    free(out), free(err);
    mech_test_rm_db(db);
    rm_ckpt(ck);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_usage),     cmocka_unit_test(test_induction_run), cmocka_unit_test(test_resume_exact),
        cmocka_unit_test(test_interrupt), cmocka_unit_test(test_text_task),     cmocka_unit_test(test_rasp_task),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
