"""The results database (mech.db, docs/schema.md) read from Python: runs
with their parameters, result rows and stored tensors, opened read-only
(nothing is ever written), plus the plain sqlite3 connection for SQL.

    db = mech.open_db("mech.db")
    for run in db.runs():
        print(run.id, run.kind, run.status, run.params)
    run = db.run(3)
    rows = run.results(metric="effect")          # numpy record array
    grid = run.tensor("pair0.effect")            # numpy float32 [L, T]
    db.sql().execute("select count(*) from results").fetchone()
"""

import json
import os
import sqlite3
import urllib.parse
import zlib

import numpy as np

from ._lib import DB, IO, MechDBError, MechIOError

APPLICATION_ID = 0x6D656368
SCHEMA_VERSION = 1
RESULT_COLUMNS = ("item", "site", "layer", "pos", "head", "token", "rank", "metric", "value")


def decode_tensor(shape, dtype, codec, nbytes, blob, name="tensor"):
    """A stored tensor's float32 array (codec shuffle4+zlib: four byte planes,
    zlib-compressed). Raises MechDBError for anything malformed."""
    if dtype != "f32" or codec != "shuffle4+zlib":
        raise MechDBError("mech: %s: dtype %r / codec %r not supported (expected f32, shuffle4+zlib)"
                          % (name, dtype, codec), DB)
    try:
        dims = json.loads(shape)
        if not isinstance(dims, list) or not all(isinstance(d, int) and d >= 0 for d in dims):
            raise ValueError("shape is not a list of sizes")
        count = int(np.prod(dims, dtype=np.int64)) if dims else 1
        if nbytes != 4 * count:
            raise ValueError("nbytes %d is not 4 x %d elements" % (nbytes, count))
        raw = zlib.decompress(blob)
        if len(raw) != nbytes:
            raise ValueError("%d bytes decompressed, %d expected" % (len(raw), nbytes))
    except (ValueError, TypeError, zlib.error) as e:
        raise MechDBError("mech: tensor %s is malformed: %s" % (name, e), DB) from None
    planes = np.frombuffer(raw, np.uint8).reshape(4, nbytes // 4)
    return planes.T.copy().view("<f4").reshape(dims).astype(np.float32, copy=False)


class Run:
    """One run: id, kind, model_path, model_hash, cmdline, params (a dict),
    started, finished, status; results(), tensor(), tensors(), prompts()."""

    def __init__(self, db, row):
        self._db = db
        (self.id, self.kind, self.model_path, self.model_hash, self.cmdline, params, self.started, self.finished,
         self.status) = row
        try:
            self.params = json.loads(params) if params else {}
        except ValueError:
            self.params = {}

    def __repr__(self):
        return "Run(id=%d, kind=%r, status=%r)" % (self.id, self.kind, self.status)

    def results(self, metric=None, site=None, item=None):
        """The run's result rows (optionally one metric, site or item) as a
        numpy record array with fields item, site, layer, pos, head, token,
        rank, metric, value (NaN where the database holds NULL), in item
        order then insertion order. Read the item column as rows["item"]
        (rows.item is numpy's item method); the others also as attributes."""
        q = "select %s from results where run_id = ?" % ", ".join('"%s"' % c for c in RESULT_COLUMNS)
        args = [self.id]
        for col, v in (("metric", metric), ("site", site), ("item", item)):
            if v is not None:
                q += " and %s = ?" % col
                args.append(v)
        rows = self._db._query(q + " order by item, rowid", args)
        dt = [("item", "i8"), ("site", "O"), ("layer", "i8"), ("pos", "i8"), ("head", "i8"), ("token", "i8"),
              ("rank", "i8"), ("metric", "O"), ("value", "f8")]
        out = np.zeros(len(rows), dtype=dt)
        for i, r in enumerate(rows):
            out[i] = tuple(r[:8]) + (np.nan if r[8] is None else r[8],)
        return out.view(np.recarray)

    def tensor_names(self):
        """The names of the run's stored tensors."""
        return [r[0] for r in self._db._query("select name from tensors where run_id = ? order by rowid",
                                                [self.id])]

    def tensor(self, name):
        """A stored tensor as a numpy float32 array (KeyError when absent)."""
        rows = self._db._query("select shape, dtype, codec, nbytes, data from tensors where run_id = ? and name = ?",
                               [self.id, name])
        if not rows:
            raise KeyError("run %d has no tensor %r" % (self.id, name))
        shape, dtype, codec, nbytes, blob = rows[0]
        return decode_tensor(shape, dtype, codec, nbytes, blob, "%s (run %d)" % (name, self.id))

    def tensors(self):
        """Every stored tensor of the run: {name: numpy array}."""
        return {n: self.tensor(n) for n in self.tensor_names()}

    def prompts(self):
        """The run's prompts: a list of dicts (item, role, text, tokens)."""
        rows = self._db._query("select item, role, text, tokens from prompts where run_id = ? order by item, role",
                               [self.id])
        return [{"item": i, "role": r, "text": t, "tokens": json.loads(tk)} for i, r, t, tk in rows]


class Database:
    """A mech results database opened read-only (see open_db)."""

    def __init__(self, path):
        self.path = str(path)
        if not os.path.isfile(self.path):
            raise MechIOError("mech: %s: no such file (a results database is made by mech's commands)" % self.path,
                              IO)
        self._con = self._connect()
        try:
            app = self._con.execute("pragma application_id").fetchone()[0]
            ver = self._con.execute("pragma user_version").fetchone()[0]
        except sqlite3.DatabaseError as e:
            self._con.close()
            raise MechDBError("mech: %s: not a readable SQLite database (%s)" % (self.path, e), DB) from None
        if app != APPLICATION_ID:
            self._con.close()
            raise MechDBError("mech: %s is not a mech results database (application_id %#x)" % (self.path, app), DB)
        if ver != SCHEMA_VERSION:
            self._con.close()
            raise MechDBError("mech: %s has schema version %d; this package reads version %d"
                              % (self.path, ver, SCHEMA_VERSION), DB)

    def _connect(self):
        uri = "file:%s?mode=ro" % urllib.parse.quote(os.path.abspath(self.path))
        con = sqlite3.connect(uri, uri=True, check_same_thread=False)
        try:
            con.execute("select count(*) from sqlite_master").fetchone()
            return con
        except sqlite3.OperationalError:
            # a WAL database in a directory we cannot write: SQLite cannot
            # make the -shm file; read the file as it is (as mech does)
            con.close()
            con = sqlite3.connect(uri + "&immutable=1", uri=True, check_same_thread=False)
        except sqlite3.DatabaseError as e:
            con.close()
            raise MechDBError("mech: %s: not a readable SQLite database (%s)" % (self.path, e), DB) from None
        return con

    def _query(self, q, args=()):
        try:
            return self._con.execute(q, args).fetchall()
        except sqlite3.DatabaseError as e:
            raise MechDBError("mech: %s: %s" % (self.path, e), DB) from None

    def runs(self, kind=None):
        """Every run (or those of one kind) in id order, as Run objects."""
        q = ("select id, kind, model_path, model_hash, cmdline, params, started, finished, status from runs" +
             (" where kind = ?" if kind else "") + " order by id")
        return [Run(self, r) for r in self._query(q, [kind] if kind else [])]

    def run(self, run_id):
        """The run with that id (KeyError when there is none)."""
        rows = self._query("select id, kind, model_path, model_hash, cmdline, params, started, finished, status "
                           "from runs where id = ?", [int(run_id)])
        if not rows:
            raise KeyError("%s has no run %d" % (self.path, run_id))
        return Run(self, rows[0])

    def sql(self):
        """The read-only sqlite3.Connection (queries only; writing raises
        sqlite3.OperationalError). Shared with this object: close() closes it."""
        return self._con

    def close(self):
        """Closes the connection."""
        self._con.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def open_db(path="mech.db"):
    """Opens a mech results database read-only: never creates or modifies a
    file. Raises MechIOError when it does not exist, MechDBError when it is
    not a mech database of this schema version."""
    return Database(path)
