/* surgbox console: live status and preview on the record page, player controls. No framework,
   no inline script (the Content-Security-Policy forbids it). Polls do not count as user actions:
   an unattended console logs out by itself, and this script then shows the login page. */
(function () {
  "use strict";
  var body = document.body;
  var sleep = function (ms) { return new Promise(function (r) { setTimeout(r, ms); }); };
  var pad = function (n) { return (n < 10 ? "0" : "") + n; };
  var text = function (el, s) { if (el && el.textContent !== s) { el.textContent = s; } };

  function hms(s) {
    s = Math.max(0, Math.floor(s));
    return pad(Math.floor(s / 3600)) + ":" + pad(Math.floor(s / 60) % 60) + ":" + pad(s % 60);
  }

  function gone(r) {
    if (r.status === 401) { window.location.assign("/login"); return true; }
    return false;
  }

  async function previewLoop(img) {
    var seq = 0;
    for (;;) {
      try {
        var r = await fetch("/api/preview?after=" + seq, { cache: "no-store", credentials: "same-origin" });
        if (gone(r)) { return; }
        if (r.status === 200) {
          var next = parseInt(r.headers.get("x-preview-seq") || "0", 10);
          var url = URL.createObjectURL(await r.blob());
          var old = img.src;
          img.onload = function () { if (old.indexOf("blob:") === 0) { URL.revokeObjectURL(old); } };
          img.src = url;
          seq = next;
          img.dataset.seq = String(next);
        } else if (r.status === 204) {
          await sleep(250);
        } else {
          await sleep(2000);
        }
      } catch (e) {
        await sleep(1000);
      }
    }
  }

  // The monitor values worth a glance, in this order; others are left to the recording's data track.
  var PREFERRED = ["BIS", "SQI", "EMG", "EMGLOW", "SR", "SEF", "HR", "SpO2", "NIBP", "EtCO2", "Temp"];
  var MAX_TILES = 6;

  function showReadings(box, readings) {
    if (!box) { return; }
    var sources = Object.keys(readings);
    var tiles = [];
    sources.forEach(function (src) {
      var vals = readings[src];
      var keys = PREFERRED.filter(function (k) { return k in vals; });
      if (!keys.length) { keys = Object.keys(vals); }
      keys.forEach(function (k) {
        var v = vals[k];
        tiles.push([(sources.length > 1 ? src + " " : "") + k, v == null ? "–" : String(Math.round(v))]);
      });
    });
    if (!tiles.length) { return; }
    box.replaceChildren.apply(box, tiles.slice(0, MAX_TILES).map(function (p) {
      var div = document.createElement("div");
      div.className = "tile";
      var label = document.createElement("span"); label.textContent = p[0];
      var value = document.createElement("b"); value.textContent = p[1];
      div.append(label, value);
      return div;
    }));
  }

  function showStatus(st, root) {
    var rec = st.recording;
    var state = rec ? rec.state : "off";
    if (root.dataset.state !== state && !(root.dataset.state === "recording" && state === "stopping")) {
      window.location.reload();
      return;
    }
    if (rec) {
      text(document.getElementById("elapsed"), hms(rec.elapsed_s || 0));
      Object.keys(rec.sources || {}).forEach(function (name) {
        var li = root.querySelector('[data-source="' + CSS.escape(name) + '"]');
        if (!li) { return; }
        var s = rec.sources[name];
        li.className = s.no_signal ? "bad" : "ok";
        text(li.querySelector("[data-field=fps]"), s.no_signal ? body.dataset.noSignal || "NO SIGNAL" :
          (s.media !== "video" ? "✓" : (s.fps == null ? "–" : s.fps.toFixed(1) + " fps")));
      });
      showReadings(document.getElementById("readings"), rec.readings || {});
    }
    var storage = document.getElementById("storage");
    if (storage && st.storage && st.storage.free_bytes != null) {
      var free = storage.querySelector("[data-field=free]");
      var word = free.textContent.replace(/^[\d.]+ GB /, "");
      text(free, (st.storage.free_bytes / 1e9).toFixed(1) + " GB " + word);
    }
  }

  async function statusLoop(root) {
    for (;;) {
      try {
        var r = await fetch("/api/status", { cache: "no-store", credentials: "same-origin" });
        if (gone(r)) { return; }
        if (r.ok) { showStatus(await r.json(), root); }
      } catch (e) { /* the server restarts: try again */ }
      await sleep(1000);
    }
  }

  function snapshotButton(form) {
    form.addEventListener("submit", async function (ev) {
      ev.preventDefault();
      var note = document.getElementById("snapshot-note");
      var btn = form.querySelector("button");
      btn.disabled = true;
      try {
        var r = await fetch(form.action, {
          method: "POST", credentials: "same-origin", body: new FormData(form),
          headers: { "Accept": "application/json" }
        });
        if (gone(r)) { return; }
        var data = await r.json();
        text(note, r.ok ? "✓ " + hms(data.t || 0) : (data.error || r.statusText));
      } finally {
        btn.disabled = false;
      }
    });
  }

  function player() {
    var video = document.getElementById("player");
    if (!video) { return; }
    video.addEventListener("contextmenu", function (e) { e.preventDefault(); });
    document.querySelectorAll("button.seg").forEach(function (b) {
      b.addEventListener("click", function () {
        document.querySelectorAll("button.seg").forEach(function (o) { o.classList.remove("on"); });
        b.classList.add("on");
        video.src = b.dataset.src;
        video.play();
      });
    });
  }

  // Poll a background job's JSON every second; show(job) updates the page and says whether it still runs;
  // once it does not, reload the page (which then shows the result).
  async function pollJob(url, show) {
    for (;;) {
      await sleep(1000);
      try {
        var r = await fetch(url, { cache: "no-store", credentials: "same-origin" });
        if (gone(r)) { return; }
        if (!r.ok) { continue; }
        if (!show(await r.json())) { window.location.reload(); return; }
      } catch (e) { /* try again */ }
    }
  }

  function deidLoop(box) {
    var bar = document.getElementById("deid-progress");
    pollJob("/api/deid/" + encodeURIComponent(box.dataset.event), function (job) {
      if (job.total) { bar.max = job.total; }
      bar.value = job.frames || 0;
      return job.state === "running";
    });
  }

  function mb(n) { return (n / 1e6).toFixed(1); }

  function uploadLoop(box) {
    var bar = box.querySelector("progress");
    pollJob("/api/upload/" + encodeURIComponent(box.dataset.job), function (job) {
      if (bar && job.fraction != null) { bar.value = job.fraction; }
      var line = mb(job.bytes_done) + " / " + mb(job.bytes_total) + " MB";
      if (job.running && job.rate) { line += " · " + mb(job.rate) + " MB/s"; }
      if (job.running && job.eta != null) { line += " · " + hms(job.eta); }
      text(box.querySelector("[data-field=bytes]"), line);
      return job.running;
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var deid = document.getElementById("deid");
    if (deid) { deidLoop(deid); }
    document.querySelectorAll(".upjob[data-running='1']").forEach(uploadLoop);
    var root = document.getElementById("record");
    if (root) {
      if (root.dataset.state !== "off") { statusLoop(root); }
      var img = document.getElementById("preview");
      if (img) { previewLoop(img); }
      var snap = document.getElementById("snapshot-form");
      if (snap) { snapshotButton(snap); }
    }
    player();
    document.querySelectorAll("[data-back]").forEach(function (a) {
      a.addEventListener("click", function (e) { if (history.length > 1) { e.preventDefault(); history.back(); } });
    });
  });
}());
