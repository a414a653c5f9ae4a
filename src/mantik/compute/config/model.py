"""The backend config model: :class:`BackendConfig` and its :class:`Resources`."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    model_validator,
)

from mantik.compute.config.fields import (
    Count,
    EnvName,
    EnvValue,
    Line,
    Memory,
    Name,
    Runtime,
    absolute,
    http_url,
    local_image,
    module_name,
    no_bool,
    no_nul,
    site_name,
)


class _Model(BaseModel):
    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        populate_by_name=True,
        field_title_generator=lambda name, field: field.alias or name,
    )


class Resources(_Model):
    """What the batch job asks for. ``runtime`` is in seconds, ``memory`` in bytes (per node)."""

    runtime: Runtime | None = Field(None, alias="Runtime")
    queue: Name | None = Field(None, alias="Queue", description="Partition / queue.")
    nodes: Count | None = Field(None, alias="Nodes")
    cpus: Count | None = Field(None, alias="CPUs", description="Total CPUs (tasks).")
    cpus_per_node: Count | None = Field(None, alias="CPUsPerNode")
    tasks_per_node: Count | None = Field(
        None, alias="TasksPerNode", description='Tasks per node (with "Launcher": "srun").'
    )
    cpus_per_task: Count | None = Field(
        None, alias="CPUsPerTask", description='CPUs per task (with "Launcher": "srun").'
    )
    gpus_per_node: Annotated[int, Field(ge=0), BeforeValidator(no_bool)] | None = Field(
        None, alias="GPUsPerNode"
    )
    memory: Memory | None = Field(None, alias="Memory")
    reservation: Name | None = Field(None, alias="Reservation")
    node_constraints: Line | None = Field(None, alias="NodeConstraints")
    qos: Name | None = Field(None, alias="QoS")


class BackendConfig(_Model):
    """A backend configuration: the user guide's keys plus mantik's extensions.

    Example::

        {"SingularityImage": "image.sif", "Resources": {"Runtime": "12h", "Memory": "12GiB"}}
    """

    singularity_image: Annotated[Line, AfterValidator(local_image)] | None = Field(
        None,
        alias="SingularityImage",
        description="Local image file, relative to the MLproject directory or absolute; "
        "uploaded with the run.",
    )
    unicore_api_url: Annotated[Line, AfterValidator(http_url)] | None = Field(
        None, alias="UnicoreApiUrl", description="UNICORE/X REST URL of the site."
    )
    environment: dict[EnvName, EnvValue] = Field(
        default_factory=dict,
        alias="Environment",
        description="Environment variables of the job (MLFLOW_* and MANTIK_* are reserved).",
    )
    resources: Resources = Field(default_factory=Resources, alias="Resources")
    compute_site: Annotated[Line, AfterValidator(site_name)] | None = Field(
        None,
        alias="ComputeSite",
        description='Name of a site configured by the platform admin, e.g. "slurm".',
    )
    remote_image: Annotated[Line, AfterValidator(absolute)] | None = Field(
        None,
        alias="RemoteImage",
        description="Absolute path of an image that already exists on the site.",
    )
    apptainer_options: list[Line] = Field(
        default_factory=list,
        alias="ApptainerOptions",
        description='Extra arguments of `apptainer run`, e.g. ["--nv", "-B", "/p:/p"].',
    )
    venv: Line | None = Field(
        None, alias="Venv", description="Python venv on the site to run in, instead of an image."
    )
    modules: list[Annotated[Line, AfterValidator(module_name)]] = Field(
        default_factory=list, alias="Modules", description="Environment modules to load."
    )
    pre_run_commands: list[Annotated[str, Field(min_length=1), AfterValidator(no_nul)]] = Field(
        default_factory=list, alias="PreRunCommands", description="Shell lines run before."
    )
    post_run_commands: list[Annotated[str, Field(min_length=1), AfterValidator(no_nul)]] = Field(
        default_factory=list, alias="PostRunCommands", description="Shell lines run after."
    )
    exclude: list[Line] = Field(
        default_factory=list,
        alias="Exclude",
        description="Glob patterns of project files not to upload.",
    )
    tracking: Literal["online", "offline", "auto"] = Field(
        "auto",
        alias="Tracking",
        description="online: log to the platform from the node; offline: log to files and "
        "upload after the run; auto: online when the node can reach the platform.",
    )
    launcher: Literal["srun"] | None = Field(
        None,
        alias="Launcher",
        description="srun: run the entry point as one task per SLURM task (RANK, WORLD_SIZE, "
        "MASTER_ADDR, … set), tracked by rank 0 only; unset: once, in the batch step.",
    )

    system_metrics: Annotated[int, Field(ge=0, le=3600), BeforeValidator(no_bool)] | None = Field(
        None,
        alias="SystemMetrics",
        description='With "Launcher": "srun": seconds between samples of each node\'s CPU, '
        "memory and GPUs into the run (default 10); 0: none.",
    )

    @model_validator(mode="after")
    def _exclusive(self) -> BackendConfig:
        if self.singularity_image and self.remote_image:
            raise ValueError(
                "SingularityImage and RemoteImage exclude each other: use SingularityImage "
                "for a local image to upload, RemoteImage for one already on the site"
            )
        image = "SingularityImage" if self.singularity_image else "RemoteImage"
        if self.venv and (self.singularity_image or self.remote_image):
            raise ValueError(
                f"Venv and {image} exclude each other: a run uses either a venv or an image"
            )
        if self.venv and self.apptainer_options:
            raise ValueError("ApptainerOptions apply to images, not to a Venv: remove one of them")
        r = self.resources
        if self.launcher is None and (r.tasks_per_node or r.cpus_per_task):
            raise ValueError(
                'Resources.TasksPerNode and CPUsPerTask shape the tasks of "Launcher": "srun": '
                "add it, or remove them"
            )
        if self.launcher is None and self.system_metrics is not None:
            raise ValueError('SystemMetrics applies with "Launcher": "srun": add it, or remove it')
        if r.tasks_per_node and r.cpus_per_node:
            raise ValueError(
                "Resources.TasksPerNode and CPUsPerNode both set the tasks per node: keep one"
            )
        return self

    def to_wire(self) -> dict[str, Any]:
        """The JSON-ready dict with the user-facing keys that the client sends."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)
