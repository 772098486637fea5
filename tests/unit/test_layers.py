"""The pure core never imports a shell library (STYLE.md section 1)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = [
    "backends",
    "breaker",
    "charts",
    "config",
    "cooldown",
    "crypto",
    "errors",
    "formats",
    "histogram",
    "limiter",
    "pools",
    "pricing",
    "records",
    "tokens",
    "usage",
]
SHELL_LIBRARIES = {"aiohttp", "httpx", "aiosqlite", "starlette", "jinja2", "uvicorn", "asyncio", "sqlite3"}


@pytest.mark.parametrize("module", CORE)
def test_core_module_imports_no_shell_library(module: str) -> None:
    path = Path(__file__).resolve().parents[2] / "gateway" / f"{module}.py"
    tree = ast.parse(path.read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & SHELL_LIBRARIES, f"gateway/{module}.py imports {imported & SHELL_LIBRARIES}"
