"""Builds the API reference of mtjax's public modules as HTML with pdoc.

    python tools/build_api_docs.py [--out docs/_build/api]

Documents the modules of ``PUBLIC_MODULES`` (their ``__all__`` where they define one) and fails,
naming them, on dotted references in their docstrings that do not resolve (an mtjax name in
backticks naming no module, class, function or attribute). Open ``OUT/index.html``.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # Run from a checkout, uninstalled.

# The modules researchers import; the rest (data readers, the trainer's parts) are reachable from
# their links.
PUBLIC_MODULES = (
    "mtjax.ops.gaussian",
    "mtjax.ops.region_moments",
    "mtjax.regularizers",
    "mtjax.regularizers.rdc",
    "mtjax.regularizers.rdc_released",
    "mtjax.regularizers.xtc",
    "mtjax.regularizers.pixel_contrast",
    "mtjax.regularizers.mapping",
    "mtjax.objective",
    "mtjax.weighting",
    "mtjax.metrics",
    "mtjax.edge_metrics",
    "mtjax.tasks",
    "mtjax.models",
    "mtjax.train",
    "mtjax.checkpoint",
    "mtjax.results",
    "mtjax.fileio",
    "mtjax.experiments",
    "mtjax.data.regions",
)

_REFERENCE = re.compile(r"`(mtjax(?:\.\w+)+)(?:\(\))?`")


def resolves(name: str) -> bool:
  """Whether the dotted ``name`` is a module or an attribute reachable from one."""
  parts = name.split(".")
  for cut in range(len(parts), 0, -1):
    try:
      obj = importlib.import_module(".".join(parts[:cut]))
    except ImportError:
      continue
    for attr in parts[cut:]:
      if not hasattr(obj, attr):
        return False
      obj = getattr(obj, attr)
    return True
  return False


def broken_references(text: str) -> list[str]:
  """The ``mtjax.…`` names in backticks in ``text`` that do not resolve (sorted, unique)."""
  return sorted({m.group(1) for m in _REFERENCE.finditer(text) if not resolves(m.group(1))})


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(
      description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument(
      "--out", default="docs/_build/api", help="output folder (default %(default)s)"
  )
  args = parser.parse_args(argv)
  import pdoc  # pylint: disable=g-import-not-at-top

  broken = {}
  for name in PUBLIC_MODULES:
    module = importlib.import_module(name)
    texts = [module.__doc__ or ""]
    for attr in getattr(module, "__all__", ()) or dir(module):
      texts.append(getattr(getattr(module, attr, None), "__doc__", None) or "")
    bad = broken_references("\n".join(texts))
    if bad:
      broken[name] = bad
  if broken:
    for name, bad in broken.items():
      print(f"build_api_docs: {name}: unresolved references {bad}", file=sys.stderr)
    return 1
  pdoc.render.configure(docformat="google", show_source=False)
  pdoc.pdoc(*PUBLIC_MODULES, output_directory=Path(args.out))
  print(f"wrote {args.out}/index.html ({len(PUBLIC_MODULES)} modules)")
  return 0


if __name__ == "__main__":
  sys.exit(main())
