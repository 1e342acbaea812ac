"""flexor-hw: FleXOR-compressed neural networks to synthesizable, verified FPGA RTL."""

__version__ = "0.1.0"
