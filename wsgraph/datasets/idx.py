"""Reader for the idx format of MNIST and Fashion-MNIST, gzipped or not.

An idx file is two zero bytes, a type code, the number of dimensions ``k``, then ``k``
big-endian int32 sizes and the data, big-endian, row-major. MNIST's image files start
with the int32 magic 2051 (uint8, three dimensions) and its label files with 2049
(uint8, one dimension).
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

GZIP_MAGIC = b"\x1f\x8b"
IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049

# Type codes of the idx format and the big-endian numpy type each one stands for.
_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
# Deflate codes at best 258 bytes in 2 bits, so no gzip stream inflates beyond 1032 times its size.
_MAX_DEFLATE_RATIO = 1032
_CHUNK_BYTES = 1 << 20


def read_idx(path: str | os.PathLike, expected_magic: int | None = None) -> np.ndarray:
    """Read an idx file (optionally gzip-compressed, recognised by its content) into an array.

    Only as many bytes as the header declares (and one more, to tell trailing data) are
    read, so a small gzip file that inflates to gigabytes costs no more memory than the
    data it claims to hold.

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
    with open(path, "rb") as handle:
        compressed = handle.read(len(GZIP_MAGIC)) == GZIP_MAGIC
        handle.seek(0)
        if not compressed:
            return _parse_idx(path, handle, expected_magic, None)
        try:
            with gzip.GzipFile(fileobj=handle, mode="rb") as stream:
                return _parse_idx(path, stream, expected_magic, os.fstat(handle.fileno()).st_size)
        except (OSError, EOFError, zlib.error) as error:
            raise ValueError(f"{path}: corrupt or truncated gzip stream ({error})") from error


def _parse_idx(path: Path, stream: BinaryIO, expected_magic: int | None, gzip_size: int | None) -> np.ndarray:
    head = _read_at_most(stream, 4)
    if len(head) < 4:
        raise ValueError(f"{path}: not an idx file (only {len(head)} bytes)")
    magic = int.from_bytes(head, "big")
    if expected_magic is not None and magic != expected_magic:
        raise ValueError(f"{path}: bad magic number {magic} (expected {expected_magic})")
    type_code, ndim = head[2], head[3]
    if head[:2] != b"\x00\x00" or type_code not in _TYPES or ndim == 0:
        raise ValueError(f"{path}: bad magic number {magic} (not an idx file)")
    header = 4 + 4 * ndim
    sizes = _read_at_most(stream, 4 * ndim)
    if len(sizes) < 4 * ndim:
        raise ValueError(f"{path}: truncated idx header ({4 + len(sizes)} bytes, expected at least {header})")
    shape = tuple(int.from_bytes(sizes[4 * d : 4 * d + 4], "big") for d in range(ndim))
    dtype = np.dtype(_TYPES[type_code])
    # Python ints: a numpy int64 product wraps around, e.g. to 0 for (2**22, 2**21, 2**21).
    expected = math.prod(shape) * dtype.itemsize
    if gzip_size is not None and header + expected > _MAX_DEFLATE_RATIO * gzip_size:
        raise ValueError(
            f"{path}: truncated idx file: shape {shape} needs {expected} data bytes, "
            f"more than a {gzip_size}-byte gzip file can hold"
        )
    data = _read_at_most(stream, expected + 1)
    found = len(data)
    if found < expected:
        raise ValueError(f"{path}: truncated idx file: shape {shape} needs {expected} data bytes, found {found}")
    if found > expected:
        raise ValueError(f"{path}: idx file has bytes after the {expected} data bytes of shape {shape}")
    return (
        np.frombuffer(data, dtype=dtype, count=expected // dtype.itemsize)
        .reshape(shape)
        .astype(dtype.newbyteorder("="))
    )


def _read_at_most(stream: BinaryIO, limit: int) -> bytearray:
    # In chunks: one read(limit) allocates `limit` bytes up front, whatever the stream holds.
    data = bytearray()
    while len(data) < limit:
        chunk = stream.read(min(limit - len(data), _CHUNK_BYTES))
        if not chunk:
            break
        data += chunk
    return data
