"""``make bench``: measurements of the mantik platform against plain MLflow on this machine.

Run ``python -m bench`` (all parts), ``python -m bench --part 1`` or ``--quick``. Each part is
a function ``run(options) -> PartResult`` listed in :data:`bench.parts.PARTS`; results are
printed as tables and written to ``bench/results/part<N>.json``.
"""
