"""Jobs under their users' OS accounts: who a job runs as (policy), how the platform
switches to it (identity), the job folders it owns (folders) and the sudo rule (sudoers)."""
