"""mech.interp: patching, logit lens, head scores and DLA, against the CLI
(their stored runs, read back through mech.open_db) and independent numpy
computations."""

import json
import unittest

import numpy as np

import mech
from mech import interp
from tests.util import TINY, TmpCase, cli, tiny_tokens


def ids_arg(ids):
    return ",".join(str(int(t)) for t in ids)


class TestPatching(TmpCase):
    def test_sweeps_equal_mech_patch(self):
        m = mech.Model.load(TINY)
        clean = tiny_tokens(7)
        corrupt = clean.copy()
        corrupt[3] = 11
        with open(self.path("p.jsonl"), "w") as f:
            f.write(json.dumps({"clean": clean.tolist(), "corrupt": corrupt.tolist(), "answer": 5, "wrong": 9}) + "\n")
        sweeps = ("resid_pre", "attn_out", "heads", "heads_by_pos", "pattern")
        for s in sweeps:
            cli("patch", "--model", TINY, "--pairs", "p.jsonl", "--sweep", s, "--db", "t.db", cwd=self.tmp)
        with mech.open_db(self.path("t.db")) as db, interp.Patcher(m, clean, corrupt, answer=5, wrong=9) as p:
            for run, s in zip(db.runs(), sweeps):
                self.assertEqual(run.params["sweep"], s)
                r = p.sweep(s)
                np.testing.assert_array_equal(r.raw, run.tensor("pair0.logit_diff"), err_msg=s)
                np.testing.assert_array_equal(r.norm, run.tensor("pair0.effect"), err_msg=s)
                base = {row.metric: row.value for row in run.results(site="baseline")}
                self.assertAlmostEqual(r.clean, base["clean"], places=12)
                self.assertAlmostEqual(r.corrupted, base["corrupted"], places=12)
            L, T, NH = 2, 7, 4
            self.assertEqual(p.sweep("resid_pre").raw.shape, (L, T))
            self.assertEqual(p.sweep("heads").raw.shape, (L, NH))
            self.assertEqual(p.sweep("head_out_by_pos").raw.shape, (L, T, NH))
            # independent: patching all of resid_pre at layer 0 restores the clean run
            r = p.sweep("resid_pre")
            self.assertEqual(r.norm[0, 3], 1.0)  # the only position that differs
            np.testing.assert_array_equal(r.norm[0, :3], 0)
            lg = m(clean)[0, -1]
            self.assertAlmostEqual(p.clean_metric, float(lg[5]) - float(lg[9]), places=6)
            with self.assertRaises(mech.MechArgError):
                p.sweep("nowhere")
        with self.assertRaises(mech.MechArgError):
            interp.Patcher(m, clean, corrupt[:5], answer=5, wrong=9)  # lengths differ
        with self.assertRaises(mech.MechArgError):
            interp.Patcher(m, clean, corrupt, answer=5)  # logit_diff needs wrong

    def test_path_patching_shape_and_no_later_receiver(self):
        m = mech.Model.load(TINY)
        clean = tiny_tokens(6)
        corrupt = clean[::-1].copy()
        r = interp.patch(m, clean, corrupt, "resid_pre", answer=5, wrong=9)
        with interp.Patcher(m, clean, corrupt, answer=5, wrong=9) as p:
            pr = p.path([(1, 0, "q")])
        self.assertEqual(pr.raw.shape, (2, 4))
        # senders in layer 1 have no later receiver: the corrupted metric exactly
        np.testing.assert_array_equal(pr.raw[1], np.float32(r.corrupted))


class TestLens(TmpCase):
    def test_lens_equals_mech_lens_and_final_layer(self):
        m = mech.Model.load(TINY)
        ids = tiny_tokens(6)
        cli("lens", "--model", TINY, "--ids", ids_arg(ids), "--target", "7", "--db", self.path("l.db"))
        lr = interp.logit_lens(m, ids, k=5, targets=7)
        with mech.open_db(self.path("l.db")) as db:
            run = db.runs()[0]
            for name in ("kl", "entropy", "target_prob", "target_rank"):
                np.testing.assert_allclose(getattr(lr, name), run.tensor(name), rtol=1e-6, atol=0, err_msg=name)
        L = m.cfg.n_layers
        self.assertEqual(lr.top_ids.shape, (L + 1, 1, 6, 5))
        # the last layer is the model's own prediction: independent softmax
        p = np.exp(m(ids)[0].astype(np.float64))
        p /= p.sum(-1, keepdims=True)
        np.testing.assert_array_equal(lr.top_ids[L, 0, :, 0], p.argmax(-1))
        np.testing.assert_allclose(lr.top_probs[L, 0, :, 0], p.max(-1), rtol=1e-5)
        np.testing.assert_array_equal(lr.kl[L], 0)
        np.testing.assert_allclose(lr.target_prob[L, 0], p[:, 7], rtol=1e-5)
        np.testing.assert_array_equal(lr.target_rank[L, 0], (p > p[:, 7:8]).sum(-1))


class TestHeads(TmpCase):
    def test_scores_equal_mech_heads_and_numpy(self):
        m = mech.Model.load(TINY)
        ids = np.array([5, 17, 29, 41, 5, 17, 29, 41])
        cli("heads", "--model", TINY, "--ids", ids_arg(ids), "--db", self.path("h.db"))
        got = np.stack([interp.head_scores(m, ids, k) for k in interp.HEAD_KINDS])
        with mech.open_db(self.path("h.db")) as db:
            np.testing.assert_allclose(got, db.runs()[0].tensor("head_scores"), rtol=1e-6)
        # induction by hand: D[i][j] = 1 when tok[j-1] == tok[i] (j <= i)
        _, c = m.run_with_cache(ids, names_filter="blocks.*.attn.hook_pattern")
        T = len(ids)
        D = np.zeros((T, T))
        for i in range(T):
            for j in range(1, i + 1):
                if ids[j - 1] == ids[i] and j - 1 < i:
                    D[i, j] = 1
        for l in range(2):
            A = c["pattern", l][0].astype(np.float64)
            want = (A * D).sum((1, 2)) / A.sum((1, 2))
            np.testing.assert_allclose(got[2, l], want, rtol=1e-6)


class TestAcdc(TmpCase):
    def test_circuit_equals_mech_acdc(self):
        m = mech.Model.load(TINY)
        clean = [[1, 2, 3, 4, 5, 6], [11, 12, 13, 14, 15, 16]]
        corrupt = [[1, 2, 3, 9, 5, 6], [11, 12, 13, 19, 15, 16]]
        with open(self.path("p.jsonl"), "w") as f:
            for c, k in zip(clean, corrupt):
                f.write(json.dumps({"clean": c, "corrupt": k, "answer": 5, "wrong": 9}) + "\n")
        for tau, metric in ((1e-5, "kl"), (2e-3, "logit_diff")):
            cli("acdc", "--model", TINY, "--pairs", "p.jsonl", "--tau", tau, "--metric", metric, "--db", "a.db",
                cwd=self.tmp)
            run_id = len(mech.open_db(self.path("a.db")).runs())
            cli("acdc", "export", run_id, "--json", "a.json", "--db", "a.db", cwd=self.tmp)
            with open(self.path("a.json")) as f:
                want = json.load(f)
            c = interp.acdc(m, clean, corrupt, tau=tau, metric=metric, answer=5, wrong=9)
            got = c.edges()
            self.assertGreater(len(got), 0, (tau, metric))
            self.assertEqual(len(got), want["n_edges"])
            self.assertEqual(int((c.type != 2).sum()), want["n_counted"])
            self.assertEqual([(s, r) for s, r, _ in got], [(e["sender"], e["receiver"]) for e in want["edges"]])
            # the export writes each effect in the fewest digits that read back as the same float32
            for (_, _, e), w in zip(got, want["edges"]):
                self.assertEqual(np.float32(e), np.float32(w["effect"]))
        with self.assertRaises(mech.MechArgError):
            interp.acdc(m, clean, corrupt, metric="logit_diff")  # needs answer and wrong


class TestEap(TmpCase):
    def test_scores_equal_mech_eap(self):
        m = mech.Model.load(TINY)
        clean = [[1, 2, 3, 4, 5, 6], [11, 12, 13, 14, 15, 16]]
        corrupt = [[1, 2, 3, 9, 5, 6], [11, 12, 13, 19, 15, 16]]
        with open(self.path("p.jsonl"), "w") as f:
            for c, k in zip(clean, corrupt):
                f.write(json.dumps({"clean": c, "corrupt": k, "answer": 5, "wrong": 9}) + "\n")
        cli("eap", "--model", TINY, "--pairs", "p.jsonl", "--top-n", "5", "--db", "e.db", cwd=self.tmp)
        e = interp.eap(m, clean, corrupt, answer=5, wrong=9)
        with mech.open_db(self.path("e.db")) as db:
            run = db.runs()[0]
            want = {r.site: r.value for r in run.results(metric="score")}
            kept = {r.site for r in run.results(metric="kept")}
        got = {"%s->%s" % (e.nodes[s], e.nodes[r]): v for s, r, t, v in zip(e.sender, e.receiver, e.type, e.score)
               if t != 2}
        self.assertEqual(sorted(got), sorted(want))
        for k in want:
            self.assertAlmostEqual(got[k], want[k], delta=1e-12 + 1e-9 * abs(want[k]), msg=k)
        self.assertEqual({"%s->%s" % (s, r) for s, r, _ in e.top(5)}, kept)
        # the metric on the clean run, independently: mean logit difference at the last position
        lg = m(np.array(clean))[:, -1].astype(np.float64)
        self.assertAlmostEqual(e.value, float(np.mean(lg[:, 5] - lg[:, 9])), places=5)


class TestDla(unittest.TestCase):
    def test_components_sum_to_the_logit_difference(self):
        m = mech.Model.load(TINY)
        ids = np.stack([tiny_tokens(8), tiny_tokens(8)[::-1]])
        d = interp.direct_logit_attribution(m, ids, answer=[5, 6], wrong=9)
        lg = m(ids)[:, -1].astype(np.float64)
        np.testing.assert_allclose(d.logit, [lg[0, 5] - lg[0, 9], lg[1, 6] - lg[1, 9]], atol=1e-5)
        np.testing.assert_allclose(d.attr.sum(0) + d.bias, d.logit, atol=1e-4)
        self.assertEqual(d.labels[:2], ["embed", "L0H0"])
        self.assertEqual(len(d.labels), 1 + 2 * (4 + 2))
        self.assertEqual(d.accum.shape, (3, 2))


if __name__ == "__main__":
    unittest.main()
