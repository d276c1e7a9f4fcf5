"""A throw-away OpenSSH server on 127.0.0.1 for the team-remote tests.

Key login only, SFTP on (DVC's SSH remote speaks SFTP), host and user keys generated in a temp
folder. `stop()` kills the server and every session it serves at once, as a crash or a reboot
of the machine would; `start()` brings it back on the same port with the same host key.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

SSHD = Path("/usr/sbin/sshd")
SFTP_SERVER = Path("/usr/lib/openssh/sftp-server")
PRIVILEGE_SEPARATION_DIR = Path("/run/sshd")      # sshd refuses to start without it


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (the OS picks it)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def unavailable(reason: str, fix: str = "apt-get install -y openssh-server") -> None:
    """Skip the calling test on a machine that lacks what it needs; in CI (.ci/run installs it
    all) fail instead."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; .ci/run must install it ({fix})")
    pytest.skip(f"{reason}; to run these tests: {fix}")


class SSHServer:
    """sshd on 127.0.0.1:`port` letting `user` in with `teammate_key` only."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.port = free_port()
        self.user = pwd.getpwuid(os.getuid()).pw_name           # log in as whoever runs the tests
        self.host_key = self._new_key("host_key")
        self.teammate_key = self._new_key("teammate_key")
        self.stranger_key = self._new_key("stranger_key")        # a valid key the server does not know
        authorized_keys = folder / "authorized_keys"
        authorized_keys.write_text(self.teammate_key.with_suffix(".pub").read_text())
        self.config = folder / "sshd_config"
        self.config.write_text("\n".join([
            "ListenAddress 127.0.0.1",
            f"Port {self.port}",
            f"HostKey {self.host_key}",
            f"AuthorizedKeysFile {authorized_keys}",
            "AuthenticationMethods publickey",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PermitRootLogin prohibit-password",     # the tests may run as root (CI containers do)
            "UsePAM no",
            "StrictModes no",                        # the keys live in a temp folder, not ~/.ssh
            "PidFile none",
            f"Subsystem sftp {SFTP_SERVER}",
        ]) + "\n")
        self.log = folder / "sshd.log"
        self.process: subprocess.Popen | None = None

    def url(self, path: Path, port: int | None = None) -> str:
        """The ssh:// URL of an absolute `path` on this server (a DVC remote's url)."""
        return f"ssh://{self.user}@127.0.0.1:{port or self.port}{path}"

    def start(self) -> None:
        """Start sshd in the foreground and wait until it accepts connections."""
        with self.log.open("a") as log:
            self.process = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(self.config)],
                                            stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"sshd exited with {self.process.returncode}:\n{self.log.read_text()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"sshd did not listen on port {self.port} within 20 s:\n{self.log.read_text()}")

    def stop(self) -> None:
        """SIGKILL sshd and every session process it forked (each session runs in its own
        process session, so only the parent links tell which are ours)."""
        if self.process is None:
            return
        self.process.send_signal(signal.SIGSTOP)              # accept no new connection meanwhile
        while sessions := _descendants(self.process.pid):
            for pid in sessions:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.05)
        self.process.kill()
        self.process.wait(timeout=20)
        self.process = None

    @property
    def running(self) -> bool:
        return self.process is not None

    def _new_key(self, name: str) -> Path:
        key = self.folder / name
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)], check=True)
        return key


def start_test_server(folder: Path) -> SSHServer:
    """A running SSHServer in `folder`, or a skip (a fail in CI) saying why there can be none."""
    if importlib.util.find_spec("dvc_ssh") is None:
        unavailable("DVC's SSH plugin dvc-ssh is not installed", "pip install -e '.[ssh]'")
    for program in (SSHD, SFTP_SERVER):
        if not program.is_file():
            unavailable(f"{program} not found")
    if not PRIVILEGE_SEPARATION_DIR.is_dir():
        try:
            PRIVILEGE_SEPARATION_DIR.mkdir(mode=0o755)
        except OSError as error:
            unavailable(f"sshd needs {PRIVILEGE_SEPARATION_DIR} and it cannot be created ({error})")
    server = SSHServer(folder)
    try:
        server.start()
    except RuntimeError as error:
        unavailable(f"sshd cannot start here: {error}")
    return server


def most_sessions_at_once(log: str) -> int:
    """The most SSH logins open at one moment in (a stretch of) sshd's log."""
    open_ports, most = set(), 0
    for line in log.splitlines():
        port = re.search(r" port (\d+)", line)
        if port and line.startswith("Accepted "):
            open_ports.add(port[1])
            most = max(most, len(open_ports))
        elif port and line.startswith(("Disconnected from", "Connection closed by", "Connection reset by")):
            open_ports.discard(port[1])
    return most


def _descendants(root: int) -> list[int]:
    """Every live process below `root` in the parent links of /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue                                           # ended while we read
        if fields[0] != "Z":                                   # zombies are dead already
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, queue = [], [root]
    while queue:
        for child in children.get(queue.pop(), []):
            found.append(child)
            queue.append(child)
    return found
