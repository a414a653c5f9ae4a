"""``/jobs``: the signed-in user's submitted runs in the browser, one job's log followed live,
and a cancel button (a same-origin form post, as the sign-in pages)."""

from __future__ import annotations

import logging
from datetime import datetime
from html import escape
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from mlflow.entities import ViewType

from mantik import _mlflow_internals as mlflow_internals
from mantik.compute.states import JobState
from mantik.server.api import jobs_scripts, page_shell
from mantik.server.api.compute import RunId
from mantik.server.api.deps import BrowserUser
from mantik.server.api.errors import public_message, status_of
from mantik.server.api.jobs_chart import RUN_STATUSES, chart
from mantik.server.api.pages import same_origin
from mantik.server.compute.errors import SiteError
from mantik.server.compute.offline.marks import SyncStatus, statuses
from mantik.server.compute.service import ComputeService
from mantik.server.errors import ServerError
from mantik.server.models import ComputeJob, utcnow
from mantik.server.tracking.permissions import can_access

log = logging.getLogger(__name__)
router = APIRouter(include_in_schema=False, dependencies=[Depends(same_origin)])
SHOWN = 200  # rows on the page; the rest is `mantik runs list`


def _service(request: Request) -> ComputeService:
    service: ComputeService = request.app.state.compute
    return service


def _nav(username: str) -> str:
    return (
        "<nav><span class=brand>mantik</span><a href='/jobs'>Jobs</a><a href='/'>MLflow UI</a>"
        f"<span class=hint>{escape(username)}</span><form method=post action=/logout>"
        "<button type=submit>Sign out</button></form></nav>"
    )


def _error(username: str, title: str, message: str, status_code: int) -> HTMLResponse:
    body = (
        f"{_nav(username)}<h1>{escape(title)}</h1><p class=error role=alert>{escape(message)}</p>"
    )
    return page_shell.page(title, body, status_code, wide=True)


def _duration(job: ComputeJob) -> str:
    seconds = int(((job.finished_at or utcnow()) - job.submitted_at).total_seconds())
    seconds = max(seconds, 0)
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def _sync(sync: SyncStatus | None) -> str:
    if sync is None or sync.tracking is None:
        return "—"
    if sync.lag_seconds is None:
        return escape(sync.tracking)
    return f"{escape(sync.tracking)}, {sync.lag_seconds:g} s behind"


def _when(moment: datetime | None) -> str:
    if moment is None:
        return "—"
    return f"<time datetime='{moment.isoformat()}'>{moment:%Y-%m-%d %H:%M:%S} UTC</time>"


def _names(jobs: list[ComputeJob]) -> tuple[dict[str, str], dict[str, str]]:
    """Experiment and run names from MLflow (ids where MLflow cannot say)."""
    store: Any = mlflow_internals.tracking_store()
    experiments: dict[str, str] = {}
    runs: dict[str, str] = {}
    for experiment_id in {job.experiment_id for job in jobs}:
        try:
            experiments[experiment_id] = store.get_experiment(experiment_id).name
        except Exception as exc:  # deleted for good, or MLflow's store is unreachable
            log.debug("no name for experiment %s: %s", experiment_id, exc)
    by_experiment: dict[str, list[str]] = {}
    for job in jobs:
        by_experiment.setdefault(job.experiment_id, []).append(job.run_id)
    for experiment_id, run_ids in by_experiment.items():
        listed = ", ".join(f"'{run_id}'" for run_id in run_ids)  # ids are [A-Za-z0-9_-]
        try:
            found = store.search_runs(
                [experiment_id],
                f"attributes.run_id IN ({listed})",
                ViewType.ALL,
                max_results=len(run_ids),
            )
        except Exception as exc:
            log.debug("no run names in experiment %s: %s", experiment_id, exc)
            continue
        runs.update((run.info.run_id, run.info.run_name or "") for run in found)
    return experiments, runs


def _cancel_form(job: ComputeJob, may_cancel: bool = True) -> str:
    if JobState(job.state).terminal or not may_cancel:
        return ""
    return (
        f"<form class=cancel method=post action='/jobs/{job.run_id}/cancel'>"
        "<button class='small danger' type=submit>Cancel</button></form>"
    )


def _run_link(job: ComputeJob, text: str) -> str:
    href = f"/#/experiments/{quote(job.experiment_id)}/runs/{quote(job.run_id)}"
    return f"<a href='{href}'>{text}</a>"


def _badge(job: ComputeJob) -> str:
    state = JobState(job.state)
    title = f"job state: {state.value}" + (f" ({job.reason})" if job.reason else "")
    return (
        f"<span class='badge {state.run_status}' title='{escape(title, quote=True)}'>"
        f"{state.run_status}</span>"
    )


def _row(job: ComputeJob, run_name: str, experiment: str, sync: SyncStatus | None) -> str:
    name = escape(run_name) if run_name else f"<code>{job.run_id[:12]}</code>"
    return (
        f"<tr data-run='{job.run_id}'><td><a href='/jobs/{job.run_id}'>{name}</a>"
        f"<div class=hint>{escape(job.entry_point)}</div></td>"
        f"<td>{escape(experiment)}</td><td>{escape(job.site)}</td><td>{_badge(job)}</td>"
        f"<td class=num>{_when(job.submitted_at)}</td>"
        f"<td class='num duration'>{_duration(job)}</td>"
        f"<td class=num>{_sync(sync)}</td><td>{_run_link(job, 'MLflow run')}</td>"
        f"<td>{_cancel_form(job)}</td></tr>"
    )


def _select(name: str, label: str, options: list[tuple[str, str]], chosen: str) -> str:
    items = "".join(
        f"<option value='{escape(value, quote=True)}'{' selected' if value == chosen else ''}>"
        f"{escape(text)}</option>"
        for value, text in [("", "all"), *options]
    )
    select = f"<select id={name} name={name}>{items}</select>"
    return f"<div><label for={name}>{label}</label>{select}</div>"


def _filters(experiments: dict[str, str], experiment: str, status: str) -> str:
    listed = sorted(experiments.items(), key=lambda item: item[1].lower())
    return (
        "<form class=filters method=get action=/jobs>"
        + _select("experiment", "Experiment", listed, experiment)
        + _select("status", "State", [(s, s) for s in RUN_STATUSES], status)
        + "<button class=small type=submit>Show</button></form>"
    )


@router.get("/jobs")
def jobs_page(
    request: Request, viewer: BrowserUser, experiment: str = "", status: str = ""
) -> Response:
    username = viewer.username
    if status and status not in RUN_STATUSES:
        message = f"Unknown state {status[:32]!r}; the states are {', '.join(RUN_STATUSES)}."
        return _error(username, "Your jobs", message, 400)
    service = _service(request)
    everything = service.own_jobs(username)
    jobs = [
        job
        for job in everything
        if (not experiment or job.experiment_id == experiment)
        and (not status or JobState(job.state).run_status == status)
    ]
    shown = jobs[:SHOWN]
    experiment_names, run_names = _names(shown)
    for job in everything:  # the filter offers every experiment the user submitted to
        experiment_names.setdefault(job.experiment_id, job.experiment_id)
    syncs = statuses(service.db, (job.run_id for job in shown))
    rows = "".join(
        _row(
            job,
            run_names.get(job.run_id, ""),
            experiment_names.get(job.experiment_id, job.experiment_id),
            syncs.get(job.run_id),
        )
        for job in shown
    )
    parts = [_nav(username), "<h1>Your jobs</h1>"]
    parts.append(
        chart([(j.submitted_at, JobState(j.state).run_status) for j in jobs], utcnow().date())
    )
    parts.append(_filters(experiment_names, experiment, status))
    if not jobs:
        parts.append(
            "<p>No jobs here yet. Submit one with <code>mantik runs submit</code>.</p>"
            if not everything
            else "<p>No job matches.</p>"
        )
    else:
        parts.append(
            "<table><thead><tr><th>Run</th><th>Experiment</th><th>Site</th><th>State</th>"
            "<th>Submitted</th><th>Duration</th><th>Sync</th><th></th><th></th></tr></thead>"
            f"<tbody>{rows}</tbody></table>"
        )
    if len(jobs) > SHOWN:
        parts.append(
            f"<p class=hint>The newest {SHOWN} of {len(jobs)} are shown; "
            "<code>mantik runs list</code> lists all.</p>"
        )
    if any(service.needs_credentials(job.site) for job in shown):
        parts.append(
            "<p class=hint>Sites that answer only with your own login (UNICORE) show the "
            "state last seen; <code>mantik runs list</code> asks them.</p>"
        )
    return page_shell.page("Your jobs", "".join(parts), wide=True, script=jobs_scripts.LIST)


@router.get("/jobs/{run_id}")
def job_page(request: Request, viewer: BrowserUser, run_id: RunId) -> Response:
    username = viewer.username
    service = _service(request)
    try:
        job = service.job(username, run_id)
    except ServerError as exc:
        return _error(username, "Job", public_message(request, exc.message), status_of(exc))
    may_cancel = can_access(username, job.experiment_id, "update")  # as the cancel checks
    experiments, runs = _names([job])
    sync = statuses(service.db, [job.run_id]).get(job.run_id)
    name = runs.get(job.run_id) or job.run_id
    exit_code = "—" if job.exit_code is None else str(job.exit_code)
    facts = [
        ("Run", f"<code>{job.run_id}</code> · {_run_link(job, 'open in MLflow')}"),
        ("Experiment", escape(experiments.get(job.experiment_id, job.experiment_id))),
        ("Site", escape(job.site)),
        ("Job id", escape(job.job_id or "— (not handed to the site yet)")),
        ("Entry point", escape(job.entry_point)),
        ("State", f"<span id=state>{_badge(job)}</span> <span id=lag class=hint></span>"),
        ("Reason", escape(job.reason or "—")),
        ("Exit code", exit_code),
        ("Submitted", _when(job.submitted_at)),
        ("Finished", _when(job.finished_at)),
        ("Duration", f"<span id=duration>{_duration(job)}</span>"),
        ("Sync", _sync(sync)),
    ]
    facts_html = "".join(f"<dt>{label}</dt><dd>{value}</dd>" for label, value in facts)
    body = (
        f"{_nav(username)}<div id=job data-run='{job.run_id}'><h1>{escape(name)}</h1>"
        f"<dl>{facts_html}</dl>{_cancel_form(job, may_cancel)}"
        "<h2 style='font-size:1.05rem'>Log</h2><label class=hint style='display:flex;gap:.4rem;"
        "align-items:center'><input id=follow type=checkbox checked style='width:auto'>follow"
        "</label><pre id=log class=log aria-live=polite></pre></div>"
    )
    return page_shell.page(f"Job {name}", body, wide=True, script=jobs_scripts.JOB)


@router.post("/jobs/{run_id}/cancel")
def cancel_job(request: Request, viewer: BrowserUser, run_id: RunId) -> Response:
    username = viewer.username  # signed out: sign in, and see the job first (deps)
    service = _service(request)
    try:
        job = service.cancel(username, run_id)
    except ServerError as exc:
        message = exc.message
        if isinstance(exc, SiteError):  # e.g. UNICORE: only the user's own login cancels
            message += f" From a terminal, with your site login: mantik runs cancel {run_id}"
        return _error(username, "Cancel", public_message(request, message), status_of(exc))
    return RedirectResponse(f"/jobs/{job.run_id}", status_code=303)
