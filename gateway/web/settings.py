"""The settings pages: every key a running gateway may change, as a form, and what a form asks for.

    fields = setting_fields(running_raw, next_raw)       # what the page shows, key by key
    changes = form_changes(request.form(), next_raw)     # {"bacnet.device_id_offset": 60000}
    config_file.change_settings(site_file, changes, actor, audit, check)

A form shows each key as a user writes it in TOML (`gateway.config.raw_settings`): true/false as a
choice, a list one item a line, a secret as a password field left empty (empty keeps it; "clear"
sets it to ""), anything else as text. What comes back is turned into the TOML value the key's
type suggests (a number where the key takes one, else the text as typed), so a value the key does
not take reaches `parse_config` as it was typed and is refused with `check-config`'s own message.
Only the keys whose value differs from what the gateway runs with after a restart are changed.
The keys a running gateway may not change (paths, who may reach the web face) are shown, not
editable: the site's file sets them.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal

from gateway.config import SECRET_KEYS, SECTIONS, SETTABLE, Config, allowed_values, uploaded_bdt
from gateway.files import write_atomically
from gateway.web.pages import e, layout

__all__ = ["FIRST", "SettingField", "bdt_in_use", "form_changes", "install_bdt", "setting_fields", "settings_page"]

#: What an integrator changes on site, shown first: (heading, keys).
FIRST = (
    (
        "BACnet/IP",
        "bacnet.device_id_offset bacnet.network bacnet.ip_network bacnet.address bacnet.port bacnet.bbmd "
        "bacnet.foreign_bbmd bacnet.foreign_ttl bacnet.reinit_password bacnet.read_only",
    ),
    (
        "SNMP",
        "snmp.enabled snmp.v2c snmp.read_community snmp.write_community snmp.trap_community snmp.notify_hosts "
        "snmp.users snmp.allow snmp.location snmp.contact snmp.name",
    ),
    ("Modbus TCP", "modbus_tcp.enabled modbus_tcp.allow modbus_tcp.read_only"),
)
CLEAR = "clear:"  # a secret's "clear" box: the field name after it
#: How a key is edited; "fixed": not at all (not settable, or a value a form cannot show).
Kind = Literal["bool", "list", "secret", "text", "fixed"]


@dataclass(frozen=True, slots=True)
class SettingField:
    name: str  # "section.key"
    kind: Kind
    value: Any  # what a restart runs with, as TOML has it
    running: Any  # what runs now
    allowed: str

    @property
    def pending(self) -> bool:
        """Changed, but not in use until the gateway restarts."""
        return self.value != self.running


def setting_fields(
    running: Mapping[str, Mapping[str, Any]], wanted: Mapping[str, Mapping[str, Any]]
) -> list[SettingField]:
    """Every key of every section, in the order of the file (raw TOML values: now, and after a restart)."""
    found = []
    for section, cls in SECTIONS.items():
        hints = typing.get_type_hints(cls)
        for spec in fields(cls):
            key, value = spec.name, wanted[section][spec.name]
            kind: Kind = _kind(hints[key], value) if key in SETTABLE.get(section, ()) else "fixed"
            if kind != "fixed" and key in SECRET_KEYS:
                kind = "secret"
            found.append(
                SettingField(f"{section}.{key}", kind, value, running[section][key], allowed_values(section, key))
            )
    return found


def form_changes(form: Mapping[str, str], wanted: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The changes a settings form asks for: each settable field whose value differs from what a
    restart runs with, as the TOML value its text stands for. A secret left empty is kept."""
    changes: dict[str, Any] = {}
    for name, text in form.items():
        section, _, key = name.partition(".")
        if section not in SECTIONS:
            continue  # the CSRF token, a "clear" box
        if key not in SETTABLE.get(section, ()):
            changes[name] = text  # a key no form offers: refused and audited by the write
            continue
        hint = typing.get_type_hints(SECTIONS[section])[key]
        if key in SECRET_KEYS:
            value: Any = "" if form.get(CLEAR + name) else text
            if not value and not form.get(CLEAR + name):
                continue
        else:
            value = _typed(hint, text, wanted[section][key])
        if value != wanted[section][key]:
            changes[name] = value
    return changes


def bdt_in_use(config: Config) -> str:
    """Which BBMD table a restart would read, in words."""
    bacnet = config.bacnet
    where = "uploaded here" if bacnet.bdt_file == uploaded_bdt(config) else "bacnet.bdt_file of the site's file"
    state = "on" if bacnet.bbmd else "off (bacnet.bbmd = false: the table is not read)"
    return f"{bacnet.bdt_file} ({where}); BBMD {state}."


def install_bdt(config: Config, text: str, check: Callable[[str, Config], None]) -> None:
    """Keep an uploaded BBMD table beside the state file (`gateway.config.UPLOADED_BDT`), used
    instead of bacnet.bdt_file from the next start, once `check` (the BACnet face's own reading of
    a table, with this gateway's line in it) takes it. GatewayError, and nothing kept, when not."""
    check(text, config)
    write_atomically(uploaded_bdt(config), text.encode(), 0o600)


def _kind(hint: Any, value: Any) -> Kind:
    if hint is bool:
        return "bool"
    if isinstance(value, list):  # of addresses, networks or endpoints: one a line (anything else: a file's to set)
        return "list" if all(isinstance(item, str) for item in value) else "fixed"
    return "text" if isinstance(value, str | int | float) else "fixed"


def _typed(hint: Any, text: str, current: Any) -> Any:
    """The TOML value a form's text stands for, by the key's type."""
    text = text.strip()
    if hint is bool:
        return {"true": True, "false": False}.get(text, text)
    if isinstance(current, list):
        return [line.strip() for line in text.splitlines() if line.strip()]
    if _takes(hint, int):
        try:
            return int(text)
        except ValueError:
            pass
    if _takes(hint, float):
        try:
            return float(text)
        except ValueError:
            pass
    return text


def _takes(hint: Any, kind: type) -> bool:
    """Whether a type hint takes values of `kind` (an int, a Literal of ints, a union holding one)."""
    if hint is kind:
        return True
    if typing.get_origin(hint) is Literal:
        return any(type(option) is kind for option in typing.get_args(hint))
    return any(_takes(arg, kind) for arg in typing.get_args(hint)) if typing.get_origin(hint) is not tuple else False


# --- the page ---


def settings_page(
    found: list[SettingField],
    csrf: str,
    *,
    site_file: str | None,
    errors: list[str],
    saved: list[str],
    previous: bool,
    certificate: str,
    bdt: str,
) -> str:
    """The settings page: what waits for a restart, then a form per group of keys."""
    if site_file is None:
        body = (
            '<p class="warning">This gateway was started without a configuration file (the demo, or a '
            "test), so there is nowhere to keep a change: run it with <code>bcpm-gateway run --config FILE</code>.</p>"
        )
        return layout("Settings", body, csrf=csrf, logged_in=True)
    by_name = {field.name: field for field in found}
    pending = [field for field in found if field.pending]
    parts = [
        f"<p>Changes are checked as <code>check-config</code> checks <code>{e(site_file)}</code>, kept in "
        "<code>web-settings.toml</code> beside the state file (the file before kept as "
        "<code>web-settings.toml.1</code>), logged in the audit, and applied when the gateway restarts.</p>"
    ]
    if errors:
        parts.append(
            '<div class="error" id="errors"><p>Not saved:</p><ul>'
            + "".join(f"<li>{e(line)}</li>" for line in errors)
            + "</ul></div>"
        )
    if saved:
        parts.append('<p class="ok" id="saved">Saved: ' + e(", ".join(saved)) + ".</p>")
    if pending:
        parts.append(
            '<div class="warning" id="pending"><p>Saved, not in use until the gateway restarts: '
            + e(", ".join(field.name for field in pending))
            + '.</p><p><a class="button" href="/confirm/restart">Restart the gateway now</a></p></div>'
        )
    for heading, names in FIRST:
        parts.append(f"<h2>{e(heading)}</h2>" + _form([by_name[name] for name in names.split()], csrf, "first"))
    parts.append(_uploads(csrf, certificate, bdt, previous))
    parts.append("<h2>Every setting</h2><p>By section, as in the configuration file.</p>")
    for section in SECTIONS:
        members = [field for field in found if field.name.startswith(section + ".")]
        parts.append(f"<details><summary>[{e(section)}]</summary>{_form(members, csrf, 'all')}</details>")
    return layout("Settings", "".join(parts), csrf=csrf, logged_in=True)


def _form(members: list[SettingField], csrf: str, group: str) -> str:
    """A form of these keys; `group` tells its fields' ids from those of another form of the page."""
    rows = "".join(_row(field, f"{group}-{field.name}") for field in members)
    editable = any(field.kind != "fixed" for field in members)
    button = '<button type="submit">Save</button>' if editable else ""
    return (
        f'<form method="post" action="/settings" class="settings">'
        f'<input type="hidden" name="csrf" value="{e(csrf)}"><table class="settings">{rows}</table>{button}</form>'
    )


def _row(field: SettingField, ident: str) -> str:
    name, ident = e(field.name), e(ident)
    hint = f"<small>{e(field.allowed)}</small>" if field.allowed else ""
    if field.kind == "bool":
        options = "".join(
            f"<option{' selected' if field.value is choice else ''}>{str(choice).lower()}</option>"
            for choice in (True, False)
        )
        control = f'<select name="{name}" id="{ident}">{options}</select>'
    elif field.kind == "list":
        control = f'<textarea name="{name}" id="{ident}" rows="3">{e(chr(10).join(field.value))}</textarea>'
        hint = f"<small>one a line; {e(field.allowed)}</small>"
    elif field.kind == "secret":
        state = "set" if field.value else "not set"
        control = (
            f'<input type="password" name="{name}" id="{ident}" autocomplete="off" '
            f'placeholder="({state}; empty keeps it)">'
            f'<label class="clear"><input type="checkbox" name="{CLEAR}{name}" value="1"> clear</label>'
        )
    elif field.kind == "text":
        control = f'<input name="{name}" id="{ident}" value="{e(field.value)}">'
    else:
        section, _, key = field.name.partition(".")
        shown = ("(set)" if field.value else "(not set)") if key in SECRET_KEYS else field.value
        control = f"<code>{e(_shown(shown))}</code>"
        where = "a configuration uploaded (below)" if key in SETTABLE.get(section, ()) else "the site's file"
        hint = f"<small>set in {where}</small>"
    pending = ' <span class="pending">(restart to apply)</span>' if field.pending and field.kind != "secret" else ""
    return f'<tr><th><label for="{ident}">{name}</label></th><td>{control}{pending}<br>{hint}</td></tr>'


def _shown(value: Any) -> str:
    if isinstance(value, dict):  # tables (SNMPv3 users): their names, never what they hold
        return ", ".join(f"[{name}]" for name in value) or "(none)"
    if isinstance(value, list):
        return ", ".join(map(str, value)) or "(none)"
    return "(none)" if value in ("", None) else str(value).lower() if isinstance(value, bool) else str(value)


def _uploads(csrf: str, certificate: str, bdt: str, previous: bool) -> str:
    hidden = f'<input type="hidden" name="csrf" value="{e(csrf)}">'
    revert = (
        f'<form method="post" action="/settings/revert" class="inline">{hidden}'
        '<button type="submit">Take back the settings before the last change</button></form>'
        if previous
        else ""
    )
    return (
        "<h2>Configuration file</h2>"
        '<p><a class="button" href="/settings/download">Download</a> '
        '<a class="button" href="/settings/download?secrets=1">Download with secrets</a> '
        f"{revert}</p>"
        '<form method="post" action="/settings/upload" enctype="multipart/form-data" class="upload">'
        f"{hidden}<label>Upload a configuration (TOML): "
        '<input type="file" name="file" accept=".toml,text/plain" required></label> '
        '<button type="submit">Upload</button><br><small>Checked whole before anything is replaced; '
        "keys it leaves out are kept; only keys a running gateway may change may differ.</small></form>"
        "<h2>BACnet broadcast distribution table</h2>"
        f"<p>{e(bdt)}</p>"
        '<form method="post" action="/settings/bdt" enctype="multipart/form-data" class="upload">'
        f'{hidden}<label>Upload bdt.ini: <input type="file" name="file" accept=".ini,text/plain" required></label> '
        '<button type="submit">Upload</button><br><small>One <code>ip,port,mask</code> line per BBMD, this gateway '
        "included; used when bacnet.bbmd = true, from the next restart.</small></form>"
        "<h2>Web certificate</h2>"
        f"<p>{e(certificate)}</p>"
        '<form method="post" action="/settings/certificate" enctype="multipart/form-data" class="upload">'
        f'{hidden}<label>Certificate (PEM, the chain after it): <input type="file" name="certificate" required>'
        '</label><br><label>Private key (PEM, not encrypted): <input type="file" name="key" required></label> '
        '<button type="submit">Upload</button></form>'
        "<h2>Web password</h2><p>Not changed here, by design: the password is the site file's own "
        "(<code>web.password_hash</code>), which the gateway cannot write, so that nothing reaching the gateway "
        "over the network can set it. On the gateway: <code>bcpm-gateway set-password --config FILE</code>, "
        "then restart it.</p>"
    )
