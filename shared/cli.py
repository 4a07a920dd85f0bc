"""``crm``: run the platform locally and mint dev tokens.

crm up                      broker + every service, SQLite files under .crm-data/
crm serve contacts          one service (what the container image runs)
crm token [--scope "..."]   a JWT signed with the dev secret (every scope by default)
crm migrate contacts        apply one service's migrations and exit (a deploy job)
crm create-topics           create the platform's topics (or set their configs) and exit
crm <service> <command>     a service's own commands (services/<name>/commands.py), e.g.
                            crm analytics rebuild: replay every topic into a fresh database
crm docs [--check]          regenerate (or check) docs/schemas, docs/asyncapi.yaml, docs/openapi
"""

import argparse
import asyncio
import importlib
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import httpx
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.app import WORKER_ENDED, migrate
from shared.auth import ALL_SCOPES, mint_token
from shared.db import create_engine
from shared.kafka import TopicsNotConfigured, TopicsNotCreated, ensure_topics
from shared.logs import logging_config
from shared.settings import AuthSettings, KafkaSettings, ServiceSettings

ROOT = Path(__file__).resolve().parent.parent
# The consumers' fetch wait on the embedded broker, which answers a fetch only when it ends: at
# 10 ms the five services' fetches kept 0.75 of a core busy with nothing to do (the broker 0.47
# of it), at 25 ms 0.47, and the whole platform took about a quarter more writes a second with
# the same light-load propagation (docs/reliability.md, "6 Dec, sixth session").
EMBEDDED_FETCH_WAIT_MS = 25
SERVICES_DIR = ROOT / "services"
DEFAULT_DATA_DIR = Path(".crm-data")
SECRET_FILE = "jwt-secret"


def available_services() -> list[str]:
    """Every service folder that has an app (department folders fill in issue by issue)."""
    return sorted(p.parent.name for p in SERVICES_DIR.glob("*/app.py"))


def _settings_class(service: str) -> type[ServiceSettings]:
    """The ``<Name>Settings`` class in ``services/<name>/config.py``."""
    config = importlib.import_module(f"services.{service}.config")
    return next(
        value
        for value in vars(config).values()
        if isinstance(value, type)
        and issubclass(value, ServiceSettings)
        and value.__module__ == config.__name__
    )


def _settings(service: str) -> ServiceSettings:
    return _settings_class(service)()


def _known(service: str) -> None:
    if service not in available_services():
        sys.exit(f"unknown service {service!r}; known: {', '.join(available_services())}")


def serve(service: str) -> None:
    import uvicorn

    _known(service)
    # A served process ends when a worker does, for its supervisor to restart it (see
    # ServiceSettings.exit_when_a_worker_ends); each uvicorn worker reads this too.
    prefix = _settings_class(service).model_config.get("env_prefix", "")
    os.environ.setdefault(f"{prefix}EXIT_WHEN_A_WORKER_ENDS", "true")
    settings = _settings(service)
    options = {
        "host": settings.host,
        "port": settings.port,
        "access_log": False,
        "log_config": logging_config(service, settings.log_level),
    }
    if settings.workers > 1:
        # Migrate once here, so the workers do not race to create the same tables.
        asyncio.run(_migrate(service, settings))
        # The workers' metrics in one place, so a scrape of any worker answers for all of them
        # (shared.metrics); a directory of this run's own, as stale files would be summed in.
        own_dir = "PROMETHEUS_MULTIPROC_DIR" not in os.environ
        if own_dir:
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix=f"crm-{service}-")
        try:
            # Each worker process builds its own app (and reads the same environment).
            uvicorn.run(
                f"services.{service}.app:create_app",
                factory=True,
                workers=settings.workers,
                **options,
            )
        finally:
            if own_dir:
                shutil.rmtree(os.environ.pop("PROMETHEUS_MULTIPROC_DIR"), ignore_errors=True)
        return
    app_module = importlib.import_module(f"services.{service}.app")
    try:
        uvicorn.run(app_module.create_app(settings), **options)
    except KeyboardInterrupt:
        if not WORKER_ENDED.is_set():
            raise
    if WORKER_ENDED.is_set():
        sys.exit(f"{service} stopped: a background worker ended (see the log above)")


class DatabaseSettings(BaseSettings):
    database_url: str
    database_schema: str | None = None


def _database_settings(service: str) -> DatabaseSettings:
    """Only the database part of a service's settings: a migration job needs no JWT key."""
    service_settings = _settings_class(service)
    prefix = service_settings.model_config.get("env_prefix", "")

    class ServiceDatabase(DatabaseSettings):
        model_config = SettingsConfigDict(env_prefix=prefix, extra="ignore")
        database_url: str = service_settings.model_fields["database_url"].default

    return ServiceDatabase()


async def _migrate(service: str, settings: ServiceSettings | DatabaseSettings) -> None:
    engine = create_engine(settings.database_url, settings.database_schema)
    try:
        await migrate(engine, settings, SERVICES_DIR / service / "migrations")
    finally:
        await engine.dispose()


def dev_secret(data_dir: Path) -> str:
    """The dev signing secret: from CRM_JWT_SECRET, else a random one kept in the data dir."""
    if os.environ.get("CRM_JWT_SECRET"):
        return os.environ["CRM_JWT_SECRET"]
    path = data_dir / SECRET_FILE
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


def _scopes(value: str) -> list[str]:
    """The --scope list, each a scope the services check: a misspelt one ("contact:read")
    made a token that was refused everywhere, with no word why."""
    unknown = [scope for scope in value.split() if scope not in ALL_SCOPES]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown scope {', '.join(unknown)} (known: {' '.join(ALL_SCOPES)})"
        )
    return value.split()


def token(scopes: list[str], subject: str, hours: float, data_dir: Path) -> None:
    # Only a secret the services have: a new one made here (run outside the folder `make up`
    # ran in) signed tokens every service refused, with no word why.
    if not os.environ.get("CRM_JWT_SECRET") and not (data_dir / SECRET_FILE).exists():
        sys.exit(
            f"no dev secret in {data_dir / SECRET_FILE}: run `make up` first (it writes one),"
            " run this where it ran or pass its --data-dir, or set CRM_JWT_SECRET"
        )
    settings = AuthSettings(secret=dev_secret(data_dir))
    print(mint_token(settings, subject=subject, scopes=scopes, ttl=timedelta(hours=hours)))


def up(data_dir: Path, broker_port: int) -> None:
    from shared.embedded_broker import start_broker, stop_broker

    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    # Stop on Ctrl-C and on SIGTERM alike, even where the parent started us with SIGINT ignored
    # (a background job of a non-interactive shell, where Python keeps it ignored).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "CRM_JWT_SECRET": dev_secret(data_dir)}
    broker = None
    if not os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        print(f"starting the embedded broker on 127.0.0.1:{broker_port} (its log is in memory)")
        broker = start_broker(broker_port, log_file=data_dir / "broker.log")
        env["KAFKA_BOOTSTRAP_SERVERS"] = f"127.0.0.1:{broker_port}"
        env.setdefault("KAFKA_FETCH_MAX_WAIT_MS", str(EMBEDDED_FETCH_WAIT_MS))
        env.setdefault("KAFKA_SESSION_TIMEOUT_MS", "1000")
        env.setdefault("KAFKA_HEARTBEAT_INTERVAL_MS", "300")
    children: dict[str, subprocess.Popen[bytes]] = {}
    urls: dict[str, str] = {}

    def start(service: str) -> subprocess.Popen[bytes]:
        with open(data_dir / f"{service}.log", "ab") as log:  # the child keeps its own copy
            return subprocess.Popen(
                [sys.executable, "-m", "shared.cli", "serve", service],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            )

    try:
        for service in available_services():
            prefix = service.upper()
            env.setdefault(f"{prefix}_DATABASE_URL", f"sqlite+aiosqlite:///{data_dir / service}.db")
            default_port = _settings_class(service).model_fields["port"].default
            settings_port = int(env.get(f"{prefix}_PORT", default_port))
            env[f"{prefix}_PORT"] = str(settings_port)
            children[service] = start(service)
            urls[service] = f"http://127.0.0.1:{settings_port}"
        _wait_healthy(urls, children, data_dir)
        print("\nCRM platform is up:")
        for service, url in urls.items():
            print(f"  {service:<10} {url}   (API docs: {url}/docs)")
        print(f"\nlogs and SQLite files: {data_dir}")
        # `crm token` finds the secret in ./.crm-data; started with another, it must be told.
        token_cmd = ".venv/bin/crm token"
        if data_dir != DEFAULT_DATA_DIR.resolve():
            token_cmd += f" --data-dir {shlex.quote(str(data_dir))}"
        print(f"a token with every scope:  {token_cmd}")
        print(f'one with some scopes:      {token_cmd} --scope "contacts:read"')
        print("stop everything with Ctrl-C")
        _restart_what_stops(children, start, data_dir)
    except KeyboardInterrupt:
        print("\nstopping...")
    finally:
        for child in children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children.values():
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
        if broker is not None:
            stop_broker(broker)


def _restart_what_stops(
    children: dict[str, subprocess.Popen[bytes]],
    start: Callable[[str], subprocess.Popen[bytes]],
    data_dir: Path,
) -> None:
    """Start a service again when it stops (a crash, or a worker that ended), as Docker's
    restart policy or Kubernetes would; the topics and the outboxes hold what it missed.
    One that stopped five times within a minute keeps failing: then everything stops."""
    stops: dict[str, list[float]] = {service: [] for service in children}
    while True:
        time.sleep(0.5)
        for service, child in children.items():
            if child.poll() is None:
                continue
            now = time.monotonic()
            stops[service] = [at for at in stops[service] if now - at < 60] + [now]
            if len(stops[service]) >= 5:
                print(f"{service} stopped 5 times within a minute; see {data_dir}/{service}.log")
                return
            print(f"{service} stopped (exit status {child.returncode}); starting it again")
            children[service] = start(service)


def _wait_healthy(
    urls: dict[str, str],
    children: dict[str, subprocess.Popen[bytes]],
    data_dir: Path,
    timeout_s: float = 60.0,
) -> None:
    deadline = time.monotonic() + timeout_s
    pending = dict(urls)
    while pending and time.monotonic() < deadline:
        for service, url in list(pending.items()):
            if children[service].poll() is not None:
                raise SystemExit(f"{service} failed to start; see {data_dir / service}.log")
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    del pending[service]
            except httpx.HTTPError:
                pass
        time.sleep(0.2)
    if pending:
        raise SystemExit(f"not ready after {timeout_s}s: {sorted(pending)}; see logs in {data_dir}")


def docs(*, check: bool) -> None:
    from shared import contract_docs

    if check:
        if stale := contract_docs.stale():
            names = ", ".join(str(p.relative_to(ROOT)) for p in stale)
            sys.exit(f"out of date (run `crm docs`): {names}")
        return
    for path in contract_docs.write():
        print(f"wrote {path.relative_to(ROOT)}")


def _service_commands() -> dict[str, dict[str, Callable[[], None]]]:
    """Each service's ``COMMANDS`` from its optional ``commands.py``."""
    return {
        service: importlib.import_module(f"services.{service}.commands").COMMANDS
        for service in available_services()
        if (SERVICES_DIR / service / "commands.py").exists()
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="crm", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    up_cmd = commands.add_parser("up", help="start the broker and every service locally")
    up_cmd.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    up_cmd.add_argument("--broker-port", type=int, default=9092)
    serve_cmd = commands.add_parser("serve", help="run one service")
    serve_cmd.add_argument("service")
    token_cmd = commands.add_parser("token", help="print a dev JWT")
    token_cmd.add_argument(
        "--scope",
        type=_scopes,
        default=" ".join(ALL_SCOPES),
        help='space-separated, e.g. "contacts:read support:write"',
    )
    token_cmd.add_argument("--subject", default="dev")
    token_cmd.add_argument("--hours", type=float, default=12.0)
    token_cmd.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    migrate_cmd = commands.add_parser(
        "migrate", help="apply a service's database migrations and exit (a deploy job)"
    )
    migrate_cmd.add_argument("service")
    commands.add_parser(
        "create-topics",
        help="create the platform's topics on KAFKA_BOOTSTRAP_SERVERS, or set the platform's"
        " configs on existing ones, and exit",
    )
    service_commands = _service_commands()
    for service, own in service_commands.items():
        service_cmd = commands.add_parser(service, help=f"{service}'s own commands")
        subcommands = service_cmd.add_subparsers(dest="service_command", required=True)
        for name, run in own.items():
            subcommands.add_parser(name, help=run.__doc__)
    docs_cmd = commands.add_parser(
        "docs", help="write the event JSON Schemas, AsyncAPI and OpenAPI documents into docs/"
    )
    docs_cmd.add_argument("--check", action="store_true", help="fail if a file is out of date")
    args = parser.parse_args(argv)
    if args.command == "docs":
        docs(check=args.check)
    elif args.command == "migrate":
        _known(args.service)
        asyncio.run(_migrate(args.service, _database_settings(args.service)))
    elif args.command in service_commands:
        service_commands[args.command][args.service_command]()
    elif args.command == "create-topics":
        try:
            changes = asyncio.run(ensure_topics(KafkaSettings()))
        except TopicsNotCreated as exc:
            sys.exit(f"the broker refused to create topics: {exc}")
        except TopicsNotConfigured as exc:
            sys.exit(f"the topics' configs are not the platform's: {exc}")
        print("\n".join(changes) or "every topic exists with the platform's configs")
    elif args.command == "up":
        up(args.data_dir, args.broker_port)
    elif args.command == "serve":
        serve(args.service)
    else:
        token(args.scope, args.subject, args.hours, args.data_dir)


if __name__ == "__main__":
    main()
