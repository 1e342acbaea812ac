"""Naive Python-integer references of every op (loops, no NumPy arithmetic): what the
vectorized golden model in flexor_hw.ops must equal exactly."""

import math


def decrypt_naive(xor, encrypted, numel):
    """Bits of one plane: slice s, row r = XOR of encrypted[s, j] over M[r, j] = 1."""
    n_out, n_in = len(xor), len(xor[0])
    bits = []
    for row in encrypted:
        for r in range(n_out):
            v = 0
            for j in range(n_in):
                if xor[r][j]:
                    v ^= int(row[j])
            bits.append(v)
    return bits[:numel]


def plane_weights(node):
    """Integer weights per plane as nested lists [q][out][fan_in]."""
    out, fan_in = node.out_features, node.fan_in
    if node.int_bits is not None:
        flat = [int(v) for v in node.weight.reshape(-1)]
        return [[flat[o * fan_in:(o + 1) * fan_in] for o in range(out)]]
    planes = []
    for i in range(node.q):
        bits = decrypt_naive(node.xor[i].tolist(), node.encrypted[i].tolist(), out * fan_in)
        planes.append([[2 * b - 1 for b in bits[o * fan_in:(o + 1) * fan_in]]
                       for o in range(out)])
    return planes


def requant(acc, c):
    y = (acc + c.round_const) >> c.frac_bits
    return min(max(y, c.y_lo), c.y_hi)


def weighted_row(w, c, o, window):
    acc = int(c.beta[o])
    for i in range(len(w)):
        s = sum(wv * xv for wv, xv in zip(w[i][o], window))
        acc += int(c.A[i, o]) * s
    return requant(acc, c)


def linear_naive(node, c, x):
    """x: list (batch) of flat lists."""
    w = plane_weights(node)
    return [[weighted_row(w, c, o, v) for o in range(node.out_features)] for v in x]


def conv_naive(node, c, x):
    """x: nested lists [batch][C][H][W]."""
    w = plane_weights(node)
    (kh, kw), (sh, sw), (ph, pw) = node.kernel, node.stride, node.padding
    out = []
    for img in x:
        C, H, W = len(img), len(img[0]), len(img[0][0])
        oh, ow = (H + 2 * ph - kh) // sh + 1, (W + 2 * pw - kw) // sw + 1

        def at(ch, yy, xx):
            return img[ch][yy][xx] if 0 <= yy < H and 0 <= xx < W else 0

        res = [[[0] * ow for _ in range(oh)] for _ in range(node.out_features)]
        for oy in range(oh):
            for ox in range(ow):
                window = [at(ch, oy * sh + ky - ph, ox * sw + kx - pw)
                          for ch in range(C) for ky in range(kh) for kx in range(kw)]
                for o in range(node.out_features):
                    res[o][oy][ox] = weighted_row(w, c, o, window)
        out.append(res)
    return out


def maxpool_naive(node, x):
    (kh, kw), (sh, sw) = node.kernel, node.stride
    out = []
    for img in x:
        H, W = len(img[0]), len(img[0][0])
        oh, ow = (H - kh) // sh + 1, (W - kw) // sw + 1
        out.append([[[max(ch[oy * sh + ky][ox * sw + kx] for ky in range(kh)
                          for kx in range(kw)) for ox in range(ow)] for oy in range(oh)]
                    for ch in img])
    return out


def gap_naive(c, x):
    return [[requant(c.A * sum(sum(row) for row in ch), c) for ch in img] for img in x]


def add_naive(node, c, a, b):
    out = []
    for ia, ib in zip(a, b):
        s = node.stride
        before, _ = node.pad_channels
        C, H, W = len(ia), len(ia[0]), len(ia[0][0])
        img = []
        for ch in range(C):
            src = ch - before
            img.append([[requant(c.A_a * ia[ch][y][x] +
                                 c.A_b * (ib[src][y * s][x * s] if 0 <= src < len(ib) else 0),
                                 c)
                         for x in range(W)] for y in range(H)])
        out.append(img)
    return out


def rint(v):
    """NumPy's rint (half to even) on one Python float."""
    f = math.floor(v)
    d = v - f
    if d > 0.5 or (d == 0.5 and f % 2):
        f += 1
    return int(f)
