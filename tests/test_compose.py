"""Static checks of the container deployment: docker-compose.yml, deploy/Dockerfile,
.dockerignore and the PostgreSQL init script.

No Docker engine is needed. The compose file is validated against the official Compose
Specification JSON Schema, which the ``check-jsonschema`` package ships (the schema behind its
``check-compose-spec`` hook), and then checked for what the platform relies on: the services
wait for a healthy database and for the topics, secrets come from the environment, the bus
topics are created as DESIGN.md section 3 names them, and the image runs as a non-root user.
"""

import copy
import re
import shlex
from pathlib import Path
from urllib.parse import urlsplit

import check_jsonschema
import jsonschema
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
TOPICS_FILE = ROOT / "shared" / "topics.py"

PORTS = {"contacts": 8001, "sales": 8002, "marketing": 8003, "support": 8004, "analytics": 8005}
# Every service that exists (has an app) must be in the compose file.
CRM_SERVICES = {
    path.parent.name: PORTS[path.parent.name] for path in (ROOT / "services").glob("*/app.py")
}
ALL_DEPARTMENT_DATABASES = set(PORTS)
TOPICS = {
    "crm.interactions.v1",
    "crm.contacts.v1",
    "crm.sales.v1",
    "crm.marketing.v1",
    "crm.support.v1",
    "crm.analytics.v1",
    "crm.deadletter.v1",
    "crm.sales.external-orders.v1",
}
COMPACTED_TOPICS = {"crm.contacts.v1"}
TOPIC_PARTITIONS = 6

# Environment used to interpolate the file the way `docker compose` would.
TEST_ENV = {"CRM_JWT_SECRET": "test-only-secret"}
SECRET_KEY = re.compile(r"(SECRET|PASSWORD|PASSWD|TOKEN|API_KEY|PRIVATE_KEY|CREDENTIAL)")


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------


def load_compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def compose_schema() -> dict:
    """The Compose Specification schema vendored by check-jsonschema."""
    package_dir = Path(check_jsonschema.__file__).parent
    found = sorted(package_dir.rglob("compose-spec.json"))
    assert found, f"check-jsonschema {package_dir} no longer ships compose-spec.json"
    return yaml.safe_load(found[0].read_text())  # JSON is YAML


def validate_against_spec(document: dict) -> list[str]:
    schema = compose_schema()
    validator_cls = jsonschema.validators.validator_for(schema)
    validator_cls.check_schema(schema)
    validator = validator_cls(schema, format_checker=validator_cls.FORMAT_CHECKER)
    return [
        f"{'/'.join(map(str, error.absolute_path)) or '<root>'}: {error.message}"
        for error in validator.iter_errors(document)
    ]


class InterpolationError(ValueError):
    pass


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OPERATORS = (":-", ":?", ":+", "-", "?", "+")


def interpolate(text: str, env: dict[str, str]) -> tuple[str, set[str]]:
    """Compose-style interpolation of one string.

    Supports ``$$``, ``$NAME``, ``${NAME}``, ``${NAME:-default}``, ``${NAME-default}``,
    ``${NAME:?error}``, ``${NAME?error}``, ``${NAME:+alt}``, ``${NAME+alt}`` with nested
    expressions in the default/alt/error part. Returns the result and the variables referenced;
    raises InterpolationError for a malformed expression or a missing required variable.
    """
    out: list[str] = []
    names: set[str] = set()
    i = 0
    while i < len(text):
        char = text[i]
        if char != "$":
            out.append(char)
            i += 1
            continue
        nxt = text[i + 1 : i + 2]
        if nxt == "$":
            out.append("$")
            i += 2
            continue
        if nxt == "{":
            end = _matching_brace(text, i + 1)
            value, used = _expand_braced(text[i + 2 : end], env)
            out.append(value)
            names |= used
            i = end + 1
            continue
        match = _NAME.match(text, i + 1)
        if not match:
            raise InterpolationError(f"bare '$' at offset {i} in {text!r} (write '$$')")
        names.add(match.group())
        out.append(env.get(match.group(), ""))
        i = match.end()
    return "".join(out), names


def _matching_brace(text: str, open_at: int) -> int:
    depth = 0
    for j in range(open_at, len(text)):
        if text[j] == "{" and text[j - 1] == "$":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return j
    raise InterpolationError(f"unclosed '${{' in {text!r}")


def _expand_braced(body: str, env: dict[str, str]) -> tuple[str, set[str]]:
    match = _NAME.match(body)
    if not match:
        raise InterpolationError(f"invalid variable name in '${{{body}}}'")
    name, rest = match.group(), body[match.end() :]
    if not rest:
        return env.get(name, ""), {name}
    operator = next((op for op in _OPERATORS if rest.startswith(op)), None)
    if operator is None:
        raise InterpolationError(f"invalid operator in '${{{body}}}'")
    argument, used = interpolate(rest[len(operator) :], env)
    used.add(name)
    is_set = name in env
    non_empty = bool(env.get(name))
    present = non_empty if operator.startswith(":") else is_set
    if operator in (":-", "-"):
        return (env[name] if present else argument), used
    if operator in (":+", "+"):
        return (argument if present else ""), used
    if not present:  # ":?" and "?"
        raise InterpolationError(f"required variable {name} is missing: {argument}")
    return env[name], used


def walk_strings(node, path=()):
    """Every string value in the document (compose interpolates values, not keys)."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from walk_strings(value, (*path, str(key)))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from walk_strings(value, (*path, str(index)))
    elif isinstance(node, str):
        yield path, node


def interpolate_document(node, env: dict[str, str]):
    if isinstance(node, dict):
        return {key: interpolate_document(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [interpolate_document(value, env) for value in node]
    if isinstance(node, str):
        return interpolate(node, env)[0]
    return node


def environment_of(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return {key: (None if value is None else str(value)) for key, value in env.items()}


def depends_on_of(service: dict) -> dict[str, dict]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return {name: {"condition": "service_started"} for name in deps}
    return deps


def published_ports(service: dict) -> set[tuple[int, int]]:
    """(host port, container port) pairs, after interpolation with TEST_ENV."""
    pairs = set()
    for entry in service.get("ports") or []:
        if isinstance(entry, dict):
            pairs.add((int(entry["published"]), int(entry["target"])))
            continue
        text = interpolate(str(entry), TEST_ENV)[0].split("/")[0]
        parts = text.split(":")
        pairs.add((int(parts[-2]), int(parts[-1])))
    return pairs


def is_pure_variable(value: str) -> bool:
    """True if the whole value is one ${...} (or $NAME) expression."""
    if re.fullmatch(r"\$[A-Za-z_][A-Za-z0-9_]*", value):
        return True
    return value.startswith("${") and _matching_brace(value, 1) == len(value) - 1


def kafka_topic_commands(service: dict) -> list[list[str]]:
    """The argument lists of every kafka-topics.sh call in a service's command."""
    command = service.get("command")
    script = command if isinstance(command, str) else "\n".join(command or [])
    script = script.replace("\\\n", " ")
    calls = []
    for line in script.splitlines():
        for part in re.split(r"&&|;|\|\|", line):
            words = shlex.split(part, comments=True)
            if words and words[0].endswith("kafka-topics.sh"):
                calls.append(words)
    return calls


def option_values(words: list[str], option: str) -> list[str]:
    values = []
    for index, word in enumerate(words):
        if word == option and index + 1 < len(words):
            values.append(words[index + 1])
        elif word.startswith(option + "="):
            values.append(word.split("=", 1)[1])
    return values


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuations joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        pending += line
        keyword, _, arguments = pending.partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        pending = ""
    assert not pending, "Dockerfile ends inside a line continuation"
    return instructions


def dockerignore_patterns() -> list[str]:
    patterns = []
    for line in DOCKERIGNORE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            patterns.append(line.lstrip("/").rstrip("/"))
    return patterns


def _dockerignore_regex(pattern: str) -> re.Pattern:
    """Docker's pattern syntax: '*' and '?' stop at '/', '**' crosses directories."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out.append(pattern[i : end + 1])
            i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out))


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore matching: last match wins, and a pattern that matches a
    directory excludes everything below it."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        regex = _dockerignore_regex(pattern.lstrip("!"))
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            excluded = not negate
    return excluded


# --------------------------------------------------------------------------------------
# Compose Specification schema
# --------------------------------------------------------------------------------------


def test_compose_file_matches_the_compose_specification():
    raw = load_compose()
    assert validate_against_spec(raw) == []
    assert validate_against_spec(interpolate_document(raw, TEST_ENV)) == []


def test_schema_check_rejects_a_broken_file():
    """The validator is not vacuous: typical mistakes fail it."""
    broken = copy.deepcopy(load_compose())
    broken["services"]["contacts"]["enviroment"] = {"X": "1"}  # misspelt key
    broken["services"]["kafka-init"]["depends_on"] = "postgres"  # neither list nor mapping
    broken["services"]["postgres"]["healthcheck"]["retries"] = [3]
    errors = validate_against_spec(broken)
    assert any("contacts" in error for error in errors), errors
    assert any("kafka-init/depends_on" in error for error in errors), errors
    assert any("postgres/healthcheck" in error for error in errors), errors


def test_interpolation_expressions_are_well_formed():
    raw = load_compose()
    referenced: set[str] = set()
    for path, value in walk_strings(raw):
        try:
            referenced |= interpolate(value, TEST_ENV)[1]
        except InterpolationError as error:
            raise AssertionError(f"{'/'.join(path)}: {error}") from None
    assert {"CRM_JWT_SECRET", "POSTGRES_PASSWORD"} <= referenced


def test_interpolation_helper_understands_compose_syntax():
    env = {"SET": "v", "EMPTY": ""}
    assert interpolate("a$$b", env)[0] == "a$b"
    assert interpolate("${SET:-d}/${UNSET:-d}/${EMPTY:-d}/${EMPTY-d}", env)[0] == "v/d/d/"
    assert interpolate("${UNSET:-${SET}}", env) == ("v", {"UNSET", "SET"})
    assert interpolate("${SET:+alt}${UNSET:+alt}", env)[0] == "alt"
    for bad in ("${", "${1X}", "${X!y}", "cost $5", "${A:-${B}"):
        try:
            interpolate(bad, env)
        except InterpolationError:
            continue
        raise AssertionError(f"{bad!r} should be rejected")


def test_the_stack_refuses_to_start_without_a_jwt_secret():
    raw = load_compose()
    for env in ({}, {"CRM_JWT_SECRET": ""}):
        try:
            interpolate_document(raw, env)
        except InterpolationError as error:
            assert "CRM_JWT_SECRET" in str(error)
        else:
            raise AssertionError(f"compose would start with CRM_JWT_SECRET={env!r}")


# --------------------------------------------------------------------------------------
# Services
# --------------------------------------------------------------------------------------


def test_every_service_has_an_image_or_a_build():
    services = load_compose()["services"]
    expected = {"kafka", "kafka-init", "postgres", *CRM_SERVICES}
    assert expected <= set(services), f"missing services: {expected - set(services)}"
    for name, service in services.items():
        assert service.get("image") or service.get("build"), f"{name}: neither image nor build"
        image = service.get("image")
        if image:
            assert ":" in image and not image.endswith(":latest"), f"{name}: pin {image!r}"


def test_depends_on_targets_exist_and_have_no_cycle():
    services = load_compose()["services"]
    graph = {name: set(depends_on_of(service)) for name, service in services.items()}
    for name, deps in graph.items():
        assert deps <= set(services), f"{name} depends on unknown {deps - set(services)}"
    for name, service in services.items():
        for dep, spec in depends_on_of(service).items():
            if spec.get("condition") == "service_healthy":
                assert "healthcheck" in services[dep], f"{name} waits for {dep}'s health check"
    visiting, done = set(), set()

    def visit(node):
        assert node not in visiting, f"depends_on cycle through {node}"
        if node in done:
            return
        visiting.add(node)
        for dep in graph[node]:
            visit(dep)
        visiting.discard(node)
        done.add(node)

    for node in graph:
        visit(node)


def test_crm_services_are_built_from_the_shared_dockerfile():
    services = load_compose()["services"]
    for name in CRM_SERVICES:
        build = services[name]["build"]
        assert isinstance(build, dict), f"{name}: build must name the Dockerfile"
        assert (ROOT / build.get("context", ".")).resolve() == ROOT, name
        assert (ROOT / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE, name
        assert environment_of(services[name])["SERVICE"] == name
        assert services[name].get("restart") == "unless-stopped", name


def test_crm_services_wait_for_postgres_and_the_topics():
    services = load_compose()["services"]
    for name in CRM_SERVICES:
        deps = depends_on_of(services[name])
        assert deps.get("postgres", {}).get("condition") == "service_healthy", name
        assert deps.get("kafka-init", {}).get("condition") == "service_completed_successfully", name


def test_crm_service_ports_are_published_and_health_checked():
    services = load_compose()["services"]
    for name, port in CRM_SERVICES.items():
        service = services[name]
        assert (port, port) in published_ports(service), f"{name}: {port} not published"
        env = environment_of(service)
        prefix = name.upper()
        assert env.get(f"{prefix}_PORT", str(port)) == str(port), name
        assert env.get(f"{prefix}_HOST", "0.0.0.0") == "0.0.0.0", f"{name} must bind 0.0.0.0"
        test = service["healthcheck"]["test"]
        command = test if isinstance(test, str) else " ".join(test)
        assert f"http://localhost:{port}/readyz" in command, f"{name}: health check URL"
        assert "urllib.request" in command, f"{name}: the image has python but no curl"
        if isinstance(test, list):
            assert test[0] in ("CMD", "CMD-SHELL"), name


def test_crm_services_reach_kafka_and_their_own_database():
    services = load_compose()["services"]
    advertised = environment_of(services["kafka"])["KAFKA_ADVERTISED_LISTENERS"]
    for name in CRM_SERVICES:
        env = environment_of(services[name])
        assert env["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
        assert "//kafka:9092" in advertised
        assert env["KAFKA_ENABLE_IDEMPOTENCE"] == "true"
        assert env["KAFKA_FETCH_MAX_WAIT_MS"] == "100"
        raw_url = env[f"{name.upper()}_DATABASE_URL"]
        url = urlsplit(interpolate(raw_url, TEST_ENV)[0])
        assert url.scheme == "postgresql+asyncpg", name
        assert (url.hostname, url.port, url.path) == ("postgres", 5432, f"/{name}"), name
        assert url.username == environment_of(services["postgres"])["POSTGRES_USER"], name
        password_part = urlsplit(raw_url).netloc.split("@")[0].split(":", 1)[1]
        assert "${POSTGRES_PASSWORD" in password_part, f"{name}: literal database password"


def test_secrets_come_from_variables_never_literals():
    services = load_compose()["services"]
    for name, service in services.items():
        for key, value in environment_of(service).items():
            if SECRET_KEY.search(key) and value is not None:
                assert is_pure_variable(value), f"{name}: {key} is a literal"
    for name in CRM_SERVICES:
        secret = environment_of(services[name])["CRM_JWT_SECRET"]
        assert re.fullmatch(r"\$\{CRM_JWT_SECRET:?\?[^}]*\}", secret), (
            f"{name}: CRM_JWT_SECRET must be required from the environment, got {secret!r}"
        )


# --------------------------------------------------------------------------------------
# Kafka
# --------------------------------------------------------------------------------------


def test_kafka_runs_kraft_with_in_network_and_host_listeners():
    kafka = load_compose()["services"]["kafka"]
    assert kafka["image"] == "apache/kafka:3.9.0"
    env = environment_of(kafka)
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env.get("CLUSTER_ID"), "KRaft storage needs a CLUSTER_ID"
    assert "KAFKA_ZOOKEEPER_CONNECT" not in env

    protocol_map = dict(
        item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
    )
    listeners = {
        item.split("://")[0]: item.split("://")[1] for item in env["KAFKA_LISTENERS"].split(",")
    }
    advertised = {
        item.split("://")[0]: item.split("://")[1]
        for item in env["KAFKA_ADVERTISED_LISTENERS"].split(",")
    }
    assert set(listeners) <= set(protocol_map)
    assert set(advertised) <= set(listeners)

    controller = env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    assert controller in listeners and controller not in advertised
    voters = env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")
    assert len(voters) == 1
    voter_id, voter_address = voters[0].split("@")
    assert voter_id == str(env["KAFKA_NODE_ID"])
    assert voter_address == f"kafka:{listeners[controller].rsplit(':', 1)[1]}"
    assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] in advertised

    assert "kafka:9092" in advertised.values()
    assert "localhost:29092" in advertised.values()
    host_listener = next(
        name for name, address in advertised.items() if address == "localhost:29092"
    )
    assert listeners[host_listener].endswith(":29092")
    assert (29092, 29092) in published_ports(kafka)
    # Single node: internal topics must not ask for 3 replicas.
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"
    assert env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == "1"
    assert env.get("KAFKA_AUTO_CREATE_TOPICS_ENABLE") == "false"
    assert "healthcheck" in kafka


def test_kafka_init_creates_every_topic():
    services = load_compose()["services"]
    init = services["kafka-init"]
    assert init["image"] == services["kafka"]["image"]
    assert depends_on_of(init)["kafka"]["condition"] == "service_healthy"
    assert init.get("restart", "no") == "no", "a one-shot job must not restart"

    created: dict[str, list[str]] = {}
    for words in kafka_topic_commands(init):
        if "--create" not in words:
            continue
        assert words[0] == "/opt/kafka/bin/kafka-topics.sh", words
        assert "--if-not-exists" in words, f"not re-runnable: {words}"
        assert option_values(words, "--bootstrap-server") == ["kafka:9092"], words
        (topic,) = option_values(words, "--topic")
        assert topic not in created, f"{topic} created twice"
        assert option_values(words, "--partitions") == [str(TOPIC_PARTITIONS)], topic
        created[topic] = option_values(words, "--config")
    assert set(created) == TOPICS

    for topic, configs in created.items():
        policy = dict(config.split("=", 1) for config in configs).get("cleanup.policy", "delete")
        expected = "compact" if topic in COMPACTED_TOPICS else "delete"
        assert policy == expected, f"{topic}: cleanup.policy={policy}"


def test_kafka_init_matches_the_topics_the_code_uses():
    """Every topic name in shared/topics.py is created by kafka-init."""
    in_code = set(re.findall(r"[\"'](crm\.[a-z0-9_.-]+\.v\d+)[\"']", TOPICS_FILE.read_text()))
    assert in_code, "no topic names found in shared/topics.py"
    created = {
        option_values(words, "--topic")[0]
        for words in kafka_topic_commands(load_compose()["services"]["kafka-init"])
        if "--create" in words
    }
    assert in_code <= created, f"not created by kafka-init: {in_code - created}"


# --------------------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------------------


def test_postgres_creates_one_database_per_service_and_is_health_checked():
    postgres = load_compose()["services"]["postgres"]
    assert postgres["image"] == "postgres:16-alpine"
    env = environment_of(postgres)
    assert env["POSTGRES_USER"] == "crm"
    assert env["POSTGRES_PASSWORD"] == "${POSTGRES_PASSWORD:-crm}"
    test = postgres["healthcheck"]["test"]
    assert "pg_isready" in (test if isinstance(test, str) else " ".join(test))

    init_scripts = []
    for volume in postgres["volumes"]:
        source, _, target = (volume if isinstance(volume, str) else "").partition(":")
        if target.startswith("/docker-entrypoint-initdb.d/"):
            init_scripts.append(ROOT / source)
    assert [path.relative_to(ROOT).as_posix() for path in init_scripts] == [
        "deploy/postgres/init-databases.sql"
    ]
    sql = init_scripts[0].read_text()
    created = set(re.findall(r"CREATE\s+DATABASE\s+\"?(\w+)\"?", sql, flags=re.IGNORECASE))
    assert created == ALL_DEPARTMENT_DATABASES


# --------------------------------------------------------------------------------------
# Dockerfile and build context
# --------------------------------------------------------------------------------------


def test_dockerfile_is_multi_stage_slim_and_non_root():
    instructions = dockerfile_instructions()
    args = {}
    for keyword, arguments in instructions:
        if keyword == "ARG" and "=" in arguments:
            key, value = arguments.split("=", 1)
            args.setdefault(key, value)
    stages = [arguments for keyword, arguments in instructions if keyword == "FROM"]
    assert len(stages) >= 2, "expected a multi-stage build"
    for stage in stages:
        image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], stage.split()[0])
        assert image == "python:3.11-slim", stage

    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    users = [arguments for keyword, arguments in instructions[last_from:] if keyword == "USER"]
    assert users, "the runtime stage must switch to a non-root USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0", ""), f"USER {users[-1]} is root"

    keywords = [keyword for keyword, _ in instructions]
    assert "HEALTHCHECK" not in keywords, "health checks belong to compose / Kubernetes"
    assert ("ENV", "SERVICE=contacts") in instructions or any(
        keyword == "ENV" and re.search(r"\bSERVICE=contacts\b", arguments)
        for keyword, arguments in instructions[last_from:]
    )
    cmd = [arguments for keyword, arguments in instructions if keyword == "CMD"][-1]
    assert cmd == '["sh", "-c", "exec crm serve \\"$SERVICE\\""]', cmd


def test_dockerfile_bakes_in_no_secrets():
    for keyword, arguments in dockerfile_instructions():
        if keyword in ("ENV", "ARG"):
            for key in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=", arguments):
                assert not SECRET_KEY.search(key), f"{keyword} {key} in the image"
        if keyword in ("COPY", "ADD"):
            assert not re.search(r"(^|\s)\.env\b|\.pem\b|\.key\b", arguments), arguments


def test_build_context_keeps_what_the_image_needs():
    patterns = dockerignore_patterns()
    copied = []
    for keyword, arguments in dockerfile_instructions():
        if keyword == "COPY" and "--from=" not in arguments:
            words = [word for word in arguments.split() if not word.startswith("--")]
            copied.extend(words[:-1])
    assert {"pyproject.toml", "shared", "services"} <= set(copied)
    for source in copied:
        assert not dockerignored(source, patterns), f"{source} is excluded by .dockerignore"
    for needed in ("shared/__init__.py", "services/contacts/app.py", "deploy/Dockerfile"):
        assert not dockerignored(needed, patterns), needed
    for unwanted in (
        ".git",
        ".venv",
        ".crm-data",
        "contacts.db",
        ".crm-data/sales.db",
        "services/__pycache__/x.pyc",
        ".pytest_cache",
        ".env",
    ):
        assert dockerignored(unwanted, patterns), f"{unwanted} would be sent to the builder"


def test_dockerignore_matcher_follows_docker_rules():
    patterns = ["*.db", "**/__pycache__", "docs", "!docs/keep.md", "b/**/*.csv"]
    assert dockerignored("a.db", patterns)
    assert not dockerignored("sub/a.db", patterns)  # "*.db" is anchored at the root
    assert dockerignored("__pycache__/m.pyc", patterns)
    assert dockerignored("x/y/__pycache__/m.pyc", patterns)
    assert dockerignored("b/r.csv", patterns) and dockerignored("b/x/y/r.csv", patterns)
    assert not dockerignored("c/r.csv", patterns)
    assert dockerignored("docs/guide.md", patterns)
    assert not dockerignored("docs/keep.md", patterns)
