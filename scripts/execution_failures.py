#!/usr/bin/env python
"""Name each chapter whose execution failed in a book build, with its error and the cell.

    python scripts/execution_failures.py _build/html/reports

myst-nb writes one ``DOCNAME.err.log`` per chapter that failed to execute under its build's
``reports`` folder. A cell that ran past ``_config.yml``'s execute timeout fails with nbclient's
``CellTimeoutError``, whose message holds a preview of the cell's source. ``scripts/build_book.sh``
calls this when the build fails. Exit status: 1 when there is a report, 0 otherwise.
"""
from __future__ import annotations

import os
import re
import sys


def failures(reports: str) -> list[str]:
    """One line per failed chapter (its name, the error), plus one with the cell where the report has it."""
    lines = []
    for folder, _, files in sorted(os.walk(reports)):
        for name in sorted(f for f in files if f.endswith(".err.log")):
            path = os.path.join(folder, name)
            with open(path, errors="replace") as f:
                text = f.read()
            chapter = os.path.relpath(path, reports)[:-len(".err.log")]
            errors = re.findall(r"(?m)^((?:\w+\.)*\w+(?:Error|Exception)\b.*)$", text)
            last = errors[-1] if errors else (text.strip().splitlines() or ["(empty report)"])[-1]
            lines.append(f"chapter {chapter} failed to execute: {last[:300]}")
            preview = re.search(r"Here is a preview of the cell contents:\n-+\n(.*?)\n-+", text, re.S)
            if preview:
                lines.append("  the cell: " + " ".join(preview.group(1).split())[:300])
    return lines


if __name__ == "__main__":
    found = failures(sys.argv[1] if len(sys.argv) > 1 else "_build/html/reports")
    print("\n".join(found))
    sys.exit(1 if found else 0)
