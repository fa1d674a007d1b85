"""Modules the gateway's libraries import and the gateway never uses, kept out of its memory.

Imported by the command line before any of those libraries: bacpypes3 imports `readline` for its
console's history, which no command has (0.6 MB resident: the module with the line-editing and
terminal libraries it loads). None in `sys.modules` means "not importable", which the library
takes as not installed.

prometheus_client's exposition module, which writes the /metrics text, also holds its own HTTP
server, WSGI app and push-gateway client, and imports what they need when it is imported:
`SERVERS_AND_CLIENTS`, with `http.client` and `email` behind `urllib.request` (1.9 MB resident).
The web face serves the text itself, so it imports prometheus_client `kept_out` of them: a stand-in
for each module that is not imported yet, for as long as the import lasts, whose every name is a
class that refuses to be made. A later import of one of them gets the module itself.
"""

from __future__ import annotations

import contextlib
import sys
import types
from collections.abc import Iterator

__all__ = ["SERVERS_AND_CLIENTS", "kept_out"]

sys.modules.setdefault("readline", None)  # type: ignore[arg-type]

SERVERS_AND_CLIENTS = ("http.server", "urllib.request", "wsgiref.simple_server")


class _StandIn(types.ModuleType):
    def __getattr__(self, name: str) -> type:
        if name.startswith("__"):  # what the import machinery looks for
            raise AttributeError(name)
        module = self.__name__

        def refuse(*_: object, **__: object) -> None:
            raise RuntimeError(f"{module}.{name} is kept out of the gateway (gateway.unused)")

        unusable = type(name, (), {"__init__": refuse, "__module__": module})
        setattr(self, name, unusable)
        return unusable


@contextlib.contextmanager
def kept_out(*modules: str) -> Iterator[None]:
    """Imports within keep `modules` out: those not imported yet are stand-ins meanwhile."""
    standing_in = {name: _StandIn(name) for name in modules if name not in sys.modules}
    sys.modules.update(standing_in)
    try:
        yield
    finally:
        for name, stand_in in standing_in.items():
            if sys.modules.get(name) is stand_in:
                del sys.modules[name]
