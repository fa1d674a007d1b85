"""The HTML pages, rendered on the server from the same dictionaries the JSON API returns.

No template engine and no assets from elsewhere: a page is a few f-strings with every value
escaped, one stylesheet and at most one small script served by the face itself (the
Content-Security-Policy allows nothing else). A node's pages (its panel, values, trends and
circuit names) share tabs; the panel (`gateway.web.panel`), the trends (`gateway.web.trends`) and
the settings (`gateway.web.settings`) are drawn in modules of their own. The scripts refresh
values from the JSON API once a poll cycle, never faster than the bus brings them.
"""

from __future__ import annotations

import html
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from gateway.nodes.circuits import CIRCUIT_NAME_MAX
from gateway.pointmap import CIRCUITS

if TYPE_CHECKING:
    from gateway.web.source import FaceState

#: The AUX inputs, the mains when their CTs are on the incoming phases.
MAINS = {43: "Phase 1", 44: "Phase 2", 45: "Phase 3", 46: "Neutral"}

NAV = (
    ("/", "Overview"),
    ("/nodes", "Nodes"),
    ("/events", "Events"),
    ("/config", "Configuration"),
    ("/settings", "Settings"),
    ("/downloads", "Downloads"),
)
NODE_TABS = (
    ("panel", "", "Panel"),
    ("values", "/values", "All values"),
    ("trends", "/trends", "Trends"),
    ("names", "/names", "Circuit names"),
)
NO_PASSWORD = (
    "No administrator password is set, so nobody can log in and no action runs. On the gateway, run "
    "<code>bcpm-gateway set-password --config /etc/bcpm-gateway/gateway.toml</code> and restart it."
)


def e(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def layout(title: str, body: str, *, csrf: str | None, logged_in: bool, script: str | None = None) -> str:
    """A whole page; `script` names the one script it loads (from /static/), if any."""
    links = "".join(f'<a href="{href}">{name}</a>' for href, name in NAV) if logged_in else ""
    logout = (
        (
            f'<form method="post" action="/logout" class="inline"><input type="hidden" name="csrf" value="{e(csrf)}">'
            '<button type="submit">Log out</button></form>'
        )
        if logged_in
        else ""
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<title>{e(title)} - BCPM gateway</title><link rel="stylesheet" href="/static/style.css">'
        + (f'<script src="/static/{e(script)}" defer></script>' if script else "")
        + f"</head><body><header><strong>BCPM gateway</strong><nav>{links}</nav>{logout}</header>"
        f"<main><h1>{e(title)}</h1>{body}</main></body></html>"
    )


def node_tabs(address: int, current: str) -> str:
    """The links between a node's pages."""
    links = "".join(
        f'<a href="/nodes/{address}{path}"' + (' class="current"' if key == current else "") + f">{name}</a>"
        for key, path, name in NODE_TABS
    )
    return f'<nav class="tabs">{links}</nav>'


def table(headers: Iterable[str], rows: Iterable[Iterable[str]], **attributes: str) -> str:
    """A table of already-escaped cells."""
    extra = "".join(f' {name}="{e(value)}"' for name, value in attributes.items())
    head = "".join(f"<th>{e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table{extra}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def pairs(items: Iterable[tuple[str, object]]) -> str:
    return table(("", ""), ((e(k), e("-" if v is None else v)) for k, v in items), **{"class": "pairs"})


def value_cell(value: dict[str, Any] | None) -> str:
    """A live value: the script finds it by register and updates text and quality."""
    if value is None:
        return ""
    return f'<span class="value {e(value["quality"])}" data-register="{value["register"]}">{e(value["shown"])}</span>'


def login(message: str, *, password_set: bool) -> str:
    if not password_set:
        body = f'<p class="warning">{NO_PASSWORD}</p>'
    else:
        body = (f'<p class="error">{e(message)}</p>' if message else "") + (
            '<form method="post" action="/login" class="login">'
            '<label>User <input name="user" value="admin" autocomplete="username"></label>'
            '<label>Password <input name="password" type="password" autocomplete="current-password" autofocus></label>'
            '<button type="submit">Log in</button></form>'
        )
    return layout("Log in", body, csrf=None, logged_in=False)


def overview(
    uptime_s: float, faces: list[FaceState], bus: dict[str, Any], findings: list[str] | None, csrf: str
) -> str:
    days, rest = divmod(int(uptime_s), 86400)
    hours, rest = divmod(rest, 3600)
    uptime = f"{days} d {hours} h {rest // 60} min" if days else f"{hours} h {rest // 60} min {rest % 60} s"
    face_rows = ((e(f.name), e(f.address), f'<span class="{e(f.state)}">{e(f.state)}</span>') for f in faces)
    errors = ", ".join(f"{kind} {count}" for kind, count in bus["errors"].items())
    bus_rows = (
        ("Serial port", bus["port"]),
        ("Line", f"{bus['baudrate']} baud {bus['framing']}"),
        ("Poll interval", f"{bus['poll_interval_s']} s"),
        ("Last poll cycle", _seconds(bus["cycle_s"])),
        ("Wire floor of that cycle", _seconds(bus["wire_floor_s"])),
        ("Transactions/s in that cycle", bus["transactions_per_s"]),
        ("Transactions", bus["transactions"]),
        ("Errors", errors),
        ("Stale bytes flushed", bus["stale_bytes"]),
        ("Search for meters", _scan(bus["scan"])),
        ("Upstream port", _upstream(bus["upstream"])),
    )
    body = (
        pairs([("Uptime", uptime)])
        + "<h2>Faces</h2>"
        + table(("Face", "Address", "State"), face_rows)
        + "<h2>RS-485 bus</h2>"
        + pairs(bus_rows)
        + "<h2>BACnet network doctor</h2>"
        + _findings(findings)
        + "<h2>Actions</h2>"
        + action_button("/confirm/rescan", "Rescan the bus")
        + action_button("/confirm/restart", "Restart the gateway")
    )
    return layout("Overview", body, csrf=csrf, logged_in=True)


def _upstream(upstream: dict[str, Any]) -> str:
    """The upstream port in one line: what it is, where, and what it has done."""
    if upstream["mode"] == "off":
        return "off"
    counts = upstream["counts"]
    where = f"{upstream['port']} at {upstream['baudrate']} baud"
    if upstream["mode"] == "mstp":
        done = (
            f"frames {counts.get('frames_sent', 0)} sent, {counts.get('frames_received', 0)} received, "
            f"tokens {counts.get('tokens_received', 0)}, CRC errors {counts.get('invalid_frames', 0)}"
        )
        what = f"BACnet MS/TP, MAC {upstream['mac']}, {where}"
    else:
        refused = counts.get("exceptions", 0)  # refused writes among them
        answered = max(0, counts.get("replies", 0) - refused)
        done = f"requests {counts.get('requests', 0)}, answered {answered}, refused {refused}"
        what = f"Modbus RTU slave, {where}"
    state = "open" if counts.get("port_open") else "not open"
    return f"{what} (port {state}): {done}"


def _scan(scan: dict[str, Any]) -> str:
    """Whether a meter not served is not found yet (a pass running) or not there (the last pass done)."""
    if scan["running"]:
        return f"pass running, {scan['left']} addresses left"
    if scan["last_finished"] is None:
        return "no pass yet"
    finished = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(scan["last_finished"]))
    return f"last pass took {_seconds(scan['last_seconds'])}, finished {finished}"


#: The columns the node list and a node's page share, in order.
_NODE_HEADERS = (
    "Address",
    "Panel",
    "Board",
    "Model",
    "Serial",
    "Firmware",
    "Online",
    "Last poll",
    "Failures",
    "BACnet device",
)


def nodes(rows: list[dict[str, Any]], csrf: str) -> str:
    cells = (
        (
            f'<a href="/nodes/{n["address"]}">{n["address"]}</a>',
            e(n["panel"]),
            e(n["board"]),
            e(n["model"]),
            e(n["serial"]),
            e(n["firmware"]),
            _online(n["online"]),
            e(_seconds(n["last_poll_age_s"])),
            e(n["failures"]),
            e(n["bacnet_device_id"]),
            e(n["snmp_index"]),
        )
        for n in rows
    )
    body = (
        table((*_NODE_HEADERS, "SNMP index"), cells) if rows else "<p>No meter node known yet (discovery running?).</p>"
    )
    return layout("Nodes", body, csrf=csrf, logged_in=True)


def node(detail: dict[str, Any], csrf: str) -> str:
    n = detail["node"]
    summary = table(
        (*_NODE_HEADERS, "BACnet name", "SNMP index"),
        [
            (
                e(n["address"]),
                e(n["panel"]),
                e(n["board"]),
                e(n["model"]),
                e(n["serial"]),
                e(n["firmware"]),
                f'<span id="online">{_online(n["online"])}</span>',
                f'<span id="age">{e(_seconds(n["last_poll_age_s"]))}</span>',
                f'<span id="failures">{e(n["failures"])}</span>',
                e(n["bacnet_device_id"]),
                e(n["bacnet_name"]),
                e(n["snmp_index"]),
            )
        ],
    )
    channels = table(
        ("Channel", "Name", "Current (A)", "Power (kW)", "Power factor", "Alarm status"),
        (
            (
                e(row["channel"]),
                e(row["name"]),
                value_cell(row["current"]),
                value_cell(row["kw"]),
                value_cell(row["pf"]),
                value_cell(row["alarm"]),
            )
            for row in detail["channels"]
        ),
    )

    def values(items: list[dict[str, Any]]) -> str:
        return (
            table(
                ("", "Value", "Unit"),
                ((e(v["name"]), value_cell(v), e(v["units"])) for v in items),
                **{"class": "pairs"},
            )
            if items
            else "<p>None on this model.</p>"
        )

    body = (
        node_tabs(n["address"], "values")
        + summary
        + action_button(f"/confirm/clear-alarms?address={n['address']}", "Clear latched alarms")
        + action_button(f"/confirm/forget?address={n['address']}", "Forget this node")
        + f'<section id="live" data-address="{n["address"]}" data-refresh="{detail["refresh_s"]}">'
        + "<h2>Voltage</h2>"
        + values(detail["voltage"] + detail["voltage_alarms"])
        + "<h2>Channels</h2>"
        + channels
        + "<h2>Auxiliary totals</h2>"
        + values(detail["aux_totals"])
        + "<h2>Logical meters</h2>"
        + values(detail["meters"])
        + "</section>"
    )
    return layout(f"Node {n['address']}: all values", body, csrf=csrf, logged_in=True, script="app.js")


def events(lines: list[tuple[str, str]], csrf: str) -> str:
    body = (
        table(("Time (UTC)", "Event"), ((e(when), e(what)) for when, what in lines))
        if lines
        else ("<p>No alarm, node or action event since the gateway started.</p>")
    )
    return layout("Events", body, csrf=csrf, logged_in=True)


def configuration(sections: dict[str, dict[str, str]], csrf: str) -> str:
    body = "<p>The settings the gateway runs with; secrets are masked.</p>" + "".join(
        f"<h2>[{e(name)}]</h2>" + pairs(keys.items()) for name, keys in sections.items()
    )
    return layout("Configuration", body, csrf=csrf, logged_in=True)


def confirm(question: str, action: str, fields: dict[str, str], csrf: str, back: str) -> str:
    hidden = "".join(f'<input type="hidden" name="{e(k)}" value="{e(v)}">' for k, v in {**fields, "csrf": csrf}.items())
    body = (
        f'<p>{e(question)}</p><form method="post" action="{e(action)}">{hidden}'
        f'<button type="submit" id="confirm">Confirm</button> <a href="{e(back)}">Cancel</a></form>'
    )
    return layout("Confirm", body, csrf=csrf, logged_in=True)


def outcome(title: str, message: str, back: str, csrf: str, *, ok: bool) -> str:
    body = f'<p class="{"ok" if ok else "error"}" id="outcome">{e(message)}</p><p><a href="{e(back)}">Back</a></p>'
    return layout(title, body, csrf=csrf, logged_in=True)


def action_button(href: str, label: str) -> str:
    return f'<p><a class="button" href="{e(href)}">{e(label)}</a></p>'


def _findings(findings: list[str] | None) -> str:
    if findings is None:
        return "<p>Not running (BACnet off, or bacnet.doctor_interval = 0).</p>"
    if not findings:
        return '<p class="good">No other router to the virtual network, no device ID used twice.</p>'
    return "<ul>" + "".join(f'<li class="error">{e(each)}</li>' for each in findings) + "</ul>"


def _online(online: bool) -> str:
    return '<span class="good">online</span>' if online else '<span class="stale">offline</span>'


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value} s"


def names_page(address: int, names: dict[int, str], csrf: str, error: str = "") -> str:
    """A form with a name for each CT channel of a node (kept in the state file)."""
    rows = "".join(
        f'<tr><th><label for="n{channel}">{channel}{" (" + label + ")" if label else ""}</label></th>'
        f'<td><input name="n{channel}" id="n{channel}" value="{e(names.get(channel, ""))}" '
        f'maxlength="{CIRCUIT_NAME_MAX}"></td></tr>'
        for channel, label in ((c, MAINS.get(c, "")) for c in CIRCUITS)
    )
    body = (
        node_tabs(address, "names")
        + (f'<p class="error" id="errors">{e(error)}</p>' if error else "")
        + "<p>What each circuit feeds, as the BMS and NMS should show it: the panel, the trends, BACnet (each "
        "object's Description), SNMP (bcpmChanConfigName) and the EDE list show it. 1-"
        f"{CIRCUIT_NAME_MAX} printable ASCII characters; empty for none.</p>"
        f'<form method="post" action="/actions/names" class="names"><input type="hidden" name="csrf" value="{e(csrf)}">'
        f'<input type="hidden" name="address" value="{address}"><table class="pairs">{rows}</table>'
        '<button type="submit">Save names</button></form>'
    )
    return layout(f"Node {address}: circuit names", body, csrf=csrf, logged_in=True)


def downloads(csrf: str, ede: bool) -> str:
    items = [
        ("/downloads/BCPM-GATEWAY-MIB.txt", "BCPM-GATEWAY-MIB", "the SNMP MIB module, for the NMS"),
        ("/downloads/PICS.md", "PICS", "BACnet Protocol Implementation Conformance Statement"),
        ("/settings/download", "Configuration", "every setting as a restart runs it (secrets left out)"),
    ]
    if ede:
        items.insert(1, ("/downloads/bcpm-gateway-ede.csv", "EDE point list", "every BACnet device and object"))
    body = (
        '<ul class="downloads">'
        + "".join(f'<li><a href="{href}" download>{e(name)}</a>: {e(what)}</li>' for href, name, what in items)
        + "</ul>"
    )
    if not ede:
        body += "<p>No EDE list: BACnet is off.</p>"
    return layout("Downloads", body, csrf=csrf, logged_in=True)
