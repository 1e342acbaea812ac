"""Stated limits and bounded readers: every size flexor-hw reads or is told is checked against a
limit here before anything is allocated, and every output path is checked before work starts.

The limits (README, "Limits"): they are far above the shipped networks (LeNet-5 has 1.6 M
weights in its largest node and 25 k activations in its widest) and far below what would
exhaust a workstation.
"""

import json
import math
import os
import stat
import zipfile

import numpy as np

from .errors import InputError, PackageError

__all__ = ["MAX_FILE_BYTES", "MAX_ARRAY_BYTES", "MAX_MEMBER_BYTES", "MAX_MANIFEST_BYTES",
           "MAX_NAME_CHARS", "MAX_NODES", "MAX_Q", "MAX_N_OUT", "MAX_WEIGHTS",
           "MAX_ACTIVATIONS", "MAX_MACS", "MAX_VECTORS", "MAX_SEED", "MAX_CLOCK_MHZ",
           "check_regular_file", "read_bounded", "npy_header", "load_npy", "NpzReader",
           "loads_json", "read_json", "check_output_file", "check_output_dir", "count_limit",
           "log_tail"]

MAX_FILE_BYTES = 1 << 31        # 2 GiB: a package, an input array, a checkpoint
MAX_ARRAY_BYTES = 1 << 30       # 1 GiB: one input array (.npy)
MAX_MEMBER_BYTES = 1 << 28      # 256 MiB: one array of a package
MAX_MANIFEST_BYTES = 1 << 24    # 16 MiB: a package's manifest, a build's manifest.json
MAX_NAME_CHARS = 128            # package and node names
MAX_NODES = 4096                # nodes (layers) of a package
MAX_Q = 16                      # bit-planes of FleXOR weights
MAX_N_OUT = 4096                # n_out (and n_in) of an M⊕
MAX_WEIGHTS = 1 << 24           # weights of one node
MAX_ACTIVATIONS = 1 << 22       # values per vector of the input and of every node's output
MAX_MACS = 1 << 32              # multiply-accumulates per inference, whole package
MAX_VECTORS = 1 << 20           # vectors a verify run simulates
MAX_SEED = (1 << 32) - 1        # seeds (the HDL harness's xorshift takes 32 bits)
MAX_CLOCK_MHZ = 1000.0          # build's and synth's --clock-mhz


def count_limit(what, value, limit, error=InputError):
    """Refuse ``value > limit`` with a message naming ``what`` and both numbers."""
    if value > limit:
        raise error(f"{what} is {value:,}, more than flexor-hw's limit of {limit:,}")
    return value


def check_regular_file(path, what, *, limit=MAX_FILE_BYTES, error=InputError):
    """``os.stat`` of an existing regular file of at most ``limit`` bytes (no devices, FIFOs,
    directories: reading those need not end)."""
    path = str(path)
    try:
        st = os.stat(path)
    except OSError as e:
        raise error(f"cannot read {what} {path!r}: {e.strerror or e}") from None
    if stat.S_ISDIR(st.st_mode):
        raise error(f"cannot read {what} {path!r}: it is a directory")
    if not stat.S_ISREG(st.st_mode):
        raise error(f"cannot read {what} {path!r}: not a regular file")
    if st.st_size > limit:
        raise error(f"{what} {path!r} has {st.st_size:,} bytes, more than flexor-hw's limit "
                    f"of {limit:,}")
    return st


def read_bounded(path, what, *, limit=MAX_FILE_BYTES, error=InputError, mode="rb"):
    """The whole content of a regular file of at most ``limit`` bytes."""
    check_regular_file(path, what, limit=limit, error=error)
    try:
        with open(path, mode) as f:
            data = f.read(limit + 1)
    except (OSError, UnicodeDecodeError) as e:
        raise error(f"cannot read {what} {str(path)!r}: "
                    f"{getattr(e, 'strerror', None) or e}") from None
    if len(data) > limit:
        raise error(f"{what} {str(path)!r} has more than flexor-hw's limit of {limit:,} bytes")
    return data


def npy_header(fp, what, *, limit, total=None, error=InputError, pickled=None):
    """Read a ``.npy`` header from ``fp``; return ``(shape, fortran_order, dtype)`` after
    checking that the data it declares is at most ``limit`` bytes and, when ``total`` (the
    size of the whole ``.npy``) is known, that the file holds it."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(fp)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(fp)
        elif version == (2, 0):
            shape, fortran, dtype = fmt.read_array_header_2_0(fp)
        else:
            raise ValueError(f"unsupported .npy format version {version}")
    except (ValueError, EOFError, OSError, SyntaxError, TypeError) as e:
        raise error(f"{what} cannot be read as a .npy array: {e}") from None
    if dtype.hasobject:
        raise error(pickled or f"{what} holds pickled Python objects (never loaded); expected "
                               f"an array of numbers")
    count = math.prod(shape)
    nbytes = count * dtype.itemsize
    if nbytes > limit:
        raise error(f"{what} declares {nbytes:,} bytes ({dtype} "
                    f"{list(shape)}), more than flexor-hw's limit of {limit:,}")
    if total is not None and nbytes > total - fp.tell():
        raise error(f"{what} declares {nbytes:,} bytes ({dtype} {list(shape)}) but holds "
                    f"{max(0, total - fp.tell()):,} (truncated)")
    return shape, fortran, dtype


def load_npy(path, what, *, limit=MAX_ARRAY_BYTES):
    """A ``.npy`` array from a regular file, its declared size checked before reading;
    never unpickles."""
    path = str(path)
    st = check_regular_file(path, what)
    try:
        with open(path, "rb") as f:
            magic = f.read(6)
            if magic != b"\x93NUMPY":
                raise InputError(f"cannot read {what} {path!r}: not a .npy array file"
                                 + (" (a .npz archive?)" if magic[:2] == b"PK" else ""))
            f.seek(0)
            npy_header(f, f"{what} {path!r}", limit=limit, total=st.st_size,
                       pickled=f"cannot read {what} {path!r}: it holds pickled Python objects "
                               f"(never loaded); expected an array of numbers")
            f.seek(0)
            return np.load(f, allow_pickle=False)
    except InputError:
        raise
    except (OSError, ValueError, EOFError) as e:
        raise InputError(f"cannot read {what} {path!r}: {e}") from None


class NpzReader:
    """Members of an ``.npz`` archive, each header checked (declared size against a limit and
    against the member's size in the archive) before its data is read; never unpickles."""

    def __init__(self, data, what, *, error=PackageError):
        import io
        self.what, self.error = what, error
        try:
            self.zip = zipfile.ZipFile(io.BytesIO(data))
        except (zipfile.BadZipFile, OSError, ValueError) as e:
            raise error(f"{what} is not a readable .npz archive: {e}") from None
        self.infos = {}
        for info in self.zip.infolist():
            name = info.filename
            self.infos[name[:-4] if name.endswith(".npy") else name] = info

    @property
    def files(self):
        return list(self.infos)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.zip.close()

    def read(self, name, *, limit=MAX_MEMBER_BYTES):
        import zlib
        info = self.infos[name]
        where = f"member {name!r}"
        try:
            with self.zip.open(info) as f:
                shape, fortran, dtype = npy_header(
                    f, where, limit=limit, total=info.file_size, error=self.error,
                    pickled=f"{where} holds pickled Python objects; packages must contain "
                            f"only arrays")
                nbytes = math.prod(shape) * dtype.itemsize
                data = f.read(nbytes)
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError) as e:
            raise self.error(f"{where} cannot be read (truncated or corrupt archive): "
                             f"{e}") from None
        if len(data) != nbytes:
            raise self.error(f"{where} cannot be read (truncated or corrupt archive)")
        array = np.frombuffer(data, dtype=dtype)
        if fortran:
            return array.reshape(shape[::-1]).transpose().copy()
        return array.reshape(shape).copy()


def loads_json(text, what, *, error=InputError, constants=False):
    """``json.loads`` where malformed or too deeply nested text is one ``error`` naming
    ``what``; so is ``NaN``/``Infinity`` unless ``constants`` (the caller then checks every
    number)."""
    def constant(name):
        raise ValueError(f"{name} is not JSON")
    try:
        return json.loads(text, parse_constant=None if constants else constant)
    except RecursionError:
        raise error(f"{what} is nested too deeply to be read") from None
    except (ValueError, TypeError) as e:
        raise error(f"{what} is not valid JSON: {e}") from None


def read_json(path, what, *, limit=MAX_MANIFEST_BYTES, error=InputError):
    data = read_bounded(path, what, limit=limit, error=error)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise error(f"{what} {str(path)!r} is not UTF-8 text") from None
    return loads_json(text, f"{what} {str(path)!r}", error=error)


def _check_name_lengths(path, what):
    for part in os.path.abspath(path).split(os.sep):
        if len(os.fsencode(part)) > 255:
            raise InputError(f"{what} {path!r}: a path component has "
                             f"{len(os.fsencode(part))} bytes, more than the 255 a file name "
                             f"may have")


def check_output_file(path, what="output file"):
    """Before any work: ``path`` can be written as a file (its directory exists and is
    writable, and it is not a directory)."""
    path = str(path)
    if not path:
        raise InputError(f"{what} must be a path, not ''")
    _check_name_lengths(path, what)
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise InputError(f"cannot write {what} {path!r}: directory {parent!r} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"cannot write {what} {path!r}: directory {parent!r} is not writable")
    if os.path.isdir(path):
        raise InputError(f"cannot write {what} {path!r}: it is a directory")
    if os.path.exists(path) and not os.path.isfile(path):
        raise InputError(f"cannot write {what} {path!r}: it exists and is not a regular file")
    return path


def check_output_dir(path, what="output directory"):
    """Before any work: ``path`` is a directory or can be made one. Returns the deepest
    existing ancestor (where a staging directory can be made on the same file system)."""
    path = str(path)
    if not path:
        raise InputError(f"{what} must be a path, not ''")
    _check_name_lengths(path, what)
    full = os.path.abspath(path)
    if os.path.exists(full) and not os.path.isdir(full):
        raise InputError(f"cannot write {what} {path!r}: it exists and is not a directory")
    ancestor = full
    while not os.path.exists(ancestor):
        ancestor = os.path.dirname(ancestor)
    if not os.path.isdir(ancestor):
        raise InputError(f"cannot write {what} {path!r}: {ancestor!r} is not a directory")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise InputError(f"cannot write {what} {path!r}: directory {ancestor!r} is not "
                         f"writable")
    return ancestor


def log_tail(path, lines=3, limit=4096):
    """The last non-blank ``lines`` of a log, on one line (``a | b | c``), read from at most its
    last ``limit`` bytes: error messages quote them, since the log may live in a temporary
    directory that is about to go."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.path.getsize(path) - limit))
            text = f.read(limit).decode("utf-8", "replace")
    except OSError:
        return "(no log)"
    tail = [" ".join(line.split()) for line in text.splitlines() if line.strip()][-lines:]
    return " | ".join(tail) or "(empty log)"
