// A node's trends: each chart drawn again by the gateway once a minute, when a sample is added.
"use strict";

const SAMPLE_MS = 60000;

async function redraw() {
  for (const figure of document.querySelectorAll("figure.trend[data-src]")) {
    try {
      const reply = await fetch(figure.dataset.src, {cache: "no-store"});
      if (reply.ok) figure.innerHTML = await reply.text();
    } catch (error) {
      // The gateway is restarting or the network is gone: the next minute tries again.
    }
  }
}

setInterval(redraw, SAMPLE_MS);
