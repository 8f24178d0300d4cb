"""A PostgreSQL server of the test's own (initdb in a temp folder), to restart at will;
and `pg_schema`, a schema of the test's own on the shared test server.

The binaries are Debian's (scripts/postgres.sh installs them). PostgreSQL refuses to
run as root, so as root the server runs as the ``postgres`` user.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import create_engine, text


class OwnPostgres:
    """``start()``, ``restart()`` (fast shutdown, then start) and ``stop()`` by pg_ctl."""

    def __init__(self, port: int) -> None:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
        if not found:
            raise RuntimeError("PostgreSQL is not installed: run scripts/postgres.sh")
        self.bin = Path(found[-1]).parent
        self.port = port
        self.dir = Path(tempfile.mkdtemp(prefix=f"autocall-pg{port}-"))
        self.data = self.dir / "data"
        self.user: str | None = "postgres" if os.geteuid() == 0 else None
        if self.user is not None:
            pw = pwd.getpwnam(self.user)
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"

    def _run(self, *args: str) -> None:
        cmd = [str(self.bin / args[0]), *args[1:]]
        if self.user is not None:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)}: {done.stdout}{done.stderr}")

    def _ctl(self, action: str, *extra: str) -> None:
        opts = (
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off"
        )
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.dir / "server.log"),
            "-w",
            "-o",
            opts,
            *extra,
            action,
        )

    def start(self) -> OwnPostgres:
        if not self.data.exists():
            self._run(
                "initdb",
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            )
        self._ctl("start")
        return self

    def restart(self) -> None:
        self._ctl("restart", "-m", "fast")

    def down(self) -> None:
        """Fast shutdown (clients are cut off); ``start()`` brings it back."""
        self._ctl("stop", "-m", "fast")

    def stop(self) -> None:
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            self._ctl("stop", "-m", "immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


@contextlib.contextmanager
def pg_schema(postgres_url: str) -> Iterator[str]:
    """A URL whose tables live in a schema of their own (dropped afterwards), so tests
    and parallel runs on one server never see each other's tables."""
    schema = f"autocall_t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres_url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in postgres_url else "?"
    try:
        yield f"{postgres_url}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
