"""``voice/`` is the engine: it imports nothing from Django, Channels, Celery or the apps."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

VOICE = Path(__file__).resolve().parents[2] / "voice"
FORBIDDEN = frozenset(
    {
        "django",
        "channels",
        "channels_redis",
        "daphne",
        "rest_framework",
        "drf_spectacular",
        "celery",
        "agents",
        "calls",
        "tenants",
        "billing",
        "glassbox",
    }
)


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_no_module_in_voice_names_a_forbidden_package() -> None:
    offenders = {
        str(path.relative_to(VOICE)): sorted(_imports(path) & FORBIDDEN)
        for path in VOICE.rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_importing_every_voice_module_loads_none_of_them() -> None:
    # In a fresh interpreter, so nothing the test run imported counts.
    script = f"""
import importlib, json, pkgutil, sys
import voice
for module in pkgutil.walk_packages(voice.__path__, "voice."):
    importlib.import_module(module.name)
loaded = sorted({{name.split(".")[0] for name in sys.modules}} & set({sorted(FORBIDDEN)!r}))
print(json.dumps(loaded))
"""
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        cwd=VOICE.parent,
        timeout=120,
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
