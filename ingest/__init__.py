"""Bring your own tickets: convert pruning checkpoints into the project's run format.

Formats, detected automatically: ``torch.nn.utils.prune`` state dicts,
ShrinkBench checkpoints, OpenLTH run trees, NNI mask files, plain state dicts
(masks inferred from zeros), folders of checkpoints and files holding several
tickets. Files are read with ``torch.load(weights_only=True)`` or safetensors
only, so a checkpoint can never run code. Every refusal is a
:class:`CheckpointError` with a message for the user.

Command line: ``python -m ingest import PATH... --out RUN_DIR``.
"""

from ingest.convert import import_checkpoints, read_tickets, tickets_from_path
from ingest.errors import CheckpointError
from ingest.run_writer import DEFAULT_METHOD, write_run
from ingest.safe_load import load_checkpoint
from ingest.tickets import ImportedLevel, ImportedTickets
from ingest.upload import (
    DEFAULT_MAX_FILES,
    DEFAULT_MAX_UNPACKED_BYTES,
    DEFAULT_MAX_UPLOAD_BYTES,
    import_upload,
    max_unpacked_bytes,
    max_upload_bytes,
)

__all__ = [
    "DEFAULT_MAX_FILES",
    "DEFAULT_MAX_UNPACKED_BYTES",
    "DEFAULT_MAX_UPLOAD_BYTES",
    "DEFAULT_METHOD",
    "CheckpointError",
    "ImportedLevel",
    "ImportedTickets",
    "import_checkpoints",
    "import_upload",
    "load_checkpoint",
    "max_unpacked_bytes",
    "max_upload_bytes",
    "read_tickets",
    "tickets_from_path",
    "write_run",
]
