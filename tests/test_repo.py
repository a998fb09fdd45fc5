"""Repository-level checks: README commands, CI, environment.yml ↔ pyproject, notebook structure."""
import json
import re
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def readme_commands():
    return [line[6:] for line in (ROOT / "README.md").read_text().splitlines() if line.startswith("    $ ")]


def test_readme_has_exactly_two_commands_and_ci_runs_the_test_one():
    cmds = readme_commands()
    assert len(cmds) == 2
    book, test = cmds
    assert "jupyter-book build -W -n --keep-going ." in book
    assert "pytest" in test and "--nbval-lax" in test and "ATTNCOURSE_PROFILE=smoke" in test
    assert test in (ROOT / ".ci" / "run").read_text()


def _name(req: str) -> str:
    return re.split(r"[<>=!~ \[]", req.strip(), maxsplit=1)[0].lower()


def test_environment_yml_lists_the_same_dependencies_as_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = set(project["dependencies"]) | {r for extra in project["optional-dependencies"].values() for r in extra}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    listed = {r for r in pip if not r.startswith("-e")}
    assert {_name(r): r.replace(" ", "") for r in listed} == {_name(r): r.replace(" ", "") for r in wanted}


NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks():
    assert NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_anatomy(path):
    nb = json.loads(path.read_text())
    cells = nb["cells"]
    src = lambda c: "".join(c["source"])
    first = src(cells[0])
    assert cells[0]["cell_type"] == "markdown" and first.startswith("# ")
    assert f"colab.research.google.com/github/{REPO}/blob/main/notebooks/{path.name}" in first
    code = [c for c in cells if c["cell_type"] == "code"]
    assert "except ImportError" in src(code[0]) and f"git+https://github.com/{REPO}" in src(code[0])
    assert all(c.get("outputs") is not None for c in code)
    assert any(c.get("outputs") for c in code), "committed without outputs"
    errors = [i for i, c in enumerate(code) for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, f"error outputs in code cells {errors}"
    checked = [c for c in code if "nbval-check-output" in c.get("metadata", {}).get("tags", [])]
    assert checked, "no deterministic cell is checked by nbval"
    assert all(c.get("execution_count") and c.get("outputs") for c in checked)
    text = "\n".join(src(c) for c in cells)
    if not path.name.startswith("00_"):
        assert "{cite}" in text and "assert_close" in text and 'check("' in text and "<summary>Solution</summary>" in text


REPO = "attncourse/attncourse"


def test_one_repository_url_everywhere():
    import attncourse
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert config["repository"]["url"] == attncourse.REPOSITORY_URL == f"https://github.com/{REPO}"
