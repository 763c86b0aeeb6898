"""Import an uploaded checkpoint or zipped folder, for the dashboard.

Limits (each refused upload raises :class:`CheckpointError` before anything is
converted):

- upload size: ``max_bytes``, default from the environment variable
  ``RTL_MAX_UPLOAD_MB`` (megabytes), else 200 MB. Streamlit's own
  ``server.maxUploadSize`` (also 200 MB by default) must be at least as large.
- zip archives: at most ``max_files`` entries (default 10,000) and
  ``max_unpacked_bytes`` in total once unpacked (default from
  ``RTL_MAX_UNPACKED_MB``, else 1024 MB), counted while unpacking so an archive
  that lies about its sizes is stopped too (zip bombs).
- zip entries with absolute paths, ``..`` components, symbolic links,
  encryption or duplicate names are refused; every entry is checked before
  anything is unpacked. macOS metadata (``__MACOSX/``, ``._*``,
  ``.DS_Store``) is skipped.

Everything is written inside a fresh folder under ``workdir``; on failure that
folder is removed.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import stat
import tempfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from artifacts.run_format import system_fault_message
from ingest.convert import read_tickets
from ingest.errors import CheckpointError
from ingest.run_writer import write_run
from ingest.safe_load import ticket_stem

DEFAULT_MAX_UPLOAD_BYTES = 200 * 2**20
DEFAULT_MAX_UNPACKED_BYTES = 1024 * 2**20
DEFAULT_MAX_FILES = 10_000
UPLOAD_ENV = "RTL_MAX_UPLOAD_MB"
UNPACKED_ENV = "RTL_MAX_UNPACKED_MB"
_CHUNK = 1 << 20
_SKIPPED = ("__MACOSX",)


def _limit_from_env(var: str, default: int) -> int:
    raw = os.environ.get(var, "").strip()
    if not raw:
        return default
    try:
        mb = float(raw)
        if not mb > 0:
            raise ValueError
    except ValueError:
        raise CheckpointError(f"{var}={raw!r} is not a positive number of megabytes") from None
    return int(mb * 2**20)


def max_upload_bytes() -> int:
    """Upload size limit in bytes: ``RTL_MAX_UPLOAD_MB`` megabytes, else 200 MB."""
    return _limit_from_env(UPLOAD_ENV, DEFAULT_MAX_UPLOAD_BYTES)


def max_unpacked_bytes() -> int:
    """Total unpacked size limit of a zip in bytes: ``RTL_MAX_UNPACKED_MB``, else 1024 MB."""
    return _limit_from_env(UNPACKED_ENV, DEFAULT_MAX_UNPACKED_BYTES)


def safe_filename(filename: str) -> str:
    """The last component of an uploaded file's name, reduced to ``[A-Za-z0-9._-]``.

    Parameters
    ----------
    filename : str
        As sent by the browser (may contain any path).

    Returns
    -------
    str
        A non-empty name without separators and not starting with a dot.
    """
    base = PurePosixPath(filename.replace("\\", "/")).name
    base = re.sub(r"[^A-Za-z0-9._-]", "_", base).lstrip(".")[-120:]
    return base or "upload"


def _mb(n: int) -> str:
    return f"{n} bytes" if n < 2**20 else f"{n / 2**20:.1f} MB"


def extract_zip(
    data: bytes,
    dest: Path,
    *,
    max_files: int = DEFAULT_MAX_FILES,
    max_unpacked: int | None = None,
) -> None:
    """Unpack a zip archive into ``dest``, refusing anything that could escape it.

    Parameters
    ----------
    data : bytes
        The archive.
    dest : Path
        An existing, empty folder.
    max_files : int
        Most entries allowed.
    max_unpacked : int, optional
        Most bytes allowed once unpacked (default :func:`max_unpacked_bytes`).

    Raises
    ------
    CheckpointError
        A corrupt archive, too many entries, too large unpacked, an absolute
        path, a ``..`` component, a symbolic link, an encrypted or duplicate entry.
    """
    limit = max_unpacked_bytes() if max_unpacked is None else max_unpacked
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError, OSError):
        raise CheckpointError("the upload is not a valid zip archive (truncated or corrupt)") from None
    with zf:
        infos = zf.infolist()
        if len(infos) > max_files:
            raise CheckpointError(f"zip archive has {len(infos)} entries, more than the {max_files} allowed")
        declared = sum(i.file_size for i in infos)
        if declared > limit:
            raise CheckpointError(
                f"zip archive would unpack to {_mb(declared)}, more than the {_mb(limit)} allowed "
                f"(zip bomb?; set {UNPACKED_ENV} to raise the limit)"
            )
        plan: list[tuple[zipfile.ZipInfo, tuple[str, ...]]] = []
        seen: set[tuple[str, ...]] = set()
        for info in infos:  # check every entry before unpacking any
            parts = _entry_parts(info)
            if parts is None:
                continue
            if not info.is_dir():
                if parts in seen:
                    raise CheckpointError(f"zip entry {info.filename!r} appears twice")
                seen.add(parts)
            plan.append((info, parts))
        if not seen:
            raise CheckpointError("zip archive holds no files")
        root = dest.resolve()
        written = 0
        for info, parts in plan:
            target = dest.joinpath(*parts)
            if not target.resolve().is_relative_to(root):  # belt and braces after the checks above
                raise CheckpointError(f"zip entry {info.filename!r} points outside the upload folder")
            try:
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(target, "xb") as out:
                    own = 0
                    while chunk := src.read(_CHUNK):
                        own += len(chunk)
                        written += len(chunk)
                        if own > info.file_size or written > limit:
                            raise CheckpointError(
                                f"zip entry {info.filename!r} unpacks to more than it declares or the "
                                f"archive exceeds {_mb(limit)} unpacked (zip bomb?)"
                            )
                        out.write(chunk)
            except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as e:
                raise CheckpointError(f"zip entry {info.filename!r} is corrupt ({e})") from None
            except OSError as e:
                raise CheckpointError(
                    f"cannot unpack zip entry {info.filename!r} ({e.strerror or e})"
                ) from None


def _entry_parts(info: zipfile.ZipInfo) -> tuple[str, ...] | None:
    """Checked path components of an entry, or None for metadata to skip."""
    name = info.filename
    norm = name.replace("\\", "/")
    if norm.startswith("/") or re.match(r"^[A-Za-z]:", norm):
        raise CheckpointError(f"zip entry {name!r} has an absolute path")
    parts = tuple(p for p in norm.split("/") if p not in ("", "."))
    if ".." in parts:
        raise CheckpointError(f"zip entry {name!r} contains '..' (path traversal)")
    if stat.S_ISLNK(info.external_attr >> 16):
        raise CheckpointError(f"zip entry {name!r} is a symbolic link")
    if info.flag_bits & 0x1:
        raise CheckpointError(f"zip entry {name!r} is encrypted")
    if any("\x00" in p for p in parts):
        raise CheckpointError(f"zip entry {name!r} has a NUL byte in its name")
    if not parts or parts[0] in _SKIPPED or parts[-1] == ".DS_Store" or parts[-1].startswith("._"):
        return None
    return parts


def _is_archive(data: bytes, name: str) -> bool:
    """A zip of files to unpack, told from the content: a ``torch.save`` zip is a checkpoint."""
    if not data.startswith(b"PK\x03\x04"):
        return name.lower().endswith(".zip")  # then refused as "not a valid zip archive"
    try:  # a torch.save file is a zip too: it holds <archive>/data.pkl
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            return not any(n == "data.pkl" or n.endswith("/data.pkl") for n in zf.namelist())
    except (zipfile.BadZipFile, ValueError, OSError):
        # A cut-off zip: reported as an archive if so named, else as a truncated checkpoint.
        return name.lower().endswith(".zip")


def _import_root(folder: Path) -> Path:
    """Descend through folders that hold exactly one folder (``tickets.zip`` -> ``tickets/``)."""
    while True:
        entries = list(folder.iterdir())
        if len(entries) == 1 and entries[0].is_dir():
            folder = entries[0]
        else:
            return folder


def import_upload(
    data: bytes,
    filename: str,
    workdir: Path,
    *,
    max_bytes: int | None = None,
    max_files: int = DEFAULT_MAX_FILES,
    max_unpacked: int | None = None,
    weights_dtype: str = "float32",
) -> Path:
    """Convert an uploaded checkpoint, or a zip of a folder, into a run folder.

    Parameters
    ----------
    data : bytes
        The uploaded file.
    filename : str
        Its name as uploaded; only the last component is used (ticket and run
        names, and whether it is a ``.zip``).
    workdir : Path
        An existing per-session folder the caller owns; everything is written
        inside a new ``upload-*`` folder in it.
    max_bytes : int, optional
        Size limit of ``data`` (default :func:`max_upload_bytes`: env
        ``RTL_MAX_UPLOAD_MB``, else 200 MB).
    max_files : int
        Most entries in a zip (default 10,000).
    max_unpacked : int, optional
        Most bytes a zip may unpack to (default :func:`max_unpacked_bytes`).
    weights_dtype : {"float32", "float16", "none"}
        Storage of the masked weights.

    Returns
    -------
    Path
        The new run folder ``workdir/upload-*/run``; open it with ``load_run``.

    Raises
    ------
    CheckpointError
        Oversized, empty or hostile uploads and everything the importers refuse;
        messages name the uploaded file, not the temporary paths.
    """
    limit = max_upload_bytes() if max_bytes is None else int(max_bytes)
    if len(data) > limit:
        raise CheckpointError(
            f"upload is {_mb(len(data))}, more than the {_mb(limit)} allowed (set {UPLOAD_ENV} to raise it)"
        )
    if not data:
        raise CheckpointError(f"{filename}: file is empty")
    workdir = Path(workdir)
    if not workdir.is_dir():
        raise CheckpointError(f"upload folder {workdir} does not exist")
    name = safe_filename(filename)
    try:
        return _import_into(data, filename, workdir, max_files, max_unpacked, weights_dtype)
    except OSError as e:  # disk full, read-only or vanished folder: one line, nothing left
        raise CheckpointError(system_fault_message(e, name, "cannot store the upload")) from None
    except CheckpointError as e:
        if str(workdir) not in str(e):
            raise
        # Name the upload, not the temporary folders it was converted in.
        raise CheckpointError(re.sub(re.escape(str(workdir)) + r"\S*", name, str(e))) from None


def _import_into(
    data: bytes, filename: str, workdir: Path, max_files: int, max_unpacked: int | None, weights_dtype: str
) -> Path:
    session = Path(tempfile.mkdtemp(prefix="upload-", dir=workdir))
    src = session / "src"
    try:
        src.mkdir()
        name = safe_filename(filename)
        if _is_archive(data, name):
            extract_zip(data, src, max_files=max_files, max_unpacked=max_unpacked)
            target = _import_root(src)
        else:
            target = src / name
            target.write_bytes(data)
        try:
            tickets = read_tickets([target])
        except CheckpointError as e:
            # Name the upload, not the temporary folder it was unpacked into.
            msg = str(e).replace(str(src) + os.sep, "").replace(str(src), name)
            raise CheckpointError(msg) from None
        run = write_run(
            tickets,
            session / "run",
            name=ticket_stem(Path(name)),
            weights_dtype=weights_dtype,
            source_paths=[name],
        )
        shutil.rmtree(src, ignore_errors=True)  # the run stands alone; free the disk
        return run
    except BaseException:
        shutil.rmtree(session, ignore_errors=True)
        raise
