"""mech.rasp against the CLI: the interpreter (`mech rasp`), the compiler
(`mech compile`: same weights and metadata) and compiled models run by
`mech run --input`."""

import json
import os
import unittest

import numpy as np

import mech
from mech import rasp
from tests.util import EXAMPLES, TmpCase, cli

CASES = [("reverse.rasp", ["a b c", "d a", "b b a c d"]),
         ("sort.rasp", ["3 1 2", "4 4 1", "2"]),
         ("frac_prevs.rasp", ["h e l l o", "l", "o l"]),
         ("hist.rasp", ["a b a", "c c c d"])]


def source(name):
    with open(os.path.join(EXAMPLES, name)) as f:
        return f.read()


class TestInterpreter(unittest.TestCase):
    def test_eval_equals_mech_rasp(self):
        for name, inputs in CASES:
            if not os.path.exists(os.path.join(EXAMPLES, name)):
                continue
            p = rasp.Program.load(os.path.join(EXAMPLES, name))
            for inp in inputs:
                want = json.loads(cli("rasp", os.path.join(EXAMPLES, name), "--input", inp).stdout)
                self.assertEqual(p.eval(inp), want, (name, inp))
                values = [int(v) if v.isdigit() else v for v in inp.split()]  # a list: ints stay ints
                self.assertEqual(p.eval(values), want, (name, inp))

    def test_errors_carry_the_library_message(self):
        with self.assertRaises(mech.MechParseError) as cm:
            rasp.parse("vocab {a};\nmax_seq_len 3;\noutput = ;", "bad.rasp")
        self.assertIn("bad.rasp:3:", str(cm.exception))
        with self.assertRaises(mech.MechTypeError) as cm:
            rasp.parse("vocab {a};\nmax_seq_len 3;\noutput foo;", "t.rasp")
        self.assertIn("unknown name 'foo'", str(cm.exception))
        p = rasp.Program(source("reverse.rasp"), "reverse.rasp")
        with self.assertRaises(mech.MechRangeError) as cm:
            p.eval("a z")
        msg = cli("rasp", os.path.join(EXAMPLES, "reverse.rasp"), "--input", "a z", check=False).stderr
        self.assertIn("input token 'z'", str(cm.exception))
        self.assertIn("input token 'z'", msg)


class TestCompiler(TmpCase):
    def test_compile_equals_mech_compile(self):
        for name, inputs in CASES:
            path = os.path.join(EXAMPLES, name)
            cli("compile", path, "-o", self.path("cli.safetensors"), "--no-verify")
            c = rasp.compile(source(name), input=inputs[0], path=path)
            self.assertEqual(c.output, c.program.eval(inputs[0]))
            ref = rasp.Compiled.load(self.path("cli.safetensors"))
            self.assertEqual(c.model.cfg.to_dict(), ref.model.cfg.to_dict(), name)
            for k, v in c.meta.items():
                self.assertEqual(ref.model.meta(k), v, (name, k))
            self.assertEqual(c.circuit, ref.circuit)
            for inp in inputs:
                want = json.loads(cli("run", "--model", self.path("cli.safetensors"), "--input", inp).stdout)
                self.assertEqual(c.run(inp), want, (name, inp))
                self.assertEqual(ref.run(inp), want, (name, inp))
                self.assertEqual(c.interpret(inp), want, (name, inp))
                t = c.tokens(inp)
                np.testing.assert_array_equal(c.model(t), ref.model(t))
            # saved from Python, the CLI runs it
            c.save(self.path("py.safetensors"))
            want = json.loads(cli("run", "--model", self.path("py.safetensors"), "--input", inputs[0]).stdout)
            self.assertEqual(want, c.output)

    def test_verify_explain_and_lifetime(self):
        c = rasp.compile(source("reverse.rasp"), path="reverse.rasp")
        self.assertEqual(c.verify(), 1364)  # every input up to length 5 over 4 values: sum 4^n
        self.assertIn("selector_width", c.explain())
        model = c.model
        del c  # the model keeps its weights alive
        import gc
        gc.collect()
        self.assertEqual(model(np.array([[0, 1, 2]])).shape, (1, 3, model.cfg.d_vocab))
        # hooks and caches work on compiled models as on any other
        _, cache = model.run_with_cache(np.array([[0, 1, 2, 3]]), names_filter="blocks.*.attn.hook_pattern")
        self.assertEqual(len(cache), model.cfg.n_layers)

    def test_limits(self):
        with self.assertRaises(mech.MechRangeError):
            rasp.compile(source("sort.rasp"), max_params=10)


if __name__ == "__main__":
    unittest.main()
