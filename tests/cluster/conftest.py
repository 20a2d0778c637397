"""A real PostgreSQL server for the cluster-path tests: Debian's postgresql (installed by `make setup`), a temporary
cluster initialised per session, bound to 127.0.0.1 on a free port and stopped at the end."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_server():
    """Yields a function db_url(name) -> a SQLAlchemy URL of a fresh database on the temporary server."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        pytest.skip("Debian postgresql is not installed (`make setup` installs it): PostgreSQL tests skipped")
    bindir = os.path.dirname(found[-1])
    # Not under pytest's tmp dir: that is private to root, and the server runs as `postgres`.
    root = Path(tempfile.mkdtemp(prefix="medfoundry-pg-"))
    data, sockets = root / "data", root / "sock"
    sockets.mkdir()
    # PostgreSQL refuses to run as root: run it as the package's `postgres` user when we are root.
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_user:
        for path in (root, sockets):
            shutil.chown(path, "postgres")
    port = _free_port()
    def run(*cmd: str) -> None:
        done = subprocess.run([*as_user, *cmd], capture_output=True, text=True)
        if done.returncode != 0:
            pytest.fail(f"{cmd[0]} failed: {done.stdout}{done.stderr}")

    run(f"{bindir}/initdb", "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
    run(
        f"{bindir}/pg_ctl", "-D", str(data), "-w", "-l", str(root / "server.log"), "-o",
        f"-p {port} -c listen_addresses=127.0.0.1 -k {sockets} -c fsync=off", "start",
    )
    created: set[str] = set()

    def db_url(name: str) -> str:
        if name not in created:
            run(f"{bindir}/createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", name)
            created.add(name)
        return f"postgresql+psycopg://postgres@127.0.0.1:{port}/{name}"

    try:
        yield db_url
    finally:
        subprocess.run([*as_user, f"{bindir}/pg_ctl", "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
