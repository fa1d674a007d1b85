// A node's "All values" page: its values again from /api/nodes/{address} once a poll cycle, without
// a reload. The page says how long a cycle takes (data-refresh); values change no faster than that.
"use strict";

const live = document.getElementById("live");

function values(item, found) {
  // Every {register, shown, quality} object in the node's JSON, however deep.
  if (Array.isArray(item)) item.forEach((each) => values(each, found));
  else if (item && typeof item === "object") {
    if ("register" in item && "shown" in item) found.push(item);
    else Object.values(item).forEach((each) => values(each, found));
  }
  return found;
}

async function refresh() {
  let wait = Number(live.dataset.refresh) * 1000;
  try {
    const reply = await fetch("/api/nodes/" + live.dataset.address, {cache: "no-store"});
    if (reply.ok) {
      const detail = await reply.json();
      for (const value of values(detail, [])) {
        const cell = live.querySelector(`[data-register="${value.register}"]`);
        if (cell) {
          cell.textContent = value.shown;
          cell.className = "value " + value.quality;
        }
      }
      const node = detail.node;
      document.getElementById("online").innerHTML = node.online
        ? '<span class="good">online</span>' : '<span class="stale">offline</span>';
      document.getElementById("age").textContent = node.last_poll_age_s === null ? "-" : node.last_poll_age_s + " s";
      document.getElementById("failures").textContent = node.failures;
      wait = detail.refresh_s * 1000;
    }
  } catch (error) {
    // The gateway is restarting or the network is gone: the next refresh tries again.
  }
  setTimeout(refresh, wait);
}

if (live) setTimeout(refresh, Number(live.dataset.refresh) * 1000);
