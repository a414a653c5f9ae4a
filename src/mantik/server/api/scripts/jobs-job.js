// /jobs/<run>: its state, and its log followed from the end. The page keeps the last
// 256 KiB of it; the whole log is `mantik runs logs`.
var KEEP = 262144;
var run = document.getElementById("job").dataset.run;
var api = "/compute-backend/runs/" + run;
var state = document.querySelector("#state .badge");
var log = document.getElementById("log");
var follow = document.getElementById("follow");
var decoder = new TextDecoder();
var offset = null;  // where the next read starts (X-Mantik-Log-End); first the tail

function show(text) {
  if (!text) return;
  var all = log.textContent + text;
  if (all.length > KEEP) all = "[mantik: older lines left out of this page]\n" + all.slice(-KEEP);
  log.textContent = all;
  if (follow.checked) log.scrollTop = log.scrollHeight;
}

function readLog() {
  var range = offset === null ? "tail_bytes=65536" : "offset=" + offset + "&length=1048576";
  return fetch(api + "/logs?" + range, {credentials: "same-origin"}).then(function (response) {
    if (signedOut(response) || !response.ok) return;
    offset = Number(response.headers.get("X-Mantik-Log-End"));
    return response.arrayBuffer().then(function (bytes) {
      show(decoder.decode(bytes, {stream: true}));
    });
  });
}

function tick() {
  readJson(api).then(function (view) {
    if (!view) return;
    badge(state, view);
    document.getElementById("duration").textContent = duration(view);
    document.getElementById("lag").textContent = view.sync_lag_seconds == null
      ? "" : view.sync_lag_seconds + " s behind (offline tracking)";
    if (ended(view)) dropCancel(document);
    // One more read after the end: the job's last lines.
    return readLog().then(function () { if (!ended(view)) setTimeout(tick, 2000); });
  }).catch(function () { setTimeout(tick, 5000); });
}

tick();
