"""The registry of operations a user can run as a job: name → params class and description.

Built-in operations are listed here; plugin modules named in SEGLOOP_JOB_PLUGINS (dotted names or `.py`
files) add theirs when imported (through `segloop.platform.jobs.registry.job_kind`). Submitting a job
(`services.jobs`), the worker, the CLI and the Jobs page all read the params class from here.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from dataclasses import dataclass

from segloop.platform.core.errors import ValidationError
from segloop.platform.core.specs import coerce
from segloop.platform.services import params as p


@dataclass(frozen=True)
class Operation:
    """An operation: its name, params dataclass and one-line description."""

    name: str
    params: type
    description: str


_OPERATIONS: dict[str, Operation] = {op.name: op for op in (
    Operation("ingest", p.IngestParams, "Ingest videos or DAVIS-layout frame folders into a project."),
    Operation("pretrain", p.PretrainParams,
              "Self-supervised pretraining on a project's frames; a retry resumes from the last checkpoint."),
    Operation("embed", p.EmbedParams, "Embed every frame of a project with its pretrained encoder (or the checkpoint "
              "given; a random-init backbone only when the project has no encoder)."),
    Operation("select", p.SelectParams, "Pick frames to label with a strategy and store the selection run."),
    Operation("propagate", p.PropagateParams,
              "Propagate a video's human masks to its other frames (drafts, uncertainty, J&F on held-out masks)."),
    Operation("finetune_vss", p.FinetuneVSSParams,
              "Train a VSS head on a project's labeled frames; checkpoint + metrics (a retry resumes training)."),
    Operation("finetune_vos", p.FinetuneVOSParams,
              "Train the memory VOS model (keys from the project's pretrained encoder) on a project's masks; "
              "J&F of plain propagation vs the model."),
    Operation("predict", p.PredictParams,
              "Predict every frame of a project with a VSS checkpoint (or a VOS one: propagated from the human "
              "masks); uncertainty scores."),
    Operation("loop_round", p.LoopRoundParams,
              "One round: select, label (oracle) or wait, fine-tune, predict, evaluate."),
    Operation("map2d", p.Map2dParams,
              "Compute and cache a 2-D map (t-SNE or PCA) of an embedding set for the Explore page."),
)}

BUILTIN = tuple(_OPERATIONS)
_LOADED_PLUGINS: set[str] = set()


def register_operation(name: str, params: type, description: str) -> Operation:
    """Add (or replace) an operation; plugin job kinds call this through `jobs.registry.job_kind`."""
    _OPERATIONS[name] = Operation(name, params, description)
    return _OPERATIONS[name]


def operations() -> dict[str, Operation]:
    """Every operation: the built-in ones plus those of the plugins named in SEGLOOP_JOB_PLUGINS."""
    for module in [m for m in os.environ.get("SEGLOOP_JOB_PLUGINS", "").split(os.pathsep) if m]:
        load_plugin(module)
    return dict(_OPERATIONS)


def get_operation(name: str) -> Operation:
    """The operation `name`, or ValidationError listing the known ones."""
    known = operations()
    if name not in known:
        raise ValidationError(f"job kind {name!r} is unknown; known kinds: {', '.join(sorted(known))}")
    return known[name]


def parse_params(kind: str, values: object) -> object:
    """The operation's params dataclass from JSON values, or ValidationError naming the field and the reason."""
    return coerce(get_operation(kind).params, values, where=f"{kind} params")


def load_plugin(module: str) -> None:
    """Import a plugin module by dotted name or by `.py` file path (once); ValidationError naming it if it fails."""
    where = f"SEGLOOP_JOB_PLUGINS: job plugin {module!r}"
    if not module.endswith(".py"):
        try:
            importlib.import_module(module)
        except Exception as exc:  # a plugin is someone else's code: any failure to import it means the same
            raise ValidationError(f"{where} cannot be imported ({exc})") from None
        return
    name = "segloop_job_plugin_" + os.path.basename(module)[:-3]
    if name in _LOADED_PLUGINS:
        return
    spec = importlib.util.spec_from_file_location(name, module) if os.path.isfile(module) else None
    if spec is None or spec.loader is None:
        raise ValidationError(f"{where}: no such file")
    plugin = importlib.util.module_from_spec(spec)
    sys.modules[name] = plugin
    try:
        spec.loader.exec_module(plugin)
    except Exception as exc:  # a plugin is someone else's code: any failure to run it means the same
        del sys.modules[name]
        raise ValidationError(f"{where} failed while loading ({exc})") from None
    _LOADED_PLUGINS.add(name)
