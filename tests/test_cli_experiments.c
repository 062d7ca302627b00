/*
** tests/test_cli_experiments.c: the experiment commands as scripts run them:
** patching a compiled RASP model, --shard slices merged into one file,
** a sweep killed with SIGKILL and resumed, --spec files, and the arrays
** each command stores beside its result rows.
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
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define mech(out, ...) mech_test_cli(out, NULL, __VA_ARGS__)

static const char *bin(void) {
    const char *b = getenv("MECH_BIN");
    return b && *b ? b : "./mech";
}

// One line per result row of the runs selected by where, without run ids,
// in a fixed order: what "the same results" means across files.
static char *result_rows(const char *db, const char *where) {
    char sql[512];
    snprintf(sql, sizeof sql,
             "select item, site, layer, pos, head, token, rank, metric, quote(value) from results where %s "
             "order by item, site, layer, pos, head, token, rank, metric",
             where);
    return mech_test_sql_rows(db, sql);
}

static int64_t query_int(const char *db, const char *sql) {
    sqlite3 *h = NULL;
    if (sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        sqlite3_close(h);
        return -1;
    }
    sqlite3_busy_timeout(h, 2000);
    sqlite3_stmt *st = NULL;
    int64_t v = -1;
    if (sqlite3_prepare_v2(h, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(h);
    return v;
}

static int count_lines(const char *s) {
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

static void compile_reverse(char *path, size_t cap) {
    char *out;
    snprintf(path, cap, "%s", mech_test_tmp("reverse.safetensors"));
    assert_int_equal(mech(&out, "compile examples/rasp/reverse.rasp -o %s", path), 0);
    free(out);
}

// Patching a compiled model: input sequences and output values in a pairs
// file. reverse's output at the last position is the first input value, so
// with clean "a b c d" / corrupt "d b c a" restoring resid_pre at position 1
// (the first value, after BOS) restores the clean answer at every layer, and
// the last position's own value (also different) matters at none.
static void test_patch_compiled_pairs(void **state) {
    char model[512], pairs[512], db[512], *out;
    compile_reverse(model, sizeof model);
    snprintf(pairs, sizeof pairs, "%s", mech_test_tmp("compiled.jsonl"));
    snprintf(db, sizeof db, "%s", mech_test_tmp("compiled.db"));
    remove(db);
    FILE *f = fopen(pairs, "wb");
    fputs("{\"clean\": \"a b c d\", \"corrupt\": \"d b c a\", \"answer\": \"a\", \"wrong\": \"d\"}\n"
          "{\"clean\": [\"b\", \"a\"], \"corrupt\": [\"c\", \"a\"]}\n", f);
    fclose(f);
    assert_int_equal(mech(&out, "patch --model %s --pairs %s --db %s", model, pairs, db), 0);
    assert_non_null(strstr(out, "run 1: resid_pre patching of 2 pairs"));
    free(out);
    // BOS is prepended: 5 positions; 3 layers
    assert_int_equal(query_int(db, "select count(*) from results where run_id=1 and item=0 and metric='effect'"), 15);
    for (int layer = 0; layer < 3; layer++)
        for (int pos = 0; pos < 5; pos++) {
            char sql[256];
            snprintf(sql, sizeof sql,
                     "select cast(round(value * 1000) as int) from results where run_id=1 and item=0 and "
                     "metric='effect' and layer=%d and pos=%d",
                     layer, pos);
            assert_int_equal(query_int(db, sql), pos == 1 ? 1000 : 0);
        }
    // the second pair: answers default to the model's own outputs ("b" on the clean input, "c" on the corrupt)
    assert_int_equal(query_int(db, "select count(*) from prompts where run_id=1 and item=1 and role='clean' and tokens='[0,2,1]'"), 1);
    assert_int_equal(query_int(db, "select cast(round(value * 1000) as int) from results where run_id=1 and item=1 and "
                                   "metric='effect' and layer=0 and pos=1"),
                     1000);
    // the effect grid is stored as an array too
    mech_store *s = NULL;
    mech_err err = {0};
    float *data = NULL;
    int ndim = 0;
    int64_t shape[MECH_MAX_DIMS];
    assert_int_equal(mech_store_open(db, &s, &err), MECH_OK);
    assert_int_equal(mech_store_tensor_get(s, 1, "pair0.effect", &data, &ndim, shape, &err), MECH_OK);
    assert_int_equal(ndim, 2);
    assert_int_equal(shape[0], 3);
    assert_int_equal(shape[1], 5);
    for (int l = 0; l < 3; l++)
        for (int p = 0; p < 5; p++) assert_true(fabsf(data[l * 5 + p] - (p == 1 ? 1.0f : 0.0f)) < 1e-6f);
    mech_free(data);
    mech_store_close(s);

    // bad inputs name the line and what is expected
    f = fopen(pairs, "wb");
    fputs("{\"clean\": \"a b c d\", \"corrupt\": \"d b c a\", \"answer\": \"a\", \"wrong\": \"d\"}\n"
          "{\"clean\": \"a b x\", \"corrupt\": \"a b c\"}\n", f);
    fclose(f);
    assert_int_equal(mech(&out, "patch --model %s --pairs %s --db %s", model, pairs, db), 2);
    assert_non_null(strstr(out, ":2: error: 'clean'"));
    assert_non_null(strstr(out, "'x'"));
    free(out);
    f = fopen(pairs, "wb");
    fputs("{\"clean\": \"a b\", \"corrupt\": \"a c\", \"answer\": \"z\"}\n", f);
    fclose(f);
    assert_int_equal(mech(&out, "patch --model %s --pairs %s --db %s --metric kl", model, pairs, db), 2);
    assert_non_null(strstr(out, ":1: error: 'answer' is not an output value of the program; expected one of [\"a\""));
    free(out);
    f = fopen(pairs, "wb");
    fputs("{\"clean\": \"a b c\", \"corrupt\": \"a c\"}\n", f);
    fclose(f);
    assert_int_equal(mech(&out, "patch --model %s --pairs %s --db %s --metric kl", model, pairs, db), 2);
    assert_non_null(strstr(out, ":1: error: clean is 4 tokens but corrupt is 3"));
    free(out);
    // nothing but the first run was written
    assert_int_equal(query_int(db, "select count(*) from runs"), 1);
}

// The built-in compiled dataset: random and shuffled corruptions, and the
// answers are the program's outputs (checked against the interpreter in
// tests/test_interp_datasets.c).
static void test_patch_compiled_dataset(void **state) {
    char model[512], db[512], *out;
    compile_reverse(model, sizeof model);
    snprintf(db, sizeof db, "%s", mech_test_tmp("compiled-ds.db"));
    remove(db);
    assert_int_equal(mech(&out, "patch --model %s --dataset compiled --n 6 --len 4 --corruption shuffle --sweep heads "
                                "--metric kl --db %s",
                          model, db),
                     0);
    assert_non_null(strstr(out, "heads patching of 6 pairs"));
    free(out);
    // reverse has one head per layer: 3 layers x 1 head x (kl + effect) per pair, plus 2 baselines
    assert_int_equal(query_int(db, "select count(*) from results where run_id=1"), 6 * (3 * 2 + 2));
    // shuffle keeps the multiset of values: same sorted ids
    assert_int_equal(query_int(db, "select count(*) from prompts where run_id=1 and role='clean'"), 6);
    assert_int_equal(mech(&out, "patch --model %s --dataset compiled --len 6 --db %s", model, db), 2);
    assert_non_null(strstr(out, "max_seq_len (5)"));
    free(out);
    assert_int_equal(mech(&out, "patch --model %s --dataset compiled --corruption sideways --db %s", model, db), 2);
    assert_non_null(strstr(out, "expected random or shuffle"));
    free(out);
    // GPT-2 models have no compiled dataset
    assert_int_equal(mech(&out, "patch --model tests/fixtures/gpt2-tiny --dataset compiled --db %s", db), 2);
    assert_non_null(strstr(out, "not a compiled RASP model"));
    free(out);
}

// --shard K/N: the slices, merged with `mech db merge`, hold exactly the
// rows of one unsharded run.
static void test_patch_shards_merge_to_one_run(void **state) {
    char one[512], merged[512], shard[3][512], *out;
    snprintf(one, sizeof one, "%s", mech_test_tmp("one.db"));
    snprintf(merged, sizeof merged, "%s", mech_test_tmp("merged.db"));
    remove(one);
    remove(merged);
    const char *common = "patch --model tests/fixtures/gpt2-tiny --dataset induction --n 7 --len 4 --seed 3 "
                         "--sweep resid_pre --metric logit_diff";
    assert_int_equal(mech(&out, "%s --db %s", common, one), 0);
    free(out);
    for (int k = 0; k < 3; k++) {
        char name[32];
        snprintf(name, sizeof name, "shard%d.db", k);
        snprintf(shard[k], sizeof shard[k], "%s", mech_test_tmp(name));
        remove(shard[k]);
        assert_int_equal(mech(&out, "%s --shard %d/3 --db %s", common, k + 1, shard[k]), 0);
        // shard k gets pairs k, k+3, ...: 3, 2, 2 of 7
        char want[64];
        snprintf(want, sizeof want, "of %d pair", k == 0 ? 3 : 2);
        assert_non_null(strstr(out, want));
        free(out);
    }
    assert_int_equal(mech(&out, "db merge %s %s %s %s", merged, shard[0], shard[1], shard[2]), 0);
    free(out);
    char *a = result_rows(one, "1"), *b = result_rows(merged, "1");
    assert_int_equal(count_lines(a), 7 * (2 + 2 * 2 * 7)); // 2 baselines + 2 layers x 7 positions x 2 metrics
    assert_string_equal(a, b);
    free(a);
    free(b);
    assert_int_equal(query_int(merged, "select count(*) from runs where params like '%\"shard\": \"2/3\"%'"), 1);
    assert_int_equal(mech(&out, "%s --shard 4/3", common), 2);
    assert_non_null(strstr(out, "--shard '4/3': expected K/N"));
    free(out);
    assert_int_equal(mech(&out, "%s --shard 1/0", common), 2);
    free(out);
}

// A sweep killed with SIGKILL keeps every finished pair, leaves a valid
// file, and --resume finishes it to exactly the uninterrupted results.
static void test_patch_killed_then_resumed(void **state) {
    char model[512], db[512], ref[512], *out;
    snprintf(model, sizeof model, "%s", mech_test_tmp("kill-model.safetensors"));
    snprintf(db, sizeof db, "%s", mech_test_tmp("killed.db"));
    snprintf(ref, sizeof ref, "%s", mech_test_tmp("uninterrupted.db"));
    remove(db);
    remove(ref);
    assert_int_equal(mech(&out, "init -o %s --layers 3 --d-model 64 --heads 4 --d-head 16 --d-mlp 128 --n-ctx 64 --vocab 500",
                          model),
                     0);
    free(out);
    char args[1024];
    snprintf(args, sizeof args, "patch --model %s --dataset induction --n 60 --len 12 --seed 5 --sweep resid_pre --metric logprob",
             model);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char cmd[2048];
        snprintf(cmd, sizeof cmd, "exec %s %s --db %s >/dev/null 2>&1", bin(), args, db);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    // kill it as soon as two pairs are in (polling the file as sqlite3 would)
    int64_t done = 0;
    for (int i = 0; i < 20000 && done < 2; i++) {
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
        done = query_int(db, "select count(distinct item) from results where run_id=1");
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            pid = -1;
            break;
        }
    }
    assert_true(pid > 0); // still running after two pairs: the kill lands mid-sweep
    if (pid > 0) {
        kill(pid, SIGKILL);
        int st;
        waitpid(pid, &st, 0);
    }
    int64_t kept = query_int(db, "select count(distinct item) from results where run_id=1");
    assert_true(kept >= 1 && kept < 60);
    assert_int_equal(query_int(db, "select count(*) from pragma_integrity_check where integrity_check='ok'"), 1);
    // every kept pair is complete: 2 baselines + 3 layers x 23 positions x 2 metrics
    assert_int_equal(query_int(db, "select count(*) from results where run_id=1"), kept * (2 + 3 * 23 * 2));
    assert_int_equal(mech(&out, "%s --db %s --resume 1", args, db), 0);
    free(out);
    assert_int_equal(mech(&out, "%s --db %s", args, ref), 0);
    free(out);
    char *a = result_rows(db, "run_id=1"), *b = result_rows(ref, "run_id=1");
    assert_int_equal(count_lines(b), 60 * (2 + 3 * 23 * 2));
    assert_string_equal(a, b);
    free(a);
    free(b);
    assert_int_equal(query_int(db, "select count(*) from runs where id=1 and status='done'"), 1);
    // resuming with other parameters is refused
    assert_int_equal(mech(&out, "%s --db %s --resume 1 --sweep attn_out", args, db), 2);
    assert_non_null(strstr(out, "not a patch run with these"));
    free(out);
}

// --spec FILE: the same run as the flags; flags after it override it; bad
// files are named with what is wrong.
static void test_spec_files(void **state) {
    char spec[512], db1[512], db2[512], *out;
    snprintf(spec, sizeof spec, "%s", mech_test_tmp("exp.json"));
    snprintf(db1, sizeof db1, "%s", mech_test_tmp("spec1.db"));
    snprintf(db2, sizeof db2, "%s", mech_test_tmp("spec2.db"));
    remove(db1);
    remove(db2);
    FILE *f = fopen(spec, "wb");
    fprintf(f, "{\"command\": \"patch\", \"model\": \"tests/fixtures/gpt2-tiny\", \"dataset\": \"induction\", \"n\": 3,\n"
               " \"len\": 4, \"sweep\": \"heads\", \"metric\": \"kl\", \"naive\": false, \"db\": \"%s\"}\n",
            db1);
    fclose(f);
    assert_int_equal(mech(&out, "patch --spec %s", spec), 0);
    assert_non_null(strstr(out, "heads patching of 3 pairs"));
    free(out);
    assert_int_equal(mech(&out, "patch --model tests/fixtures/gpt2-tiny --dataset induction --n 3 --len 4 --sweep heads "
                                "--metric kl --db %s",
                          db2),
                     0);
    free(out);
    char *a = result_rows(db1, "1"), *b = result_rows(db2, "1");
    assert_true(count_lines(a) > 0);
    assert_string_equal(a, b);
    free(a);
    free(b);
    // a flag after --spec wins
    assert_int_equal(mech(&out, "patch --spec %s --n 2", spec), 0);
    assert_non_null(strstr(out, "of 2 pairs"));
    free(out);
    // arrays repeat an option, true is a bare flag (heads takes --prompt ... several times)
    f = fopen(spec, "wb");
    fprintf(f, "{\"model\": \"tests/fixtures/gpt2-tiny\", \"ids\": [\"1,2,3,1,2,3\", \"4,5,6,4,5,6\"], \"db\": \"%s\"}", db1);
    fclose(f);
    assert_int_equal(mech(&out, "heads --spec %s", spec), 0);
    assert_non_null(strstr(out, "2 sequences x 6 tokens"));
    free(out);
    struct {
        const char *text, *msg;
    } bad[] = {
        {"{\"model\": ", "error: JSON line 1"},
        {"[1, 2]", "error: expected a JSON object of options"},
        {"{\"command\": \"lens\"}", "'command' is 'lens' but this is `mech heads`"},
        {"{\"--model\": \"x\"}", "key '--model': expected an option name without dashes"},
        {"{\"model\": {\"a\": 1}}", "'model': expected a string, a number"},
        // a misspelled key names the file and the key
        {"{\"nonsense\": 1}", "exp.json: error: unknown key 'nonsense'"},
        {"{\"modle\": \"x\"}", "exp.json: error: unknown key 'modle'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        f = fopen(spec, "wb");
        fputs(bad[i].text, f);
        fclose(f);
        assert_int_equal(mech(&out, "heads --spec %s --db %s", spec, db2), 2);
        if (!strstr(out, bad[i].msg)) fail_msg("spec %s: got %s", bad[i].text, out);
        free(out);
    }
    assert_int_equal(mech(&out, "heads --spec /nonexistent/spec.json"), 1);
    assert_non_null(strstr(out, "/nonexistent/spec.json"));
    free(out);
}

// lens, heads and attrib store arrays that equal their result rows.
static void test_arrays_match_rows(void **state) {
    char db[512], *out;
    snprintf(db, sizeof db, "%s", mech_test_tmp("arrays.db"));
    remove(db);
    assert_int_equal(mech(&out, "heads --model tests/fixtures/gpt2-tiny --random 6 --batch 3 --db %s", db), 0);
    free(out);
    assert_int_equal(mech(&out, "lens --model tests/fixtures/gpt2-tiny --ids 5,17,42,99 --target 7 --db %s", db), 0);
    free(out);
    assert_int_equal(mech(&out, "attrib --model tests/fixtures/gpt2-tiny --ids 5,17,42,99 --answer 3 --wrong 4 --db %s", db), 0);
    free(out);
    mech_store *s = NULL;
    mech_err err = {0};
    assert_int_equal(mech_store_open(db, &s, &err), MECH_OK);
    float *t = NULL;
    int ndim;
    int64_t shape[MECH_MAX_DIMS];
    assert_int_equal(mech_store_tensor_get(s, 1, "head_scores", &t, &ndim, shape, &err), MECH_OK);
    assert_int_equal(ndim, 3);
    assert_int_equal(shape[0], 3);
    assert_int_equal(shape[1], 2);
    assert_int_equal(shape[2], 4);
    const char *kinds[3] = {"previous_token", "duplicate_token", "induction"};
    for (int k = 0; k < 3; k++)
        for (int l = 0; l < 2; l++)
            for (int h = 0; h < 4; h++) {
                char sql[256];
                snprintf(sql, sizeof sql,
                         "select cast(round(value * 1e6) as int) from results where run_id=1 and metric='%s' and "
                         "layer=%d and head=%d",
                         kinds[k], l, h);
                assert_int_equal(query_int(db, sql), (int64_t)llround(t[(k * 2 + l) * 4 + h] * 1e6));
            }
    mech_free(t);
    assert_int_equal(mech_store_tensor_get(s, 2, "kl", &t, &ndim, shape, &err), MECH_OK);
    assert_int_equal(ndim, 3);
    assert_int_equal(shape[0] * shape[1] * shape[2], 3 * 1 * 4);
    for (int p = 0; p < 4; p++) assert_true(fabsf(t[2 * 4 + p]) < 1e-6f); // the last layer is the output
    mech_free(t);
    assert_int_equal(mech_store_tensor_get(s, 2, "target_rank", &t, &ndim, shape, &err), MECH_OK);
    assert_int_equal(query_int(db, "select rank from results where run_id=2 and metric='target_prob' and layer=1 and pos=3"),
                     (int64_t)t[1 * 4 + 3]);
    mech_free(t);
    assert_int_equal(mech_store_tensor_get(s, 3, "components", &t, &ndim, shape, &err), MECH_OK);
    assert_int_equal(shape[0], 1 + 2 * (4 + 1 + 1));
    assert_int_equal(shape[1], 1);
    double sum = 0;
    for (int c = 0; c < shape[0]; c++) sum += t[c];
    mech_free(t);
    int64_t bias = query_int(db, "select cast(round(value * 1e4) as int) from results where run_id=3 and metric='bias'");
    int64_t logit = query_int(db, "select cast(round(value * 1e4) as int) from results where run_id=3 and metric='logit'");
    assert_true(llabs((int64_t)llround(sum * 1e4) + bias - logit) <= 3);
    mech_store_close(s);
}

// --sweep path: senders in the receivers' layer or later have no path
// (effect exactly 0); earlier ones are measured; receivers are checked.
static void test_patch_path_sweep(void **state) {
    char db[512], *out;
    snprintf(db, sizeof db, "%s", mech_test_tmp("path.db"));
    remove(db);
    assert_int_equal(mech(&out, "patch --model tests/fixtures/gpt2-tiny --dataset induction --n 2 --len 4 --sweep path "
                                "--receivers 1.0,1.2.q --db %s",
                          db),
                     0);
    assert_non_null(strstr(out, "path patching of 2 pairs"));
    free(out);
    assert_int_equal(query_int(db, "select count(*) from results where run_id=1 and metric='effect'"), 2 * 2 * 4);
    assert_int_equal(query_int(db, "select count(*) from results where run_id=1 and metric='effect' and layer=1 and value=0"),
                     2 * 4);
    assert_true(query_int(db, "select count(*) from results where run_id=1 and metric='effect' and layer=0 and value!=0") > 0);
    assert_int_equal(query_int(db, "select count(*) from runs where params like '%\"receivers\": \"1.0,1.2.q\"%'"), 1);
    const char *bad[] = {"--sweep path", "--sweep heads --receivers 1.0", "--sweep path --receivers 1.x",
                         "--sweep path --receivers 2.0", "--sweep path --receivers 1.4.q", "--sweep path --receivers 1.0.z"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        assert_int_equal(mech(&out, "patch --model tests/fixtures/gpt2-tiny --dataset induction --n 2 --len 4 %s --db %s",
                              bad[i], db),
                         2);
        free(out);
    }
    assert_int_equal(query_int(db, "select count(*) from runs"), 1);
}

// The id of the run of that kind on the induction model (sweep: a patch
// run's sweep, else NULL), or -1.
static int64_t induction_run(const char *db, const char *kind, const char *sweep) {
    char sql[512];
    snprintf(sql, sizeof sql,
             "select id from runs where kind = '%s' and model_path like '%%induction.safetensors'%s%s%s", kind,
             sweep ? " and json_extract(params, '$.sweep') = '" : "", sweep ? sweep : "", sweep ? "'" : "");
    return query_int(db, sql);
}

// The README's worked example (examples/experiments.sh, also `make demo`)
// runs from start to end, from another directory than the repository's,
// and its sqlite3 queries give what the text says: on the compiled program
// the compiler's circuit, on the trained induction model (the shipped one,
// INDUCTION_MODEL: training it takes half a minute) the previous-token head
// L0H3 and the induction heads of layer 1 in every experiment.
static void test_worked_example_script(void **state) {
    char dir[512], *out, abs_bin[4096], abs_dir[4096], script[4096], model[4096];
    snprintf(dir, sizeof dir, "%s", mech_test_tmp("example"));
    assert_int_equal(mech_test_cli(&out, NULL, "--help"), 0); // the binary runs at all
    free(out);
    mkdir(dir, 0755);
    assert_non_null(realpath(bin(), abs_bin));
    assert_non_null(realpath(dir, abs_dir));
    assert_non_null(realpath("examples/experiments.sh", script));
    assert_non_null(realpath("examples/models/induction.safetensors", model));
    // the script trains with the settings recorded in the shipped model
    // (test_interp_induction_model.c checks them against its metadata)
    size_t slen;
    char *text = mech_test_read(script, &slen);
    assert_non_null(text);
    assert_non_null(strstr(text, "train --task induction --attn-only --steps 2000 --batch 16 --seq 64 --lr 0.003 "
                                 "--warmup 200 --seed 1 \\\n              --threads 2 "));
    free(text);
    char cmd[17000];
    // run inside the output folder, writing to "." : nothing there is the repository
    snprintf(cmd, sizeof cmd, "cd %s && MECH=%s INDUCTION_MODEL=%s sh %s . 2>&1", abs_dir, abs_bin, model, script);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    mech_buf b = {0};
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, p)) > 0) mech_buf_printf(&b, "%.*s", (int)n, chunk);
    int st = pclose(p);
    if (!WIFEXITED(st) || WEXITSTATUS(st)) fail_msg("examples/experiments.sh failed:\n%s", b.data);
    assert_non_null(strstr(b.data, "verified 1364/1364 inputs"));
    assert_non_null(strstr(b.data, "run 12: head scores"));
    // ACDC under zero ablation finds the compiler's circuit of reverse exactly
    assert_non_null(strstr(b.data, "TPR 1.000  FPR 0.0000  (14 of 14 truth edges found, 0 false positives)"));
    char db[600];
    snprintf(db, sizeof db, "%s/results.db", dir);
    // 4 runs, a sweep run and its 3 thresholds x 2 ablations; 7 runs on the
    // induction model (no train run: INDUCTION_MODEL)
    assert_int_equal(query_int(db, "select count(*) from runs where status='done'"), 18);
    assert_int_equal(query_int(db, "select count(*) from runs where kind='train'"), 0);
    assert_int_equal(query_int(db, "select count(*) from runs where model_path like '%induction.safetensors'"), 7);
    assert_int_equal(query_int(db, "select count(*) from runs where kind='acdc' and "
                                   "json_extract(params, '$.sweep') = (select id from runs where kind='acdc-sweep')"),
                     6);
    // zero ablation finds reverse's circuit at every threshold up to 1e-2: AUC 1
    assert_int_equal(query_int(db, "select count(*) from results where run_id=5 and metric='auc' and site='zero' "
                                   "and value = 1"),
                     1);
    assert_int_equal(query_int(db, "select count(*) from results where run_id=4 and metric='kept'"), 14);
    // reverse's answer lives at input position 1 at every layer before the last
    assert_int_equal(query_int(db, "select count(*) from (select layer, pos, avg(value) as e from results where run_id=1 and "
                                   "metric='effect' group by layer, pos) where abs(e) > 0.05"),
                     3);
    assert_int_equal(query_int(db, "select min(layer) from results where run_id=3 and metric='opp' and rank=1"), 2);
    assert_int_equal(query_int(db, "select min(layer) from results where run_id=3 and metric='reverse' and rank=1"), 3);

    // The induction model. Its model file is the shipped one, copied.
    char copy[700];
    snprintf(copy, sizeof copy, "%s/induction.safetensors", dir);
    size_t na, nb;
    char *x = mech_test_read(model, &na), *y = mech_test_read(copy, &nb);
    assert_true(x && y && na == nb && !memcmp(x, y, na));
    free(x), free(y);
    char sql[1024];
    // head scores: L0H3 is the best previous-token head, far above the
    // rest; the four best induction scores are the four layer-1 heads
    int64_t heads = induction_run(db, "heads", NULL);
    assert_true(heads > 0);
    snprintf(sql, sizeof sql, "select layer * 10 + head from results where run_id=%lld and metric='previous_token' "
                              "order by value desc limit 1", (long long)heads);
    assert_int_equal(query_int(db, sql), 3);
    snprintf(sql, sizeof sql, "select count(*) from results where run_id=%lld and metric='previous_token' and value > 0.3",
             (long long)heads);
    assert_int_equal(query_int(db, sql), 1);
    snprintf(sql, sizeof sql, "select count(*) from (select layer from results where run_id=%lld and "
                              "metric='induction' order by value desc limit 4) where layer = 1", (long long)heads);
    assert_int_equal(query_int(db, sql), 4);
    // patching heads: the heads whose mean |effect| exceeds 0.1 are exactly
    // L0H3 and the four layer-1 heads; the other layer-0 heads do nothing
    int64_t ph = induction_run(db, "patch", "heads");
    assert_true(ph > 0);
    // as a bit set of layer * 4 + head
    snprintf(sql, sizeof sql, "select sum(1 << (layer * 4 + head)) from (select layer, head, avg(value) as e from results "
                              "where run_id=%lld and metric='effect' group by layer, head having abs(e) > 0.1)", (long long)ph);
    assert_int_equal(query_int(db, sql), (1 << 3) | (0xf << 4));
    snprintf(sql, sizeof sql, "select count(*) from (select avg(value) as e from results where run_id=%lld and "
                              "metric='effect' and layer=0 and head!=3 group by head) where abs(e) < 0.02", (long long)ph);
    assert_int_equal(query_int(db, sql), 3);
    // resid_pre: restoring the answer's own position (9) before layer 0
    // restores the answer; so do, in part, the earlier copy of the last
    // token (8) and the last token (18); positions 0..7 and 10..17 do not
    int64_t pr = induction_run(db, "patch", "resid_pre");
    assert_true(pr > 0);
    snprintf(sql, sizeof sql, "select avg(value) * 1000 from results where run_id=%lld and metric='effect' and layer=0 "
                              "and pos=9", (long long)pr);
    assert_true(query_int(db, sql) > 900);
    snprintf(sql, sizeof sql, "select count(*) from (select layer, pos, avg(value) as e from results where run_id=%lld "
                              "and metric='effect' group by layer, pos) where abs(e) > 0.05 and pos not in (8, 9, 18)",
             (long long)pr);
    assert_int_equal(query_int(db, sql), 0);
    // logit lens: the next token (162, the 7th id) is ranked first only
    // after layer 1, far down before it
    int64_t lens = induction_run(db, "lens", NULL);
    for (int l = 0; l < 3; l++) {
        snprintf(sql, sizeof sql, "select rank from results where run_id=%lld and metric='target_prob' and pos=15 and "
                                  "token=162 and layer=%d", (long long)lens, l);
        int64_t rank = query_int(db, sql);
        if (l == 2) assert_int_equal(rank, 0);
        else assert_true(rank > 10);
    }
    // attribution: the four largest components are the layer-1 heads
    int64_t attr = induction_run(db, "attrib", NULL);
    snprintf(sql, sizeof sql, "select count(*) from (select metric, layer from results where run_id=%lld and metric in "
                              "('head', 'embed', 'attn_bias', 'mlp') order by abs(value) desc limit 4) where metric='head' "
                              "and layer=1", (long long)attr);
    assert_int_equal(query_int(db, sql), 4);
    // ACDC keeps L0H3 -> the keys of layer-1 heads, and no other layer-0
    // head's edge into a key
    int64_t acdc = induction_run(db, "acdc", NULL);
    snprintf(sql, sizeof sql, "select count(*) from results where run_id=%lld and metric='kept' and site like "
                              "'blocks.0.attn.hook_result[:, :, 3]->blocks.1.hook_k_input%%'", (long long)acdc);
    assert_true(query_int(db, sql) >= 2);
    snprintf(sql, sizeof sql, "select count(*) from results where run_id=%lld and metric='kept' and site like "
                              "'blocks.0.attn.hook_result%%->blocks.1.hook_k_input%%' and site not like "
                              "'blocks.0.attn.hook_result[:, :, 3]%%'", (long long)acdc);
    assert_int_equal(query_int(db, sql), 0);
    // EAP keeps at least two of them in its top 30 (kept), none of another
    // layer-0 head into a key
    int64_t eap = induction_run(db, "eap", NULL);
    snprintf(sql, sizeof sql, "select count(*) from results where run_id=%lld and metric='kept' and site like "
                              "'blocks.0.attn.hook_result[:, :, 3]->blocks.1.hook_k_input%%'", (long long)eap);
    assert_true(query_int(db, sql) >= 2);
    snprintf(sql, sizeof sql, "select count(*) from results where run_id=%lld and metric='kept' and site like "
                              "'blocks.0.attn.hook_result%%->blocks.1.hook_k_input%%' and site not like "
                              "'blocks.0.attn.hook_result[:, :, 3]%%'", (long long)eap);
    assert_int_equal(query_int(db, sql), 0);
    // the random GPT-2 is made for the terminal interface only: no run on it
    snprintf(copy, sizeof copy, "%s/gpt2-tiny.safetensors", dir);
    assert_int_equal(access(copy, R_OK), 0);
    assert_int_equal(query_int(db, "select count(*) from runs where model_path like '%gpt2%'"), 0);
    if (system("command -v sqlite3 >/dev/null 2>&1") == 0) {
        assert_non_null(strstr(b.data, "opp       2"));
        assert_non_null(strstr(b.data, "reverse   3"));
        assert_non_null(strstr(b.data, "previous_token  L0H3"));
    }
    mech_buf_free(&b);
}

// Every prefix of a pairs file and of a spec file is read or refused with a
// message and exit 2: never a crash, a sanitizer report, or a run left in
// the database half-made.
static void check_prefixes(const char *file, const char *text, const char *fmt, const char *model, const char *db) {
    size_t len = strlen(text);
    const char *san = getenv("MECH_SANITIZED");
    size_t step = san && *san ? 7 : 3; // every byte costs a process; sanitized ones are slow
    for (size_t cut = 0; cut <= len; cut += cut + step > len && cut < len ? len - cut : step) {
        FILE *f = fopen(file, "wb");
        fwrite(text, 1, cut, f);
        fclose(f);
        char *out;
        int rc = mech(&out, fmt, model, file, db);
        if ((rc != 0 && rc != 2) || strstr(out, "Sanitizer") || strstr(out, "runtime error"))
            fail_msg("prefix of %zu bytes: exit %d\n%s", cut, rc, out);
        if (rc == 2 && !strstr(out, "error")) fail_msg("prefix of %zu bytes: exit 2 without a message\n%s", cut, out);
        free(out);
    }
}

static void test_truncated_inputs(void **state) {
    char model[512], file[512], db[512];
    compile_reverse(model, sizeof model);
    snprintf(file, sizeof file, "%s", mech_test_tmp("trunc.txt"));
    snprintf(db, sizeof db, "%s", mech_test_tmp("trunc.db"));
    remove(db);
    check_prefixes(file,
                   "{\"clean\": \"a b c d\", \"corrupt\": [\"d\", \"b\", \"c\", \"a\"], \"answer\": \"a\", \"wrong\": \"d\"}\n"
                   "a b\tb a\tb\ta\n",
                   "patch --model %s --pairs %s --metric kl --db %s", model, db);
    check_prefixes(file,
                   "{\"clean\": [5, 17, 42, 99], \"corrupt\": \"Hello\", \"answer\": 3, \"wrong\": \" x\"}\n",
                   "patch --model %s --pairs %s --metric kl --db %s", "tests/fixtures/gpt2-tiny", db);
    check_prefixes(file,
                   "{\"command\": \"heads\", \"ids\": [\"1,2,3,1,2,3\", \"4,5,6,4,5,6\"], \"seed\": 3, \"batch\": 2.5e0}",
                   "heads --model %s --spec %s --db %s", "tests/fixtures/gpt2-tiny", db);
    // only complete runs: every run in the file finished
    int64_t runs = query_int(db, "select count(*) from runs");
    assert_int_equal(query_int(db, "select count(*) from runs where status = 'done'"), runs);
}

// The decoder lens reads 0 as a value: on frac_prevs every layer before the
// one that computes a variable shows "-", and from it on the printout and
// the database hold the interpreter's values (0 included, no 7.6e-44).
static void test_decoder_lens_matches_interpreter(void **state) {
    char model[512], db[512], *out, *trace;
    snprintf(model, sizeof model, "%s", mech_test_tmpn("frac.safetensors"));
    snprintf(db, sizeof db, "%s", mech_test_tmpn("frac.db"));
    mech_test_rm_db(db);
    assert_int_equal(mech(&out, "compile examples/rasp/frac_prevs.rasp -o %s", model), 0);
    free(out);
    const char *inputs[] = {"h e", "h l l o"};
    for (int k = 0; k < 2; k++) {
        assert_int_equal(mech(&out, "lens --model %s --input '%s' --db %s", model, inputs[k], db), 0);
        assert_int_equal(mech(&trace, "rasp examples/rasp/frac_prevs.rasp --input '%s' --trace", inputs[k]), 0);
        assert_null(strstr(out, "e-"));
        // frac_l: "-" before the last layer, then the interpreter's values
        const char *want_vars[] = {"map_3", "frac_l"};
        for (int v = 0; v < 2; v++) {
            char key[64];
            snprintf(key, sizeof key, "\n%s ", want_vars[v]);
            const char *t = strstr(trace, key);
            assert_non_null(t);
            const char *a = strchr(t, '['), *b = strchr(t, ']');
            char want[128] = {0};
            // the trace's JSON [false,true] as the lens prints it: false true (the same words)
            for (const char *p = a + 1; p < b && strlen(want) < sizeof want - 2; p++) want[strlen(want)] = *p == ',' ? ' ' : *p;
            int from = v == 0 ? 1 : 2; // map_3 is layer 0's MLP, frac_l layer 1's head
            snprintf(key, sizeof key, "  %s ", want_vars[v]);
            const char *row = strstr(out, key);
            assert_non_null(row);
            for (int l = 0; l <= 2; l++) {
                char line[160];
                if (l < from) {
                    snprintf(line, sizeof line, "layer %d: -%s", l, k == 0 ? " -\n" : " - - -\n");
                } else {
                    snprintf(line, sizeof line, "layer %d: %s\n", l, want);
                }
                if (!strstr(row, line)) fail_msg("lens on '%s': no '%s' for %s in\n%s", inputs[k], line, want_vars[v], out);
            }
        }
        free(trace);
        free(out);
    }
    // in the database: frac_l on "h e" is computed (rank 1) at layer 2 with value exactly 0, absent before
    assert_int_equal(query_int(db, "select count(*) from results where run_id=1 and metric='frac_l' and layer=2 and "
                                   "rank=1 and value=0"), 2);
    assert_int_equal(query_int(db, "select count(*) from results where run_id=1 and metric='frac_l' and rank=1"), 2);
    assert_int_equal(query_int(db, "select count(*) from results where run_id=2 and metric='frac_l' and layer=2 and "
                                   "rank=1 and abs(value - 0.6666667) < 1e-6 and pos=2"), 1);
    // booleans print as true/false but stay numbers in the database (value is REAL): map_3 on "h l l o" is 0 1 1 0
    assert_int_equal(query_int(db, "select count(*) from results where run_id=2 and metric='map_3' and layer=2 and "
                                   "rank=1 and typeof(value)='real' and value=1"), 2);
    mech_test_rm_db(db);
}

// A bad value in a spec file is a usage error that names the file.
static void test_spec_bad_value_names_the_file(void **state) {
    char spec[512], *out, *err;
    snprintf(spec, sizeof spec, "%s", mech_test_tmpn("bad-value.json"));
    FILE *f = fopen(spec, "w");
    assert_non_null(f);
    fprintf(f, "{\"n\": 3.5}\n");
    fclose(f);
    assert_int_equal(mech_test_cli(&out, &err, "patch --spec %s --model tests/fixtures/gpt2-tiny --dataset ioi", spec), 2);
    assert_non_null(strstr(err, "3.5"));
    if (!strstr(err, spec)) fail_msg("the message does not name %s:\n%s", spec, err);
    free(out), free(err);
    // without a spec the note is not there
    assert_int_equal(mech_test_cli(&out, &err, "patch --n 3.5 --model tests/fixtures/gpt2-tiny --dataset ioi"), 2);
    assert_null(strstr(err, "spec"));
    free(out), free(err);
    remove(spec);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_patch_compiled_pairs),
        cmocka_unit_test(test_patch_compiled_dataset),
        cmocka_unit_test(test_patch_shards_merge_to_one_run),
        cmocka_unit_test(test_patch_killed_then_resumed),
        cmocka_unit_test(test_spec_files),
        cmocka_unit_test(test_patch_path_sweep),
        cmocka_unit_test(test_worked_example_script),
        cmocka_unit_test(test_truncated_inputs),
        cmocka_unit_test(test_arrays_match_rows),
        cmocka_unit_test(test_decoder_lens_matches_interpreter),
        cmocka_unit_test(test_spec_bad_value_names_the_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
