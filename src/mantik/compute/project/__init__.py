"""MLproject files, read the way MLflow reads them.

MLflow's parser (``mlflow.projects._project_spec``) is private, so we keep our own with the
same behaviour: the ``MLproject`` file is found case-insensitively (a project without one
runs ``.py``/``.sh`` files directly), parameters are typed (float, int, string, path, uri)
with optional defaults, and a command is rendered with ``str.format`` over
``shlex.quote``-d values plus ``--name value`` for undeclared parameters. Unlike MLflow, an
entry point that declares parameters refuses undeclared ones (naming the closest declared
one) unless they are allowed explicitly; scripts without an MLproject entry take any.

- :mod:`.model`: a project, its entry points and typed parameters; rendering a command
- :mod:`.loading`: finding and reading the ``MLproject`` file, every mistake named

Unlike MLflow, every mistake is found before anything is uploaded and reported as a
:class:`~mantik.ConfigurationError` naming the file, entry point and parameter::

    project = load_project(Path("my-project"))
    line = project.entry_point("main").render({"alpha": 0.5})
"""
