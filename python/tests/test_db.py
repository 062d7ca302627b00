"""mech.open_db: runs, results and tensors against `mech db export`;
read-only use; malformed, foreign, truncated and missing files."""

import csv
import os
import shutil
import sqlite3

import numpy as np

import mech
from mech import db as mdb
from tests.util import TINY, TmpCase, cli, tiny_tokens


class TestDb(TmpCase):
    def setUp(self):
        super().setUp()
        ids = ",".join(map(str, tiny_tokens(6)))
        cli("lens", "--model", TINY, "--ids", ids, "--target", "3", "--db", self.path("m.db"))
        cli("heads", "--model", TINY, "--ids", ids, "--db", self.path("m.db"))

    def test_runs_results_tensors_equal_export(self):
        with mech.open_db(self.path("m.db")) as d:
            runs = d.runs()
            self.assertEqual([r.kind for r in runs], ["lens", "heads"])
            self.assertEqual([r.id for r in d.runs(kind="heads")], [2])
            lens = d.run(1)
            self.assertEqual(lens.params["target"], 3)
            self.assertEqual(lens.status, "done")
            cli("db", "--db", self.path("m.db"), "export", "1", "--npz", self.path("e.npz"))
            z = np.load(self.path("e.npz"))
            self.assertEqual(sorted(lens.tensor_names()), sorted(z.files))
            for name, arr in lens.tensors().items():
                self.assertEqual(arr.dtype, np.float32)
                np.testing.assert_array_equal(arr, z[name])
            cli("db", "--db", self.path("m.db"), "export", "1", "--csv", self.path("e.csv"))
            with open(self.path("e.csv")) as f:
                rows = list(csv.DictReader(f))
            res = lens.results()
            self.assertEqual(len(res), len(rows))
            kl = lens.results(metric="kl")
            self.assertEqual(set(kl.metric), {"kl"})
            self.assertEqual(len(kl), (2 + 1) * 6)  # layers 0..L x positions
            # the rows agree with the tensor of the same numbers
            grid = lens.tensor("kl")
            for r in kl:
                self.assertAlmostEqual(r.value, float(grid[r.layer, r["item"], r.pos]), places=6)
            self.assertEqual(d.run(1).prompts()[0]["tokens"], [int(t) for t in tiny_tokens(6)])
            with self.assertRaises(KeyError):
                lens.tensor("nope")
            with self.assertRaises(KeyError):
                d.run(99)
            con = d.sql()
            self.assertEqual(con.execute("select count(*) from runs").fetchone()[0], 2)
            with self.assertRaises(sqlite3.OperationalError):
                con.execute("delete from runs")

    def test_missing_file_is_not_created(self):
        p = self.path("nothing.db")
        with self.assertRaises(mech.MechIOError):
            mech.open_db(p)
        self.assertFalse(os.path.exists(p))

    def test_foreign_empty_and_garbage_files(self):
        con = sqlite3.connect(self.path("other.db"))
        con.execute("create table t (x)")
        con.commit()
        con.close()
        with self.assertRaisesRegex(mech.MechDBError, "not a mech results database"):
            mech.open_db(self.path("other.db"))
        for name, data in (("empty.db", b""), ("garbage.db", b"not a database at all" * 100)):
            with open(self.path(name), "wb") as f:
                f.write(data)
            with self.assertRaises(mech.MechDBError):
                mech.open_db(self.path(name))
        # truncated: the first page only
        with open(self.path("m.db"), "rb") as f:
            head = f.read(1024)
        with open(self.path("trunc.db"), "wb") as f:
            f.write(head)
        with self.assertRaises(mech.MechDBError):
            d = mech.open_db(self.path("trunc.db"))
            d.runs()[0].tensors()

    def test_damaged_tensor_blobs(self):
        shutil.copy(self.path("m.db"), self.path("bad.db"))
        con = sqlite3.connect(self.path("bad.db"))
        blob = con.execute("select data from tensors where run_id = 1 and name = 'kl'").fetchone()[0]
        cases = [("data", blob[: len(blob) // 2]), ("data", b"\x00" * 16), ("shape", "[3, 1"),
                 ("shape", "[99, 99, 99]"), ("codec", "lz4"), ("nbytes", 4)]
        for i, (col, val) in enumerate(cases):
            name = "bad%d" % i
            con.execute("insert into tensors select run_id, ?, dtype, shape, codec, nbytes, data from tensors "
                        "where run_id = 1 and name = 'kl'", (name,))
            con.execute("update tensors set %s = ? where run_id = 1 and name = ?" % col, (val, name))
        con.commit()
        con.close()
        with mech.open_db(self.path("bad.db")) as d:
            run = d.run(1)
            np.testing.assert_array_equal(run.tensor("kl"), mech.open_db(self.path("m.db")).run(1).tensor("kl"))
            for i in range(len(cases)):
                with self.assertRaises(mech.MechDBError, msg=str(cases[i])):
                    run.tensor("bad%d" % i)

    def test_codec_round_trip(self):
        # the documented codec, written independently here
        import json
        import zlib
        x = np.linspace(-3, 3, 24, dtype=np.float32).reshape(2, 3, 4)
        planes = x.astype("<f4").view(np.uint8).reshape(-1, 4).T.copy()
        blob = zlib.compress(planes.tobytes())
        y = mdb.decode_tensor(json.dumps([2, 3, 4]), "f32", "shuffle4+zlib", x.nbytes, blob)
        np.testing.assert_array_equal(x, y)
