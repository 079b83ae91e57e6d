"""The README's queries run verbatim on the outputs of the README's own commands: README
command 1 (the bulk job on its default input) and the evaluation command above the queries."""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]


def _blocks(language: str) -> list[str]:
    text = (REPO / "README.md").read_text()
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


def _job_command(block: str, script: str) -> list[str]:
    """The ``.venv/bin/python jobs/SCRIPT ...`` command of a README bash block, run with this
    interpreter (the README's venv is this test's)."""
    line = next(line for line in block.splitlines() if f"jobs/{script}" in line)
    words = shlex.split(line[line.index(".venv/bin/python"):].split("&&")[0])
    return [sys.executable, str(REPO / words[1]), *words[2:]]


def test_readme_queries_run_on_the_outputs_of_its_commands(tmp_path):
    setup = next(b for b in _blocks("bash") if "jobs/inpaint.py" in b and "pip install" in b)
    evaluate = next(b for b in _blocks("bash") if "jobs/evaluate.py model=assets/lama-small-demo" in b)
    queries = [b for b in _blocks("python") if "read_parquet" in b]
    assert queries, "the README's query block is gone"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for command in (_job_command(setup, "inpaint.py"), _job_command(evaluate, "evaluate.py")):
        # Relative paths resolve in the working directory, as for a user in a fresh checkout,
        # except the shipped demo model, which the jobs also find in the checkout.
        run = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
        assert run.returncode == 0, run.stderr[-2000:]
    assert (tmp_path / "outputs" / "inpaint" / "records").is_dir()
    for block in queries:
        result = subprocess.run([sys.executable, "-c", _checked(block)], cwd=tmp_path, env=env, capture_output=True,
                                text=True, timeout=300)
        assert result.returncode == 0, f"README query failed:\n{block}\n{result.stderr[-2000:]}"
        assert "ROWS" in result.stdout


def _checked(block: str) -> str:
    """The block as a script that also prints how many rows each query gave (the summary and
    per-image queries must find rows; the error-records query may find none)."""
    statements, current = [], []
    for line in block.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        current.append(line)
        if _balanced("\n".join(current)):
            statements.append("\n".join(current))
            current = []
    out = []
    for i, statement in enumerate(statements):
        if statement.startswith("import "):
            out.append(statement)
        else:
            out += [f"_q{i} = {statement}", f"print('ROWS', {i}, len(_q{i}))"]
            if "summary" in statement or "per_image" in statement:
                out.append(f"assert len(_q{i}) > 0, 'no rows: {i}'")
    return "\n".join(out)


def _balanced(code: str) -> bool:
    try:
        compile(code, "<readme>", "exec")
        return True
    except SyntaxError:
        return False
