"""The README's two Quick-start commands and CI agree."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _quick_start_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", section, flags=re.S)]


def test_quick_start_is_two_commands() -> None:
    commands = _quick_start_commands()
    assert len(commands) == 2
    assert all("\n" not in c for c in commands)
    assert "torch==2.13.0" in commands[0]
    assert commands[0].index("torch==2.13.0") < commands[0].index('-e ".[all]"')  # torch first


def test_ci_runs_the_readme_commands() -> None:
    install, test = _quick_start_commands()
    ci = (ROOT / ".ci" / "run").read_text()
    install_only = install.rsplit(" && ", 1)[0]  # the first command ends by running the main job
    assert install_only in ci.splitlines()
    assert test in ci.splitlines()
