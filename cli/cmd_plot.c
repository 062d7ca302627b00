/*
** cli/cmd_plot.c: `mech plot RUN [--db DB] -o FIG.svg|FIG.txt|- [--width W]
** [--height H] [--view V]`: a stored run as a picture, without a terminal
** (scripts, headless servers). The run opens in the view that fits its
** kind through the interface's own code (mech_tui_app_open_run), which
** renders into a W x H grid; tui/svg.c or the text export writes it. The
** database is only read (mech_store_open_read: never created or changed).
*/
#include "cli/cli.h"
#include "tui/tui.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cmd_plot(int argc, char **argv) {
    const char *cmd = "plot", *db = "mech.db", *out = NULL, *view = NULL, *run_s = NULL, *v;
    long W = 120, H = 40, id = 0;
    for (int i = 1; i < argc; i++) {
        int r;
        if ((r = cli_opt(cmd, argc, argv, &i, "--db", &db))) { if (r < 0) return 2; }
        else if ((r = cli_opt(cmd, argc, argv, &i, "-o", &out)) ||
                 (r = cli_opt(cmd, argc, argv, &i, "--output", &out))) { if (r < 0) return 2; }
        else if ((r = cli_opt(cmd, argc, argv, &i, "--view", &view))) { if (r < 0) return 2; }
        else if ((r = cli_opt(cmd, argc, argv, &i, "--width", &v))) {
            if (r < 0 || cli_int(cmd, "--width", v, 20, 2000, &W)) return 2;
        } else if ((r = cli_opt(cmd, argc, argv, &i, "--height", &v))) {
            if (r < 0 || cli_int(cmd, "--height", v, 5, 1000, &H)) return 2;
        } else if (argv[i][0] == '-' && argv[i][1]) return cli_usage(cmd, "unknown option '%s'", argv[i]);
        else if (run_s) return cli_usage(cmd, "one run at a time ('%s' and '%s')", run_s, argv[i]);
        else run_s = argv[i];
    }
    if (!run_s) return cli_usage(cmd, "which run? mech plot RUN -o FIG.svg (mech db ls lists the runs)");
    if (cli_int(cmd, "RUN", run_s, 1, 2147483647L, &id)) return 2;
    if (!out) return cli_usage(cmd, "-o FILE is required: FIG.svg, FIG.txt, or - for SVG on standard output");
    int to_stdout = !strcmp(out, "-"), svg = to_stdout || cli_has_ext(out, ".svg");
    if (!to_stdout && !svg && !cli_has_ext(out, ".txt"))
        return cli_usage(cmd, "-o '%s': the name must end in .svg or .txt (or be - for SVG on standard output)", out);
    if (view && !*view) return cli_usage(cmd, "--view: the name is empty");

    // the run's kind picks its view; a missing run is the user's mistake, as in `mech db show`
    mech_store *s = NULL;
    mech_err err = {0};
    int rc = cli_store_open(cmd, db, 0, &s);
    if (rc) return rc;
    mech_run_info info;
    if (mech_store_run_info(s, (int64_t)id, &info, &err)) {
        mech_store_close(s);
        return err.code == MECH_ERR_RANGE ? cli_usage(cmd, "%s", err.msg) : cli_fail(cmd, &err);
    }
    char kind[64];
    snprintf(kind, sizeof kind, "%s", info.kind ? info.kind : "");
    mech_store_run_info_deinit(&info);
    mech_store_close(s);

    mech_tui_app app = {0};
    mech_tui_grid g = {0};
    mech_buf b = {0};
    app.has_runs = 1, app.db_path = db;
    mech_tui_app_reload(&app);
    mech_tui_app_open_run(&app, (int64_t)id, kind);
    if (view && mech_tui_app_set_view(&app, view, &err)) {
        rc = cli_usage(cmd, "--view: %s", err.msg);
        goto done;
    }
    // one row more than asked for: the footer's key hints, which a figure does without
    if (mech_tui_grid_resize(&g, (int)H + 1, (int)W)) {
        mech_err_set(&err, MECH_ERR_NOMEM, "out of memory");
        rc = cli_fail(cmd, &err);
        goto done;
    }
    mech_tui_app_render(&app, &g);
    g.h = (int)H;
    if (svg) mech_tui_svg(&g, &b);
    else mech_tui_grid_text(&g, 0, &b);
    g.h = (int)H + 1;
    if (b.oom) {
        mech_err_set(&err, MECH_ERR_NOMEM, "out of memory");
        rc = cli_fail(cmd, &err);
        goto done;
    }
    if (to_stdout) {
        if (fwrite(b.data, 1, b.len, stdout) != b.len) rc = 1; // main reports a failed stdout
        goto done;
    }
    mech_outfile o;
    if (mech_outfile_open(&o, out, &err)) {
        rc = cli_fail(cmd, &err);
        goto done;
    }
    if (fwrite(b.data, 1, b.len, o.f) != b.len) {
        mech_outfile_abort(&o);
        mech_err_set(&err, MECH_ERR_IO, "%s: write failed", out);
        rc = cli_fail(cmd, &err);
        goto done;
    }
    if (mech_outfile_commit(&o, &err)) {
        rc = cli_fail(cmd, &err);
        goto done;
    }
    printf("run %ld (%s, %s view) -> %s (%ld x %ld cells)\n", id, kind, mech_tui_app_view_name(&app), out, W, H);
done:
    mech_buf_free(&b);
    mech_tui_grid_deinit(&g);
    mech_tui_app_deinit(&app);
    return rc;
}
