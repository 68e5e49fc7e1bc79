"""The container stack (docker-compose.yml, Dockerfile), checked statically: Docker is not needed."""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from shared.config import WEBHOOK_SECRET_PREFIX, Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

ENV_PREFIX = "LEADROUTER_"
SETTINGS_ENV = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
SERVICES = {"kafka", "postgres", "migrate", "lead_router", "sla_monitor"}
HTTP_SERVICES = {"lead_router": 8000, "sla_monitor": 8001}
APP_SERVICES = ["migrate", *HTTP_SERVICES]
# What the operator must supply (`${VAR:?...}`); everything else falls back to its compose default.
REQUIRED_FROM_OPERATOR = {"LEADROUTER_ADMIN_TOKEN": "test-admin-token", "LEADROUTER_SECRET_KEY": "test-secret-key"}

_INTERPOLATION = re.compile(r"\$\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


@pytest.fixture(scope="module")
def compose_text() -> str:
    return COMPOSE_FILE.read_text()


@pytest.fixture(scope="module")
def compose(compose_text: str) -> dict[str, Any]:
    return yaml.safe_load(compose_text)


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def _environment(service: Mapping[str, Any]) -> dict[str, str]:
    """A service's `environment`, in either of the two forms compose allows."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def _interpolate(value: str, given: Mapping[str, str]) -> str:
    """Resolve `${VAR}`, `${VAR:-default}` and `${VAR:?error}` the way compose does, from `given` only."""

    def resolve(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"] or "", match["arg"] or ""
        if given.get(name):
            return given[name]
        if op.endswith("?"):
            raise LookupError(f"compose requires {name} ({arg}) and the test did not give it")
        return arg if op.endswith("-") else ""

    return _INTERPOLATION.sub(resolve, value)


def _command(service: Mapping[str, Any]) -> list[str]:
    command = service["command"]
    return command.split() if isinstance(command, str) else list(command)


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        instructions.append((keyword.upper(), args.strip()))
        pending = ""
    return instructions


def _module_exists(module: str) -> bool:
    path = ROOT.joinpath(*module.split("."))
    return (path / "__main__.py").is_file() or path.with_suffix(".py").is_file()


# --- docker-compose.yml -------------------------------------------------------------------------


def test_all_services_are_defined(services: dict[str, Any]) -> None:
    assert set(services) >= SERVICES


def test_kafka_is_apache_kafka_in_kraft_mode(compose_text: str, services: dict[str, Any]) -> None:
    kafka = services["kafka"]
    env = _environment(kafka)
    assert kafka["image"].startswith("apache/kafka:")
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"].startswith(f"{env['KAFKA_NODE_ID']}@")
    assert env["KAFKA_ADVERTISED_LISTENERS"] == "PLAINTEXT://kafka:9092"
    # The services create their topics with the partition count they are configured for.
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert "kafka-broker-api-versions.sh" in " ".join(kafka["healthcheck"]["test"])
    assert "zookeeper" not in compose_text.lower()


def test_postgres_matches_the_database_url(compose: dict[str, Any], services: dict[str, Any]) -> None:
    postgres = services["postgres"]
    env = _environment(postgres)
    assert postgres["image"] == "postgres:16"
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    assert any(volume.endswith(":/var/lib/postgresql/data") for volume in postgres["volumes"])

    url = urlsplit(compose["x-leadrouter-env"]["LEADROUTER_DATABASE_URL"])
    assert url.scheme == "postgresql+asyncpg"
    assert (url.hostname, url.port) == ("postgres", 5432)
    assert (url.username, url.password) == (env["POSTGRES_USER"], env["POSTGRES_PASSWORD"])
    assert url.path.lstrip("/") == env["POSTGRES_DB"]


def test_migrate_runs_once_after_postgres_is_healthy(services: dict[str, Any]) -> None:
    migrate = services["migrate"]
    assert "build" in migrate
    assert _command(migrate) == ["leadrouter", "migrate"]
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert migrate["restart"] == "no"

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert "leadrouter" in scripts


@pytest.mark.parametrize(("name", "port"), HTTP_SERVICES.items())
def test_http_service_waits_for_migrations_and_kafka(services: dict[str, Any], name: str, port: int) -> None:
    service = services[name]
    assert "build" in service
    assert _command(service) == ["python", "-m", f"services.{name}"]
    assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert service["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert f"{port}:{port}" in service["ports"]
    probe = " ".join(service["healthcheck"]["test"])
    assert f":{port}/readyz" in probe


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_services_share_one_environment(compose: dict[str, Any], services: dict[str, Any],
                                            name: str) -> None:
    assert _environment(services[name]) == _environment({"environment": compose["x-leadrouter-env"]})


def test_every_leadrouter_variable_is_a_setting(compose_text: str) -> None:
    names = set(re.findall(r"\bLEADROUTER_\w+", compose_text))
    unknown = {name for name in names - SETTINGS_ENV if not name.startswith(WEBHOOK_SECRET_PREFIX)}
    assert names, "the compose file configures nothing"
    assert not unknown, f"not fields of shared.config.Settings: {sorted(unknown)}"


def _compose_settings(compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The Settings a container of the stack would see, with only the operator's required values given."""
    for name in [name for name in os.environ if name.startswith(ENV_PREFIX)]:
        monkeypatch.delenv(name)
    for name, value in _environment({"environment": compose["x-leadrouter-env"]}).items():
        monkeypatch.setenv(name, _interpolate(value, REQUIRED_FROM_OPERATOR))
    return Settings()


def test_compose_environment_is_valid_settings(compose: dict[str, Any],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _compose_settings(compose, monkeypatch)
    assert settings.database_url.startswith("postgresql+asyncpg://")
    assert settings.kafka_bootstrap == "kafka:9092"
    assert settings.host == "0.0.0.0"
    assert settings.admin_token == REQUIRED_FROM_OPERATOR["LEADROUTER_ADMIN_TOKEN"]
    assert settings.topic_partitions == 12
    assert settings.topic_prefix == "leadrouter"
    assert settings.fiscal_year_start_month == 1
    assert (settings.router_port, settings.monitor_port) == (8000, 8001)
    assert settings.webhook_secret("generic") is None  # empty unless the operator sets one


def test_admin_token_must_be_given(compose: dict[str, Any]) -> None:
    with pytest.raises(LookupError, match="LEADROUTER_ADMIN_TOKEN"):
        _interpolate(compose["x-leadrouter-env"]["LEADROUTER_ADMIN_TOKEN"], {})


def test_idempotent_producer_is_enabled(compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """Apache Kafka supports the idempotent producer; only the bundled dev broker needs it off."""
    assert compose["x-leadrouter-env"]["LEADROUTER_KAFKA_IDEMPOTENT_PRODUCER"] == "true"
    assert _compose_settings(compose, monkeypatch).kafka_idempotent_producer is True


# --- Dockerfile ---------------------------------------------------------------------------------


def test_dockerfile_builds_a_non_root_python_311_image() -> None:
    instructions = _dockerfile_instructions()
    keywords = [keyword for keyword, _ in instructions]
    args = {keyword: value for keyword, value in instructions}  # last one wins, as in Docker

    assert keywords[0] == "FROM"
    assert instructions[0][1].startswith("python:3.11")
    assert any(k == "RUN" and "pip install --no-cache-dir ." in v for k, v in instructions)
    assert args["USER"] not in {"root", "0"}
    assert keywords.index("USER") > max(i for i, k in enumerate(keywords) if k == "RUN")
    assert set(args["EXPOSE"].split()) == {"8000", "8001"}


def test_dockerignore_keeps_local_state_out() -> None:
    patterns = {line.strip() for line in DOCKERIGNORE.read_text().splitlines()}
    assert {".venv", "var", ".git"} <= patterns


def _image_commands() -> list[Any]:
    cmd = dict(_dockerfile_instructions())["CMD"]
    compose = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    return [
        pytest.param(json.loads(cmd), id="Dockerfile CMD"),
        *(pytest.param(_command(compose[name]), id=name) for name in HTTP_SERVICES),
    ]


@pytest.mark.parametrize("command", _image_commands())
def test_commands_run_modules_that_exist(command: list[str]) -> None:
    assert command[:2] == ["python", "-m"]
    assert _module_exists(command[2]), f"{command[2]} is not a runnable module in the repository"
