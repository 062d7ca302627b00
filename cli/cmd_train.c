/*
** cli/cmd_train.c: `mech train`: trains a model on a built-in task
** (interp/train_tasks.c) with the library's trainer (core/train.c), prints
** progress on stderr, writes checkpoints, and stores the loss curve and the
** settings in the results database as a run of kind "train".
*/
#include "cli/cli.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct train_args {
    const char *task, *model, *out, *resume, *db;
    mech_config cfg;
    const char *cfg_opt;     // the first config option given (refused with --model/--resume)
    const char *mlp_opt;     // an MLP option (refused with --attn-only)
    const char *setting_opt; // the first training setting given (refused with --resume)
    int vocab_given, n_ctx_given;
    mech_train_opts o;
    int steps_given, warmup_given, min_lr_given, seq_given;
    long save_every, stop_at, eval_n, log_every, threads;
} train_args;

static int parse(const char *cmd, int argc, char **argv, train_args *a) {
    const char *v;
    long x;
    double d;
    struct { const char *opt; int *field; long lo, hi; } ints[] = {
        {"--layers", &a->cfg.n_layers, 1, 4096},  {"--heads", &a->cfg.n_heads, 1, 4096},
        {"--d-model", &a->cfg.d_model, 1, 65536}, {"--d-head", &a->cfg.d_head, 1, 65536},
        {"--d-mlp", &a->cfg.d_mlp, 0, 1 << 20},   {"--n-ctx", &a->cfg.n_ctx, 1, 1 << 20},
        {"--vocab", &a->cfg.d_vocab, 1, 1 << 24},
    };
    for (int i = 1; i < argc; i++) {
        int r = 0, done = 0;
        for (size_t k = 0; k < sizeof ints / sizeof *ints && !done; k++)
            if ((r = cli_opt(cmd, argc, argv, &i, ints[k].opt, &v))) {
                if (r < 0 || cli_int(cmd, ints[k].opt, v, ints[k].lo, ints[k].hi, &x)) return 2;
                *ints[k].field = (int)x;
                if (!a->cfg_opt) a->cfg_opt = ints[k].opt;
                if (ints[k].field == &a->cfg.d_mlp) a->mlp_opt = "--d-mlp";
                if (ints[k].field == &a->cfg.d_vocab) a->vocab_given = 1;
                if (ints[k].field == &a->cfg.n_ctx) a->n_ctx_given = 1;
                done = 1;
            }
        if (done) continue;
        // training settings: number options
        struct { const char *opt; double *field; double lo, hi; int *given; } nums[] = {
            {"--lr", &a->o.lr, 1e-12, 10, NULL},
            {"--min-lr", &a->o.min_lr, 0, 10, &a->min_lr_given},
            {"--wd", &a->o.adamw.weight_decay, 0, 100, NULL},
            {"--beta1", &a->o.adamw.beta1, 0, 0.999999, NULL},
            {"--beta2", &a->o.adamw.beta2, 0, 0.999999999, NULL},
            {"--eps", &a->o.adamw.eps, 1e-30, 1, NULL},
            {"--clip", &a->o.clip, 0, 1e9, NULL},
        };
        for (size_t k = 0; k < sizeof nums / sizeof *nums && !done; k++)
            if ((r = cli_opt(cmd, argc, argv, &i, nums[k].opt, &v))) {
                if (r < 0 || cli_float(cmd, nums[k].opt, v, nums[k].lo, nums[k].hi, &d)) return 2;
                *nums[k].field = d;
                if (nums[k].given) *nums[k].given = 1;
                if (!a->setting_opt) a->setting_opt = nums[k].opt;
                done = 1;
            }
        if (done) continue;
        struct { const char *opt; long lo, hi; int kind; } setl[] = {
            {"--steps", 1, 1000000000L, 0}, {"--batch", 1, 1 << 16, 1}, {"--seq", 2, 1 << 20, 2},
            {"--warmup", 0, 1000000000L, 3}, {"--accum", 1, 1 << 16, 4}, {"--seed", 0, 2147483647L, 5},
        };
        for (size_t k = 0; k < sizeof setl / sizeof *setl && !done; k++)
            if ((r = cli_opt(cmd, argc, argv, &i, setl[k].opt, &v))) {
                if (r < 0 || cli_int(cmd, setl[k].opt, v, setl[k].lo, setl[k].hi, &x)) return 2;
                switch (setl[k].kind) {
                case 0: a->o.steps = x, a->steps_given = 1; break;
                case 1: a->o.B = (int)x; break;
                case 2: a->o.T = (int)x, a->seq_given = 1; break;
                case 3: a->o.warmup = x, a->warmup_given = 1; break;
                case 4: a->o.accum = (int)x; break;
                case 5: a->o.seed = (uint64_t)x; break;
                }
                // --steps may change with --resume (it extends the schedule); the rest may not
                if (setl[k].kind != 0 && !a->setting_opt) a->setting_opt = setl[k].opt;
                done = 1;
            }
        if (done) continue;
        if ((r = cli_opt(cmd, argc, argv, &i, "--task", &a->task))) {
            if (r < 0) return 2;
            if (!a->setting_opt) a->setting_opt = "--task";
        } else if ((r = cli_opt(cmd, argc, argv, &i, "--model", &a->model))) { if (r < 0) return 2; }
        else if ((r = cli_opt(cmd, argc, argv, &i, "--out", &a->out)) || (r = cli_opt(cmd, argc, argv, &i, "-o", &a->out))) {
            if (r < 0) return 2;
        } else if ((r = cli_opt(cmd, argc, argv, &i, "--resume", &a->resume))) { if (r < 0) return 2; }
        else if ((r = cli_opt(cmd, argc, argv, &i, "--db", &a->db))) { if (r < 0) return 2; }
        else if ((r = cli_opt(cmd, argc, argv, &i, "--save-every", &v))) {
            if (r < 0 || cli_int(cmd, "--save-every", v, 1, 1000000000L, &a->save_every)) return 2;
        } else if ((r = cli_opt(cmd, argc, argv, &i, "--stop-at", &v))) {
            if (r < 0 || cli_int(cmd, "--stop-at", v, 1, 1000000000L, &a->stop_at)) return 2;
        } else if ((r = cli_opt(cmd, argc, argv, &i, "--eval", &v))) {
            if (r < 0 || cli_int(cmd, "--eval", v, 0, 1000000L, &a->eval_n)) return 2;
        } else if ((r = cli_opt(cmd, argc, argv, &i, "--log-every", &v))) {
            if (r < 0 || cli_int(cmd, "--log-every", v, 1, 1000000000L, &a->log_every)) return 2;
        } else if ((r = cli_opt(cmd, argc, argv, &i, "--threads", &v))) {
            if (r < 0 || cli_threads(cmd, v, &a->threads)) return 2;
        } else if ((r = cli_opt(cmd, argc, argv, &i, "--act", &v))) {
            if (r < 0) return 2;
            if (!strcmp(v, "gelu_new")) a->cfg.act = MECH_ACT_GELU_NEW;
            else if (!strcmp(v, "gelu")) a->cfg.act = MECH_ACT_GELU;
            else if (!strcmp(v, "relu")) a->cfg.act = MECH_ACT_RELU;
            else return cli_usage(cmd, "--act '%s': expected gelu_new, gelu or relu", v);
            a->mlp_opt = "--act";
            if (!a->cfg_opt) a->cfg_opt = "--act";
        } else if (!strcmp(argv[i], "--attn-only") || !strcmp(argv[i], "--no-layernorm") ||
                   !strcmp(argv[i], "--untied")) {
            if (!strcmp(argv[i], "--attn-only")) a->cfg.attn_only = 1;
            else if (!strcmp(argv[i], "--no-layernorm")) a->cfg.norm = MECH_NORM_NONE;
            else a->cfg.tied_unembed = 0;
            if (!a->cfg_opt) a->cfg_opt = argv[i];
        } else return cli_usage(cmd, "unknown argument '%s'", argv[i]);
    }
    return 0;
}

// The task named by spec ("induction", "rasp:FILE", "text:FILE"); vocab is
// the induction task's. 0 or an exit code.
static int make_task(const char *cmd, const char *spec, int vocab, uint64_t seed, mech_task **t) {
    mech_err err = {0};
    mech_status st;
    if (!strcmp(spec, "induction")) st = mech_task_induction(vocab, 4, seed, t, &err);
    else if (!strncmp(spec, "rasp:", 5) && spec[5]) {
        st = mech_task_rasp(spec + 5, seed, t, &err);
        if (st) {
            fprintf(stderr, "mech %s: error: --task %s: %s\n", cmd, spec, err.msg);
            return st == MECH_ERR_IO || st == MECH_ERR_NOMEM ? 1 : 2;
        }
    } else if (!strncmp(spec, "text:", 5) && spec[5]) {
        mech_tokenizer *tok = NULL;
        if ((st = mech_tokenizer_gpt2(&tok, &err)) == MECH_OK) st = mech_task_text(spec + 5, tok, seed, t, &err);
        mech_tokenizer_free(tok);
    } else return cli_usage(cmd, "--task '%s': expected induction, rasp:FILE or text:FILE", spec);
    if (st) return st == MECH_ERR_ARG ? cli_usage(cmd, "%s", err.msg) : cli_fail(cmd, &err);
    return 0;
}

static void fmt_eta(char *buf, size_t cap, double s) {
    if (s < 0 || s > 1e7) snprintf(buf, cap, "?");
    else if (s < 60) snprintf(buf, cap, "%.0fs", s);
    else if (s < 3600) snprintf(buf, cap, "%dm%02ds", (int)s / 60, (int)s % 60);
    else snprintf(buf, cap, "%dh%02dm", (int)s / 3600, (int)s % 3600 / 60);
}

static int save(const char *cmd, mech_trainer *t, const char *out, const char *task) {
    mech_err err = {0};
    const char *keys[] = {"mech.train.task", "mech.generator"}, *vals[] = {task, "mech train"};
    if (mech_trainer_save(t, out, keys, vals, 2, &err)) return cli_fail(cmd, &err);
    return 0;
}

int cmd_train(int argc, char **argv) {
    const char *cmd = "train";
    train_args a = {0};
    a.cfg = mech_config_gpt2_small();
    // mech init's small model; the vocabulary and context follow the task
    a.cfg.n_layers = 2, a.cfg.n_heads = 4, a.cfg.d_model = 64, a.cfg.d_head = 16, a.cfg.d_mlp = 256;
    a.db = "mech.db";
    a.eval_n = 256;
    mech_train_opts_default(&a.o);
    int rc = parse(cmd, argc, argv, &a);
    if (rc) return rc;
    if (!a.out && !a.resume) return cli_usage(cmd, "--out FILE.safetensors is required");
    if (!a.out) a.out = a.resume;
    if (!*a.db) return cli_usage(cmd, "--db: empty path");
    if (a.resume) {
        if (a.setting_opt) return cli_usage(cmd, "%s: a resumed run keeps the checkpoint's settings (only --steps, "
                                            "--out, --db, --threads, --save-every, --stop-at, --eval and --log-every "
                                            "apply)", a.setting_opt);
        if (a.model || a.cfg_opt) return cli_usage(cmd, "%s: a resumed run trains the checkpoint's model",
                                                    a.model ? "--model" : a.cfg_opt);
    } else {
        if (!a.task) return cli_usage(cmd, "--task induction|rasp:FILE|text:FILE is required");
        if (a.model && a.cfg_opt) return cli_usage(cmd, "%s: the model's config comes from --model", a.cfg_opt);
        if (a.cfg.attn_only && a.mlp_opt) return cli_usage(cmd, "%s: an --attn-only model has no MLP", a.mlp_opt);
        if (a.vocab_given && strcmp(a.task, "induction"))
            return cli_usage(cmd, "--vocab: the %s task fixes the vocabulary", !strncmp(a.task, "text:", 5) ? "text" : "rasp");
    }
    if (!cli_has_ext(a.out, ".safetensors")) return cli_usage(cmd, "--out '%s': expected a .safetensors file", a.out);
    mech_err err = {0};
    mech_trainer *t = NULL;
    mech_task *task = NULL;
    mech_model *m = NULL;
    mech_store *s = NULL;
    char *task_spec = NULL;
    if (a.threads > 0) a.o.threads = (int)a.threads;
    if (a.resume) {
        if (mech_trainer_load(a.resume, NULL, &t, &err)) return cli_fail(cmd, &err);
        const char *ts = mech_trainer_meta(t, "mech.train.task");
        if (!ts) {
            mech_trainer_free(t);
            fprintf(stderr, "mech %s: error: %s: the checkpoint names no task (mech.train.task)\n", cmd, a.resume);
            return 1;
        }
        task_spec = strdup(ts);
        mech_train_opts o = *mech_trainer_opts(t);
        int changed = 0;
        if (a.steps_given && a.o.steps != o.steps) o.steps = a.o.steps, changed = 1;
        if (a.threads > 0 && a.threads != o.threads) o.threads = (int)a.threads, changed = 1;
        if (changed) { // reload with the new total (the schedule follows it) or thread count
            mech_trainer_free(t);
            t = NULL;
            if (mech_trainer_load(a.resume, &o, &t, &err)) {
                free(task_spec);
                return err.code == MECH_ERR_ARG ? cli_usage(cmd, "%s", err.msg) : cli_fail(cmd, &err);
            }
        }
        if ((rc = make_task(cmd, task_spec, mech_trainer_model(t)->cfg.d_vocab, mech_trainer_opts(t)->seed, &task)))
            goto done;
        a.o = *mech_trainer_opts(t);
    } else {
        task_spec = strdup(a.task);
        if (!strcmp(a.task, "induction") && !a.model && !a.vocab_given) a.cfg.d_vocab = 256;
        if ((rc = make_task(cmd, a.task, a.model ? 0 : a.cfg.d_vocab, a.o.seed, &task))) goto done;
        if (!a.seq_given && !strncmp(a.task, "rasp:", 5))
            a.o.T = 2 * mech_rasp_program_max_seq_len(mech_task_rasp_program(task)) + 2;
        if (a.model) {
            if ((rc = cli_model_load_blocks(cmd, a.model, "it has nothing to train", &m))) goto done;
            if (!strcmp(a.task, "induction")) { // the task's ids are the model's
                mech_task_free(task);
                task = NULL;
                if ((rc = make_task(cmd, a.task, m->cfg.d_vocab, a.o.seed, &task))) goto done;
            }
        } else {
            if (strcmp(a.task, "induction")) a.cfg.d_vocab = mech_task_vocab(task);
            if (!a.n_ctx_given) a.cfg.n_ctx = a.o.T;
            if (a.cfg.attn_only) a.cfg.d_mlp = 0;
            if (mech_config_validate(&a.cfg, &err)) {
                rc = cli_usage(cmd, "%s", err.msg);
                goto done;
            }
            if (mech_model_random(&a.cfg, a.o.seed, &m, &err)) {
                rc = cli_fail(cmd, &err);
                goto done;
            }
        }
        if (!m->cfg.causal) {
            rc = cli_usage(cmd, "the model attends both ways: next-token training needs a causal model");
            goto done;
        }
        if (!a.warmup_given) a.o.warmup = a.o.steps / 10 < 100 ? a.o.steps / 10 : 100;
        if (!a.min_lr_given) a.o.min_lr = a.o.lr / 10;
        if (a.o.min_lr > a.o.lr) {
            rc = cli_usage(cmd, "--min-lr %g is above --lr %g", a.o.min_lr, a.o.lr);
            goto done;
        }
        if (a.o.T > m->cfg.n_ctx) {
            rc = cli_usage(cmd, "--seq %d is longer than the model's context (n_ctx %d)", a.o.T, m->cfg.n_ctx);
            goto done;
        }
        if (mech_trainer_new(m, &a.o, &t, &err)) {
            rc = err.code == MECH_ERR_ARG ? cli_usage(cmd, "%s", err.msg) : cli_fail(cmd, &err);
            goto done;
        }
    }
    const mech_model *tm = mech_trainer_model(t);
    if (mech_task_check(task, tm->cfg.d_vocab, a.o.T, &err)) {
        rc = cli_usage(cmd, "%s", err.msg);
        goto done;
    }
    int64_t start = mech_trainer_steps_done(t), end = a.o.steps;
    if (a.stop_at) {
        if (a.stop_at > a.o.steps || a.stop_at <= start) {
            rc = cli_usage(cmd, "--stop-at %ld: expected a step after %lld and at most --steps %lld", a.stop_at,
                           (long long)start, (long long)a.o.steps);
            goto done;
        }
        end = a.stop_at;
    }
    if (start >= end) {
        rc = cli_usage(cmd, "the checkpoint is at step %lld already (--steps %lld); give a larger --steps to go on",
                       (long long)start, (long long)a.o.steps);
        goto done;
    }
    // a bad --db fails now, not after the training
    if ((rc = cli_store_open(cmd, a.db, 1, &s))) goto done;
    mech_store_close(s);
    s = NULL;

    int64_t n_run = end - start;
    float *curve = calloc((size_t)n_run, sizeof *curve), *lrs = calloc((size_t)n_run, sizeof *lrs),
          *norms = calloc((size_t)n_run, sizeof *norms);
    if (!curve || !lrs || !norms) {
        free(curve), free(lrs), free(norms);
        fprintf(stderr, "mech %s: error: out of memory\n", cmd);
        rc = 1;
        goto done;
    }
    long log_every = a.log_every ? a.log_every : (n_run / 20 > 0 ? n_run / 20 : 1);
    int tty = isatty(2);
    fprintf(stderr, "training %lld parameters: %s, %lld steps of %d x %d tokens%s, lr %g (warm-up %lld, cosine to %g), "
            "wd %g, clip %g, seed %llu\n", (long long)mech_config_n_params(&tm->cfg), task_spec, (long long)a.o.steps,
            a.o.B * a.o.accum, a.o.T, a.o.accum > 1 ? " (accumulated)" : "", a.o.lr, (long long)a.o.warmup, a.o.min_lr,
            a.o.adamw.weight_decay, a.o.clip, (unsigned long long)a.o.seed);
    volatile int *stop = cli_interrupts_catch();
    double t0 = mech_now();
    int64_t done_n = 0;
    mech_train_step st = {0};
    int interrupted = 0;
    for (int64_t step = start; step < end; step++) {
        if (*stop) {
            interrupted = 1;
            break;
        }
        if (mech_trainer_step(t, mech_task_batch, task, &st, &err)) {
            cli_interrupts_release();
            free(curve), free(lrs), free(norms);
            rc = cli_fail(cmd, &err);
            goto done;
        }
        curve[done_n] = (float)st.loss, lrs[done_n] = (float)st.lr, norms[done_n] = (float)st.grad_norm;
        done_n++;
        double el = mech_now() - t0;
        double tps = el > 0 ? (double)done_n * a.o.B * a.o.accum * a.o.T / el : 0;
        char eta[32];
        fmt_eta(eta, sizeof eta, el / (double)done_n * (double)(end - st.step));
        int last = st.step == end;
        if (tty && !last)
            fprintf(stderr, "\r\033[Kstep %lld/%lld  loss %.4f  lr %.3g  %.0f tok/s  ETA %s", (long long)st.step,
                    (long long)a.o.steps, st.loss, st.lr, tps, eta);
        if (done_n % log_every == 0 || last || done_n == 1)
            fprintf(stderr, "%sstep %lld/%lld  loss %.4f  lr %.3g  grad norm %.3g  %.0f tok/s  ETA %s\n", tty ? "\r\033[K" : "",
                    (long long)st.step, (long long)a.o.steps, st.loss, st.lr, st.grad_norm, tps, eta);
        if (a.save_every && st.step % a.save_every == 0 && !last && (rc = save(cmd, t, a.out, task_spec))) {
            cli_interrupts_release();
            free(curve), free(lrs), free(norms);
            goto done;
        }
    }
    cli_interrupts_release();
    double secs = mech_now() - t0;
    if (tty) fprintf(stderr, "\r\033[K");
    if ((rc = save(cmd, t, a.out, task_spec))) {
        free(curve), free(lrs), free(norms);
        goto done;
    }
    mech_task_score sc = {0};
    int evaluated = 0;
    if (!interrupted && a.eval_n > 0) {
        if (mech_task_accuracy(task, tm, a.o.T, (int)a.eval_n, a.o.threads, &sc, &err)) {
            free(curve), free(lrs), free(norms);
            rc = cli_fail(cmd, &err);
            goto done;
        }
        evaluated = 1;
    }
    // the run: settings, the curve (one result per step and three tensors),
    // the held-out scores
    {
        mech_buf p = {0}, cfgj = {0};
        char b1[32], b2[32], b3[32], b4[32], b5[32], b6[32], b7[32];
        mech_config_to_json(&tm->cfg, &cfgj);
        mech_buf_printf(&p, "{\"task\": ");
        mech_buf_json_string(&p, task_spec, strlen(task_spec));
        mech_buf_printf(&p, ", \"out\": ");
        mech_buf_json_string(&p, a.out, strlen(a.out));
        if (a.resume) {
            mech_buf_printf(&p, ", \"resume\": ");
            mech_buf_json_string(&p, a.resume, strlen(a.resume));
        }
        mech_buf_printf(&p,
                        ", \"start_step\": %lld, \"end_step\": %lld, \"steps\": %lld, \"batch\": %d, \"seq\": %d, "
                        "\"accum\": %d, \"lr\": %s, \"min_lr\": %s, \"warmup\": %lld, \"beta1\": %s, \"beta2\": %s, "
                        "\"eps\": %s, \"wd\": %s, \"clip\": %s, \"seed\": %llu, \"threads\": %d, \"seconds\": %.3f, "
                        "\"config\": %s}",
                        (long long)start, (long long)(start + done_n), (long long)a.o.steps, a.o.B, a.o.T, a.o.accum,
                        cli_shortest(b1, a.o.lr), cli_shortest(b2, a.o.min_lr), (long long)a.o.warmup,
                        cli_shortest(b3, a.o.adamw.beta1), cli_shortest(b4, a.o.adamw.beta2),
                        cli_shortest(b5, a.o.adamw.eps), cli_shortest(b6, a.o.adamw.weight_decay),
                        cli_shortest(b7, a.o.clip), (unsigned long long)a.o.seed,
                        a.o.threads, secs, cfgj.data ? cfgj.data : "{}");
        int64_t run = 0;
        rc = cli_run_open(cmd, a.db, "train", a.out, argc, argv, p.data ? p.data : "{}", &s, &run);
        mech_buf_free(&p);
        mech_buf_free(&cfgj);
        if (!rc) {
            int64_t shape[1] = {done_n};
            const char *names[3] = {"loss", "lr", "grad_norm"};
            float *arrs[3] = {curve, lrs, norms};
            if (mech_store_begin(s, &err)) goto db_fail;
            for (int k = 0; k < 3; k++) {
                for (int64_t i = 0; i < done_n; i++) {
                    mech_result r = {.item = (int)(start + i + 1), .site = "train", .layer = -1, .pos = -1, .head = -1,
                                     .token = -1, .rank = -1, .metric = names[k], .value = arrs[k][i]};
                    if (mech_store_result(s, run, &r, &err)) goto db_fail;
                }
                char tn[32];
                snprintf(tn, sizeof tn, "%s_curve", names[k]);
                if (mech_store_tensor(s, run, tn, arrs[k], 1, shape, &err)) goto db_fail;
            }
            if (evaluated) {
                const char *en[3] = {"eval_token_acc", "eval_seq_acc", "eval_loss"};
                double ev[3] = {sc.token_acc, sc.seq_acc, sc.loss};
                for (int k = 0; k < 3; k++) {
                    if (isnan(ev[k])) continue;
                    mech_result r = {.item = -1, .site = "eval", .layer = -1, .pos = -1, .head = -1, .token = -1,
                                     .rank = -1, .metric = en[k], .value = ev[k]};
                    if (mech_store_result(s, run, &r, &err)) goto db_fail;
                }
            }
            if (mech_store_commit(s, &err) ||
                mech_store_run_finish(s, run, interrupted ? "interrupted" : "done", &err))
                goto db_fail;
            goto db_ok;
        db_fail:
            rc = cli_run_failed(cmd, s, run, &err);
        db_ok:;
        }
        if (!rc) {
            printf("%s %lld step%s (%lld -> %lld of %lld) in %.1f s: loss %.4f -> %s; run %lld -> %s\n",
                   interrupted ? "interrupted after" : "trained", (long long)done_n, cli_s(done_n), (long long)start,
                   (long long)(start + done_n), (long long)a.o.steps, secs, done_n ? curve[done_n - 1] : NAN, a.out,
                   (long long)run, a.db);
            if (evaluated) {
                if (mech_task_rasp_program(task))
                    printf("held-out accuracy against the reference interpreter (%lld inputs, greedy decoding): "
                           "%.4f per output token, %.4f per sequence\n", (long long)sc.seqs, sc.token_acc, sc.seq_acc);
                else
                    printf("held-out (%lld rows): next-token accuracy %.4f, loss %.4f\n", (long long)sc.seqs,
                           sc.token_acc, sc.loss);
            }
        }
    }
    free(curve), free(lrs), free(norms);
    if (!rc && interrupted) {
        fprintf(stderr, "mech %s: interrupted: checkpoint of step %lld saved to %s (--resume %s goes on)\n", cmd,
                (long long)(start + done_n), a.out, a.out);
        rc = CLI_EXIT_INTERRUPTED;
    }
done:
    mech_store_close(s);
    mech_model_free(m);
    mech_task_free(task);
    mech_trainer_free(t);
    free(task_spec);
    return rc;
}
