"""The ``slurm`` site: sbatch / squeue / scancel on a SLURM the platform can call."""
