"""Throwaway PostgreSQL clusters for the tests: Debian's packages, run as the postgres user
on a free loopback port (the session's shared server, tests/conftest.py ``postgres_url``, and
the fault suite's private clusters, which a test stops and starts)."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from conftest import require
from servers import free_port


class Postgres:
    """A throwaway PostgreSQL cluster (Debian's packages, run as the postgres user) on a
    free loopback port; a test that owns one may stop and start it."""

    def __init__(self) -> None:
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
        require(bool(bins), "PostgreSQL is not installed: apt-get install postgresql "
                            "(make test does this when run as root)")
        runuser = shutil.which("runuser")
        require(os.geteuid() == 0 and runuser is not None,
                "a throwaway PostgreSQL cluster needs root (to run it as the postgres user)")
        self.bindir = Path(bins[-1]).parent
        self.data = Path(tempfile.mkdtemp(prefix="workbench-pg-"))  # pytest's is 0700
        shutil.chown(self.data, "postgres", "postgres")
        self._as_pg = [str(runuser), "-u", "postgres", "--"]
        self._pg("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres")
        self.port = free_port()
        self.start()

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        self._pg("pg_ctl", "-D", str(self.data), "-w", "-l", str(self.data / "log"), "-o",
                 f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1", "start")

    def stop(self) -> None:
        """``pg_ctl stop -m fast``: open sessions are terminated, then the server exits."""
        self._pg("pg_ctl", "-D", str(self.data), "-w", "-m", "fast", "stop")

    def running(self) -> bool:
        return subprocess.run([*self._as_pg, str(self.bindir / "pg_ctl"), "-D",
                               str(self.data), "status"], capture_output=True).returncode == 0

    def create_database(self, name: str) -> str:
        import sqlalchemy as sa

        admin = sa.create_engine(self.url(), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f"CREATE DATABASE {name}"))
        admin.dispose()
        return self.url(name)

    def close(self) -> None:
        if self.running():
            self.stop()
        shutil.rmtree(self.data, ignore_errors=True)

    def _pg(self, tool: str, *args: str) -> None:
        subprocess.run([*self._as_pg, str(self.bindir / tool), *args], check=True,
                       capture_output=True, timeout=120)
