"""Offline tracking: jobs on nodes that cannot reach the platform log into a local MLflow
store in their job folder; the platform syncs snapshots of it into the central run.

- on the node: :mod:`.wrapper` (the wrapper's part) and :mod:`.node` (its Python scripts);
- reading the job's files: :mod:`.files` (never through a job's symlinks),
  :mod:`.local_store` (a snapshot, with plain SQL), :mod:`.unicore_mirror` and
  :mod:`.block_digests` (a UNICORE job folder, fetched through the site's file API);
- into the central run: :mod:`.syncer` (when and what), :mod:`.push` (runs, metrics, params,
  tags, artifacts), :mod:`.model_sync` (logged models, inputs, outputs), and
  :mod:`.marks` (what already went through, in mantik's database).

What the syncer needs from the platform is named in :mod:`.ports`.
"""
