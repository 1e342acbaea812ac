"""cocotb testbench for an emitted flexor-hw top (Icarus or Verilator).

Configured by a JSON file named in ``FLEXOR_TB_CONFIG`` (written by ``flexor_hw.verify``):
``inputs``/``expected`` .npy files (integer ``[vectors, n]``), stall probabilities, seed,
output signedness, timeout, and ``result`` — a JSON file the testbench writes with what it
measured. The design's streams follow ``lib.stream``: a beat moves on a rising edge where
``valid`` and ``ready`` are both high.

Driver and monitor both change their outputs on the falling edge and then read the settled
handshake in ``ReadOnly``: that is what the next rising edge samples, on any simulator.
"""

import json
import os
import random
import time

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge

from .harness import Scoreboard

CLOCK_NS = 10


class StreamDriver:
    """Drives ``i__payload/i__valid``; withholds ``valid`` with probability ``stall``."""

    def __init__(self, dut, beats, width, stall, rng):
        self.dut, self.beats, self.stall, self.rng = dut, beats, stall, rng
        self.mask = (1 << width) - 1
        self.sent = 0
        self.cycles = []             # cycle of each transfer

    async def run(self, clock):
        dut = self.dut
        while self.sent < len(self.beats):
            await FallingEdge(dut.clk)
            offer = not (self.stall and self.rng.random() < self.stall)
            dut.i__valid.value = int(offer)
            dut.i__payload.value = int(self.beats[self.sent]) & self.mask
            await ReadOnly()
            if offer and dut.i__ready.value == 1:
                self.sent += 1
                self.cycles.append(clock.cycle)
        await FallingEdge(dut.clk)
        dut.i__valid.value = 0


class StreamMonitor:
    """Drives ``o__ready`` (withheld with probability ``stall``) and collects outputs."""

    def __init__(self, dut, count, signed, stall, rng):
        self.dut, self.count, self.signed, self.stall, self.rng = dut, count, signed, stall, rng
        self.values = []
        self.cycles = []

    async def run(self, clock):
        dut = self.dut
        while len(self.values) < self.count:
            await FallingEdge(dut.clk)
            take = not (self.stall and self.rng.random() < self.stall)
            dut.o__ready.value = int(take)
            await ReadOnly()
            if take and dut.o__valid.value == 1:
                value = dut.o__payload.value         # LogicArray, or Logic when 1 bit wide
                self.values.append(value.to_signed() if self.signed else int(value))
                self.cycles.append(clock.cycle)
        await FallingEdge(dut.clk)
        dut.o__ready.value = 0


class CycleCounter:
    def __init__(self, dut):
        self.dut, self.cycle = dut, 0

    async def run(self):
        while True:
            await RisingEdge(self.dut.clk)
            self.cycle += 1


@cocotb.test()
async def stream_matches_golden_model(dut):
    """All vectors through the design with random stalls; outputs == golden model, exactly."""
    with open(os.environ["FLEXOR_TB_CONFIG"]) as f:
        cfg = json.load(f)
    x = np.load(cfg["inputs"], allow_pickle=False)
    expected = np.load(cfg["expected"], allow_pickle=False)
    rng_in, rng_out = random.Random(cfg["seed"]), random.Random(cfg["seed"] + 1)

    cocotb.start_soon(Clock(dut.clk, CLOCK_NS, unit="ns").start())
    dut.i__valid.value = 0
    dut.o__ready.value = 0
    dut.i__payload.value = 0
    dut.rst.value = 1
    for _ in range(3):
        await RisingEdge(dut.clk)
    await FallingEdge(dut.clk)
    dut.rst.value = 0

    clock = CycleCounter(dut)
    cocotb.start_soon(clock.run())
    driver = StreamDriver(dut, x.reshape(-1).tolist(), cfg["input_width"], cfg["in_stall"],
                          rng_in)
    monitor = StreamMonitor(dut, expected.size, cfg["output_signed"], cfg["out_stall"], rng_out)
    started = time.perf_counter()
    cocotb.start_soon(driver.run(clock))
    done = cocotb.start_soon(monitor.run(clock))
    while not done.done():
        await RisingEdge(dut.clk)
        if clock.cycle > cfg["timeout_cycles"]:
            break
    seconds = time.perf_counter() - started

    scoreboard = Scoreboard(expected, cfg["layer"])
    scoreboard.check(monitor.values, monitor.cycles)
    missing = expected.size - len(monitor.values)
    n_out = expected.shape[1]
    ends = monitor.cycles[n_out - 1::n_out]
    result = {
        "vectors": int(x.shape[0]),
        "outputs_expected": int(expected.size),
        "outputs_received": len(monitor.values),
        "mismatches": scoreboard.mismatches + missing,
        "first_mismatches": scoreboard.first,
        "cycles": clock.cycle,
        "sim_seconds": seconds,
        "sim_cycles_per_s": clock.cycle / seconds if seconds > 0 else None,
        "measured_cycles_per_inference": (float(np.diff(ends).mean()) if len(ends) > 1
                                          else None),
        "measured_latency_cycles": (ends[0] - driver.cycles[x.shape[1] - 1]
                                    if ends and len(driver.cycles) >= x.shape[1] else None),
        "outputs": [int(v) for v in monitor.values],
    }
    with open(cfg["result"], "w") as f:
        json.dump(result, f)
    assert missing == 0, (f"timed out after {clock.cycle} cycles: {len(monitor.values)} of "
                          f"{expected.size} outputs received")
    assert scoreboard.mismatches == 0, (f"{scoreboard.mismatches} mismatches; first: "
                                        f"{scoreboard.first[:3]}")
