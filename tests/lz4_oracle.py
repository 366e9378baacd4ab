#!/usr/bin/env python3
"""The real liblz4 (Debian's liblz4.so.1, through ctypes) as an oracle for src/lz4.

Reads cases from stdin: u8 kind (0 = LZ4_compress_destSize, 1 = LZ4_compress_HC_destSize),
i32 level, u32 target, u32 length, then the input. Writes per case: i32 return value,
i32 bytes consumed, then the block. Prints the library version to stderr.
"""
import ctypes
import struct
import sys

lib = ctypes.CDLL("liblz4.so.1")
sys.stderr.write("liblz4 %d\n" % lib.LZ4_versionNumber())
state = ctypes.create_string_buffer(lib.LZ4_sizeofStateHC() + 64)
inp = sys.stdin.buffer
out = sys.stdout.buffer
while True:
    head = inp.read(13)
    if not head:
        break
    kind, level, target, length = struct.unpack("<BiII", head)
    data = inp.read(length)
    src = ctypes.create_string_buffer(data, length)
    dst = ctypes.create_string_buffer(max(target, 1))
    size = ctypes.c_int(length)
    if kind == 0:
        ret = lib.LZ4_compress_destSize(src, dst, ctypes.byref(size), target)
    else:
        ret = lib.LZ4_compress_HC_destSize(state, src, dst, ctypes.byref(size), target, level)
    out.write(struct.pack("<ii", ret, size.value))
    out.write(dst.raw[: max(ret, 0)])
out.flush()
