// A node's panel: its circuits again from /api/nodes/{address}/panel once a poll cycle, without a
// reload. The page was drawn whole on the server; this only changes what moved. The request carries
// the ETag of the panel last shown, so an unchanged panel costs a 304 and no body.
"use strict";

const panel = document.getElementById("panel");
let shown = null; // the ETag of what the page shows

function number(value, decimals) {
  return value === null ? "-" : value.toFixed(decimals);
}

function describe(channel) {
  // The hover text; gateway/web/panel.py writes the same.
  const name = channel.name || channel.label;
  const share = channel.share === null ? "-" : channel.share + " %";
  const breaker = channel.breaker === null ? "-" : channel.breaker + " A";
  const alarms = channel.alarms ? ` (${channel.alarms})` : "";
  return `Ch ${channel.channel}${name ? " " + name : ""}: ${number(channel.amps, 1)} A, ` +
    `${number(channel.kw, 2)} kW, ${share} of ${breaker}; ${channel.state}${alarms}`;
}

function showChannel(channel) {
  const cell = document.getElementById("c" + channel.channel);
  if (!cell) return;
  const side = cell.classList.contains("left") ? "left" : cell.classList.contains("right") ? "right" : "mains";
  cell.className = `circuit ${side} s-${channel.state}`;
  cell.title = describe(channel);
  const width = channel.share === null ? 0 : Math.max(0, Math.min(100, channel.share));
  cell.querySelector("rect.fill").setAttribute("width", width.toFixed(1));
  cell.querySelector(".amps").textContent = number(channel.amps, 1) + " A";
  cell.querySelector(".kw").textContent = number(channel.kw, 2) + " kW";
  cell.querySelector(".name").textContent = channel.name || channel.label;
}

function show(view) {
  view.mains.forEach(showChannel);
  view.circuits.forEach(showChannel);
  view.volts_ln.forEach((volts, i) => { document.getElementById("v-ln" + i).textContent = number(volts, 1); });
  view.volts_ll.forEach((volts, i) => { document.getElementById("v-ll" + i).textContent = number(volts, 1); });
  document.getElementById("v-hz").textContent = number(view.frequency, 2);
  document.getElementById("v-kw").textContent = number(view.kw_total, 2);
  document.getElementById("online").textContent = view.online ? "online" : "offline";
}

async function refresh() {
  let wait = Number(panel.dataset.refresh) * 1000;
  try {
    const headers = shown ? {"If-None-Match": shown} : {};
    const reply = await fetch(`/api/nodes/${panel.dataset.address}/panel`, {cache: "no-store", headers});
    if (reply.status === 200) {
      const answer = await reply.json();
      show(answer.panel);
      shown = reply.headers.get("ETag");
      panel.dataset.refresh = answer.refresh_s;
      wait = answer.refresh_s * 1000;
    }
  } catch (error) {
    // The gateway is restarting or the network is gone: the next refresh tries again.
  }
  setTimeout(refresh, wait);
}

if (panel) setTimeout(refresh, Number(panel.dataset.refresh) * 1000);
