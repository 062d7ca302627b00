/*
** interp/acdc_graph.c: the ACDC computational graph of a GPT-2-shaped model,
** built as the reference's TLACDCCorrespondence.setup_from_model does
** (ArthurConmy/Automatic-Circuit-Discovery; docs/acdc.md).
**
** Senders (residual writers): the embedding (blocks.0.hook_resid_pre, or
** hook_embed + hook_pos_embed with split embeddings), every head's
** attn.hook_result and every hook_mlp_out. Receivers (residual readers):
** every head's hook_q/k/v_input, every hook_mlp_in, and the last block's
** hook_resid_post. ADDITION edges join each writer to every later reader
** (heads of layer l feed hook_mlp_in of layer l, not the q/k/v inputs of
** layer l); DIRECT edges join q_input[h] -> hook_q[h] (k, v alike);
** PLACEHOLDER edges hook_q/k/v[h] -> hook_result[h] and mlp_in -> mlp_out
** keep the graph connected and are never tried nor counted.
**
** Invariants: edges are grouped by receiver (first_in is their CSR index)
** and each group lists its senders in the reference's default parent order,
** so the search can walk a group front to back (or heads reversed).
*/
#include "interp/interp.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

// ---------------------------------------------------------------------------
// Node layout

// Index of the first node of layer l (after the embeddings); each layer has
// 7 nodes per head plus 2 for the MLP.
static int per_layer(const mech_acdc_graph *g) { return 7 * g->n_heads + (g->attn_only ? 0 : 2); }
static int n_embed(const mech_acdc_graph *g) { return g->split_embed ? 2 : 1; }
static int layer_base(const mech_acdc_graph *g, int l) { return n_embed(g) + l * per_layer(g); }

// kind_slot: 0..6 for q_input, k_input, v_input, q, k, v, result
static int head_node(const mech_acdc_graph *g, int l, int slot, int h) {
    return layer_base(g, l) + slot * g->n_heads + h;
}
static int mlp_in_node(const mech_acdc_graph *g, int l) { return layer_base(g, l) + 7 * g->n_heads; }
static int mlp_out_node(const mech_acdc_graph *g, int l) { return mlp_in_node(g, l) + 1; }

static void set_node(mech_acdc_node *n, mech_acdc_node_kind kind, int layer, int head, const char *name) {
    n->kind = kind;
    n->layer = layer;
    n->head = head;
    snprintf(n->name, sizeof n->name, "%s", name);
}

// ---------------------------------------------------------------------------
// Construction

// Appends the ADDITION edges into receiver r of layer l: writers of layers
// < l (and the heads of layer l itself when with_own_heads, for mlp_in),
// latest layer first, heads n_heads-1..0, the embeddings last.
static void add_residual_parents(mech_acdc_graph *g, int r, int l, int with_own_heads) {
    for (int s = l; s >= 0; s--) {
        if (s == l && !with_own_heads) continue;
        // Within one layer the MLP writes after the heads, so it comes first.
        if (!g->attn_only && s < l) g->edges[g->n_edges++] = (mech_acdc_edge){mlp_out_node(g, s), r, MECH_ACDC_ADDITION, 1, NAN};
        for (int h = g->n_heads - 1; h >= 0; h--)
            g->edges[g->n_edges++] = (mech_acdc_edge){head_node(g, s, 6, h), r, MECH_ACDC_ADDITION, 1, NAN};
    }
    for (int e = 0; e < n_embed(g); e++) g->edges[g->n_edges++] = (mech_acdc_edge){e, r, MECH_ACDC_ADDITION, 1, NAN};
}

mech_status mech_acdc_graph_new(const mech_config *cfg, int split_embed, mech_acdc_graph **out, mech_err *err) {
    *out = NULL;
    if (!cfg || cfg->n_layers < 1 || cfg->n_heads < 1)
        return mech_err_set(err, MECH_ERR_ARG, "ACDC graph: the model needs at least one layer and one head");
    if (cfg->n_layers > 999 || cfg->n_heads > 999)
        return mech_err_set(err, MECH_ERR_RANGE, "ACDC graph: %d layers x %d heads is too large", cfg->n_layers,
                            cfg->n_heads);
    mech_acdc_graph *g = mech_calloc(1, sizeof *g);
    if (!g) return mech_err_set(err, MECH_ERR_NOMEM, "out of memory for the ACDC graph");
    g->split_embed = !!split_embed;
    g->n_layers = cfg->n_layers;
    g->n_heads = cfg->n_heads;
    g->attn_only = !!cfg->attn_only;
    int L = g->n_layers, H = g->n_heads;
    g->n_nodes = layer_base(g, L) + 1;
    // Edges: each ADDITION receiver of layer l reads n_embed + (H + mlp) * l
    // writers (+ H for mlp_in); resid_post reads them all.
    int64_t ne = 0, mlp = !g->attn_only;
    for (int l = 0; l < L; l++) {
        int64_t below = n_embed(g) + (H + mlp) * l;
        ne += 3 * H * below + 3 * H /* direct */ + 3 * H /* placeholder */;
        if (mlp) ne += below + H + 1 /* placeholder */;
    }
    ne += n_embed(g) + (int64_t)(H + mlp) * L;
    if (ne > 200000000) {
        mech_free(g);
        return mech_err_set(err, MECH_ERR_RANGE, "ACDC graph: %lld edges is too many", (long long)ne);
    }
    g->nodes = mech_calloc((size_t)g->n_nodes, sizeof *g->nodes);
    g->edges = mech_calloc((size_t)ne, sizeof *g->edges);
    g->first_in = mech_calloc((size_t)g->n_nodes + 1, sizeof *g->first_in);
    if (!g->nodes || !g->edges || !g->first_in) {
        mech_acdc_graph_free(g);
        return mech_err_set(err, MECH_ERR_NOMEM, "out of memory for the ACDC graph (%lld edges)", (long long)ne);
    }

    char name[64];
    if (g->split_embed) {
        set_node(&g->nodes[0], MECH_ACDC_EMBED, -1, -1, "hook_embed[:]");
        set_node(&g->nodes[1], MECH_ACDC_POS_EMBED, -1, -1, "hook_pos_embed[:]");
    } else {
        set_node(&g->nodes[0], MECH_ACDC_EMBED, -1, -1, "blocks.0.hook_resid_pre[:]");
    }
    static const char *const slot_fmt[7] = {
        "blocks.%d.hook_q_input[:, :, %d]", "blocks.%d.hook_k_input[:, :, %d]", "blocks.%d.hook_v_input[:, :, %d]",
        "blocks.%d.attn.hook_q[:, :, %d]",  "blocks.%d.attn.hook_k[:, :, %d]",  "blocks.%d.attn.hook_v[:, :, %d]",
        "blocks.%d.attn.hook_result[:, :, %d]",
    };
    static const mech_acdc_node_kind slot_kind[7] = {MECH_ACDC_Q_INPUT, MECH_ACDC_K_INPUT, MECH_ACDC_V_INPUT,
                                                     MECH_ACDC_Q,       MECH_ACDC_K,       MECH_ACDC_V,
                                                     MECH_ACDC_RESULT};
    for (int l = 0; l < L; l++) {
        for (int slot = 0; slot < 7; slot++)
            for (int h = 0; h < H; h++) {
                snprintf(name, sizeof name, slot_fmt[slot], l, h);
                set_node(&g->nodes[head_node(g, l, slot, h)], slot_kind[slot], l, h, name);
            }
        if (mlp) {
            snprintf(name, sizeof name, "blocks.%d.hook_mlp_in[:]", l);
            set_node(&g->nodes[mlp_in_node(g, l)], MECH_ACDC_MLP_IN, l, -1, name);
            snprintf(name, sizeof name, "blocks.%d.hook_mlp_out[:]", l);
            set_node(&g->nodes[mlp_out_node(g, l)], MECH_ACDC_MLP_OUT, l, -1, name);
        }
    }
    snprintf(name, sizeof name, "blocks.%d.hook_resid_post[:]", L - 1);
    set_node(&g->nodes[g->n_nodes - 1], MECH_ACDC_RESID_POST, L - 1, -1, name);

    // Edges, receiver by receiver in node order.
    for (int v = 0; v < g->n_nodes; v++) {
        g->first_in[v] = g->n_edges;
        const mech_acdc_node *n = &g->nodes[v];
        int l = n->layer, h = n->head;
        switch (n->kind) {
        case MECH_ACDC_Q_INPUT: case MECH_ACDC_K_INPUT: case MECH_ACDC_V_INPUT:
            add_residual_parents(g, v, l, 0);
            break;
        case MECH_ACDC_Q: case MECH_ACDC_K: case MECH_ACDC_V:
            g->edges[g->n_edges++] =
                (mech_acdc_edge){head_node(g, l, (int)(n->kind - MECH_ACDC_Q), h), v, MECH_ACDC_DIRECT, 1, NAN};
            break;
        case MECH_ACDC_RESULT:
            for (int slot = 3; slot < 6; slot++)
                g->edges[g->n_edges++] = (mech_acdc_edge){head_node(g, l, slot, h), v, MECH_ACDC_PLACEHOLDER, 1, NAN};
            break;
        case MECH_ACDC_MLP_IN:
            add_residual_parents(g, v, l, 1);
            break;
        case MECH_ACDC_MLP_OUT:
            g->edges[g->n_edges++] = (mech_acdc_edge){mlp_in_node(g, l), v, MECH_ACDC_PLACEHOLDER, 1, NAN};
            break;
        case MECH_ACDC_RESID_POST:
            // Every writer, the last layer's MLP and heads included.
            for (int s = L - 1; s >= 0; s--) {
                if (mlp) g->edges[g->n_edges++] = (mech_acdc_edge){mlp_out_node(g, s), v, MECH_ACDC_ADDITION, 1, NAN};
                for (int hh = H - 1; hh >= 0; hh--)
                    g->edges[g->n_edges++] = (mech_acdc_edge){head_node(g, s, 6, hh), v, MECH_ACDC_ADDITION, 1, NAN};
            }
            for (int e = 0; e < n_embed(g); e++) g->edges[g->n_edges++] = (mech_acdc_edge){e, v, MECH_ACDC_ADDITION, 1, NAN};
            break;
        default:
            break;
        }
    }
    g->first_in[g->n_nodes] = g->n_edges;
    if (g->n_edges != ne) { // the count above and the construction must agree
        mech_acdc_graph_free(g);
        return mech_err_set(err, MECH_ERR_ARG, "ACDC graph: internal edge count mismatch");
    }
    for (int e = 0; e < g->n_edges; e++) {
        if (g->edges[e].type == MECH_ACDC_ADDITION) g->n_addition++;
        else if (g->edges[e].type == MECH_ACDC_DIRECT) g->n_direct++;
        else g->n_placeholder++;
    }
    *out = g;
    return MECH_OK;
}

void mech_acdc_graph_free(mech_acdc_graph *g) {
    if (!g) return;
    mech_free(g->nodes);
    mech_free(g->edges);
    mech_free(g->first_in);
    mech_free(g);
}

// ---------------------------------------------------------------------------
// Lookup

int mech_acdc_graph_node(const mech_acdc_graph *g, const char *name) {
    if (!g || !name) return -1;
    for (int v = 0; v < g->n_nodes; v++)
        if (!strcmp(g->nodes[v].name, name)) return v;
    return -1;
}

int mech_acdc_graph_edge(const mech_acdc_graph *g, int sender, int receiver) {
    if (!g || receiver < 0 || receiver >= g->n_nodes) return -1;
    for (int e = g->first_in[receiver]; e < g->first_in[receiver + 1]; e++)
        if (g->edges[e].sender == sender) return e;
    return -1;
}

int mech_acdc_graph_count_present(const mech_acdc_graph *g) {
    if (!g) return 0;
    int n = 0;
    for (int e = 0; e < g->n_edges; e++) n += g->edges[e].present && g->edges[e].type != MECH_ACDC_PLACEHOLDER;
    return n;
}
