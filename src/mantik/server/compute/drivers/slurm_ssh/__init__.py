"""SLURM on a login node reached over SSH, as each user's own login."""
