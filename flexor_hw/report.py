"""Human-readable tables of packages and builds."""

__all__ = ["format_table", "package_table"]


def format_table(header, rows, align=None):
    """A plain-text table; ``align`` is a string of 'l'/'r' per column."""
    cells = [list(map(str, header))] + [list(map(str, row)) for row in rows]
    widths = [max(len(row[c]) for row in cells) for c in range(len(header))]
    align = align or "l" + "r" * (len(header) - 1)

    def line(row):
        return "  ".join(cell.ljust(w) if a == "l" else cell.rjust(w)
                         for cell, w, a in zip(row, widths, align)).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule] + [line(row) for row in cells[1:]])


def package_table(package):
    """Layers, shapes, FleXOR parameters, storage and compression of a package."""
    inp = package.input
    head = (f"package {package.name!r}: input {list(package.input_shape)}, "
            f"{inp.bits}-bit {'signed' if inp.signed else 'unsigned'}, scale {inp.scale:g}")
    rows = []
    total_w = total_bits = 0
    for layer in package.layers:
        total_w += layer.numel
        total_bits += layer.stored_bits
        rows.append((layer.name, "×".join(map(str, layer.weight_shape)), layer.q,
                     f"{layer.n_in}/{layer.n_out}",
                     "random" if layer.n_tap is None else layer.n_tap,
                     "yes" if layer.relu else "no", f"{layer.bits_per_weight:.3f}",
                     layer.numel, layer.stored_bits,
                     f"{32 * layer.numel / layer.stored_bits:.1f}×",
                     f"{layer.numel / layer.stored_bits:.2f}×"))
    rows.append(("total", "", "", "", "", "", f"{total_bits / total_w:.3f}", total_w, total_bits,
                 f"{32 * total_w / total_bits:.1f}×", f"{total_w / total_bits:.2f}×"))
    table = format_table(("layer", "shape", "q", "n_in/n_out", "n_tap", "relu", "bits/weight",
                          "weights", "stored bits", "vs fp32", "vs 1-bit"), rows,
                         align="llrrrlrrrrr")
    return head + "\n" + table
