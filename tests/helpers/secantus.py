"""SecantusDB (PyPI `secantusdb`), a MongoDB-wire-compatible server, as a test subprocess.

No real `mongod` installs here; SecantusDB comes from the venv (`make venv`), runs in
memory on an OS-chosen loopback port and downloads nothing at run time.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

EXECUTABLE = "secantusd-py"
_LISTENING = re.compile(r"secantus listening on (127\.0\.0\.1):(\d+)")
_START_TIMEOUT_SECONDS = 30.0


def executable() -> str | None:
    """The server launcher of this venv (or on PATH); None when the package is missing."""
    beside = Path(sys.executable).parent / EXECUTABLE
    if beside.exists():
        return str(beside)
    return shutil.which(EXECUTABLE)


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    replica_set: bool
    log_path: Path

    @property
    def uri(self) -> str:
        # The replica-set name it advertises is `secantus`; naming it lets PyMongo
        # discover the (one-member) set, so transactions and change streams work.
        base = f"mongodb://127.0.0.1:{self.port}/"
        options = "replicaSet=secantus" if self.replica_set else "directConnection=true"
        return f"{base}?{options}&serverSelectionTimeoutMS=10000"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def start(
    directory: Path,
    replica_set: bool,
    test_commands: bool = False,
    *,
    storage: Path | None = None,
    auth: bool = False,
) -> Server:
    """Start one server, in memory unless `storage` names a directory (kept across
    restarts), with SCRAM authentication when `auth`; returns once it listens (its log
    names the port)."""
    launcher = executable()
    if launcher is None:
        raise FileNotFoundError(f"{EXECUTABLE} not found: run `make venv` (package secantusdb)")
    directory.mkdir(parents=True, exist_ok=True)
    # An explicit, empty configuration file: no secantusd.toml found on this machine
    # (./, ~/.secantus, /etc/secantus) can change the server under test.
    config = directory / "secantusd.toml"
    config.write_text("")
    log_path = directory / "server.log"
    command = [
        launcher,
        "--config",
        str(config),
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--storage-path",
        ":memory:" if storage is None else str(storage),
        "--log-level",
        "INFO",
    ]
    if not replica_set:
        command.append("--standalone")
    if test_commands:
        command.append("--enable-test-commands")
    if auth:
        command.append("--auth")
    with log_path.open("wb") as log:
        # stdout and stderr both go to the log: the port line comes from `logging`.
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=directory
        )
    deadline = time.monotonic() + _START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        match = _LISTENING.search(log_path.read_text(errors="replace"))
        if match:
            return Server(process, int(match.group(2)), replica_set, log_path)
        if process.poll() is not None:
            break
        time.sleep(0.05)
    server = Server(process, 0, replica_set, log_path)
    server.stop()
    raise RuntimeError(
        f"{EXECUTABLE} did not report its port within {_START_TIMEOUT_SECONDS:.0f} s"
        f" (exit code {process.returncode}); log:\n{log_path.read_text(errors='replace')[-2000:]}"
    )
