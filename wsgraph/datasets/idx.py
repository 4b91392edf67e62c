"""Reader for the idx format of MNIST and Fashion-MNIST, gzipped or not.

An idx file is two zero bytes, a type code, the number of dimensions ``k``, then ``k``
big-endian int32 sizes and the data, big-endian, row-major. MNIST's image files start
with the int32 magic 2051 (uint8, three dimensions) and its label files with 2049
(uint8, one dimension).
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

GZIP_MAGIC = b"\x1f\x8b"
IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049

# Type codes of the idx format and the big-endian numpy type each one stands for.
_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | os.PathLike, expected_magic: int | None = None) -> np.ndarray:
    """Read an idx file (optionally gzip-compressed, recognised by its content) into an array.

    Args:
        path: the file.
        expected_magic: if given, the int32 magic number the file must start with
            (:data:`IMAGES_MAGIC` or :data:`LABELS_MAGIC`).

    Returns:
        An array of the file's shape, in native byte order.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: naming the file, for a bad magic number, a corrupt gzip stream, or
            data shorter or longer than the header's sizes.
    """
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 4:
        raise ValueError(f"{path}: not an idx file (only {len(raw)} bytes)")
    magic = int.from_bytes(raw[:4], "big")
    if expected_magic is not None and magic != expected_magic:
        raise ValueError(f"{path}: bad magic number {magic} (expected {expected_magic})")
    type_code, ndim = raw[2], raw[3]
    if raw[:2] != b"\x00\x00" or type_code not in _TYPES or ndim == 0:
        raise ValueError(f"{path}: bad magic number {magic} (not an idx file)")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: truncated idx header ({len(raw)} bytes, expected at least {header})")
    shape = tuple(int.from_bytes(raw[4 + 4 * d : 8 + 4 * d], "big") for d in range(ndim))
    dtype = np.dtype(_TYPES[type_code])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    found = len(raw) - header
    if found < expected:
        raise ValueError(f"{path}: truncated idx file: shape {shape} needs {expected} data bytes, found {found}")
    if found > expected:
        raise ValueError(f"{path}: idx file has {found - expected} bytes after the data of shape {shape}")
    data = np.frombuffer(raw, dtype=dtype, count=expected // dtype.itemsize, offset=header)
    return data.reshape(shape).astype(dtype.newbyteorder("="))


def _read_bytes(path: Path) -> bytes:
    with open(path, "rb") as handle:
        raw = handle.read()
    if not raw.startswith(GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as error:
        raise ValueError(f"{path}: corrupt or truncated gzip stream ({error})") from error
