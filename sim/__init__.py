"""cocotb testbenches for emitted flexor-hw designs (installed as flexor_hw.sim)."""
