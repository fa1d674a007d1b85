"""Modules kept out of the gateway (gateway/unused.py), each check in a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60)


def test_prometheus_client_imported_without_its_servers_and_clients_writes_the_text_and_refuses_to_serve() -> None:
    result = _run(
        """
        import sys
        from gateway.unused import SERVERS_AND_CLIENTS, kept_out
        with kept_out(*SERVERS_AND_CLIENTS):
            import prometheus_client
        print(sorted(set(SERVERS_AND_CLIENTS) & set(sys.modules)), "http.client" in sys.modules)
        print(prometheus_client.generate_latest().decode().count("# TYPE"))
        try:
            prometheus_client.start_http_server(0, addr="127.0.0.1")
        except RuntimeError as error:
            print(error)
        import http.server, urllib.request  # imported later, each is the module itself
        print(http.server.BaseHTTPRequestHandler.__module__, hasattr(urllib.request, "urlopen"))
        """
    )
    assert result.returncode == 0, result.stderr
    kept, types, refused, later = result.stdout.splitlines()
    assert kept == "[] False"
    assert int(types) > 0  # the default registry's process and platform metrics
    assert refused == "wsgiref.simple_server.make_server is kept out of the gateway (gateway.unused)"
    assert later == "http.server True"


def test_a_module_already_imported_is_left_as_it_is() -> None:
    result = _run(
        """
        import sys, http.server
        from gateway.unused import kept_out
        real = sys.modules["http.server"]
        with kept_out("http.server"):
            from http.server import BaseHTTPRequestHandler
        print(BaseHTTPRequestHandler is real.BaseHTTPRequestHandler, sys.modules["http.server"] is real)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "True"]
