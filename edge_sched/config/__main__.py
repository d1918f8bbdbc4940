"""Regenerate the files derived from the key table.

Usage: `python -m edge_sched.config example-toml > config.toml.example`, and
`python -m edge_sched.config docs-table` to paste between the markers in `docs/configuration.md`.
"""

from __future__ import annotations

import sys

from edge_sched.config._render import render_docs_table, render_example_toml


def main(argv: list[str]) -> int:
    """Print the requested rendering; 2 on a usage error."""
    renderers = {"example-toml": render_example_toml, "docs-table": render_docs_table}
    if len(argv) != 1 or argv[0] not in renderers:
        print(f"usage: python -m edge_sched.config {{{','.join(renderers)}}}", file=sys.stderr)
        return 2
    sys.stdout.write(renderers[argv[0]]())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
