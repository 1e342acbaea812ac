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
    """The graph of a package: per node its op, inputs, output shape, weights (FleXOR
    ``q, n_in/n_out, n_tap`` or plain int), bits/weight, storage and MACs per inference."""
    inp = package.input
    head = (f"package {package.name!r} (format version {package.version}): input "
            f"{list(package.input_shape)}, {inp.bits}-bit "
            f"{'signed' if inp.signed else 'unsigned'}, scale {inp.scale:g}"
            + (f", quantized to {package.bits_per_feature} bits per feature on chip"
               if package.thresholds is not None else ""))
    shapes, macs = package.shapes(), package.macs()
    rows = []
    total_w = total_bits = total_macs = 0
    for node in package.order():
        weights = bpw = count = stored = "–"
        if node.weighted:
            total_w += node.numel
            total_bits += node.stored_bits
            weights = (f"q={node.q},{node.n_in}/{node.n_out},"
                       f"tap={'random' if node.n_tap is None else node.n_tap}"
                       if node.is_flexor else f"int{node.int_bits}")
            bpw, count, stored = f"{node.bits_per_weight:.3f}", node.numel, node.stored_bits
        total_macs += macs[node.name]
        relu = getattr(node, "relu", None)
        rows.append((node.name, node.op, ",".join(node.inputs),
                     "×".join(map(str, shapes[node.name])), weights, bpw, count, stored,
                     macs[node.name] or "–", "–" if relu is None else ("yes" if relu else "no")))
    bpw = f"{total_bits / total_w:.3f}" if total_w else "–"
    rows.append(("total", "", "", "", "", bpw, total_w, total_bits, total_macs, ""))
    table = format_table(("node", "op", "inputs", "output", "weights", "bits/weight",
                          "weights", "stored bits", "MACs", "relu"), rows,
                         align="llllrrrrrl")
    tail = ""
    if total_bits:
        tail = (f"\nweights stored in {total_bits:,} bits: {32 * total_w / total_bits:.1f}× "
                f"smaller than FP32, {total_w / total_bits:.2f}× smaller than 1 bit per weight; "
                f"{total_macs:,} MACs per inference")
    return head + "\n" + table + tail
