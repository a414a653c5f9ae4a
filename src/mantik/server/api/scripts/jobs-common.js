// Shared by the jobs pages. They only read the compute API (with the session cookie) and
// write text, never HTML.
"use strict";
var TERMINAL = ["FINISHED", "FAILED", "KILLED"];

function ended(view) {
  return TERMINAL.indexOf(view.run_status) >= 0;
}

function badge(element, view) {
  element.textContent = view.run_status;
  element.className = "badge " + view.run_status;
  element.title = "job state: " + view.state + (view.reason ? " (" + view.reason + ")" : "");
}

// As the page's own (jobs_page._duration): from submission to its end, or to now.
function duration(view) {
  var end = view.finished_at ? Date.parse(view.finished_at) : Date.now();
  var s = Math.max(0, Math.floor((end - Date.parse(view.submitted_at)) / 1000));
  var m = Math.floor(s / 60), h = Math.floor(m / 60), d = Math.floor(h / 24);
  function two(n) { return (n < 10 ? "0" : "") + n; }
  if (d) return d + " d " + (h % 24) + " h";
  if (h) return h + " h " + two(m % 60) + " min";
  return m ? m + " min " + two(s % 60) + " s" : s + " s";
}

// The session ended meanwhile (signed out elsewhere, expired): sign in again, and come back.
function signedOut(response) {
  if (response.status !== 401) return false;
  location.href = "/login?next=" + encodeURIComponent(location.pathname + location.search);
  return true;
}

function readJson(url) {
  return fetch(url, {credentials: "same-origin"}).then(function (response) {
    return signedOut(response) || !response.ok ? null : response.json();
  });
}

function dropCancel(scope) {
  var form = scope.querySelector("form.cancel");
  if (form) form.remove();
}

document.querySelectorAll("form.cancel").forEach(function (form) {
  form.addEventListener("submit", function (event) {
    if (!confirm("Cancel this job?")) event.preventDefault();
  });
});
