"""The hardware graph: lowering (``lower``), stages (``stages``), and the passes over it —
folding (``fold``), FIFO sizing (``fifo``); ROM images live in :mod:`flexor_hw.rom_image`."""
