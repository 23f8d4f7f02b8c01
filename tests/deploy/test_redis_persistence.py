"""Redis keeps the notification worker's sent records across a restart wherever the project
starts it: deploy/local-infra.sh (a private Redis on a free port and a temporary directory) and
docker-compose.yml."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "local-infra.sh"

needs_redis_server = pytest.mark.skipif(
    shutil.which("redis-server") is None, reason="redis-server is not installed"
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_closed(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) != 0:
                return
        if time.monotonic() > deadline:
            raise AssertionError(f"Redis on port {port} still answers after {timeout}s")
        time.sleep(0.05)


class LocalRedis:
    def __init__(self, tmp_path: Path) -> None:
        self.port = _free_port()
        self.conf = tmp_path / "redis.conf"
        self.env = {
            **os.environ,
            "REDIS_PORT": str(self.port),
            "REDIS_DIR": str(tmp_path / "data"),
            "REDIS_CONF": str(self.conf),
            "REDIS_LOG": str(tmp_path / "redis.log"),
        }
        (tmp_path / "data").mkdir()
        self.client = redis.Redis(port=self.port, socket_timeout=5)

    def infra(self) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["bash", str(SCRIPT), "redis"],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        return result

    def restart_by_hand(self) -> None:
        """What an operator or a reboot does: stop it, start it from its config file again."""
        deadline = time.monotonic() + 10
        # Append-only turned on at runtime first writes the whole dataset to the new file.
        while (info := self.client.info("persistence"))["aof_rewrite_in_progress"] or info[
            "aof_rewrite_scheduled"
        ]:
            assert time.monotonic() < deadline, "the first append-only file was never written"
            time.sleep(0.05)
        self.client.shutdown()
        _wait_closed(self.port)
        subprocess.run(["redis-server", str(self.conf)], check=True, timeout=30)

    def stop(self) -> None:
        # FORCE: a Redis that just turned append-only on may still be writing its first file.
        with contextlib.suppress(redis.RedisError):
            self.client.shutdown(nosave=True, force=True)
        _wait_closed(self.port)


@pytest.fixture
def local_redis(tmp_path: Path) -> Iterator[LocalRedis]:
    server = LocalRedis(tmp_path)
    yield server
    server.stop()


@needs_redis_server
def test_a_redis_started_by_local_infra_keeps_a_sent_record_across_a_restart(
    local_redis: LocalRedis,
) -> None:
    local_redis.infra()
    local_redis.client.set("notif:sent:event-1:created:log", "sent:token")
    local_redis.restart_by_hand()
    assert local_redis.client.get("notif:sent:event-1:created:log") == b"sent:token"
    assert local_redis.client.config_get("appendonly") == {"appendonly": "yes"}


@needs_redis_server
def test_a_running_redis_with_a_config_file_gets_append_only_written_into_it(
    local_redis: LocalRedis,
) -> None:
    local_redis.conf.write_text(
        f"port {local_redis.port}\nbind 127.0.0.1\ndaemonize yes\n"
        f'dir {local_redis.env["REDIS_DIR"]}\nappendonly no\nsave ""\n'
    )
    subprocess.run(["redis-server", str(local_redis.conf)], check=True, timeout=30)
    local_redis.infra()
    assert "appendonly yes" in local_redis.conf.read_text()
    local_redis.client.set("notif:sent:event-2:created:log", "sent:token")
    local_redis.restart_by_hand()
    assert local_redis.client.get("notif:sent:event-2:created:log") == b"sent:token"


@needs_redis_server
def test_a_running_redis_without_a_config_file_is_reported_as_not_persistent(
    local_redis: LocalRedis,
) -> None:
    subprocess.run(
        [
            "redis-server",
            "--port",
            str(local_redis.port),
            "--bind",
            "127.0.0.1",
            "--daemonize",
            "yes",
            "--dir",
            local_redis.env["REDIS_DIR"],
            "--save",
            "",
        ],
        check=True,
        timeout=30,
    )
    result = local_redis.infra()
    assert "runs without a config file" in result.stderr
    assert local_redis.client.config_get("appendonly") == {"appendonly": "yes"}


def test_compose_runs_redis_append_only_on_a_named_volume() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    service = compose["services"]["redis"]
    command = service["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--appendfsync") + 1] == "everysec"
    assert "redis-data:/data" in service["volumes"]
    assert "redis-data" in compose["volumes"]
