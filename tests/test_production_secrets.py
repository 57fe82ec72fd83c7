"""Production (DJANGO_DEBUG=false) refuses secrets that are only placeholders: the built-in
development values and the ones .env.example and the README show."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
REAL_SECRET = "k7#pQ2vX9!mL4sR8wT1yB6nE3hJ0cF5gA-unique-to-this-test"


def example_values() -> dict[str, str]:
    values = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        name, sep, value = line.partition("=")
        if sep and not name.startswith("#"):
            values[name.strip()] = value.strip()
    return values


def manage_check(**env) -> subprocess.CompletedProcess:
    environment = {
        key: value
        for key, value in os.environ.items()
        if key not in {"SECRET_KEY", "JWT_SECRET", "DJANGO_DEBUG"}
    }
    environment.update(DJANGO_DEBUG="false", **env)
    return subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


def placeholders() -> list[tuple[str, str]]:
    from gemini_server import settings

    example = example_values()
    return [
        ("SECRET_KEY", example["SECRET_KEY"]),
        ("JWT_SECRET", example["JWT_SECRET"]),
        ("SECRET_KEY", settings._DEV_SECRET_KEY),
        ("JWT_SECRET", settings._DEV_JWT_SECRET),
        ("JWT_SECRET", "your-secret"),  # the README's docker run line
        ("SECRET_KEY", "please-change-me-later-0123456789-0123456789-0123456789"),
        ("JWT_SECRET", ""),
    ]


@pytest.mark.parametrize(("name", "value"), placeholders())
def test_production_refuses_a_placeholder_secret(name, value):
    other = "JWT_SECRET" if name == "SECRET_KEY" else "SECRET_KEY"

    result = manage_check(**{name: value, other: REAL_SECRET + "-other"})

    assert result.returncode != 0
    assert f"{name} must be set to a secret of your own" in result.stderr


def test_production_starts_with_secrets_of_its_own():
    result = manage_check(SECRET_KEY=REAL_SECRET, JWT_SECRET=REAL_SECRET + "-jwt")

    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


def test_every_placeholder_in_env_example_is_known_to_the_settings():
    from gemini_server.settings import secret_is_placeholder

    example = example_values()

    assert secret_is_placeholder(example["SECRET_KEY"])
    assert secret_is_placeholder(example["JWT_SECRET"])
    assert not secret_is_placeholder(REAL_SECRET)
