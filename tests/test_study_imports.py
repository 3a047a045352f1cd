"""The study server never runs a model: importing it must not load torch or deepcolor."""

from __future__ import annotations

import subprocess
import sys


def test_the_server_app_loads_neither_torch_nor_deepcolor():
    code = (
        "import sys, study.server, study.cli, study.report\n"
        "print(sorted(m for m in ('torch', 'deepcolor') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert done.stdout.strip() == "[]"
