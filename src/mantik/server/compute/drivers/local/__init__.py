"""The ``local`` site: jobs run as processes on the platform host (laptop, demo)."""
