/*
** cli/cmd_db.c: `mech db ls|show|export|merge`: the results database from
** the command line (schema: docs/schema.md; plain sqlite3 works too).
** Reading subcommands open the file read-only and never create one; merge
** checks every input before it creates or writes OUT.
*/
#include "cli/cli.h"

#include <stdlib.h>
#include <string.h>

static int parse_run(const char *cmd, const char *s, int64_t *id) {
    long v;
    if (cli_int(cmd, "RUN", s, 1, 2147483647L, &v)) return -1;
    *id = v;
    return 0;
}

// kind_w: the width of ls's kind column (its longest kind).
static void print_run(const mech_run_info *r, int long_form, int kind_w) {
    if (!long_form) {
        printf("%6lld  %-*s %-11s %-24s %8lld  %s\n", (long long)r->id, kind_w, r->kind, r->status,
               r->started ? r->started : "", (long long)r->n_results, r->model_path ? r->model_path : "");
        return;
    }
    printf("run:        %lld\nkind:       %s\nstatus:     %s\nstarted:    %s\nfinished:   %s\n", (long long)r->id,
           r->kind, r->status, r->started ? r->started : "", r->finished ? r->finished : "");
    printf("model:      %s\nmodel hash: %s\ncommand:    ", r->model_path ? r->model_path : "",
           r->model_hash ? r->model_hash : "");
    // a joined run keeps its shards' command lines, one per line
    for (const char *c = r->cmdline ? r->cmdline : ""; *c; c++) {
        putchar(*c);
        if (*c == '\n') fputs("            ", stdout);
    }
    printf("\nparameters: %s\n", r->params_json ? r->params_json : "");
    printf("results:    %lld (%lld items)\nprompts:    %lld\ntensors:    %lld\n", (long long)r->n_results,
           (long long)r->n_items, (long long)r->n_prompts, (long long)r->n_tensors);
}

// "3,4,5" -> ids (at most max); the count, or -1 after a usage message.
static int parse_runs(const char *cmd, const char *s, int64_t *ids, int max) {
    int n = 0;
    for (const char *p = s;;) {
        size_t len = strcspn(p, ",");
        char item[32];
        if (len == 0 || len >= sizeof item) {
            cli_usage(cmd, "--runs '%s': expected run ids separated by commas (3,4,5)", s);
            return -1;
        }
        if (n == max) {
            cli_usage(cmd, "--runs: at most %d runs", max);
            return -1;
        }
        memcpy(item, p, len);
        item[len] = 0;
        if (parse_run(cmd, item, &ids[n])) return -1;
        n++;
        if (!p[len]) return n;
        p += len + 1;
    }
}

// merge [--join] [--runs LIST] OUT IN...: prints where every run went.
static int merge(const char *cmd, const char *out, const char *const *in, int n, const mech_merge_opts *o) {
    mech_err err = {0};
    mech_merge_run *map = NULL;
    size_t n_map = 0;
    if (!*out) return cli_usage(cmd, "merge: the output path is empty");
    for (int i = 0; i < n; i++)
        if (!*in[i]) return cli_usage(cmd, "merge: input %d: the path is empty", i + 1);
    if (mech_store_merge(out, in, (size_t)n, o, &map, &n_map, &err)) {
        if (err.code == MECH_ERR_RANGE) return cli_usage(cmd, "--runs: %s", err.msg);
        int rc = cli_fail(cmd, &err);
        if (o->join && strstr(err.msg, "is not a shard"))
            fprintf(stderr, "hint: --runs LIST picks a sweep's shards out of files that hold other runs too\n");
        return rc;
    }
    int join = o->join;
    if (join) {
        printf("joined %zu shard%s into run %lld of %s:\n", n_map, n_map == 1 ? "" : "s",
               n_map ? (long long)map[0].to : 0LL, out);
        for (size_t k = 0; k < n_map; k++)
            printf("  %s run %lld (shard %zu/%zu)\n", in[map[k].input], (long long)map[k].from, k + 1, n_map);
    } else {
        for (size_t k = 0; k < n_map; k++)
            printf("%s run %lld -> run %lld\n", in[map[k].input], (long long)map[k].from, (long long)map[k].to);
        printf("merged %zu run%s from %d database%s into %s (runs get new ids, after the runs %s already had)\n",
               n_map, n_map == 1 ? "" : "s", n, n == 1 ? "" : "s", out, out);
    }
    mech_free(map);
    return 0;
}

int cmd_db(int argc, char **argv) {
    const char *cmd = "db", *db = "mech.db";
    int i = 1, r, join = 0, n_runs = 0;
    int64_t runs[1024];
    const char *runs_s = NULL;
    const char *v;
    // --db may come before or after the subcommand
    const char *pos[256];
    int n_pos = 0;
    const char *csv = NULL, *npz = NULL;
    int db_given = 0;
    for (; i < argc; i++) {
        if ((r = cli_opt(cmd, argc, argv, &i, "--db", &v))) {
            if (r < 0) return 2;
            db = v, db_given = 1;
        } else if ((r = cli_opt(cmd, argc, argv, &i, "--csv", &csv))) {
            if (r < 0) return 2;
        } else if ((r = cli_opt(cmd, argc, argv, &i, "--npz", &npz))) {
            if (r < 0) return 2;
        } else if ((r = cli_opt(cmd, argc, argv, &i, "--runs", &runs_s))) {
            if (r < 0 || (n_runs = parse_runs(cmd, runs_s, runs, (int)(sizeof runs / sizeof *runs))) < 0) return 2;
        } else if (!strcmp(argv[i], "--join")) {
            join = 1;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            return cli_usage(cmd, "unknown option '%s'", argv[i]);
        } else if (n_pos < (int)(sizeof pos / sizeof *pos)) {
            pos[n_pos++] = argv[i];
        } else {
            return cli_usage(cmd, "too many arguments");
        }
    }
    if (!n_pos) return cli_usage(cmd, "expected a subcommand: ls, show, export or merge");
    const char *sub = pos[0];
    if ((join || runs_s) && strcmp(sub, "merge")) return cli_usage(cmd, "--%s goes with merge", join ? "join" : "runs");
    if ((csv || npz) && strcmp(sub, "export")) return cli_usage(cmd, "--%s goes with export", csv ? "csv" : "npz");
    if (db_given && !strcmp(sub, "merge"))
        return cli_usage(cmd, "--db does not apply to merge (it takes OUT.db IN.db... as arguments)");
    if (!strcmp(sub, "merge")) {
        if (n_pos < 3) return cli_usage(cmd, "merge [--join] [--runs LIST] OUT.db IN.db...: at least one input");
        mech_merge_opts o = {.join = join, .runs = runs, .n_runs = (size_t)n_runs};
        return merge(cmd, pos[1], pos + 2, n_pos - 2, &o);
    }
    int64_t run = 0;
    if (!strcmp(sub, "ls")) {
        if (n_pos > 1) return cli_usage(cmd, "ls takes no arguments");
    } else if (!strcmp(sub, "show") || !strcmp(sub, "export")) {
        if (n_pos != 2) return cli_usage(cmd, "%s RUN: one run id", sub);
        if (parse_run(cmd, pos[1], &run)) return 2;
        if (!strcmp(sub, "export") && !csv && !npz) return cli_usage(cmd, "export RUN needs --csv FILE or --npz FILE");
        if (npz && !strcmp(npz, "-")) return cli_usage(cmd, "--npz -: an archive needs a file name");
        if ((csv && !*csv) || (npz && !*npz)) return cli_usage(cmd, "--%s: the file name is empty", csv && !*csv ? "csv" : "npz");
        // written only in the format the name says (- is stdout for CSV)
        if (csv && strcmp(csv, "-") && !cli_has_ext(csv, ".csv"))
            return cli_usage(cmd, "--csv '%s': the results are written as CSV; name the file FILE.csv (or - for stdout)", csv);
        if (npz && !cli_has_ext(npz, ".npz"))
            return cli_usage(cmd, "--npz '%s': the tensors are written as .npz; name the file FILE.npz", npz);
    } else {
        return cli_usage(cmd, "unknown subcommand '%s': expected ls, show, export or merge", sub);
    }
    mech_store *s = NULL;
    int rc = cli_store_open(cmd, db, 0, &s);
    if (rc) return rc;
    mech_err err = {0};
    if (!strcmp(sub, "ls")) {
        mech_run_info *runs = NULL;
        size_t n = 0;
        if (mech_store_runs(s, &runs, &n, &err)) rc = cli_fail(cmd, &err);
        else if (!n) printf("no runs in %s\n", db);
        else {
            int kind_w = 8; // at least, as before; wider for a longer kind
            for (size_t k = 0; k < n; k++)
                if ((int)strlen(runs[k].kind) > kind_w) kind_w = (int)strlen(runs[k].kind);
            printf("%6s  %-*s %-11s %-24s %8s  %s\n", "run", kind_w, "kind", "status", "started", "results", "model");
            for (size_t k = 0; k < n; k++) print_run(&runs[k], 0, kind_w);
        }
        mech_store_runs_free(runs, n);
    } else if (!strcmp(sub, "show")) {
        mech_run_info info;
        if (mech_store_run_info(s, run, &info, &err)) {
            rc = err.code == MECH_ERR_RANGE ? cli_usage(cmd, "%s", err.msg) : cli_fail(cmd, &err);
        } else {
            print_run(&info, 1, 0);
            mech_store_run_info_deinit(&info);
        }
    } else {
        if ((csv && mech_store_export_csv(s, run, csv, &err)) || (npz && mech_store_export_npz(s, run, npz, &err)))
            rc = err.code == MECH_ERR_RANGE ? cli_usage(cmd, "%s", err.msg) : cli_fail(cmd, &err);
    }
    mech_store_close(s);
    return rc;
}
