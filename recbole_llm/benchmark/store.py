"""Resumable results store: one SQLite file per results directory.

One row per run key (the hash of the run's fully resolved config). A row moves
``pending -> running -> finished | failed``; a failed row is claimed again by the next
runner (``retry_failed``), a finished one never. Claims are atomic (``BEGIN IMMEDIATE``), so
several runners sharing one store never run the same key at the same time. A ``running``
row whose runner died (same host and its pid is gone, or no heartbeat for
``stale_after`` seconds) is taken over by the next runner, so a killed suite loses nothing
that finished and resumes where it stopped.

A finished test run may also keep its per-user test metrics (table ``per_user``: the user tokens
once, and one float64 vector per metric, zlib-compressed), which the tables' tests over users
read (:meth:`ResultsStore.per_user`).

The database uses WAL journaling and a busy timeout; every write is a short transaction.
Do not put the store on a network file system (SQLite's locking is unreliable there).
"""

import json
import math
import os
import socket
import sqlite3
import time
import uuid
import zlib
from array import array
from pathlib import Path

from recbole_llm.errors import CorruptFileError, RecBoleLLMError
from recbole_llm.plain import plain

STORE_FILENAME = "results.sqlite"
SCHEMA_VERSION = 1

STATUSES = ("pending", "running", "finished", "failed")

_COLUMNS = {
    # identity
    "key": "TEXT PRIMARY KEY",
    "suite": "TEXT",
    "label": "TEXT",
    "model": "TEXT",
    "dataset": "TEXT",
    "seed": "INTEGER",
    "config_json": "TEXT",  # resolved config (canonical, volatile keys dropped)
    # state
    "status": "TEXT NOT NULL DEFAULT 'pending'",
    "attempts": "INTEGER NOT NULL DEFAULT 0",
    "owner": "TEXT",
    "heartbeat": "REAL",
    "created_at": "REAL",
    "started_at": "REAL",
    "finished_at": "REAL",
    # results
    "valid_json": "TEXT",
    "test_json": "TEXT",
    "best_valid_score": "REAL",
    "best_epoch": "INTEGER",
    "wall_time_s": "REAL",
    "stage_times_json": "TEXT",
    "epoch_times_json": "TEXT",
    "peak_rss_mb": "REAL",
    "trainable_params": "INTEGER",
    "total_params": "INTEGER",
    "versions_json": "TEXT",
    "error": "TEXT",
    "log_path": "TEXT",
    "extra_json": "TEXT",
}

_JSON_FIELDS = {
    "config_json": "config",
    "valid_json": "valid",
    "test_json": "test",
    "stage_times_json": "stage_times",
    "epoch_times_json": "epoch_times",
    "versions_json": "versions",
    "extra_json": "extra",
}


def make_owner():
    """An owner id for one runner process: ``host:pid:random``."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _owner_alive(owner):
    """False only when ``owner`` is on this host and its process is gone."""
    try:
        host, pid, _ = owner.split(":", 2)
        pid = int(pid)
    except (AttributeError, ValueError):
        return True
    if host != socket.gethostname():
        return True  # cannot tell; rely on the heartbeat
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (killed, not yet reaped by its parent) still answers kill(0).
    try:
        with open(f"/proc/{pid}/stat") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
        if state in ("Z", "X"):
            return False
    except (OSError, IndexError):
        pass
    return True


#: How the store writes JSON (:func:`recbole_llm.plain.plain`): numpy/torch scalars as numbers, sets
#: as lists, anything else as its ``repr``; dict keys as ``json`` writes them.
STORE_JSON = {"numbers": True, "fallback": repr, "sets": "list", "str_keys": False}


def _dumps(obj):
    return json.dumps(plain(obj, **STORE_JSON), sort_keys=True, allow_nan=True)


class StoreBusyError(RecBoleLLMError, sqlite3.OperationalError):
    """The store stayed locked by another process for longer than the store's timeout."""


class ResultsStore:
    """The SQLite results store of one results directory.

    ``ResultsStore(path)`` accepts the database file or the directory holding it.
    """

    def __init__(self, path, timeout=60.0, open_timeout=10.0):
        path = Path(path)
        if path.suffix not in (".sqlite", ".db", ".sqlite3"):
            path = path / STORE_FILENAME
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CorruptFileError(f"cannot create the results folder {path.parent}: {exc.strerror or exc}. "
                                   "Choose another folder (--results-dir).") from None
        if path.exists() and not path.is_file():
            raise CorruptFileError(f"results store {path} is a folder, not a file. Move it away or choose "
                                   "another folder (--results-dir).")
        self.path = path
        self.timeout = float(timeout)
        self._conn = None
        # Opening waits less than a write: runners hold the lock only for short transactions, so
        # a store locked for open_timeout seconds is held by something else (a crashed tool, an editor).
        self._deadline_s = min(self.timeout, float(open_timeout))
        try:
            self._init_db()
        except BaseException:
            self.close()
            raise
        self._deadline_s = self.timeout
        self.conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")

    # -- connection -------------------------------------------------------------------
    @property
    def conn(self):
        # One connection per process: a connection must not cross fork().
        if self._conn is None or self._conn_pid != os.getpid():
            wait = getattr(self, "_deadline_s", self.timeout)
            conn = sqlite3.connect(str(self.path), timeout=wait, isolation_level=None)
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {int(wait * 1000)}")
            self._conn, self._conn_pid = conn, os.getpid()
        return self._conn

    def close(self):
        if self._conn is not None and self._conn_pid == os.getpid():
            self._conn.close()
        self._conn = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _retry(self, fn):
        """Run ``fn`` retrying on 'database is locked' beyond the busy timeout's reach
        (e.g. while another process switches the journal mode)."""
        wait = getattr(self, "_deadline_s", self.timeout)
        deadline = time.monotonic() + wait
        delay = 0.01
        while True:
            try:
                return fn()
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise self._unusable(exc) from None
                if time.monotonic() > deadline:
                    raise StoreBusyError(
                        f"results store {self.path} stayed locked by another process for {wait:.0f} s. If no other "
                        "benchmark runner uses this folder, a crashed process or another tool holds the lock: "
                        f"end it (fuser {self.path}), or choose another folder (--results-dir)."
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 0.5)
            except sqlite3.DatabaseError as exc:  # "file is not a database", "disk image is malformed"
                raise self._unusable(exc) from None

    def _unusable(self, exc):
        return CorruptFileError(
            f"results store {self.path} cannot be used ({exc}). Finished results live only there: move the file "
            "(and any -wal/-shm files next to it) away to start a new store, or choose another folder (--results-dir)."
        )

    def _transaction(self, fn):
        def attempt():
            conn = self.conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result

        return self._retry(attempt)

    def _init_db(self):
        def setup():
            mode = self.conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise sqlite3.OperationalError(f"could not switch {self.path} to WAL (got {mode}); locked")
            self.conn.execute("PRAGMA synchronous=NORMAL")

        self._retry(setup)
        cols = ", ".join(f"{name} {decl}" for name, decl in _COLUMNS.items())

        def create(conn):
            conn.execute(f"CREATE TABLE IF NOT EXISTS runs ({cols})")
            conn.execute("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT)")
            conn.execute("CREATE TABLE IF NOT EXISTS per_user (key TEXT PRIMARY KEY, users_json TEXT NOT NULL,"
                         " metrics_json TEXT NOT NULL, values_blob BLOB NOT NULL)")
            conn.execute(
                "INSERT OR IGNORE INTO meta (name, value) VALUES ('schema_version', ?)",
                (str(SCHEMA_VERSION),),
            )
            have = {row[1] for row in conn.execute("PRAGMA table_info(runs)")}
            for name, decl in _COLUMNS.items():  # forward-compatible: add new columns
                if name not in have:
                    conn.execute(f"ALTER TABLE runs ADD COLUMN {name} {decl.replace('PRIMARY KEY', '')}")

        self._transaction(create)

    # -- rows -------------------------------------------------------------------------
    @staticmethod
    def _decode(row):
        if row is None:
            return None
        out = dict(row)
        for col, name in _JSON_FIELDS.items():
            raw = out.pop(col, None)
            out[name] = json.loads(raw) if raw else None
        return out

    def get(self, key):
        row = self._retry(lambda: self.conn.execute("SELECT * FROM runs WHERE key = ?", (key,)).fetchone())
        return self._decode(row)

    def rows(self, keys=None, status=None):
        sql, args = "SELECT * FROM runs", []
        where = []
        if keys is not None:
            keys = list(keys)
            if not keys:
                return []
            where.append(f"key IN ({','.join('?' * len(keys))})")
            args += keys
        if status is not None:
            where.append("status = ?")
            args.append(status)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at, key"
        return [self._decode(r) for r in self._retry(lambda: self.conn.execute(sql, args).fetchall())]

    def counts(self):
        rows = self._retry(lambda: self.conn.execute("SELECT status, COUNT(*) FROM runs GROUP BY status").fetchall())
        return {status: n for status, n in rows}

    def register(self, key, suite=None, label=None, model=None, dataset=None, seed=None, config=None):
        """Add a pending row for ``key`` unless it exists; refresh its descriptive fields."""

        def op(conn):
            conn.execute(
                "INSERT OR IGNORE INTO runs (key, suite, label, model, dataset, seed, config_json, status, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?)",
                (key, suite, label, model, dataset, seed, _dumps(config) if config is not None else None, time.time()),
            )

        self._transaction(op)

    def is_stale(self, row, stale_after):
        if row["status"] != "running":
            return False
        if not _owner_alive(row.get("owner")):
            return True
        beat = row.get("heartbeat") or row.get("started_at") or 0
        return (time.time() - beat) > stale_after

    def claim(self, key, owner, retry_failed=True, stale_after=600.0, meta=None):
        """Atomically take ``key`` for ``owner``. Returns True if this caller must run it.

        Not claimable: finished rows, rows running under a live owner, and failed rows when
        ``retry_failed`` is False. Pending rows, failed rows (by default) and stale running
        rows (dead owner, or no heartbeat for ``stale_after`` s) are claimed.
        """
        meta = meta or {}

        def op(conn):
            row = conn.execute("SELECT * FROM runs WHERE key = ?", (key,)).fetchone()
            now = time.time()
            if row is None:
                conn.execute(
                    "INSERT INTO runs (key, suite, label, model, dataset, seed, config_json, status, attempts,"
                    " owner, heartbeat, created_at, started_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'running', 1, ?, ?, ?, ?)",
                    (key, meta.get("suite"), meta.get("label"), meta.get("model"), meta.get("dataset"),
                     meta.get("seed"), _dumps(meta["config"]) if meta.get("config") is not None else None,
                     owner, now, now, now),
                )
                return True
            row = dict(row)
            status = row["status"]
            if status == "finished":
                return False
            if status == "failed" and not retry_failed:
                return False
            if status == "running" and not self.is_stale(row, stale_after):
                return False
            conn.execute(
                "UPDATE runs SET status='running', attempts=attempts+1, owner=?, heartbeat=?, started_at=?,"
                " finished_at=NULL WHERE key=?",
                (owner, now, now, key),
            )
            return True

        return self._transaction(op)

    def heartbeat(self, key, owner):
        def op(conn):
            conn.execute("UPDATE runs SET heartbeat=? WHERE key=? AND owner=? AND status='running'",
                         (time.time(), key, owner))

        self._transaction(op)

    def finish(self, key, owner, result):
        """Record a successful run. ``result`` holds any of: valid, test, best_valid_score,
        best_epoch, wall_time_s, stage_times, epoch_times, peak_rss_mb, trainable_params,
        total_params, versions, log_path, extra, config, and ``per_user`` (``{"users": [token, ...],
        "metrics": {metric: [value per user, ...]}}``, the test metrics per user)."""
        self._write(key, owner, "finished", result, error=None)

    def fail(self, key, owner, error, result=None):
        """Record a failed run with its error (and whatever was measured before it failed)."""
        self._write(key, owner, "failed", result or {}, error=str(error))

    def release(self, key, owner):
        """Give an interrupted claim back (status pending) so the next runner takes it."""

        def op(conn):
            conn.execute(
                "UPDATE runs SET status='pending', owner=NULL, heartbeat=NULL WHERE key=? AND owner=?"
                " AND status='running'",
                (key, owner),
            )

        self._transaction(op)

    def _write(self, key, owner, status, result, error):
        r = dict(result)
        values = {
            "status": status,
            "finished_at": time.time(),
            "error": error,
            "valid_json": _dumps(r.get("valid")) if r.get("valid") is not None else None,
            "test_json": _dumps(r.get("test")) if r.get("test") is not None else None,
            "best_valid_score": _num(r.get("best_valid_score")),
            "best_epoch": _int(r.get("best_epoch")),
            "wall_time_s": _num(r.get("wall_time_s")),
            "stage_times_json": _dumps(r.get("stage_times")) if r.get("stage_times") is not None else None,
            "epoch_times_json": _dumps(r.get("epoch_times")) if r.get("epoch_times") is not None else None,
            "peak_rss_mb": _num(r.get("peak_rss_mb")),
            "trainable_params": _int(r.get("trainable_params")),
            "total_params": _int(r.get("total_params")),
            "versions_json": _dumps(r.get("versions")) if r.get("versions") is not None else None,
            "log_path": r.get("log_path"),
            "extra_json": _dumps(r.get("extra")) if r.get("extra") is not None else None,
        }
        if r.get("config") is not None:
            values["config_json"] = _dumps(r["config"])
        per_user = _encode_per_user(r.get("per_user"), key) if status == "finished" else None
        sets = ", ".join(f"{k}=?" for k in values)

        def op(conn):
            row = conn.execute("SELECT status, owner FROM runs WHERE key=?", (key,)).fetchone()
            if row is None:
                conn.execute("INSERT INTO runs (key, status, attempts, created_at) VALUES (?, 'running', 1, ?)",
                             (key, time.time()))
            elif row["status"] == "finished":
                return False  # a finished result is never overwritten (e.g. by a stale runner)
            conn.execute(f"UPDATE runs SET {sets}, owner=? WHERE key=?", (*values.values(), owner, key))
            if status == "finished" and per_user is not None:
                conn.execute("INSERT OR REPLACE INTO per_user (key, users_json, metrics_json, values_blob)"
                             " VALUES (?, ?, ?, ?)", (key, *per_user))
            return True

        return self._transaction(op)

    def per_user(self, key):
        """The per-user test metrics of run ``key``: ``{"users": [...], "metrics": {name: [...]}}``
        (values in the order of ``users``), or ``None`` if the run kept none."""
        row = self._retry(lambda: self.conn.execute(
            "SELECT users_json, metrics_json, values_blob FROM per_user WHERE key = ?", (key,)).fetchone())
        if row is None:
            return None
        users, names = json.loads(row[0]), json.loads(row[1])
        flat = array("d")
        flat.frombytes(zlib.decompress(row[2]))
        n = len(users)
        return {"users": users, "metrics": {name: flat[i * n:(i + 1) * n].tolist() for i, name in enumerate(names)}}

    def reset(self, keys=None, status=None):
        """Set rows back to pending (all, given keys, or those with ``status``)."""
        rows = self.rows(keys=keys, status=status)

        def op(conn):
            for row in rows:
                conn.execute("UPDATE runs SET status='pending', owner=NULL, heartbeat=NULL WHERE key=?",
                             (row["key"],))

        self._transaction(op)
        return len(rows)


def _encode_per_user(per_user, key):
    """``(users_json, metrics_json, blob)`` for the ``per_user`` table, checked."""
    if not per_user:
        return None
    users = [str(u) for u in per_user["users"]]
    names = sorted(per_user["metrics"])
    flat = array("d")
    for name in names:
        values = per_user["metrics"][name]
        if len(values) != len(users):
            raise ValueError(f"run {key}: per-user metric {name} has {len(values)} values for {len(users)} users")
        flat.extend(float(v) for v in values)
    return json.dumps(users), json.dumps(names), zlib.compress(flat.tobytes())


def _num(x):
    if x is None:
        return None
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) else x


def _int(x):
    if x is None:
        return None
    try:
        return int(x)
    except (TypeError, ValueError):
        return None
