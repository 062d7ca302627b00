/*
** compiler/rasp_circuit.c: reads back where the compiler put each s-op, from
** a compiled model's metadata (mech.rasp.circuit, written by circuit_json in
** compiler/rasp_compile.c): the block, head and MLP units that compute it
** and its residual dimensions. `mech info` and the tui's program view share
** this reader, so both say the same thing about a model.
*/
#include "compiler/compiler.h"

#include <stdio.h>
#include <string.h>

static int int_at(const mech_json *a, size_t i, int64_t lo, int64_t hi, int *out) {
    if (!a || a->type != MECH_JSON_ARRAY || i >= a->n || !a->items[i].is_int) return 0;
    if (a->items[i].inum < lo || a->items[i].inum > hi) return 0;
    *out = (int)a->items[i].inum;
    return 1;
}

static char *str_dup(const mech_json *s) {
    return mech_strdup(s && s->type == MECH_JSON_STRING ? s->str : "");
}

void mech_rasp_circuit_free(mech_rasp_circuit *c) {
    if (!c) return;
    for (int i = 0; i < c->n; i++) {
        mech_rasp_circuit_node *n = &c->nodes[i];
        mech_free(n->label);
        mech_free(n->name);
        mech_free(n->kind);
        for (int k = 0; k < n->n_inputs; k++) mech_free(n->inputs[k]);
        mech_free(n->inputs);
    }
    mech_free(c->nodes);
    mech_free(c);
}

// One node: {"label", "name"?, "kind", "encoding", "component": "embed" |
// "layer": l, "head"?: [l, h], "mlp"?: [l, from, to], "dims": [a, b), "inputs"}.
static mech_status node_parse(const mech_json *nd, size_t i, mech_rasp_circuit_node *n, mech_err *err) {
    const int big = 1 << 30;
    const mech_json *label = mech_json_get(nd, "label"), *name = mech_json_get(nd, "name");
    const mech_json *kind = mech_json_get(nd, "kind"), *enc = mech_json_get(nd, "encoding");
    const mech_json *layer = mech_json_get(nd, "layer"), *head = mech_json_get(nd, "head");
    const mech_json *mlp = mech_json_get(nd, "mlp"), *dims = mech_json_get(nd, "dims");
    const mech_json *ins = mech_json_get(nd, "inputs");
    n->layer = n->head_layer = n->head = n->mlp_layer = n->mlp_from = n->mlp_to = -1;
    if (!label || label->type != MECH_JSON_STRING || !int_at(dims, 0, 0, big, &n->dim_from) ||
        !int_at(dims, 1, n->dim_from, big, &n->dim_to) || (layer && !(layer->is_int && layer->inum >= 0 && layer->inum < big)) ||
        (head && (!int_at(head, 0, 0, big, &n->head_layer) || !int_at(head, 1, 0, big, &n->head))) ||
        (mlp && (!int_at(mlp, 0, 0, big, &n->mlp_layer) || !int_at(mlp, 1, 0, big, &n->mlp_from) ||
                 !int_at(mlp, 2, n->mlp_from, big, &n->mlp_to))) ||
        (ins && ins->type != MECH_JSON_ARRAY))
        return mech_err_set(err, MECH_ERR_FORMAT,
                            "mech.rasp.circuit: node %zu: expected a \"label\", \"dims\": [start, end), and a \"layer\" "
                            "with optional \"head\": [layer, head] and \"mlp\": [layer, from, to]", i);
    if (layer) n->layer = (int)layer->inum;
    n->numerical = enc && enc->type == MECH_JSON_STRING && !strcmp(enc->str, "numerical");
    n->label = str_dup(label), n->kind = str_dup(kind);
    n->name = name && name->type == MECH_JSON_STRING ? mech_strdup(name->str) : NULL;
    if (!n->label || !n->kind || (name && name->type == MECH_JSON_STRING && !n->name)) goto oom;
    if (ins && ins->n) {
        if (!(n->inputs = mech_calloc(ins->n, sizeof *n->inputs))) goto oom;
        for (size_t k = 0; k < ins->n; k++, n->n_inputs++)
            if (!(n->inputs[k] = str_dup(&ins->items[k]))) goto oom;
    }
    return MECH_OK;
oom:
    return mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
}

mech_status mech_rasp_circuit_parse(const char *json, mech_rasp_circuit **out, mech_err *err) {
    mech_json *j = NULL;
    mech_err e = {0};
    mech_status st = MECH_OK;
    *out = NULL;
    if (!json) return mech_err_set(err, MECH_ERR_FORMAT, "no circuit (mech.rasp.circuit)");
    if (mech_json_parse(json, strlen(json), &j, &e)) {
        if (e.code == MECH_ERR_NOMEM) return mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
        return mech_err_set(err, MECH_ERR_FORMAT, "mech.rasp.circuit: %s", e.msg);
    }
    const mech_json *nodes = j->type == MECH_JSON_OBJECT ? mech_json_get(j, "nodes") : NULL;
    mech_rasp_circuit *c = mech_calloc(1, sizeof *c);
    if (!c) {
        st = mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
        goto done;
    }
    if (!nodes || nodes->type != MECH_JSON_ARRAY || nodes->n > (size_t)1 << 24) {
        st = mech_err_set(err, MECH_ERR_FORMAT, "mech.rasp.circuit: expected {\"nodes\": [...]}");
        goto done;
    }
    if (nodes->n && !(c->nodes = mech_calloc(nodes->n, sizeof *c->nodes))) {
        st = mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < nodes->n && !st; i++, c->n++) {
        if (nodes->items[i].type != MECH_JSON_OBJECT)
            st = mech_err_set(err, MECH_ERR_FORMAT, "mech.rasp.circuit: node %zu is not an object", i);
        else st = node_parse(&nodes->items[i], i, &c->nodes[i], err);
    }
done:
    mech_json_free(j);
    if (st) mech_rasp_circuit_free(c);
    else *out = c;
    return st;
}

const mech_rasp_circuit_node *mech_rasp_circuit_find(const mech_rasp_circuit *c, const char *label) {
    for (int i = 0; c && i < c->n; i++)
        if (!strcmp(c->nodes[i].label, label)) return &c->nodes[i];
    return NULL;
}

void mech_rasp_circuit_where(const mech_rasp_circuit_node *n, char *buf, size_t cap) {
    // selector_width is a head and an MLP after it; an aggregate a head; a map/zipmap an MLP
    if (n->head >= 0 && n->mlp_layer >= 0)
        snprintf(buf, cap, "L%d head %d + L%d mlp", n->head_layer, n->head, n->mlp_layer);
    else if (n->head >= 0) snprintf(buf, cap, "L%d head %d", n->head_layer, n->head);
    else if (n->mlp_layer >= 0) snprintf(buf, cap, "L%d mlp", n->mlp_layer);
    else if (n->layer >= 0) snprintf(buf, cap, "L%d", n->layer);
    else snprintf(buf, cap, "embedding");
}
