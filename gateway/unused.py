"""Modules the gateway's libraries import and the gateway never uses, kept out of its memory.

Imported by the command line before any of those libraries: bacpypes3 imports `readline` for its
console's history, which no command has (0.6 MB resident: the module with the line-editing and
terminal libraries it loads). None in `sys.modules` means "not importable", which the library
takes as not installed.
"""

import sys

sys.modules.setdefault("readline", None)  # type: ignore[arg-type]
