"""cocotb testbench for a top built with ``--interface axis`` (Icarus or Verilator).

The bus models are cocotbext-axi's: an ``AxiStreamSource`` on ``s_axis`` sends one frame per
image (TLAST on its last beat), an ``AxiStreamSink`` on ``m_axis`` collects one frame per
result, an ``AxiStreamMonitor`` on ``s_axis`` times the input; pause generators withhold
``tvalid`` and ``tready`` at random. One beat is one value (``byte_lanes=1``), sign- or
zero-extended to the whole bytes of TDATA.

Configured like ``flexor_tb`` by the JSON file named in ``FLEXOR_TB_CONFIG`` (written by
``flexor_hw.verify``). ``axis_misplaced_tlast`` reads ``packets`` (lists of beats, one frame
each), ``packet_results`` (the result each packet must give) and ``first_bad`` (the first
packet with a misplaced TLAST) from it instead; ``flexor_hw.verify`` runs only
``axis_matches_golden_model``.
"""

import json
import logging
import os
import random
import time

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge
from cocotb.utils import get_sim_time, get_time_from_sim_steps
from cocotbext.axi import (AxiStreamBus, AxiStreamFrame, AxiStreamMonitor, AxiStreamSink,
                           AxiStreamSource)

from .harness import Scoreboard

CLOCK_NS = 10


def _pauses(probability, seed):
    rng = random.Random(seed)
    while True:
        yield bool(probability) and rng.random() < probability


class Bench:
    """Clock, reset and the three bus models around ``dut``."""

    def __init__(self, dut, cfg):
        self.dut, self.cfg = dut, cfg
        self.in_mask = (1 << cfg["input_width"]) - 1
        self.out_width = cfg["output_width"]
        cocotb.start_soon(Clock(dut.aclk, CLOCK_NS, unit="ns").start())
        dut.aresetn.value = 0
        self.source = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis"), dut.aclk,
                                      dut.aresetn, reset_active_level=False, byte_lanes=1)
        self.sink = AxiStreamSink(AxiStreamBus.from_prefix(dut, "m_axis"), dut.aclk,
                                  dut.aresetn, reset_active_level=False, byte_lanes=1)
        self.taken = AxiStreamMonitor(AxiStreamBus.from_prefix(dut, "s_axis"), dut.aclk,
                                      dut.aresetn, reset_active_level=False, byte_lanes=1)
        for model in (self.source, self.sink, self.taken):
            model.log.setLevel(logging.WARNING)   # not a line per frame
        self.source.set_pause_generator(_pauses(cfg["in_stall"], cfg["seed"]))
        self.sink.set_pause_generator(_pauses(cfg["out_stall"], cfg["seed"] + 1))
        self.t0 = 0.0

    async def reset(self, cycles=3):
        self.dut.aresetn.value = 0
        await ClockCycles(self.dut.aclk, cycles)
        self.dut.aresetn.value = 1
        self.t0 = get_sim_time("ns")

    def send(self, beats):
        self.source.send_nowait(AxiStreamFrame([int(v) & self.in_mask for v in beats]))

    def value(self, word):
        if self.cfg["output_signed"] and word >> (self.out_width - 1):
            return word - (1 << self.out_width)
        return word

    def cycle(self, steps):
        """Cycle (from the end of reset) of a frame's ``sim_time_end`` (in simulator steps)."""
        return round((get_time_from_sim_steps(steps, "ns") - self.t0) / CLOCK_NS)

    async def results(self, beats, timeout_cycles):
        """Result frames until ``beats`` beats have arrived (or the timeout)."""
        frames, got = [], 0
        for _ in range(timeout_cycles):
            while not self.sink.empty():
                frame = self.sink.recv_nowait()
                frames.append(frame)
                got += len(frame.tdata)
            if got >= beats:
                break
            await RisingEdge(self.dut.aclk)
        return frames


@cocotb.test()
async def axis_matches_golden_model(dut):
    """All images through the AXI4-Stream top with random pauses on both sides; results ==
    golden model, exactly; TLAST on the last beat of every result; ``error`` low."""
    with open(os.environ["FLEXOR_TB_CONFIG"]) as f:
        cfg = json.load(f)
    x = np.load(cfg["inputs"], allow_pickle=False)
    expected = np.load(cfg["expected"], allow_pickle=False)
    n_out = expected.shape[1]
    bench = Bench(dut, cfg)
    await bench.reset()
    inputs = []                                   # cycle of each image's last beat taken

    async def time_inputs():
        while True:
            inputs.append(bench.cycle((await bench.taken.recv()).sim_time_end))

    cocotb.start_soon(time_inputs())
    started = time.perf_counter()
    for image in x.tolist():
        bench.send(image)
    frames = await bench.results(expected.size, cfg["timeout_cycles"])
    seconds = time.perf_counter() - started
    cycles = round((get_sim_time("ns") - bench.t0) / CLOCK_NS)

    values = [bench.value(w) for frame in frames for w in frame.tdata]
    ends = [bench.cycle(frame.sim_time_end) for frame in frames]
    out_cycles = [end for frame, end in zip(frames, ends) for _ in frame.tdata]
    scoreboard = Scoreboard(expected, cfg["layer"])
    scoreboard.check(values, out_cycles)
    missing = max(0, expected.size - len(values))
    # Beats whose TLAST is not where it belongs (on every n_out-th beat): as the HDL harness.
    tlasts = [k == len(frame.tdata) - 1 for frame in frames for k in range(len(frame.tdata))]
    tlast_errors = sum(last != ((k + 1) % n_out == 0) for k, last in enumerate(tlasts))
    result = {
        "vectors": int(x.shape[0]),
        "outputs_expected": int(expected.size),
        "outputs_received": len(values),
        "mismatches": scoreboard.mismatches + missing,
        "first_mismatches": scoreboard.first,
        "cycles": cycles,
        "sim_seconds": seconds,
        "sim_cycles_per_s": cycles / seconds if seconds > 0 else None,
        "measured_cycles_per_inference": (float(np.diff(ends).mean()) if len(ends) > 1
                                          else None),
        "measured_latency_cycles": ends[0] - inputs[0] if ends and inputs else None,
        "outputs": [int(v) for v in values],
        "axis": {"tlast_errors": tlast_errors, "error": int(dut.error.value)},
    }
    with open(cfg["result"], "w") as f:
        json.dump(result, f)
    assert missing == 0, (f"timed out after {cycles} cycles: {len(values)} of "
                          f"{expected.size} outputs received")
    assert scoreboard.mismatches == 0, (f"{scoreboard.mismatches} mismatches; first: "
                                        f"{scoreboard.first[:3]}")
    assert tlast_errors == 0, f"{tlast_errors} beats with m_axis_tlast misplaced"
    assert result["axis"]["error"] == 0, "error is high after well-formed images"


@cocotb.test()
async def axis_misplaced_tlast(dut):
    """Packets with TLAST early and late: ``error`` rises at the first and stays high, each
    packet gives one result frame (the zero-padded or truncated image's), the packets after
    are aligned; ``aresetn`` clears ``error``, and well-formed images then leave it low."""
    with open(os.environ["FLEXOR_TB_CONFIG"]) as f:
        cfg = json.load(f)
    packets, want = cfg["packets"], cfg["packet_results"]
    bench = Bench(dut, cfg)
    await bench.reset()
    flags = []
    for packet in packets:
        bench.send(packet)
        await bench.source.wait()                 # the whole frame has been driven
        while bench.taken.empty():                # ... and taken
            await RisingEdge(dut.aclk)
        bench.taken.recv_nowait()
        await RisingEdge(dut.aclk)
        flags.append(int(dut.error.value))
    frames = await bench.results(sum(map(len, want)), cfg["timeout_cycles"])
    got = [[bench.value(w) for w in frame.tdata] for frame in frames]
    assert got == want
    first = cfg["first_bad"]
    assert flags == [0] * first + [1] * (len(packets) - first), flags

    await bench.reset()
    assert int(dut.error.value) == 0, "aresetn does not clear error"
    bench.send(packets[0])                        # well formed (first_bad > 0)
    frames = await bench.results(len(want[0]), cfg["timeout_cycles"])
    assert [[bench.value(w) for w in frame.tdata] for frame in frames] == [want[0]]
    assert int(dut.error.value) == 0
