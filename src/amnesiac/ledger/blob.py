"""Update blobs: safetensors files written without extra copies.

One step's update is laid out in a single page-aligned buffer: a safetensors header padded with spaces
to a multiple of 4096 bytes (the format allows trailing whitespace), then every tensor back to back.
The recorder computes the update straight into views of that buffer, and the writer hands the buffer
to the kernel in one write, with ``O_DIRECT`` where the file system supports it, so the bytes are not
copied through the page cache. The file is an ordinary safetensors file that any reader can open.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
import xxhash

from ..errors import ConfigError

ALIGN = 4096
CHECKSUMS = ("xxh3", "crc32", "sha256")
_ST_DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64"}


def checksum(data: bytes | memoryview, algorithm: str) -> str:
    """``"xxh3:..."`` (XXH3, 64 bits), ``"crc32:..."`` or ``"sha256:..."`` of ``data``.

    XXH3 is the default for new ledgers: it detects damage and truncation as CRC-32 does, and runs at
    about 20 GiB/s on one core (CRC-32 about 3.5 GiB/s), which matters when every training step writes
    tens of MiB. SHA-256 is there for users who want a cryptographic digest.

    >>> checksum(b"abc", "crc32")
    'crc32:352441c2'
    >>> checksum(b"abc", "xxh3")
    'xxh3:78af5f94892f3950'
    """
    if algorithm == "xxh3":
        return "xxh3:" + xxhash.xxh3_64_hexdigest(data)
    if algorithm == "crc32":
        return f"crc32:{zlib.crc32(data) & 0xFFFFFFFF:08x}"
    if algorithm == "sha256":
        return "sha256:" + hashlib.sha256(data).hexdigest()
    raise ConfigError(f"checksum must be one of {', '.join(CHECKSUMS)}, got {algorithm!r}")


def verify_checksum(data: bytes | memoryview, expected: str) -> bool:
    """Whether ``data`` matches a checksum string produced by :func:`checksum`."""
    algorithm = expected.split(":", 1)[0] if ":" in expected else "sha256"
    if ":" not in expected:  # bare hex digests are SHA-256
        expected = "sha256:" + expected
    return checksum(data, algorithm) == expected


@dataclass(frozen=True)
class Layout:
    """Names, shapes and offsets of one step's tensors, all in one dtype."""

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    dtype: torch.dtype
    offsets: tuple[int, ...]  # byte offset of each tensor in the data section
    data_bytes: int

    @classmethod
    def of(cls, tensors: Mapping[str, torch.Tensor], dtype: torch.dtype) -> Layout:
        if dtype not in _ST_DTYPES:
            raise ConfigError(f"cannot store updates as {dtype}")
        names, shapes, offsets = [], [], []
        pos = 0
        item = torch.empty((), dtype=dtype).element_size()
        for name, t in tensors.items():
            names.append(name)
            shapes.append(tuple(t.shape))
            offsets.append(pos)
            pos += t.numel() * item
        return cls(tuple(names), tuple(shapes), dtype, tuple(offsets), pos)

    def header(self, metadata: Mapping[str, str], size: int | None = None) -> bytes:
        """The safetensors header (length prefix included) padded with spaces to ``size`` bytes, or to the
        next multiple of :data:`ALIGN`."""
        item = torch.empty((), dtype=self.dtype).element_size()
        entries: dict[str, object] = {"__metadata__": dict(metadata)}
        for name, shape, off in zip(self.names, self.shapes, self.offsets):
            n = 1
            for s in shape:
                n *= s
            entries[name] = {"dtype": _ST_DTYPES[self.dtype], "shape": list(shape), "data_offsets": [off, off + n * item]}
        raw = json.dumps(entries, separators=(",", ":")).encode()
        pad = (-(8 + len(raw))) % ALIGN if size is None else size - 8 - len(raw)
        if pad < 0:
            raise ConfigError(f"blob header needs {8 + len(raw)} bytes, more than the {size} reserved")
        raw += b" " * pad
        return struct.pack("<Q", len(raw)) + raw


class BlobBuffer:
    """A reusable, page-aligned buffer holding one step's update in safetensors form.

    ``views[name]`` are typed tensors into the data section; fill them, call :meth:`seal` with the
    step's metadata, then write :meth:`payload`.
    """

    def __init__(self, layout: Layout, header_reserve: int | None = None) -> None:
        self.layout = layout
        probe = layout.header({"step": "0" * 20, "kind": "x" * 16})
        self.header_bytes = header_reserve or len(probe)
        total = self.header_bytes + layout.data_bytes
        self._raw = torch.empty(total + 2 * ALIGN, dtype=torch.uint8)
        start = (-self._raw.data_ptr()) % ALIGN
        self.buffer = self._raw[start : start + total + ((-total) % ALIGN)]
        self.size = total
        data = self.buffer[self.header_bytes : self.header_bytes + layout.data_bytes]
        item = torch.empty((), dtype=layout.dtype).element_size()
        self.views: dict[str, torch.Tensor] = {}
        for name, shape, off in zip(layout.names, layout.shapes, layout.offsets):
            n = 1
            for s in shape:
                n *= s
            self.views[name] = data[off : off + n * item].view(layout.dtype).view(shape)

    def seal(self, metadata: Mapping[str, str]) -> None:
        """Write the header for this step into the buffer."""
        head = self.layout.header(metadata, self.header_bytes)
        self.buffer[: self.header_bytes].copy_(torch.frombuffer(bytearray(head), dtype=torch.uint8))

    def payload(self) -> memoryview:
        """The exact bytes of the file (header and data)."""
        return self.buffer.numpy().data[: self.size]

    def padded(self) -> memoryview:
        return self.buffer.numpy().data


def write_blob(path: Path, blob: BlobBuffer, *, fsync: bool = False, direct: bool = True) -> None:
    """Write ``blob`` to ``path`` atomically (temporary name, then rename).

    With ``direct`` the write bypasses the page cache (``O_DIRECT``) where supported; otherwise, or if
    the file system refuses, it is an ordinary buffered write.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    fd = -1
    try:
        if direct and hasattr(os, "O_DIRECT"):
            try:
                fd = os.open(tmp, flags | os.O_DIRECT, 0o644)
                view = blob.padded()
                written = 0
                while written < len(view):
                    written += os.write(fd, view[written:])
                os.ftruncate(fd, blob.size)
            except OSError as err:
                if fd >= 0:
                    os.close(fd)
                fd = -1
                if err.errno not in (errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP):
                    raise  # a real I/O error (EIO, ENOSPC, ...), not a file system refusing O_DIRECT
        if fd < 0:
            fd = os.open(tmp, flags, 0o644)
            view = blob.payload()
            written = 0
            while written < len(view):
                written += os.write(fd, view[written:])
        if fsync:
            os.fsync(fd)
        os.close(fd)
        fd = -1
        os.replace(tmp, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def blob_from_tensors(tensors: Mapping[str, torch.Tensor], dtype: torch.dtype | None = None) -> BlobBuffer:
    """A sealed-ready buffer holding copies of ``tensors`` (all cast to one dtype)."""
    if not tensors:
        raise ConfigError("an update must hold at least one tensor")
    dtype = dtype or next(iter(tensors.values())).dtype
    blob = BlobBuffer(Layout.of(tensors, dtype))
    for name, t in tensors.items():
        blob.views[name].copy_(t.detach())
    return blob


_FROM_ST = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64,
            "I64": torch.int64, "I32": torch.int32, "U8": torch.uint8}


def read_file_aligned(path: Path) -> tuple[torch.Tensor, int]:
    """Read a whole file into a page-aligned uint8 tensor (``O_DIRECT`` where supported).

    Returns the buffer (possibly longer than the file) and the file's size.
    """
    size = os.path.getsize(path)
    padded = size + ((-size) % ALIGN)
    raw = torch.empty(padded + ALIGN, dtype=torch.uint8)
    start = (-raw.data_ptr()) % ALIGN
    buf = raw[start : start + padded]
    view = buf.numpy().data
    fd = -1
    try:
        if hasattr(os, "O_DIRECT"):
            try:
                fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
            except OSError as err:
                if err.errno not in (errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP):
                    raise
                fd = -1
        if fd < 0:
            fd = os.open(path, os.O_RDONLY)
        got = 0
        while got < size:
            try:
                n = os.readv(fd, [view[got:]])
            except OSError as err:  # O_DIRECT refused mid-way: read the rest normally
                if err.errno not in (errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP):
                    raise
                os.close(fd)
                fd = os.open(path, os.O_RDONLY)
                os.lseek(fd, got, os.SEEK_SET)
                n = os.readv(fd, [view[got:]])
            if n == 0:
                break
            got += n
    finally:
        if fd >= 0:
            os.close(fd)
    if got != size:
        raise OSError(f"{path}: read {got} of {size} bytes")
    return buf, size


def tensors_from_buffer(buf: torch.Tensor, size: int) -> dict[str, torch.Tensor]:
    """Views of the tensors in a safetensors file held in ``buf`` (no copy). Raises ValueError if malformed."""
    if size < 8:
        raise ValueError("file shorter than the 8-byte header length")
    n = struct.unpack("<Q", bytes(buf[:8].numpy()))[0]
    if 8 + n > size:
        raise ValueError(f"header length {n} runs past the end of the file ({size} bytes)")
    header = json.loads(bytes(buf[8 : 8 + n].numpy()))
    base = 8 + n
    out: dict[str, torch.Tensor] = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        dtype = _FROM_ST[entry["dtype"]]
        start, end = entry["data_offsets"]
        if base + end > size or start > end:
            raise ValueError(f"tensor {name!r} runs past the end of the file")
        item = torch.empty((), dtype=dtype).element_size()
        if (base + start) % item:
            raise ValueError("unaligned tensor")
        out[name] = buf[base + start : base + end].view(dtype).view(entry["shape"])
    return out
