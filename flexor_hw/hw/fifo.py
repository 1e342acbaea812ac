"""FIFO sizing pass: the skip FIFO of every residual block, computed from the geometry of its
main path (never simulated, never guessed)."""

from dataclasses import replace

__all__ = ["rows_needed", "skip_fifo_depth", "size_fifos"]


def rows_needed(stage, out_row, *, held=False):
    """Complete input rows a window or pooling stage needs before it can emit output row
    ``out_row``; with ``held``, the rows its line buffer can hold by then (``kh + sh`` rows,
    ``2·kh + sh`` for a row window: it takes the rows beyond what it needs)."""
    k, s = stage.kernel[0], stage.stride[0]
    p = stage.padding[0] if stage.kind == "window" else 0
    extra = s
    if stage.kind == "window":
        extra = stage.buffer_rows - k           # a row window holds kh rows more
    return max(0, min(stage.height, out_row * s - p + k + (extra if held else 0)))


def skip_fifo_depth(main_path, out_rows, stride, channels_in, width_in, *, full_rate=True):
    """Places the skip FIFO of a residual block needs so that the block cannot deadlock.

    The fork sends each beat of the block input X to the main path and to the skip FIFO,
    waiting for both. The add takes output ``(oy, ox, c)`` of the main path together with its
    skip beat, which sits ``Q = ((oy·s)·W + ox·s)·C + c`` beats into X. Before the main path
    can emit any output of row ``oy``, its window stages need ``P(oy)`` beats of X: whole
    rows, composed back through every window stage of the path (:func:`rows_needed`). Beats
    ``[Q, P)`` wait in the FIFO meanwhile, so the depth is ``max_oy (P(oy) − Q(oy))`` over the
    add's rows, plus one pixel of slack for the fork's and shortcut's registers. With fewer
    places the fork stalls the main path while it still needs input: the classic deadlock of
    skip connections in dataflow accelerators. Each window's input register (a skid buffer)
    holds two beats more, and a group window's packer two words of its channels.

    That minimum is deadlock-free but paces the main path at the add's speed. With
    ``full_rate`` ``P`` counts the rows every window's line buffer can hold, so the fork never
    holds the main path back. With a stride-``s`` shortcut only the beats of rows and columns
    that are multiples of ``s`` enter the FIFO: ``⌈rows/s⌉ · ⌈W/s⌉ · C``.
    """
    kept_row_beats = -(-width_in // stride) * channels_in
    worst = 0
    for oy in range(out_rows):
        rows = oy + 1
        for stage in reversed(main_path):
            if stage.kind in ("window", "maxpool"):
                rows = rows_needed(stage, rows - 1, held=full_rate)
        worst = max(worst, -(-(rows - oy * stride) // stride) * kept_row_beats)
    # each window's input register holds up to two beats of its input, and a group
    # window's packer a word and its output register
    held = sum(2 + (2 * stage.group if stage.style == "group" else 0)
               for stage in main_path if stage.kind == "window")
    return worst + channels_in + 2 + held


def size_fifos(stages, *, full_rate=True):
    """The stages with every residual fork's skip FIFO sized for its block."""
    stages = list(stages)
    for k, st in enumerate(stages):
        if st.kind != "fork":
            continue
        end = next(j for j in range(k + 1, len(stages)) if stages[j].name == st.add)
        add = stages[end]
        depth = skip_fifo_depth(stages[k + 1:end], add.height, st.stride, st.channels, st.width,
                                full_rate=full_rate)
        stages[k] = replace(st, depth=depth)
    return stages
