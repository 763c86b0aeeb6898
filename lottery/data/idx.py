"""Reader for the IDX format of (Fashion-)MNIST, gzipped or not.

An IDX file is a 4-byte big-endian magic number ``0x0000TTDD`` (TT: element type,
DD: number of dimensions), DD big-endian uint32 sizes, then the elements in C
order. Fashion-MNIST images carry magic 2051 (ubyte, 3 dims) and labels 2049
(ubyte, 1 dim).
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from lottery.data.errors import DataFormatError

IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049

# IDX element type code -> big-endian numpy dtype.
_IDX_DTYPES: dict[int, str] = {
    0x08: ">u1",
    0x09: ">i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}
_GZIP_MAGIC = b"\x1f\x8b"


def _read_bytes(path: Path) -> bytes:
    """Return the file's bytes, decompressed when it starts with the gzip magic."""
    raw = path.read_bytes()
    if not raw.startswith(_GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as exc:
        # EOFError: truncated stream; BadGzipFile (an OSError) / zlib.error: corrupt.
        raise DataFormatError(f"{path}: corrupt or truncated gzip stream ({exc})") from exc


def read_idx(path: str | Path, expected_magic: int | None = None) -> np.ndarray:
    """Read one IDX file (plain or gzipped) into a numpy array.

    Parameters
    ----------
    path : str or Path
        The IDX file. Gzip compression is detected from the content, not the name.
    expected_magic : int, optional
        Refuse any other magic number (2051 for images, 2049 for labels).

    Returns
    -------
    np.ndarray
        Array of the header's shape, e.g. (N, 28, 28) or (N,), in the native-endian
        version of the header's element type (uint8 for (Fashion-)MNIST). Read-only.

    Raises
    ------
    DataFormatError
        Bad magic number, unknown element type, a header cut short, or a payload
        whose length does not match the sizes in the header.
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise DataFormatError(f"{path}: {len(data)} bytes, too short for an IDX header")
    (magic,) = struct.unpack(">i", data[:4])
    if expected_magic is not None and magic != expected_magic:
        raise DataFormatError(f"{path}: magic number {magic}, expected {expected_magic}")
    zero, type_code, ndim = magic >> 16, (magic >> 8) & 0xFF, magic & 0xFF
    if zero != 0 or type_code not in _IDX_DTYPES or ndim == 0:
        raise DataFormatError(f"{path}: magic number {magic} is not a valid IDX header")
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise DataFormatError(f"{path}: header cut short ({len(data)} of {header_len} bytes)")
    shape = struct.unpack(f">{ndim}I", data[4:header_len])
    dtype = np.dtype(_IDX_DTYPES[type_code])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    found = len(data) - header_len
    if found != expected:
        raise DataFormatError(
            f"{path}: header announces shape {shape} ({expected} bytes of data), file holds {found} bytes"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header_len).reshape(shape)
    array = array.astype(dtype.newbyteorder("="), copy=False)
    array.flags.writeable = False
    return array
