"""The board's serial link in Verilator: the very module a board's top instantiates
(``flexor_board_core``: the link and the network, from the board directory's Verilog), with a
small C++ main that turns bytes from its stdin into bits on ``rx`` and bits on ``tx`` into
bytes on its stdout, at a few clock cycles per bit. :class:`SimTransport` talks to it with
the interface of a pyserial port, so ``flexor-hw classify --sim`` runs the same host code as
on a board."""

import contextlib
import hashlib
import os
import select
import shutil
import subprocess
import tempfile
import time

from .board import load_board
from .errors import FlexorError
from .toolchain import verilator_env

__all__ = ["SimTransport", "build_sim", "SimError"]

# stdin: records of 3 bytes: kind, lo, hi. kind 0: send byte lo; 1: hold rx low (a break)
# for lo | hi << 8 bit times; 2: keep rx high for lo | hi << 8 bit times.
MAIN = r"""
#include <verilated.h>
#include "Vflexor_board_core.h"
#include <poll.h>
#include <unistd.h>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <utility>
#include <vector>

static Vflexor_board_core* top;
static void tick() { top->clk = 0; top->eval(); top->clk = 1; top->eval(); }

int main(int argc, char** argv) {
    if (argc < 3) { fprintf(stderr, "usage: %s DIVISOR TIMEOUT_CYCLES\n", argv[0]); return 2; }
    VerilatedContext* ctx = new VerilatedContext;
    top = new Vflexor_board_core{ctx};
    const long divisor = strtol(argv[1], nullptr, 10);
    top->divisor = divisor;
    top->timeout = strtoul(argv[2], nullptr, 10);
    top->rx = 1;
    top->rst = 1;
    for (int i = 0; i < 8; i++) tick();
    top->rst = 0;
    std::deque<unsigned char> cmd;
    std::deque<std::pair<int, long>> levels;            // (rx level, cycles)
    int level = 1; long remaining = 0;
    int tstate = 0, tbits = 0; long tcount = 0; unsigned tshift = 0;
    std::vector<unsigned char> out;
    bool eof = false;
    for (;;) {
        bool active = remaining > 0 || !levels.empty() || top->busy || tstate != 0;
        struct pollfd p = {0, POLLIN, 0};
        if (!eof && poll(&p, 1, active ? 0 : 1) > 0) {
            unsigned char buf[4096];
            ssize_t r = read(0, buf, sizeof buf);
            if (r <= 0) eof = true; else cmd.insert(cmd.end(), buf, buf + r);
        }
        while (cmd.size() >= 3) {
            int kind = cmd[0]; long n = cmd[1] | (cmd[2] << 8);
            cmd.erase(cmd.begin(), cmd.begin() + 3);
            if (kind == 0) {
                levels.emplace_back(0, divisor);
                for (int b = 0; b < 8; b++) levels.emplace_back((n >> b) & 1, divisor);
                levels.emplace_back(1, divisor);
            } else if (kind == 1) {
                levels.emplace_back(0, n * divisor);
                levels.emplace_back(1, divisor);
            } else {
                levels.emplace_back(1, n * divisor);
            }
        }
        active = remaining > 0 || !levels.empty() || top->busy || tstate != 0;
        if (eof && !active) break;
        const int chunk = active ? 4096 : 256;
        for (int k = 0; k < chunk; k++) {
            if (remaining == 0) {
                if (!levels.empty()) {
                    level = levels.front().first; remaining = levels.front().second;
                    levels.pop_front();
                } else {
                    level = 1;
                }
            }
            if (remaining > 0) remaining--;
            top->rx = level;
            tick();
            const int t = top->tx;
            switch (tstate) {
            case 0: if (!t) { tstate = 1; tcount = divisor / 2; } break;
            case 1: if (--tcount <= 0) {
                        if (t) tstate = 0;
                        else { tstate = 2; tcount = divisor; tbits = 0; tshift = 0; }
                    } break;
            case 2: if (--tcount <= 0) {
                        tshift |= (unsigned)t << tbits; tcount = divisor;
                        if (++tbits == 8) tstate = 3;
                    } break;
            case 3: if (--tcount <= 0) { out.push_back(tshift); tstate = t ? 0 : 4; } break;
            case 4: if (t) tstate = 0; break;
            }
        }
        size_t done = 0;
        while (done < out.size()) {
            ssize_t w = write(1, out.data() + done, out.size() - done);
            if (w <= 0) return 0;
            done += w;
        }
        out.clear();
    }
    top->final();
    delete top;
    return 0;
}
"""


class SimError(FlexorError):
    """The simulated board could not be built or stopped."""


def _sources_digest(board_dir, manifest):
    h = hashlib.sha256(MAIN.encode())
    for name in [manifest["core_verilog"]] + manifest["sources"]:
        with open(os.path.join(board_dir, name), "rb") as f:
            h.update(name.encode() + b"\0" + f.read())
    return h.hexdigest()


def build_sim(board_dir, work, *, quiet=True):
    """Build the Verilator model of a board directory in ``work`` (reused when its sources
    are unchanged); return the path of the executable."""
    from .sim.harness import HarnessError, _check
    manifest = load_board(board_dir)
    env = verilator_env()
    os.makedirs(work, exist_ok=True)
    digest = _sources_digest(board_dir, manifest)
    exe = os.path.join(work, "obj_dir", "Vflexor_board_core")
    stamp = os.path.join(work, "sources.sha256")
    if os.path.isfile(exe) and os.path.isfile(stamp):
        with open(stamp) as f:
            if f.read().strip() == digest:
                return exe
    for name in [manifest["core_verilog"]] + manifest["sources"]:
        shutil.copyfile(os.path.join(board_dir, name), os.path.join(work, name))
    with open(os.path.join(work, "board_sim_main.cpp"), "w") as f:
        f.write(MAIN)
    verilog = [manifest["core_verilog"]] + [n for n in manifest["sources"] if n.endswith(".v")]
    if not quiet:
        import sys
        print("[sim] building the board's link and network with Verilator …", file=sys.stderr,
              flush=True)
    try:
        _check(["verilator", "--cc", "--exe", "--build", "-j", "2", "-Wno-fatal", "-Wno-WIDTH",
                "--top-module", manifest["core"], "-Mdir", "obj_dir",
                "-MAKEFLAGS", "VK_PCH_I_FAST= VK_PCH_I_SLOW= OPT_FAST=-O2",
                *verilog, "board_sim_main.cpp"], os.path.join(work, "build.log"), work, env)
    except HarnessError as e:
        raise SimError(f"cannot build the simulated board: {e}") from None
    with open(stamp, "w") as f:
        f.write(digest + "\n")
    return exe


class SimTransport:
    """The simulated board as a pyserial-like port: ``write``, ``read``, ``timeout``,
    ``reset_input_buffer``, ``silence`` and ``send_break`` (in bit times of the link)."""

    def __init__(self, board_dir, *, work=None, quiet=True):
        self.manifest = load_board(board_dir)
        self._own = work is None
        self.work = tempfile.mkdtemp(prefix="flexor-boardsim-") if work is None else str(work)
        exe = build_sim(board_dir, self.work, quiet=quiet)
        divisor = self.manifest["sim_divisor"]
        timeout = self.manifest["timeout_bits"] * divisor
        self.proc = subprocess.Popen([exe, str(divisor), str(timeout)], cwd=self.work,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL)
        self.timeout = 1.0
        self._buf = bytearray()
        self._pending = None            # records held by batch()
        # the link's throughput in simulation, for reports: bits per second of wall time
        self.baud = self.manifest["baud"]

    @contextlib.contextmanager
    def batch(self):
        """Writes, breaks and silences made inside reach the simulation together: the
        simulated line idles while the simulation waits for the host, so a wall-clock gap
        between two calls (a loaded machine) would otherwise put idle bits between them."""
        self._pending = bytearray()
        try:
            yield self
        finally:
            pending, self._pending = self._pending, None
            self._send(pending)

    def _send(self, records):
        if self._pending is not None:
            self._pending += records
            return
        try:
            self.proc.stdin.write(bytes(records))
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise SimError(f"the simulated board stopped (exit {self.proc.poll()})") from None

    def write(self, data):
        records = bytearray()
        for b in bytes(data):
            records += bytes([0, b, 0])
        self._send(records)
        return len(data)

    def _long(self, kind, bit_times):
        bit_times = int(bit_times)
        records = bytearray()
        while bit_times > 0:
            n = min(bit_times, 0xFFFF)
            records += bytes([kind, n & 0xFF, n >> 8])
            bit_times -= n
        self._send(records)

    def send_break(self, bit_times):
        """Hold the line low for ``bit_times`` bits."""
        self._long(1, bit_times)

    def silence(self, bit_times):
        """Keep the line idle for ``bit_times`` bits (simulated time: exact)."""
        self._long(2, bit_times)

    def read(self, n):
        deadline = time.monotonic() + (self.timeout or 0)
        fd = self.proc.stdout.fileno()
        while len(self._buf) < n:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([fd], [], [], max(0.0, left))
            if not ready:
                break
            chunk = os.read(fd, 65536)
            if not chunk:
                raise SimError(f"the simulated board stopped (exit {self.proc.poll()})")
            self._buf += chunk
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    def reset_input_buffer(self):
        # what the simulation has sent by now: let it catch up with the silence first
        fd = self.proc.stdout.fileno()
        while select.select([fd], [], [], 0.05)[0]:
            if not os.read(fd, 65536):
                break
        self._buf.clear()

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            try:
                pipe.close()
            except OSError:
                pass
        if self._own:
            shutil.rmtree(self.work, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
