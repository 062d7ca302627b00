"""Model: loading, config, tokens, forward, cache and hooks, against the
CLI (`mech run`) and against independent computations."""

import json
import os
import unittest

import numpy as np

import mech
from tests.util import TINY, TmpCase, cli, tiny_tokens


def softmax64(x):
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


class TestLoad(unittest.TestCase):
    def test_config_matches_config_json(self):
        m = mech.Model.load(TINY)
        with open(os.path.join(TINY, "config.json")) as f:
            hf = json.load(f)
        c = m.cfg
        self.assertEqual((c.n_layers, c.n_heads, c.d_model, c.d_vocab, c.n_ctx),
                         (hf["n_layer"], hf["n_head"], hf["n_embd"], hf["vocab_size"], hf["n_positions"]))
        self.assertEqual(c.d_head, hf["n_embd"] // hf["n_head"])
        self.assertEqual(c.d_mlp, 4 * hf["n_embd"])  # n_inner null: 4 x n_embd
        self.assertEqual(c.act_fn, "gelu_new")
        self.assertEqual(c.normalization_type, "LN")
        self.assertAlmostEqual(c.eps, 1e-5, places=9)
        self.assertFalse(c.attn_only)
        m.free()
        with self.assertRaises(ValueError):
            m([1, 2])

    def test_logits_match_f64_reference(self):
        # logits_f64ref.f32 comes from an independent float64 forward pass
        m = mech.Model.load(TINY)
        ids = tiny_tokens()
        ref = np.fromfile(os.path.join(TINY, "logits_f64ref.f32"), dtype="<f4").reshape(32, 1000)
        logits = m(ids)
        self.assertEqual(logits.shape, (1, 32, 1000))
        self.assertEqual(logits.dtype, np.float32)
        self.assertLess(np.abs(logits[0] - ref).max(), 1e-4)
        # a batch of two equal rows gives the same logits twice
        both = m(np.stack([ids, ids]))
        np.testing.assert_array_equal(both[0], logits[0])
        np.testing.assert_array_equal(both[1], logits[0])

    def test_loss_is_cross_entropy(self):
        m = mech.Model.load(TINY)
        ids = tiny_tokens(12)
        logits, loss = m(ids, return_type="both")
        p = softmax64(logits[0, :-1])
        want = -np.mean(np.log(p[np.arange(11), ids[1:]]))
        self.assertAlmostEqual(loss, want, places=6)


class TestAgainstCli(TmpCase):
    def test_logits_equal_mech_run(self):
        ids = tiny_tokens(20)
        cli("run", "--model", TINY, "--ids", ",".join(map(str, ids)), "--logits", self.path("l.npy"))
        want = np.load(self.path("l.npy"))
        got = mech.Model.load(TINY)(ids)
        np.testing.assert_array_equal(got, want)

    def test_top_k_equal_mech_run(self):
        ids = tiny_tokens(9)
        out = cli("run", "--model", TINY, "--ids", ",".join(map(str, ids)), "--top-k", "4").stdout
        cli_ids = [int(line.split()[1]) for line in out.splitlines()[1:5]]
        logits = mech.Model.load(TINY)(ids)[0, -1]
        self.assertEqual(list(np.argsort(-logits, kind="stable")[:4]), cli_ids)

    def test_cache_equals_mech_run_cache(self):
        ids = tiny_tokens(16)
        cli("run", "--model", TINY, "--ids", ",".join(map(str, ids)), "--cache", "*", "--out", self.path("c.npz"))
        z = np.load(self.path("c.npz"))
        m = mech.Model.load(TINY)
        _, cache = m.run_with_cache(ids)
        names = [n for n in z.files if n not in ("tokens", "token_strings")]
        self.assertEqual(sorted(cache), sorted(names))
        for n in names:
            np.testing.assert_array_equal(cache[n], z[n], err_msg=n)
        self.assertEqual(cache["blocks.1.attn.hook_pattern"].shape, (1, 4, 16, 16))
        self.assertEqual(cache["blocks.0.attn.hook_z"].shape, (1, 16, 4, 16))
        self.assertEqual(cache["blocks.0.mlp.hook_post"].shape, (1, 16, 256))

    def test_text_prompt_equals_mech_run(self):
        # a GPT-2-vocabulary model, saved so that the CLI can run it
        m = mech.Model.random(seed=3, n_layers=1, d_model=16, n_heads=2, d_head=8, d_mlp=32, n_ctx=64)
        m.save(self.path("m.safetensors"))
        text = "Hello world, the café"
        cli("run", "--model", self.path("m.safetensors"), "--prompt", text, "--logits", self.path("l.npy"))
        toks = m.to_tokens(text)
        enc = cli("tokenize", "--text", text).stdout.split()
        self.assertEqual(list(toks[0]), [50256] + [int(x) for x in enc])
        np.testing.assert_array_equal(m(toks), np.load(self.path("l.npy")))
        self.assertEqual(m.to_string(toks[0, 1:]), text)
        self.assertEqual("".join(m.to_str_tokens(text, prepend_bos=False)), text)
        self.assertEqual(m.to_str_tokens(text)[0], "<|endoftext|>")


class TestTokens(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.m = mech.Model.random(seed=1, n_layers=1, d_model=16, n_heads=2, d_head=8, d_mlp=32, n_ctx=64)

    def test_shapes_and_bos(self):
        m = self.m
        t = m.to_tokens("Hello world")
        self.assertEqual(t.shape, (1, 3))
        self.assertEqual(list(t[0]), [50256, 15496, 995])  # GPT-2's ids
        self.assertEqual(list(m.to_tokens("Hello world", prepend_bos=False)[0]), [15496, 995])
        self.assertEqual(m.to_str_tokens(t), ["<|endoftext|>", "Hello", " world"])
        self.assertEqual(m.to_string(t), ["<|endoftext|>Hello world"])

    def test_batch_padding(self):
        m = self.m
        b = m.to_tokens(["Hello world", "Hi"])
        self.assertEqual(b.shape, (2, 3))
        self.assertEqual(list(b[1]), [50256, 17250, 50256])  # padded on the right with <|endoftext|>
        left = m.to_tokens(["Hello world", "Hi"], padding_side="left")
        self.assertEqual(list(left[1]), [50256, 50256, 17250])
        mask = m.attention_mask(["Hello world", "Hi"], padding_side="left")
        np.testing.assert_array_equal(mask, [[1, 1, 1], [0, 1, 1]])
        # with the mask, each row's real positions equal that sequence run alone
        lg = m(left, attention_mask=mask)
        alone = m(m.to_tokens("Hi"))
        np.testing.assert_array_equal(lg[1, 1:], alone[0])
        self.assertTrue(np.all(lg[1, 0] == 0))
        # right padding: causal, so the real positions need no mask
        lg = m(b)
        np.testing.assert_allclose(lg[1, :2], alone[0], rtol=0, atol=1e-5)

    def test_no_bos_in_small_vocabulary(self):
        tiny = mech.Model.load(TINY)
        self.assertIsNone(tiny.bos_token_id)
        with self.assertRaises(mech.MechArgError):
            tiny.to_tokens("a", prepend_bos=True)


class TestHooks(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.m = mech.Model.load(TINY)
        cls.ids = tiny_tokens(10)

    def test_names_filter_forms(self):
        m, ids = self.m, self.ids
        _, c = m.run_with_cache(ids, names_filter="blocks.*.attn.hook_pattern")
        self.assertEqual(sorted(c), ["blocks.0.attn.hook_pattern", "blocks.1.attn.hook_pattern"])
        _, c = m.run_with_cache(ids, names_filter=["hook_embed", "blocks.1.hook_resid_post"])
        self.assertEqual(sorted(c), ["blocks.1.hook_resid_post", "hook_embed"])
        _, c = m.run_with_cache(ids, names_filter=lambda n: n.endswith("hook_resid_pre"))
        self.assertEqual(sorted(c), ["blocks.0.hook_resid_pre", "blocks.1.hook_resid_pre"])
        # opt-in hooks by name: the per-head results sum (with b_O) to attn_out
        _, c = m.run_with_cache(ids, names_filter=["blocks.0.attn.hook_result", "blocks.0.hook_attn_out"])
        b_o = c["blocks.0.hook_attn_out"] - c["blocks.0.attn.hook_result"].sum(2)  # b_O at every position
        self.assertLess(np.abs(b_o - b_o[:, :1]).max(), 1e-5)
        self.assertIn(("pattern", 0), {("pattern", 0): 1})
        _, c = m.run_with_cache(ids, names_filter="blocks.0.attn.hook_pattern")
        np.testing.assert_array_equal(c["pattern", 0], c["blocks.0.attn.hook_pattern"])
        # the pattern is causal and its rows sum to 1 (an independent check of the copy)
        p = c["pattern", 0][0]
        self.assertTrue(np.all(np.triu(p, 1) == 0))
        np.testing.assert_allclose(p.sum(-1), 1, atol=1e-6)

    def test_cache_copies_outlive_the_run(self):
        _, c = self.m.run_with_cache(self.ids, names_filter="hook_embed")
        a = c["hook_embed"]
        self.assertTrue(a.flags.owndata or a.base is not None and a.base.flags.owndata)
        self.m(self.ids)  # another run must not touch it
        _, c2 = self.m.run_with_cache(self.ids, names_filter="hook_embed")
        np.testing.assert_array_equal(a, c2["hook_embed"])

    def test_hook_sees_what_the_cache_keeps(self):
        seen = {}

        def grab(act, hook):
            seen[hook.name] = (act.copy(), hook.layer())

        _, c = self.m.run_with_cache(self.ids, names_filter="blocks.1.hook_mlp_out")
        self.m.run_with_hooks(self.ids, fwd_hooks=[("blocks.1.hook_mlp_out", grab)])
        np.testing.assert_array_equal(seen["blocks.1.hook_mlp_out"][0], c["blocks.1.hook_mlp_out"])
        self.assertEqual(seen["blocks.1.hook_mlp_out"][1], 1)

    def test_in_place_and_returned_edits_agree(self):
        def zero_in_place(act, hook):
            act[:, :, 2, :] = 0  # head 2 of hook_z

        def zero_returned(act, hook):
            out = act.copy()
            out[:, :, 2, :] = 0
            return out

        a = self.m.run_with_hooks(self.ids, fwd_hooks=[("blocks.0.attn.hook_z", zero_in_place)])
        b = self.m.run_with_hooks(self.ids, fwd_hooks=[("blocks.0.attn.hook_z", zero_returned)])
        base = self.m(self.ids)
        np.testing.assert_array_equal(a, b)
        self.assertGreater(np.abs(a - base).max(), 1e-4)
        # a filter function hooks every matching point
        names = []
        self.m.run_with_hooks(self.ids, fwd_hooks=[(lambda n: n.endswith("hook_z"), lambda a, h: names.append(h.name))])
        self.assertEqual(names, ["blocks.0.attn.hook_z", "blocks.1.attn.hook_z"])
        # hooks are per call: the next forward is unhooked
        np.testing.assert_array_equal(self.m(self.ids), base)

    def test_hook_matches_c_patching(self):
        # `mech patch --naive` runs the corrupted prompt once per cell with a
        # C hook writing the clean activation there; the same edit made by a
        # Python hook gives bit-identical logits, so the same metric (computed
        # in double, stored as float32).
        import tempfile
        clean = tiny_tokens(8)
        corrupt = clean.copy()
        corrupt[2] = 7
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "p.jsonl"), "w") as f:
                f.write(json.dumps({"clean": clean.tolist(), "corrupt": corrupt.tolist(), "answer": 5, "wrong": 9}))
            for sweep in ("resid_pre", "heads"):
                cli("patch", "--model", TINY, "--pairs", "p.jsonl", "--sweep", sweep, "--naive", "--db", "t.db", cwd=d)
            db = mech.open_db(os.path.join(d, "t.db"))
            resid, heads = db.runs()
            want_resid = resid.results(metric="logit_diff", site="resid_pre")
            want_heads = heads.results(metric="logit_diff", site="heads")
            db.close()
        _, cc = self.m.run_with_cache(clean)
        self.assertEqual(len(want_resid), 2 * 8)
        for row in want_resid:
            src = cc["blocks.%d.hook_resid_pre" % row.layer]

            def put(act, hook, pos=row.pos, src=src):
                out = act.copy()
                out[:, pos] = src[:, pos]
                return out

            lg = self.m.run_with_hooks(corrupt, fwd_hooks=[("blocks.%d.hook_resid_pre" % row.layer, put)])
            self.assertEqual(np.float32(float(lg[0, -1, 5]) - float(lg[0, -1, 9])), row.value, (row.layer, row.pos))
        self.assertEqual(len(want_heads), 2 * 4)
        for row in want_heads:
            src = cc["blocks.%d.attn.hook_z" % row.layer]

            def put_head(act, hook, h=row.head, src=src):
                act[:, :, h] = src[:, :, h]

            lg = self.m.run_with_hooks(corrupt, fwd_hooks=[("blocks.%d.attn.hook_z" % row.layer, put_head)])
            self.assertEqual(np.float32(float(lg[0, -1, 5]) - float(lg[0, -1, 9])), row.value, (row.layer, row.head))


if __name__ == "__main__":
    unittest.main()
