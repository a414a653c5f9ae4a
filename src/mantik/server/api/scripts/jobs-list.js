// /jobs: every few seconds, the listed rows' states and durations while any is going
// (rows are not added or dropped: reload for new jobs).
function refresh() {
  readJson("/compute-backend/runs").then(function (views) {
    if (!views) return;
    var going = false;
    views.forEach(function (view) {
      var row = document.querySelector('tr[data-run="' + view.run_id + '"]');
      if (!row) return;
      badge(row.querySelector(".badge"), view);
      row.querySelector(".duration").textContent = duration(view);
      if (ended(view)) dropCancel(row); else going = true;
    });
    if (going) setTimeout(refresh, 5000);
  }).catch(function () { setTimeout(refresh, 10000); });
}

if (document.querySelector("form.cancel")) setTimeout(refresh, 5000);
