"""The documentation a researcher reads: self-contained, current, and every reference resolves."""

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import build_api_docs  # noqa: E402  pylint: disable=g-import-not-at-top

# What a reader gets: the README, docs/, and every docstring and comment of the code they run.
READ = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))] + [
    p for d in ("mtjax", "configs", "tools", "examples") for p in sorted((ROOT / d).rglob("*.py"))
]

# Words about how the project is developed, not about what it does.
STALE = re.compile(
    r"\.\./shared|shared/(reference|data|design)|\bsessions?\b|no GPU was|\blent\b|\bthis work\b"
    r"|README of the time|\bthis README\b|dev machines?|\bissues? \d",
    re.IGNORECASE,
)


def test_readme_is_short_and_names_the_install_demo_and_test_commands_first():
  text = (ROOT / "README.md").read_text()
  assert len(text.splitlines()) < 200
  first_block = text.split("```bash\n", 1)[1].split("```", 1)[0].splitlines()
  assert first_block == [
      'pip install -e ".[train,test]"',
      "python -m mtjax.main --config configs/demo.py --workdir runs/demo",
  ]
  assert "python -m pytest -n 2 tests" in text  # What .ci/run runs.
  assert "python -m pytest -n 2 tests" in (ROOT / ".ci" / "run").read_text()


def test_no_file_a_reader_gets_points_outside_the_repository_or_at_how_it_was_developed():
  found = [
      f"{p.relative_to(ROOT)}:{n}: {line.strip()[:100]}"
      for p in READ
      for n, line in enumerate(p.read_text().splitlines(), 1)
      if STALE.search(line)
  ]
  assert not found, "\n".join(found)


def test_the_stale_pattern_catches_what_it_is_for():
  for line in ("see ../shared/data", "no GPU was lent", "(issue 14)", "an earlier session's"):
    assert STALE.search(line), line
  for line in ("lorenmt/mtan issue #34", "silently", "resumes from the latest checkpoint"):
    assert not STALE.search(line), line


def test_links_between_pages_resolve():
  broken = []
  for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
      if not target.startswith("http") and not (page.parent / target).exists():
        broken.append(f"{page.relative_to(ROOT)} -> {target}")
  assert not broken, broken


def test_mtjax_names_in_docs_and_docstrings_resolve():
  broken = {}
  for path in READ:
    bad = build_api_docs.broken_references(path.read_text())
    if bad:
      broken[str(path.relative_to(ROOT))] = bad
  assert not broken, broken
  assert build_api_docs.broken_references("`mtjax.ops.gaussian.no_such_function`")


def test_api_reference_builds(tmp_path):
  pytest.importorskip("pdoc")
  assert build_api_docs.main(["--out", str(tmp_path / "api")]) == 0
  pages = {p.relative_to(tmp_path / "api").as_posix() for p in (tmp_path / "api").rglob("*.html")}
  assert "mtjax/ops/gaussian.html" in pages and "mtjax/weighting.html" in pages, sorted(pages)


def test_public_modules_declare_all_and_every_name_exists():
  import importlib

  for name in build_api_docs.PUBLIC_MODULES:
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    assert exported, f"{name} has no __all__"
    missing = [n for n in exported if not hasattr(module, n)]
    assert not missing, (name, missing)


CLIS = sorted(
    [f"tools/{p.name}" for p in (ROOT / "tools").glob("*.py") if "ArgumentParser(" in p.read_text()]
) + ["mtjax.data.contact_sheet", "mtjax.main", "mtjax.experiments", "mtjax.baselines"]


@pytest.mark.parametrize("cli", CLIS)
def test_every_command_line_tool_says_what_it_is_for_with_an_example_and_one_flag_style(cli):
  import os
  import subprocess

  command = [sys.executable, cli] if cli.endswith(".py") else [sys.executable, "-m", cli]
  env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
  proc = subprocess.run(
      [*command, "--help"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
  )
  # argparse exits 0 after --help; absl (mtjax.main, experiments, baselines) exits 1.
  assert proc.returncode == (
      0 if cli.endswith(".py") or "contact_sheet" in cli else 1
  ), proc.stderr[-2000:]
  text = proc.stdout
  module = ROOT / cli if cli.endswith(".py") else ROOT / (cli.replace(".", "/") + ".py")
  first_line = module.read_text().split('"""', 2)[1].strip().splitlines()[0]
  assert first_line in text, (cli, first_line)  # What it is for.
  name = cli if cli.endswith(".py") else f"-m {cli}"
  assert f"python {name}" in text, f"{cli} --help shows no example line `python {name} ...`"
  if cli.endswith(".py"):  # argparse: every flag in one style, --words_with_underscores.
    hyphenated = sorted(set(re.findall(r"--[a-z0-9]+-[a-z0-9-]+", text)))
    assert not hyphenated, (cli, hyphenated)
