"""The review is a renderer that only reads a collection: it imports search_core, never the bot or
the build, and search_core never imports it."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_review_imports_neither_bot_nor_scripts() -> None:
    code = ("import sys, review.cli, review.report, review.render, review.pictures; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('bot', 'scripts', 'discord')); "
            "print(','.join(bad))")
    proc = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, cwd=REPO,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ""


def test_search_core_never_imports_review() -> None:
    for path in (REPO / "search_core").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            assert not any(n.split(".")[0] == "review" for n in names), path
