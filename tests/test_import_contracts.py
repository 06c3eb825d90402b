"""The import contracts (.importlinter) hold, and they can fail: without one of the layers contract's exceptions,
`lint-imports` reports the import that the exception allowed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
EXCEPTION = "    wallets.apis -> overdrafts.selectors\n"


def _lint(config: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT_IMPORTS), "--no-cache", str(config)], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, check=False)


def test_the_contracts_hold():
    result = _lint(ROOT / ".importlinter")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_removing_an_exception_breaks_the_layers_contract(tmp_path):
    config = (ROOT / ".importlinter").read_text()
    assert EXCEPTION in config
    stricter = tmp_path / "importlinter.ini"
    stricter.write_text(config.replace(EXCEPTION, ""))
    result = _lint(stricter)
    assert result.returncode != 0
    assert "wallets is not allowed to import overdrafts" in result.stdout
    assert "wallets.apis -> overdrafts.selectors" in result.stdout
