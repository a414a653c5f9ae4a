"""The backend configuration of a compute run (the guide's ``compute-backend-config.json``).

The client loads it from JSON or YAML and validates it before uploading anything; it sends
:meth:`BackendConfig.to_wire` and the platform validates that again with the same model.

- :mod:`.units`: runtimes and memory sizes, parsed once (seconds, bytes), rendered for UNICORE
- :mod:`.fields`: the field types and their validators
- :mod:`.model`: :class:`BackendConfig` and :class:`Resources`
- :mod:`.messages`: what a user reads when a config does not validate
- :mod:`.loading`: JSON / YAML in, a validated config out

Client-side package: imports only pydantic, pyyaml and the standard library.
"""
