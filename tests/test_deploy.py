"""deploy/: two replicas behind nginx, PostgreSQL, an upstream engine, checked as files (no
Docker, no network): the topology of the compose file, the load balancer's configuration,
that everything it mounts or builds from exists, that no secret is in the repository, and
that the registrations pass ``localai-runtime check``."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO

DEPLOY = REPO / "deploy"
SERVICES = {"postgres", "engine", "localai-a", "localai-b", "lb"}
REPLICAS = ("localai-a", "localai-b")
SECRET_NAME = re.compile(r"PASSWORD|KEY|SECRET|TOKEN", re.IGNORECASE)
VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """``value`` with Compose's ``${VAR}``, ``${VAR:-default}`` and ``${VAR:?error}`` replaced."""
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def replace(match: re.Match) -> str:
        name, operator, argument = match.groups()
        if env.get(name):
            return env[name]
        assert operator is None or "?" not in operator, f"{name} is required: {argument}"
        return argument or ""

    return VARIABLE.sub(replace, value)


def env_example() -> dict[str, str]:
    lines = (DEPLOY / ".env.example").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line.strip() and not line.startswith("#"))


def raw_compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def compose() -> dict[str, Any]:
    """The compose file as Compose runs it with deploy/.env made from .env.example."""
    return interpolate(raw_compose(), env_example())


def options(command: list[str]) -> dict[str, str]:
    """``--name value`` pairs of a command given as a list."""
    return {arg: value for arg, value in zip(command, command[1:], strict=False) if arg.startswith("--")}


def nginx_conf() -> str:
    return re.sub(r"#[^\n]*", "", (DEPLOY / "nginx.conf").read_text())


def registrations(*folders: Path) -> list[dict[str, Any]]:
    found = []
    for folder in folders:
        for path in sorted(folder.glob("*.yaml")):
            for document in yaml.safe_load_all(path.read_text()):
                found += document if isinstance(document, list) else [document]
    return found


def test_the_topology_is_two_replicas_a_load_balancer_postgres_and_an_engine():
    services = compose()["services"]
    assert {name for name, service in services.items() if "profiles" not in service} == SERVICES
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["engine"]["image"] == "ghcr.io/ggml-org/llama.cpp:server"
    assert services["lb"]["image"].startswith("nginx:")
    for name in REPLICAS:
        assert services[name]["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}


def test_the_replicas_share_one_database_and_the_same_configs():
    services = compose()["services"]
    first, second = (services[name] for name in REPLICAS)
    assert first == second
    command = options(first["command"])
    assert first["command"][0] == "serve"
    assert command["--host"] == "0.0.0.0"
    assert f"./configs:{command['--configs']}:ro" in first["volumes"]
    url = urllib.parse.urlsplit(command["--database-url"])
    assert url.scheme.startswith("postgresql") and url.hostname == "postgres" and url.password is None
    postgres = services["postgres"]["environment"]
    assert (url.username, url.path) == (postgres["POSTGRES_USER"], "/" + postgres["POSTGRES_DB"])
    assert first["environment"]["PGPASSWORD"] == postgres["POSTGRES_PASSWORD"]  # libpq reads it
    assert first["depends_on"]["postgres"] == {"condition": "service_healthy"}
    assert "/readyz" in " ".join(first["healthcheck"]["test"])


def test_postgres_keeps_its_data_in_a_named_volume_and_reports_health():
    document = compose()
    postgres = document["services"]["postgres"]
    volume = postgres["volumes"][0].split(":")[0]
    assert volume in document["volumes"]
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])


def test_the_registrations_point_at_engines_of_the_compose_file():
    services = compose()["services"]
    engine = options(services["engine"]["command"])
    assert "./models:/models:ro" in services["engine"]["volumes"]
    assert engine["--model"].startswith("/models/")
    served = {options(services[name]["command"])["--alias"]: name for name in ("engine", "embedder")}
    replica_env = services["localai-a"]["environment"]
    found = registrations(DEPLOY / "configs", DEPLOY / "extras")
    operations = {operation for registration in found for operation in registration["registration"]["operations"]}
    assert {"createChatCompletion", "createCompletion", "createResponse", "createEmbedding"} <= operations
    for registration in found:
        settings = registration["local_settings"]
        assert settings["backend"] == "openai-upstream"
        name = served[settings["upstream_model"]]
        for base_url in settings["base_urls"]:
            url = urllib.parse.urlsplit(base_url)
            assert (url.hostname, str(url.port), url.path) == (name, options(services[name]["command"])["--port"], "/v1")
        # The replicas hold the key the engine requires.
        assert replica_env[settings["api_key_env"]] == services[name]["environment"]["LLAMA_API_KEY"]


def test_the_load_balancer_spreads_over_both_replicas_and_streams_unbuffered():
    services = compose()["services"]
    lb = services["lb"]
    assert "./nginx.conf:/etc/nginx/nginx.conf:ro" in lb["volumes"]
    assert lb["ports"] == ["8080:8080"]
    assert lb["depends_on"] == {name: {"condition": "service_healthy"} for name in REPLICAS}
    conf = nginx_conf()
    name, body = re.search(r"upstream\s+(\S+)\s*\{([^}]*)\}", conf).groups()
    ports = {options(services[replica]["command"])["--port"] for replica in REPLICAS}
    assert set(re.findall(r"^\s*server\s+(\S+)", body, re.MULTILINE)) == {f"{r}:{p}" for r in REPLICAS for p in ports}
    assert re.search(r"^\s*least_conn;", body, re.MULTILINE)
    assert re.search(rf"proxy_pass\s+http://{name};", conf)
    assert re.search(r"proxy_buffering\s+off;", conf)
    assert re.search(r"proxy_set_header\s+Authorization\s+\$http_authorization;", conf)
    assert int(re.search(r"proxy_read_timeout\s+(\d+)s;", conf).group(1)) >= 600
    assert re.search(r"listen\s+8080;", conf)


def test_every_file_the_compose_file_mounts_or_builds_from_exists():
    for name, service in raw_compose()["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name} mounts {source}"
        if "build" in service:
            context = (DEPLOY / service["build"]["context"]).resolve()
            dockerfile = context / service["build"]["dockerfile"]
            assert context == REPO and dockerfile.is_file()
            sent = {line[1:].rstrip("/") for line in Path(f"{dockerfile}.dockerignore").read_text().splitlines()
                    if line.startswith("!")}
            for line in dockerfile.read_text().splitlines():
                if line.startswith("COPY ") and "--from" not in line:
                    for source in line.split()[1:-1]:
                        assert (context / source).exists() and source.rstrip("/") in sent, source


def test_no_secret_is_in_the_repository():
    """Every password and key reaches a container from deploy/.env (required there, no default);
    .env is git-ignored and never sent to the image build; the example holds placeholders."""
    document = raw_compose()
    for name, service in document["services"].items():
        for key, value in service.get("environment", {}).items():
            if SECRET_NAME.search(key):
                match = VARIABLE.fullmatch(str(value))
                assert match and match.group(2) in (None, ":?", "?"), f"{name}: {key} is not read from .env"
    required = {match.group(1) for match in VARIABLE.finditer((DEPLOY / "compose.yaml").read_text())
                if match.group(2) in (":?", "?")}
    example = env_example()
    assert required <= set(example)
    assert all(value == "change-me" for key, value in example.items() if SECRET_NAME.search(key))
    for path in DEPLOY.rglob("*"):
        if path.is_file() and path.name != ".env" and path.relative_to(DEPLOY).parts[0] != "models":
            assert not re.search(r"://[^/\s:@]+:[^/\s@]+@", path.read_text()), f"credentials in a URL in {path}"
    assert ".env" in (DEPLOY / ".gitignore").read_text().splitlines()
    ignore = [line for line in (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
              if line and not line.startswith("#")]
    assert ignore[0] == "*" and not any(line.startswith("!deploy") for line in ignore)


@pytest.mark.parametrize("with_extras", [False, True], ids=["configs", "configs+extras"])
def test_check_accepts_the_deploy_registrations(tmp_path, with_extras):
    """What `localai-runtime check --configs deploy/configs` says (the store is PostgreSQL there;
    here it is left out); then with the optional embeddings registration copied in beside them."""
    configs = DEPLOY / "configs"
    if with_extras:
        configs = tmp_path / "configs"
        shutil.copytree(DEPLOY / "configs", configs)
        for path in (DEPLOY / "extras").glob("*.yaml"):
            shutil.copy(path, configs / path.name)
    env = {**os.environ, "UPSTREAM_KEY": "test-only"}
    result = subprocess.run([sys.executable, "-m", "localai_runtime.cli", "check", "--configs", str(configs), "--no-store"],
                            capture_output=True, text=True, timeout=120, cwd=REPO, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert " 0 unavailable" in result.stdout
