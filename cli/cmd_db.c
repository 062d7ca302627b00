/*
** cli/cmd_db.c: `mech db ls|show|export|merge`: the results database from
** the command line (schema: docs/schema.md; plain sqlite3 works too).
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

static void print_run(const mech_run_info *r, int long_form) {
    if (!long_form) {
        printf("%6lld  %-8s %-11s %-24s %8lld results  %s\n", (long long)r->id, r->kind, r->status,
               r->started ? r->started : "", (long long)r->n_results, r->model_path ? r->model_path : "");
        return;
    }
    printf("run:        %lld\nkind:       %s\nstatus:     %s\nstarted:    %s\nfinished:   %s\n", (long long)r->id,
           r->kind, r->status, r->started ? r->started : "", r->finished ? r->finished : "");
    printf("model:      %s\nmodel hash: %s\ncommand:    %s\nparameters: %s\n", r->model_path ? r->model_path : "",
           r->model_hash ? r->model_hash : "", r->cmdline ? r->cmdline : "", r->params_json ? r->params_json : "");
    printf("results:    %lld (%lld items)\nprompts:    %lld\ntensors:    %lld\n", (long long)r->n_results,
           (long long)r->n_items, (long long)r->n_prompts, (long long)r->n_tensors);
}

int cmd_db(int argc, char **argv) {
    const char *cmd = "db", *db = "mech.db";
    int i = 1, r;
    const char *v;
    // --db may come before or after the subcommand
    const char *pos[8];
    int n_pos = 0;
    const char *csv = NULL, *npz = NULL;
    for (; i < argc; i++) {
        if ((r = cli_opt(cmd, argc, argv, &i, "--db", &v))) {
            if (r < 0) return 2;
            db = v;
        } else if ((r = cli_opt(cmd, argc, argv, &i, "--csv", &csv))) {
            if (r < 0) return 2;
        } else if ((r = cli_opt(cmd, argc, argv, &i, "--npz", &npz))) {
            if (r < 0) return 2;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            return cli_usage(cmd, "unknown option '%s'", argv[i]);
        } else if (n_pos < 8) {
            pos[n_pos++] = argv[i];
        } else {
            return cli_usage(cmd, "too many arguments");
        }
    }
    if (!n_pos) return cli_usage(cmd, "expected a subcommand: ls, show, export or merge");
    const char *sub = pos[0];
    mech_err err = {0};
    if (!strcmp(sub, "merge")) {
        if (n_pos < 3) return cli_usage(cmd, "merge OUT.db IN.db...: at least one input");
        if (mech_store_merge(pos[1], pos + 2, (size_t)(n_pos - 2), &err)) return cli_fail(cmd, &err);
        printf("merged %d database%s into %s\n", n_pos - 2, n_pos > 3 ? "s" : "", pos[1]);
        return 0;
    }
    int64_t run = 0;
    if (!strcmp(sub, "ls")) {
        if (n_pos > 1) return cli_usage(cmd, "ls takes no arguments");
    } else if (!strcmp(sub, "show") || !strcmp(sub, "export")) {
        if (n_pos != 2) return cli_usage(cmd, "%s RUN: one run id", sub);
        if (parse_run(cmd, pos[1], &run)) return 2;
        if (!strcmp(sub, "export") && !csv && !npz) return cli_usage(cmd, "export RUN needs --csv FILE or --npz FILE");
    } else {
        return cli_usage(cmd, "unknown subcommand '%s': expected ls, show, export or merge", sub);
    }
    mech_store *s = NULL;
    if (mech_store_open(db, &s, &err)) return cli_fail(cmd, &err);
    int rc = 0;
    if (!strcmp(sub, "ls")) {
        mech_run_info *runs = NULL;
        size_t n = 0;
        if (mech_store_runs(s, &runs, &n, &err)) rc = cli_fail(cmd, &err);
        else {
            for (size_t k = 0; k < n; k++) print_run(&runs[k], 0);
            if (!n) printf("no runs in %s\n", db);
            mech_store_runs_free(runs, n);
        }
    } else if (!strcmp(sub, "show")) {
        mech_run_info info;
        if (mech_store_run_info(s, run, &info, &err)) rc = cli_fail(cmd, &err);
        else {
            print_run(&info, 1);
            mech_store_run_info_deinit(&info);
        }
    } else {
        if (csv && mech_store_export_csv(s, run, csv, &err)) rc = cli_fail(cmd, &err);
        else if (npz && mech_store_export_npz(s, run, npz, &err)) rc = cli_fail(cmd, &err);
    }
    mech_store_close(s);
    return rc;
}
