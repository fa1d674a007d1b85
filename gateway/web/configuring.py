"""The settings pages' requests: a form, a revert, the uploads, the configuration downloaded.

    configuring = Configuring(source, audit, tell)
    configuring.page(csrf)                               # the form, what waits for a restart
    await configuring.post("upload", request, session)   # "" (a form), "revert", "upload", "bdt", "certificate"

Every change goes through `gateway.config_file` (checked whole as `check-config` checks it, and by
the composition root's check of what a restart would run; written whole, the file before kept),
off the event loop (files and fsyncs); an upload lands at its fixed name beside the state file. The
page comes back saying what was saved or why not, and what waits for a restart.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Sequence

from gateway.audit import Actor, AuditLog
from gateway.config import load_config, raw_settings, settings_file
from gateway.config_file import (
    change_settings,
    configuration_text,
    previous_settings,
    revert_settings,
    upload_changes,
)
from gateway.errors import ConfigError, GatewayError
from gateway.web.auth import USER, Session
from gateway.web.server import Request, Response
from gateway.web.settings import SettingField, bdt_in_use, form_changes, install_bdt, setting_fields, settings_page
from gateway.web.source import Source
from gateway.web.tls import certificate_in_use, install_certificate

__all__ = ["Configuring"]

#: The face's record of an action: (request, session, what, outcome, audited already).
Tell = Callable[..., None]


class Configuring:
    def __init__(self, source: Source, audit: AuditLog, tell: Tell) -> None:
        self._source, self._audit, self._tell = source, audit, tell

    def page(self, csrf: str, errors: Sequence[str] = (), saved: Sequence[str] = ()) -> str:
        """The settings form: each key as the gateway runs it now and as a restart would run it."""
        config = self._source.config
        site = config.source
        found: list[SettingField] = []
        previous = False
        problems = list(errors)
        wanted = config
        if site is not None:
            running = raw_settings(config)
            try:
                wanted = load_config(site)
            except ConfigError as error:  # the files changed under the gateway: say so, show what runs
                problems.append(str(error))
                wanted = config
            found = setting_fields(running, raw_settings(wanted))
            previous = previous_settings(settings_file(config)).exists()
        return settings_page(
            found,
            csrf,
            site_file=None if site is None else str(site),
            errors=problems,
            saved=list(saved),
            previous=previous,
            certificate=certificate_in_use(wanted),
            bdt=bdt_in_use(wanted),
        )

    async def post(self, what: str, request: Request, session: Session) -> Response:
        """A settings form, a revert, or an upload: checked whole, written by `gateway.config_file`
        (off the event loop: files and fsyncs), audited there; the page then says what waits for a
        restart."""
        site = self._source.config.source
        if site is None:
            return _html(self.page(session.csrf), 409)
        actor = Actor(USER, request.client, session.id)
        check = self._source.wiring.check
        try:
            if what == "":
                changes = form_changes(request.form(), raw_settings(load_config(site)))
                done = "change settings"
            elif what == "upload":
                done = "upload a configuration"
                try:
                    changes = upload_changes(site, _text(request.files().get("file", b"")))
                except (ConfigError, UnicodeDecodeError) as error:  # before any key is tried: audited here
                    self._tell(request, session, done, f"refused: {_lines(error)[0]}")
                    raise
            elif what == "revert":
                await asyncio.to_thread(revert_settings, site, actor, self._audit, check)
                self._tell(request, session, "take back the settings before the last change", audited=True)
                return _html(self.page(session.csrf, saved=["the settings before the last change"]))
            elif what in ("bdt", "certificate"):
                return await self._upload(what, request, session)
            else:
                return Response(404, b"not found", "text/plain")
            if not changes:
                return _html(self.page(session.csrf, saved=["nothing: every value is as it was"]))
            await asyncio.to_thread(change_settings, site, changes, actor, self._audit, check)
        except (ConfigError, UnicodeDecodeError) as error:
            return _html(self.page(session.csrf, errors=_lines(error)), 400)
        self._tell(request, session, f"{done}: {', '.join(changes)}", audited=True)
        return _html(self.page(session.csrf, saved=list(changes)))

    async def _upload(self, what: str, request: Request, session: Session) -> Response:
        """A BBMD table or a certificate and key: checked as their loaders would, then written at
        their fixed names beside the state file."""
        config = self._source.config
        assert config.source is not None
        files = request.files()
        try:
            if what == "bdt":
                text = _text(files.get("file", b""))
                await asyncio.to_thread(install_bdt, load_config(config.source), text, self._source.wiring.check_bdt)
                done = "upload the bdt"
            else:
                certificate, key = files.get("certificate", b""), files.get("key", b"")
                await asyncio.to_thread(install_certificate, config, certificate, key)
                done = "upload the certificate and key"
        except (GatewayError, UnicodeDecodeError) as error:
            self._tell(request, session, f"upload the {what}", f"refused: {str(error).splitlines()[0]}")
            return _html(self.page(session.csrf, errors=_lines(error)), 400)
        self._tell(request, session, done)
        return _html(self.page(session.csrf, saved=[f"{done}; in use from the next restart"]))

    def download(self, request: Request, session: Session) -> Response:
        """Every key as a restart would run it, as TOML; secrets only when asked (and audited)."""
        site = self._source.config.source
        config = self._source.config if site is None else load_config(site)
        secrets = request.query.get("secrets") == "1"
        self._tell(request, session, "download the configuration" + (" with secrets" if secrets else ""))
        text = configuration_text(config, secrets=secrets, host=socket.gethostname())
        attachment = ("content-disposition", 'attachment; filename="gateway.toml"')
        return Response(200, text.encode(), "application/toml; charset=utf-8", (attachment,))


def _html(text: str, status: int = 200) -> Response:
    return Response(status, text.encode())


def _text(upload: bytes) -> str:
    """An uploaded text file (a BOM from a Windows editor dropped); UnicodeDecodeError if not UTF-8."""
    return upload.decode("utf-8-sig")


def _lines(error: Exception) -> list[str]:
    return [line.strip() for line in str(error).splitlines() if line.strip()]
