import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DB_TEST = "tests/customers/test_import.py::test_dry_run_validates_but_writes_nothing"


def _pytest(env_overrides: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": "postgres://postgres@127.0.0.1:1/nowhere", **env_overrides}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", DB_TEST],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_unreachable_postgres_fails_the_run_when_services_are_required():
    result = _pytest({"REQUIRE_SERVICES": "1"})
    assert result.returncode != 0
    assert "REQUIRE_SERVICES=1 but unreachable: PostgreSQL" in result.stdout + result.stderr


def test_unreachable_postgres_skips_database_tests_otherwise():
    result = _pytest({"REQUIRE_SERVICES": "0"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 skipped" in result.stdout
