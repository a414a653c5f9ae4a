"""Compute drivers, one subpackage per kind of site (``local/``, ``slurm/``, ``unicore/``),
each with its driver and the pure renderer of what it sends; :mod:`.base` is the interface
and does the common work, :mod:`.wrapper` renders the job script every driver runs, and
:mod:`.catalog` lists the drivers with their capabilities."""
