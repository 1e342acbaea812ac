"""The host side of the board's serial link (docs/board.md): frames, replies, retries, and
``flexor-hw classify``. A transport is anything with pyserial's ``write(bytes)``,
``read(n)`` (at most ``n`` bytes, fewer after ``timeout`` seconds), a ``timeout``
attribute and ``reset_input_buffer()``, plus ``silence(bit_times)`` (keep the line idle that
long); :class:`SerialTransport` wraps a pyserial port, :mod:`flexor_hw.board_sim` provides a
simulated board."""

import binascii
import sys
import time

import numpy as np

from .errors import FlexorError

__all__ = ["crc16", "request_frame", "parse_reply", "Link", "LinkError", "SerialTransport",
           "STATUS_NAMES", "encode_image", "image_beats"]

REQUEST_MAGIC = 0xA5
REPLY_MAGIC = 0x5A
STATUS_NAMES = {0: "ok", 1: "bad checksum", 2: "bad length", 3: "timeout (truncated frame)",
                4: "line error (framing or break)", 5: "overrun"}


#: Images without an answer, from the first on, after which a run gives up.
NO_ANSWER = 3


class LinkError(FlexorError):
    """The link cannot be used (a port that cannot be opened, a board that never answers)."""


def crc16(data, crc=0xFFFF):
    """CRC-16/CCITT-FALSE (polynomial 0x1021, initial value 0xFFFF, no reflection)."""
    return binascii.crc_hqx(bytes(data), crc)


def request_frame(seq, payload):
    """``A5 seq len_lo len_hi payload crc_lo crc_hi``."""
    payload = bytes(payload)
    body = bytes([seq & 0xFF, len(payload) & 0xFF, len(payload) >> 8]) + payload
    crc = crc16(body)
    return bytes([REQUEST_MAGIC]) + body + bytes([crc & 0xFF, crc >> 8])


def image_beats(spec, x):
    """The beats of each image of ``x`` (``[n, *shape]`` or ``[n, features]``), in the
    order the design takes them: ``[n, beats]`` integers."""
    i = spec["input"]
    x = np.asarray(x).astype(np.int64)
    n = x.shape[0]
    if i["order"] == "y,x,c":
        c, h, w = i["shape"]
        return x.reshape(n, c, h, w).transpose(0, 2, 3, 1).reshape(n, -1)
    return x.reshape(n, -1)


def encode_image(spec, beats):
    """One image's beats as payload bytes: each beat ``bytes_per_beat`` bytes, little-endian
    two's complement."""
    k = spec["input"]["bytes_per_beat"]
    values = np.asarray(beats, dtype=np.int64) & ((1 << (8 * k)) - 1)
    out = np.zeros((values.size, k), dtype=np.uint8)
    for b in range(k):
        out[:, b] = (values >> (8 * b)) & 0xFF
    return out.tobytes()


def parse_reply(spec, payload):
    """``(class, vector or None)`` of an ``ok`` reply's payload."""
    o = spec["output"]
    cls = payload[-2] | payload[-1] << 8
    if o["argmax"]:
        return cls, None
    k = o["bytes_per_value"]
    raw = np.frombuffer(payload[:-2], dtype=np.uint8).reshape(o["beats"], k).astype(np.int64)
    values = np.zeros(o["beats"], dtype=np.int64)
    for b in range(k):
        values |= raw[:, b] << (8 * b)
    if o["signed"]:
        sign = 1 << (8 * k - 1)
        values = (values ^ sign) - sign
    return cls, values


class Link:
    """Stop-and-wait requests over a transport: each image is sent with a sequence number and
    its reply awaited; a timeout, a bad checksum or an error reply leads to a retry, after
    a silence long enough for the board to give up any frame it was receiving.

    Parameters
    ----------
    transport
        pyserial-like (see the module's docstring).
    board
        The board manifest (:func:`flexor_hw.board.load_board`).
    reply_timeout : float
        Seconds to wait for a reply before retrying.
    retries : int
        Retries per image before it is given up (its class reported as -1).
    """

    def __init__(self, transport, board, *, reply_timeout=1.0, retries=3):
        self.t = transport
        self.board = board
        self.spec = board["link"]
        self.reply_timeout = reply_timeout
        self.retries = retries
        self.seq = 0
        self.events = {"timeout": 0, "bad reply": 0, "stale reply": 0}
        for name in STATUS_NAMES.values():
            if name != "ok":
                self.events[name] = 0
        self.retried = 0
        self.failed = 0

    def _read_exact(self, n, deadline):
        buf = bytearray()
        while len(buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.t.timeout = left
            chunk = self.t.read(n - len(buf))
            if chunk:
                buf += chunk
        return bytes(buf)

    def read_reply(self, deadline):
        """The next reply: ``(seq, status, payload)``, ``"crc"`` for a damaged one (a bad
        checksum or a length no reply of this design has), or None at the deadline. Bytes
        before a reply's magic are skipped."""
        while True:
            b = self._read_exact(1, deadline)
            if b is None:
                return None
            if b[0] != REPLY_MAGIC:
                continue
            head = self._read_exact(4, deadline)
            if head is None:
                return None
            seq, status, length = head[0], head[1], head[2] | head[3] << 8
            if length not in (0, self.spec["output"]["reply_bytes"]):
                return "crc"                # not a reply of this design: resynchronize
            rest = self._read_exact(length + 2, deadline)
            if rest is None:
                return None
            body, crc = head + rest[:length], rest[length] | rest[length + 1] << 8
            if crc16(body) != crc:
                return "crc"
            return seq, status, rest[:length]

    def resync(self):
        """Idle long enough for the board to drop a frame it was receiving, then forget
        whatever arrived meanwhile."""
        self.t.silence(2 * self.board["timeout_bits"] + 20)
        self.t.reset_input_buffer()

    def classify(self, beats):
        """Send one image (its beats); return ``(class, vector or None)``, or None when
        every attempt failed."""
        payload = encode_image(self.spec, beats)
        for attempt in range(self.retries + 1):
            if attempt:
                self.retried += 1
                self.resync()
            seq = self.seq
            self.seq = (self.seq + 1) & 0xFF
            self.t.write(request_frame(seq, payload))
            deadline = time.monotonic() + self.reply_timeout
            while True:
                reply = self.read_reply(deadline)
                if reply is None:
                    self.events["timeout"] += 1
                    break
                if reply == "crc":
                    self.events["bad reply"] += 1
                    break
                r_seq, status, body = reply
                if r_seq != seq:
                    self.events["stale reply"] += 1     # an answer to an earlier attempt
                    continue
                if status != 0:
                    name = STATUS_NAMES.get(status, f"status {status}")
                    self.events[name] = self.events.get(name, 0) + 1
                    break
                if len(body) != self.spec["output"]["reply_bytes"]:
                    self.events["bad reply"] += 1       # status ok without a result
                    break
                return parse_reply(self.spec, body)
        self.failed += 1
        return None


class SerialTransport:
    """A pyserial port at the board's baud rate, 8N1."""

    def __init__(self, port, baud):
        try:
            import serial
        except ImportError:
            raise LinkError("pyserial is not installed: pip install 'flexor-hw[board]'") \
                from None
        try:
            self.port = serial.Serial(port, baud, timeout=1.0)
        except (serial.SerialException, OSError, ValueError) as e:
            raise LinkError(f"cannot open serial port {port!r}: "
                            f"{' '.join(str(e).split())}") from None
        self.baud = baud

    @property
    def timeout(self):
        return self.port.timeout

    @timeout.setter
    def timeout(self, value):
        self.port.timeout = value

    def _io(self, what, *args):
        import serial
        try:
            return what(*args)
        except (serial.SerialException, OSError) as e:
            raise LinkError(f"serial port {self.port.port!r}: {' '.join(str(e).split())}") \
                from None

    def write(self, data):
        self._io(self.port.write, data)
        self._io(self.port.flush)

    def read(self, n):
        return self._io(self.port.read, n)

    def reset_input_buffer(self):
        self.port.reset_input_buffer()

    def silence(self, bit_times):
        time.sleep(bit_times / self.baud)

    def send_break(self, bit_times):
        self.port.send_break(bit_times / self.baud)

    def close(self):
        self.port.close()


def run_classify(link, beats, *, progress=True):
    """Classify every image (``beats``: ``[n, beats]``); return ``(classes, vectors or None,
    seconds)``. Classes of images that never got an answer are -1."""
    n = beats.shape[0]
    classes = np.full(n, -1, dtype=np.int64)
    vectors = None if link.spec["output"]["argmax"] else \
        np.zeros((n, link.spec["output"]["beats"]), dtype=np.int64)
    tty = progress and sys.stderr.isatty()
    t0 = time.perf_counter()
    last = t0
    for k in range(n):
        got = link.classify(beats[k])
        if got is None and k + 1 >= NO_ANSWER and (classes[:k] < 0).all():
            if tty:
                print(file=sys.stderr)
            causes = ", ".join(f"{e}: {v}" for e, v in link.events.items() if v)
            raise LinkError(f"no answer from the board to the first {k + 1} images, "
                            f"{link.retries} retries each ({causes}): is it programmed with "
                            f"this design, at {link.board['baud']:,} baud?")
        if got is not None:
            classes[k] = got[0]
            if vectors is not None:
                vectors[k] = got[1]
        now = time.perf_counter()
        if progress and (k + 1 == n or now - last >= (0.2 if tty else 10)):
            last = now
            done = (k + 1) / n
            bar = "#" * int(30 * done)
            rate = (k + 1) / max(now - t0, 1e-9)
            line = (f"[classify] [{bar:<30}] {k + 1}/{n} images, {rate:,.1f} images/s, "
                    f"{link.retried} retries")
            print(("\r" + line) if tty else line, end="" if tty and k + 1 < n else "\n",
                  file=sys.stderr, flush=True)
    return classes, vectors, time.perf_counter() - t0
