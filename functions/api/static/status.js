// The status page's logic (issue 19). No data lives in the page: it reads status.json with the
// API token the user typed, kept in sessionStorage (gone with the tab). URLs are relative so the
// page works behind whatever prefix the function is served under (Cloud Functions: /api/...).
"use strict";

(function () {
  const TOKEN_KEY = "traccar-bridge-token";
  const REFRESH_MS = 60 * 1000; // issue 19: every 60 s while the tab is visible
  const IDLE_MS = 15 * 60 * 1000; // and not at all after 15 minutes without interaction
  const TILES = "https://tile.openstreetmap.org/{z}/{x}/{y}.png";

  const $ = (id) => document.getElementById(id);
  let lastInteraction = Date.now();
  let lastLoad = 0;
  let timer = null;
  let map = null;
  let markers = null;

  // --- the token -----------------------------------------------------------------------------

  function token() { return sessionStorage.getItem(TOKEN_KEY); }

  function showLogin(message) {
    sessionStorage.removeItem(TOKEN_KEY);
    stopTimer();
    $("app").hidden = true;
    $("refresh").hidden = true;
    $("logout").hidden = true;
    $("login").hidden = false;
    $("login-error").textContent = message || "";
    $("refresh-state").textContent = "";
    $("token").focus();
  }

  function showApp() {
    $("login").hidden = true;
    $("app").hidden = false;
    $("refresh").hidden = false;
    $("logout").hidden = false;
  }

  class AuthLost extends Error {}

  // One call of the JSON API; a 401 means the token is wrong or was revoked.
  async function api(method, path) {
    const response = await fetch(path, {
      method: method,
      headers: { Authorization: "Bearer " + token(), Accept: "application/json" },
      cache: "no-store",
    });
    let body = null;
    try { body = await response.json(); } catch (e) { body = null; }
    if (response.status === 401) throw new AuthLost((body && body.error) || "wrong token");
    if (!response.ok) {
      throw new Error((body && body.error) || "HTTP " + response.status);
    }
    return body;
  }

  // --- formatting ----------------------------------------------------------------------------

  function when(iso) {
    if (!iso) return "—";
    const date = new Date(iso);
    const seconds = Math.round((Date.now() - date.getTime()) / 1000);
    const abs = Math.abs(seconds);
    let text;
    if (abs < 90) text = abs + " s";
    else if (abs < 5400) text = Math.round(abs / 60) + " min";
    else if (abs < 129600) text = Math.round(abs / 3600) + " h";
    else text = Math.round(abs / 86400) + " d";
    return seconds >= 0 ? text + " ago" : "in " + text;
  }

  function el(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (className) node.className = className;
    return node;
  }

  function cell(row, label, parts) {
    const td = el("td");
    td.dataset.label = label;
    const box = el("div");
    for (const part of parts) if (part) box.appendChild(part);
    td.appendChild(box);
    row.appendChild(td);
    return box;
  }

  // --- rendering -----------------------------------------------------------------------------

  function renderOverview(report) {
    const list = $("overview");
    list.replaceChildren();
    const add = (term, text, className, detail) => {
      list.appendChild(el("dt", term));
      const dd = el("dd", text, className);
      if (detail) dd.appendChild(el("small", " " + detail, "muted"));
      list.appendChild(dd);
    };
    const g = report.google;
    add("Google credentials", g.status === "ok" ? "accepted" : "expired: upload new ones",
        g.status === "ok" ? "ok" : "bad", "since " + new Date(g.since).toLocaleString() +
        (g.reason ? " (" + g.reason + ")" : ""));
    const t = report.traccar;
    const reach = { reachable: "ok", unreachable: "bad", not_configured: "warn", unknown: "muted" };
    add("Traccar OsmAnd", t.osmand.replace("_", " "), reach[t.osmand],
        (t.osmand_detail || "") + (t.osmand_seen_at ? " · " + when(t.osmand_seen_at) : ""));
    add("Traccar REST", t.rest.replace("_", " "), reach[t.rest],
        (t.rest_detail || "no device creation in the recent push log") +
        (t.rest_seen_at ? " · " + when(t.rest_seen_at) : ""));
    const waiting = report.devices.reduce((sum, d) => sum + d.outbox, 0);
    add("Devices", report.devices.length + " (" + waiting + " positions waiting)");
  }

  function renderDevices(report) {
    const body = $("devices").querySelector("tbody");
    body.replaceChildren();
    $("truncated").hidden = !report.truncated;
    if (!report.devices.length) {
      const row = el("tr");
      const td = el("td", "No devices yet.");
      td.colSpan = 8;
      row.appendChild(td);
      body.appendChild(row);
    }
    for (const d of report.devices) {
      const row = el("tr");
      row.dataset.device = d.id;
      cell(row, "Device", [el("strong", d.name || d.id),
        el("small", [d.source, d.kind, d.name ? d.id : null].filter(Boolean).join(" · "))]);
      // A Google device's account (issue 17: several accounts) and its credentials' state.
      const healthy = (d.account_status || report.google.status) === "ok";
      const account = d.source === "google"
        ? [el("span", d.account || "Google account"),
           el("small", healthy ? "credentials ok" : "credentials expired", healthy ? "ok" : "bad")]
        : [el("span", d.source, "muted")];
      cell(row, "Account", account);
      const result = d.last_result;
      const failed = result && result.error;
      cell(row, "Last sync", [
        el("span", when(d.last_sync)),
        result ? el("small", failed ? result.error : result.pushed + " pushed, " + result.new + " new",
                    failed ? "bad error" : "") : null,
      ]);
      cell(row, "Next run", [el("span", d.paused ? "paused" : d.has_service ? when(d.next_sync)
                                                  : "no service")]);
      cell(row, "Outbox", [
        el("span", d.outbox ? d.outbox + " waiting" : "empty", d.outbox ? "warn outbox" : "outbox"),
        d.parked ? el("small", d.parked + " parked") : null,
        d.oldest_waiting ? el("small", "oldest from " + when(d.oldest_waiting)) : null,
        d.oldest_waiting_error ? el("small", d.oldest_waiting_error, "bad") : null,
      ]);
      const state = d.excluded ? "excluded" : d.paused_by_user ? "paused by you"
        : d.paused ? "paused (credentials)" : d.has_service ? "active" : "no service";
      cell(row, "State", [el("span", state, d.paused || d.excluded ? "warn" : "")]);
      const p = d.last_position;
      cell(row, "Last position", p ? [el("span", when(p.time)),
        el("small", p.accuracy != null ? "± " + Math.round(p.accuracy) + " m" : "accuracy unknown")]
        : [el("span", "—")]);
      const actions = cell(row, "Actions", []);
      actions.className = "actions";
      const label = d.name || d.id;
      const enc = encodeURIComponent(d.id);
      if (!d.excluded) {
        actions.appendChild(action("Sync now", "Sync " + label + " now", "PUT",
                                   "traccar/devices/" + enc + "/locations", describeSync));
      }
      if (d.has_service) {
        const resume = d.paused_by_user;
        actions.appendChild(action(resume ? "Resume" : "Pause",
          (resume ? "Resume " : "Pause ") + label, "POST",
          "devices/" + enc + "/services/" + (resume ? "resume" : "pause"), describeService));
      }
      if (d.parked) {
        // A manual sync retries parked positions (shared/pipeline.py).
        actions.appendChild(action("Retry parked", "Retry the " + d.parked + " parked positions of " +
                                   label, "PUT", "traccar/devices/" + enc + "/locations", describeSync));
      }
      body.appendChild(row);
    }
  }

  function describeSync(answer) {
    const counts = {};
    for (const item of answer) counts[item.status] = (counts[item.status] || 0) + 1;
    const parts = Object.entries(counts).map(([status, n]) => n + " " + status);
    const errors = answer.filter((item) => item.message).map((item) => item.message);
    return (parts.length ? parts.join(", ") : "nothing new") +
      (errors.length ? " — " + errors[0] : "");
  }

  function describeService(answer) {
    return answer.paused_by_user ? "paused" : answer.paused
      ? "resumed by you; still paused until new Google credentials are uploaded" : "resumed";
  }

  function action(text, label, method, path, describe) {
    const button = el("button", text);
    button.type = "button";
    button.setAttribute("aria-label", label);
    button.addEventListener("click", async () => {
      button.disabled = true;
      say(label + "…");
      try {
        const answer = await api(method, path);
        say(label + ": " + describe(answer));
        await load();
      } catch (error) {
        if (error instanceof AuthLost) return showLogin("The token was revoked: sign in again.");
        say(label + " failed: " + error.message, true);
      } finally {
        button.disabled = false;
      }
    });
    return button;
  }

  function say(text, bad) {
    const message = $("message");
    message.textContent = text;
    message.className = bad ? "bad" : "";
  }

  function renderFailures(report) {
    const list = $("failures");
    list.replaceChildren();
    if (!report.failures.length) list.appendChild(el("li", "None among the newest attempts.", "muted"));
    for (const f of report.failures) {
      const item = el("li");
      item.appendChild(el("strong", f.name + ": "));
      item.appendChild(el("span", f.error, "bad"));
      item.appendChild(el("small", " " + when(f.attempted_at) +
        (f.traccar_status ? " · HTTP " + f.traccar_status : ""), "muted"));
      list.appendChild(item);
    }
  }

  function renderMap(report) {
    if (typeof L === "undefined") {
      $("map-note").textContent = "The map library did not load.";
      return;
    }
    if (!map) {
      map = L.map("map", { keyboard: true, worldCopyJump: true }).setView([20, 0], 2);
      L.tileLayer(TILES, {
        maxZoom: 19,
        attribution: '&copy; <a href="https://www.openstreetmap.org/copyright">OpenStreetMap</a>',
      }).addTo(map);
      markers = L.layerGroup().addTo(map);
    }
    markers.clearLayers();
    const points = [];
    for (const d of report.devices) {
      const p = d.last_position;
      if (!p) continue;
      const point = [p.lat, p.lon];
      points.push(point);
      L.circleMarker(point, { radius: 8, weight: 2, className: "device-marker",
                              color: d.last_result && d.last_result.error ? "#b3261e" : "#0550ae" })
        .bindTooltip(d.name || d.id)
        .bindPopup(el("span", (d.name || d.id) + " · " + when(p.time) +
          (p.accuracy != null ? " · ± " + Math.round(p.accuracy) + " m" : "")))
        .addTo(markers);
    }
    if (points.length) map.fitBounds(points, { maxZoom: 14, padding: [24, 24] });
    $("map-note").textContent = points.length + " of " + report.devices.length +
      " devices have a position. Map tiles come from OpenStreetMap; without network only they are missing.";
  }

  // --- loading and refreshing ----------------------------------------------------------------

  async function load() {
    try {
      const report = await api("GET", "status.json");
      showApp();
      renderOverview(report);
      renderDevices(report);
      renderFailures(report);
      renderMap(report);
      lastLoad = Date.now();
      $("refresh-state").textContent = "Updated " + new Date(report.generated_at).toLocaleTimeString() +
        "; refreshes every minute while this tab is visible.";
      return true;
    } catch (error) {
      if (error instanceof AuthLost) {
        showLogin(lastLoad ? "The token was revoked or changed: sign in again."
          : "Wrong token: " + error.message);
        return false;
      }
      showApp();
      say("Could not read the status: " + error.message, true);
      return false;
    }
  }

  function stopTimer() {
    if (timer !== null) clearInterval(timer);
    timer = null;
  }

  function tick() {
    if (document.visibilityState !== "visible" || !token()) return;
    if (Date.now() - lastInteraction > IDLE_MS) {
      stopTimer();
      $("refresh-state").textContent = "Paused after 15 minutes without interaction: " +
        "press a key, click or refresh to resume.";
      return;
    }
    load();
  }

  function startTimer() {
    stopTimer();
    timer = setInterval(tick, REFRESH_MS);
  }

  function interacted() {
    const wasIdle = timer === null && token() && !$("app").hidden;
    lastInteraction = Date.now();
    if (wasIdle) { startTimer(); load(); }
  }

  document.addEventListener("DOMContentLoaded", () => {
    for (const type of ["keydown", "pointerdown", "wheel", "touchstart"]) {
      document.addEventListener(type, interacted, { passive: true });
    }
    document.addEventListener("visibilitychange", () => {
      // Back to a tab whose data aged while hidden: refresh at once, not a minute later.
      if (document.visibilityState === "visible" && token() && timer !== null &&
          Date.now() - lastLoad > REFRESH_MS) load();
    });
    $("login").addEventListener("submit", async (event) => {
      event.preventDefault();
      sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
      $("token").value = "";
      lastLoad = 0;
      if (await load()) { startTimer(); $("devices-heading").focus(); }
    });
    $("logout").addEventListener("click", () => showLogin("Signed out."));
    $("refresh").addEventListener("click", () => load());
    if (token()) { load().then((ok) => { if (ok) startTimer(); }); } else { showLogin(); }
  });
})();
