/*
** tui/runs_load.c: the runs browser's rows, read from the results database
** through data/ only (mech_store_open_read: never creates or modifies a
** file), each with the key figure of its kind.
*/
#include "tui/tui.h"

#include "data/data.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

// The figure a researcher scans the list for: the largest patching effect,
// the best induction head; otherwise how much the run holds.
static void key_figure(mech_store *s, const mech_run_info *ri, char *out, size_t cap) {
    mech_result_row *rows = NULL;
    size_t n = 0;
    mech_err err = {0};
    snprintf(out, cap, "%lld result%s", (long long)ri->n_results, ri->n_results == 1 ? "" : "s");
    if (!ri->kind || !ri->n_results) return;
    // one indexed query per run: the row with the largest (|)value(|)
    if (!strcmp(ri->kind, "patch")) {
        if (mech_store_results_top(s, ri->id, "effect", 1, 1, &rows, &n, &err)) return;
        if (n && !isnan(rows[0].value)) {
            const mech_result_row *b = &rows[0];
            char where[48] = "";
            if (b->head >= 0 && b->pos >= 0) snprintf(where, sizeof where, " at L%dH%d pos %d", b->layer, b->head, b->pos);
            else if (b->head >= 0) snprintf(where, sizeof where, " at L%dH%d", b->layer, b->head);
            else if (b->pos >= 0) snprintf(where, sizeof where, " at L%d pos %d", b->layer, b->pos);
            else if (b->layer >= 0) snprintf(where, sizeof where, " at L%d", b->layer);
            snprintf(out, cap, "max |effect| %.4g%s", b->value, where);
        }
    } else if (!strcmp(ri->kind, "heads")) {
        if (mech_store_results_top(s, ri->id, "induction", 0, 1, &rows, &n, &err)) return;
        if (n && !isnan(rows[0].value))
            snprintf(out, cap, "induction L%dH%d %.3f", rows[0].layer, rows[0].head, rows[0].value);
    } else if (!strcmp(ri->kind, "acdc") || !strcmp(ri->kind, "eap")) {
        // the summary rows: circuit size, and against the truth TPR / FPR
        double edges = NAN, tpr = NAN, fpr = NAN;
        const char *names[3] = {"n_edges", "tpr", "fpr"};
        double *vals[3] = {&edges, &tpr, &fpr};
        for (int k = 0; k < 3; k++) {
            if (mech_store_results_top(s, ri->id, names[k], 0, 1, &rows, &n, &err)) return;
            if (n && rows[0].site && !strcmp(rows[0].site, "circuit")) *vals[k] = rows[0].value;
            mech_store_results_free(rows, n);
            rows = NULL, n = 0;
        }
        if (!isnan(edges) && !isnan(tpr))
            snprintf(out, cap, "%.0f edges  TPR %.3f FPR %.3f", edges, tpr, isnan(fpr) ? 0.0 : fpr);
        else if (!isnan(edges)) snprintf(out, cap, "%.0f edges", edges);
    } else if (!strcmp(ri->kind, "acdc-sweep")) {
        if (mech_store_results_get(s, ri->id, "auc", &rows, &n, &err)) return;
        size_t w = 0;
        for (size_t i = 0; i < n && w + 1 < cap; i++) {
            int k = snprintf(out + w, cap - w, "%sAUC %s %.3f", i ? "  " : "", rows[i].site ? rows[i].site : "?",
                             rows[i].value);
            if (k < 0 || (size_t)k >= cap - w) break;
            w += (size_t)k;
        }
    } else if (!strcmp(ri->kind, "lens")) {
        // logit lens: how far the first layer is from the final output
        if (mech_store_results_get(s, ri->id, "kl", &rows, &n, &err)) return;
        double sum = 0;
        size_t k = 0;
        for (size_t i = 0; i < n; i++)
            if (rows[i].layer == 0 && !isnan(rows[i].value)) sum += rows[i].value, k++;
        if (k) snprintf(out, cap, "KL to final: layer 0 %.3g", sum / (double)k);
        else {
            // decoder lens: the variables read
            mech_store_results_free(rows, n);
            rows = NULL, n = 0;
            if (mech_store_results_get(s, ri->id, NULL, &rows, &n, &err)) return;
            int n_vars = 0, max_layer = -1;
            for (size_t i = 0; i < n; i++) {
                if (!rows[i].site || strcmp(rows[i].site, "decoder_lens") || !rows[i].metric) continue;
                int seen = 0;
                for (size_t j = 0; j < i && !seen; j++)
                    seen = rows[j].metric && rows[j].site && !strcmp(rows[j].site, "decoder_lens") &&
                           !strcmp(rows[j].metric, rows[i].metric);
                if (!seen) n_vars++;
                if (rows[i].layer > max_layer) max_layer = rows[i].layer;
            }
            if (n_vars) snprintf(out, cap, "decoder lens: %d variables, layers 0..%d", n_vars, max_layer);
        }
    } else if (!strcmp(ri->kind, "train")) {
        // where training got to: the last stored step's loss
        if (mech_store_results_get(s, ri->id, "loss", &rows, &n, &err)) return;
        int last = -1;
        double loss = NAN;
        for (size_t i = 0; i < n; i++)
            if (rows[i].site && !strcmp(rows[i].site, "train") && rows[i].item > last) last = rows[i].item, loss = rows[i].value;
        if (last >= 0) snprintf(out, cap, "final loss %.4g at step %d", loss, last);
    } else if (!strcmp(ri->kind, "attrib")) {
        // the largest head's direct logit attribution
        if (mech_store_results_top(s, ri->id, "head", 1, 1, &rows, &n, &err)) return;
        if (n && !isnan(rows[0].value))
            snprintf(out, cap, "top head L%dH%d %.4g", rows[0].layer, rows[0].head, rows[0].value);
    }
    mech_store_results_free(rows, n);
}

mech_status mech_tui_runs_load(const char *path, mech_tui_run_row **out, size_t *n_out, mech_err *err) {
    *out = NULL, *n_out = 0;
    mech_store *s = NULL;
    mech_run_info *runs = NULL;
    size_t n = 0;
    mech_status st = mech_store_open_read(path, &s, err);
    if (st) return st;
    if ((st = mech_store_runs(s, &runs, &n, err))) goto done;
    mech_tui_run_row *rows = mech_calloc(n ? n : 1, sizeof *rows);
    if (!rows) {
        st = mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        const mech_run_info *ri = &runs[i];
        mech_tui_run_row *r = &rows[i];
        r->id = ri->id;
        snprintf(r->kind, sizeof r->kind, "%s", ri->kind ? ri->kind : "?");
        snprintf(r->status, sizeof r->status, "%s", ri->status ? ri->status : "?");
        snprintf(r->model, sizeof r->model, "%s", ri->model_path ? ri->model_path : "-");
        // "2026-11-23T20:49:13.123Z" -> "2026-11-23 20:49:13"
        snprintf(r->date, sizeof r->date, "%.19s", ri->started ? ri->started : "-");
        if (strlen(r->date) > 10 && r->date[10] == 'T') r->date[10] = ' ';
        key_figure(s, ri, r->figure, sizeof r->figure);
    }
    *out = rows, *n_out = n;
done:
    mech_store_runs_free(runs, n);
    mech_store_close(s);
    return st;
}

mech_status mech_tui_db_check(const char *path, mech_err *err) {
    mech_store *s = NULL;
    mech_status st = mech_store_open_read(path, &s, err);
    if (!st) st = mech_store_check_quick(s, err);
    mech_store_close(s);
    return st;
}
