#!/usr/bin/env python3
"""Independent check of abupdate's verity FEC: decode chosen codewords with `reedsolo`.

Usage: fec_decode.py INPUT FEC ROOTS OUTPUT CODEWORD...

INPUT is the (possibly corrupted) data + hash tree, FEC the parity area. Each listed codeword
is gathered from the interleaved layout (codeword c takes symbol j from offset
c + j * rounds * 4096, zero past the end; its parity sits at c * roots), decoded with
RS(255, 255 - roots) over GF(2^8) (polynomial 0x11d, first root 0, generator 2), and its
corrected data symbols are written back. OUTPUT receives the repaired input; one line per
codeword reports how many symbols were corrected.
"""

import sys

import reedsolo


def main():
    input_path, fec_path, roots, output_path = sys.argv[1:5]
    codewords = [int(c) for c in sys.argv[5:]]
    roots = int(roots)
    data = bytearray(open(input_path, "rb").read())
    fec = open(fec_path, "rb").read()
    rsn = 255 - roots
    rounds = -(-(-(-len(data) // 4096)) // rsn)
    stripe = rounds * 4096
    if len(fec) != stripe * roots:
        sys.exit(f"FEC is {len(fec)} bytes, expected {stripe * roots}")
    codec = reedsolo.RSCodec(roots, nsize=255, fcr=0, prim=0x11D, generator=2)
    for c in codewords:
        offsets = [c + j * stripe for j in range(rsn)]
        message = bytes(data[o] if o < len(data) else 0 for o in offsets)
        received = message + fec[c * roots:(c + 1) * roots]
        decoded, _, errata = codec.decode(received)
        for o, symbol in zip(offsets, decoded):
            if o < len(data):
                data[o] = symbol
        print(f"codeword {c}: corrected {len(errata)}")
    open(output_path, "wb").write(data)


if __name__ == "__main__":
    main()
