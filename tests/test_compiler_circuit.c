/*
** tests/test_compiler_circuit.c: reading a compiled model's circuit
** (mech.rasp.circuit) back: the fields of each node, where it is computed
** as people read it, and the errors for text that is not such a circuit.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "mech.h"
#include "tests/support/check.h"

#include <string.h>

static const char *const circuit =
    "{\"nodes\": [\n"
    "  {\"label\": \"tokens\", \"name\": \"tokens\", \"kind\": \"tokens\", \"encoding\": \"categorical\", "
    "\"component\": \"embed\", \"dims\": [2, 6], \"inputs\": []},\n"
    "  {\"label\": \"length\", \"name\": \"length\", \"kind\": \"selector_width\", \"encoding\": \"categorical\", "
    "\"layer\": 0, \"head\": [0, 1], \"mlp\": [0, 0, 11], \"dims\": [6, 12], \"inputs\": [\"tokens\", \"tokens\"]},\n"
    "  {\"label\": \"map_3\", \"kind\": \"map\", \"encoding\": \"numerical\", \"layer\": 1, \"mlp\": [1, 4, 6], "
    "\"dims\": [12, 13], \"inputs\": [\"length\"]},\n"
    "  {\"label\": \"rev\", \"name\": \"rev\", \"kind\": \"aggregate\", \"encoding\": \"categorical\", \"layer\": 2, "
    "\"head\": [2, 0], \"dims\": [13, 17], \"inputs\": [\"map_3\", \"tokens\"]}\n"
    "]}";

static void test_compiler_circuit_parse_fields(void **state) {
    (void)state;
    mech_rasp_circuit *c = NULL;
    mech_err err = {0};
    assert_int_equal(mech_rasp_circuit_parse(circuit, &c, &err), MECH_OK);
    assert_int_equal(c->n, 4);
    const mech_rasp_circuit_node *t = &c->nodes[0], *len = &c->nodes[1], *map = &c->nodes[2], *rev = &c->nodes[3];
    assert_string_equal(t->label, "tokens");
    assert_int_equal(t->layer, -1);
    assert_int_equal(t->head, -1);
    assert_int_equal(t->mlp_layer, -1);
    assert_int_equal(t->dim_from, 2);
    assert_int_equal(t->dim_to, 6);
    assert_int_equal(t->n_inputs, 0);
    assert_int_equal(len->head_layer, 0);
    assert_int_equal(len->head, 1);
    assert_int_equal(len->mlp_layer, 0);
    assert_int_equal(len->mlp_to, 11);
    assert_int_equal(len->n_inputs, 2);
    assert_string_equal(len->inputs[1], "tokens");
    assert_null(map->name);
    assert_true(map->numerical);
    assert_int_equal(map->mlp_from, 4);
    assert_int_equal(map->mlp_to, 6);
    assert_false(rev->numerical);
    assert_string_equal(rev->kind, "aggregate");
    assert_ptr_equal(mech_rasp_circuit_find(c, "rev"), rev);
    assert_null(mech_rasp_circuit_find(c, "nope"));
    char where[64];
    mech_rasp_circuit_where(t, where, sizeof where);
    assert_string_equal(where, "embedding");
    mech_rasp_circuit_where(len, where, sizeof where);
    assert_string_equal(where, "L0 head 1 + L0 mlp");
    mech_rasp_circuit_where(map, where, sizeof where);
    assert_string_equal(where, "L1 mlp");
    mech_rasp_circuit_where(rev, where, sizeof where);
    assert_string_equal(where, "L2 head 0");
    mech_rasp_circuit_free(c);
    mech_rasp_circuit_free(NULL);
}

static void test_compiler_circuit_parse_errors(void **state) {
    (void)state;
    static const char *const bad[] = {
        "not json",
        "[]",
        "{\"nodes\": 3}",
        "{\"nodes\": [1]}",
        "{\"nodes\": [{\"kind\": \"map\", \"dims\": [0, 1]}]}",                      // no label
        "{\"nodes\": [{\"label\": \"x\", \"dims\": [3, 1]}]}",                       // end before start
        "{\"nodes\": [{\"label\": \"x\", \"dims\": [0, 1], \"head\": [0]}]}",        // head without its index
        "{\"nodes\": [{\"label\": \"x\", \"dims\": [0, 1], \"mlp\": [0, 5, 2]}]}",   // units end before start
        "{\"nodes\": [{\"label\": \"x\", \"dims\": [0, 1], \"layer\": -1}]}",
        "{\"nodes\": [{\"label\": \"x\", \"dims\": [0, 1], \"inputs\": \"y\"}]}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        mech_rasp_circuit *c = (mech_rasp_circuit *)&bad; // overwritten with NULL
        mech_err err = {0};
        if (mech_rasp_circuit_parse(bad[i], &c, &err) != MECH_ERR_FORMAT) fail_msg("accepted %s", bad[i]);
        assert_null(c);
        assert_non_null(strstr(err.msg, "mech.rasp.circuit"));
    }
    mech_rasp_circuit *c = NULL;
    mech_err err = {0};
    assert_int_equal(mech_rasp_circuit_parse(NULL, &c, &err), MECH_ERR_FORMAT);
    assert_int_equal(mech_rasp_circuit_parse("{\"nodes\": []}", &c, &err), MECH_OK);
    assert_int_equal(c->n, 0);
    mech_rasp_circuit_free(c);
}

// What `mech compile` writes reads back: one node per s-op of the program.
static void test_compiler_circuit_from_compile(void **state) {
    (void)state;
    mech_rasp_program *p = NULL;
    mech_rasp_compiled *cm = NULL;
    mech_rasp_circuit *c = NULL;
    mech_err err = {0};
    assert_int_equal(mech_rasp_load("examples/rasp/reverse.rasp", &p, &err), MECH_OK);
    assert_int_equal(mech_rasp_compile(p, &cm, &err), MECH_OK);
    assert_int_equal(mech_rasp_circuit_parse(cm->circuit, &c, &err), MECH_OK);
    int sops = 0;
    for (int i = 0; i < mech_rasp_program_n_nodes(p); i++) sops += !mech_rasp_node_is_selector(mech_rasp_program_node(p, i));
    assert_int_equal(c->n, sops);
    const mech_rasp_circuit_node *opp = mech_rasp_circuit_find(c, "opp");
    assert_non_null(opp);
    assert_int_equal(opp->mlp_layer, opp->layer);
    assert_int_equal(opp->head, -1);
    assert_int_equal(opp->dim_to - opp->dim_from, 10); // opp takes -5..4
    mech_rasp_circuit_free(c);
    mech_rasp_compiled_free(cm);
    mech_rasp_program_free(p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_compiler_circuit_parse_fields),
        cmocka_unit_test(test_compiler_circuit_parse_errors),
        cmocka_unit_test(test_compiler_circuit_from_compile),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
