"""The web face: HTTPS status pages with a login, a JSON API and Prometheus /metrics.

The face is `gateway.web.face.WebFace`; it is imported only when enabled, so that a gateway
without it does not load its libraries.
"""
