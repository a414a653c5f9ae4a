"""Running MLflow projects on compute sites: :mod:`.service` takes submissions and requests,
:mod:`.lifecycle` applies what is observed of a job (from :mod:`.poller` and from requests),
:mod:`.sites` holds the configured sites and their drivers (:mod:`.drivers`), and
:mod:`.job_folder` names every file of a job's folder; offline tracking lives in
:mod:`.offline`."""
