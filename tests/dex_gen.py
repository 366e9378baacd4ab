#!/usr/bin/env python3
"""Writes a valid DEX file (version 035 or 039) for the ZUCCHINI DEX tests.

Two "builds" of one program: build 2 adds and removes methods and strings and changes
constants, so the ids, code and data all shift the way a new build's do. The file holds
string/type/proto/field/method ids, class defs (an interface, classes implementing it), code
items with branches (goto, goto/16, goto/32, if-*), switches and fill-array-data with payloads,
invokes, const-string(/jumbo), const-class, field access, try/catch handlers, static values,
class/field/method/parameter annotations, and for 039 method handles, call sites,
const-method-handle/-type, invoke-custom and invoke-polymorphic; plus the map list, checksum and
signature. Debian's `dexdump` (ART's verifier) accepts it.

usage: dex_gen.py OUT --version 35|39 --build 1|2 [--classes N] [--embed]
`--embed` puts the DEX in a vdex-like container (a header, the DEX, trailing data).
"""

import argparse
import hashlib
import struct
import zlib


def uleb(v):
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def sleb(v):
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if (v == 0 and not b & 0x40) or (v == -1 and b & 0x40):
            out.append(b)
            return bytes(out)
        out.append(b | 0x80)


def enc_int(kind, v, signed=True):
    """An encoded_value of `kind` holding `v` in as few bytes as it needs."""
    n = 1
    while n < 4:
        lo, hi = (-(1 << (8 * n - 1)), (1 << (8 * n - 1)) - 1) if signed else (0, (1 << (8 * n)) - 1)
        if lo <= v <= hi:
            break
        n += 1
    return bytes([((n - 1) << 5) | kind]) + (v & ((1 << (8 * n)) - 1)).to_bytes(n, "little")


SHORTY = {"V": "V", "I": "I"}


def shorty_of(ret, params):
    return "".join("L" if t.startswith("L") or t.startswith("[") else t for t in [ret] + list(params))


class Program:
    """The classes, their members and code, before ids are numbered."""

    def __init__(self, version, build, classes):
        self.version, self.build, self.n = version, build, classes
        self.strings = set()
        self.types = set()
        self.protos = set()  # (ret, params)
        self.fields = set()  # (class, name, type)
        self.methods = set()  # (class, name, (ret, params))
        self.pkg = "Lcom/example/"
        self.iface = self.pkg + "Iface;"
        self.anno = self.pkg + "Marker;"
        for t in ["Ljava/lang/Object;", "Ljava/lang/String;", "Ljava/lang/Exception;", "I", "V", "[I",
                  self.iface, self.anno]:
            self.type(t)
        self.strings.add("value")
        self.classes = []
        for k in range(classes):
            name = self.pkg + "C%d;" % k
            self.type(name)
            nfields = 3 + k % 3
            methods = ["m%d" % j for j in range(3 + k % 4)]
            if build == 2 and k % 3 == 1:
                methods.insert(1, "added%d" % k)
            if build == 2 and k % 5 == 2:
                del methods[-1]
            self.classes.append((name, nfields, methods))
            for f in range(nfields):
                self.field(name, "f%d" % f, "I")
            for m in methods:
                self.method(name, m, "I", ("I",))
        if version >= 39:
            self.method("Ljava/lang/invoke/MethodHandle;", "invoke", "Ljava/lang/Object;",
                        ("[Ljava/lang/Object;",))
            self.bootstrap = (self.classes[0][0], "bsm", ("Ljava/lang/invoke/CallSite;",
                              ("Ljava/lang/invoke/MethodHandles$Lookup;", "Ljava/lang/String;",
                               "Ljava/lang/invoke/MethodType;")))
            self.method(self.bootstrap[0], self.bootstrap[1], *self.bootstrap[2])
            self.proto("V", ())
            self.strings.add("site")

    def type(self, t):
        self.types.add(t)
        self.strings.add(t)

    def proto(self, ret, params):
        for t in (ret,) + tuple(params):
            self.type(t)
        self.protos.add((ret, tuple(params)))
        self.strings.add(shorty_of(ret, params))

    def field(self, cls, name, t):
        self.type(cls)
        self.type(t)
        self.strings.add(name)
        self.fields.add((cls, name, t))

    def method(self, cls, name, ret, params):
        self.type(cls)
        self.strings.add(name)
        self.proto(ret, params)
        self.methods.add((cls, name, (ret, tuple(params))))


class Ids:
    """Sorted, numbered ids, as the DEX format requires."""

    def __init__(self, p):
        self.strings = sorted(p.strings, key=lambda s: s.encode())
        self.s = {s: i for i, s in enumerate(self.strings)}
        self.types = sorted(p.types, key=lambda t: self.s[t])
        self.t = {t: i for i, t in enumerate(self.types)}
        self.protos = sorted(p.protos, key=lambda pr: (self.t[pr[0]], [self.t[x] for x in pr[1]]))
        self.p = {pr: i for i, pr in enumerate(self.protos)}
        self.fields = sorted(p.fields, key=lambda f: (self.t[f[0]], self.s[f[1]], self.t[f[2]]))
        self.f = {f: i for i, f in enumerate(self.fields)}
        self.methods = sorted(p.methods, key=lambda m: (self.t[m[0]], self.s[m[1]], self.p[m[2]]))
        self.m = {m: i for i, m in enumerate(self.methods)}


class Asm:
    """Dalvik code units with labels, branch offsets resolved at the end."""

    def __init__(self):
        self.units, self.labels, self.fixups = [], {}, []

    def here(self):
        return len(self.units)

    def label(self, name):
        self.labels[name] = self.here()

    def op(self, *units):
        self.units.extend(u & 0xFFFF for u in units)

    def branch(self, first, label, width, at_unit=1):
        """An instruction whose offset to `label` (from its start) is `width` units long."""
        start = self.here()
        self.op(first)
        if width == 0:  # goto +AA: the offset is the first unit's high byte
            self.fixups.append((start, 0, label, start))
            return
        self.op(*([0] * width))
        self.fixups.append((start, width, label, start))

    def payload_ref(self, first, label):
        self.branch(first, label, 2)

    def resolve(self):
        for start, width, label, base in self.fixups:
            rel = self.labels[label] - base
            if width == 0:
                assert -128 <= rel <= 127
                self.units[start] = (self.units[start] & 0xFF) | ((rel & 0xFF) << 8)
            elif width == 1:
                self.units[start + 1] = rel & 0xFFFF
            else:
                self.units[start + 1] = rel & 0xFFFF
                self.units[start + 2] = (rel >> 16) & 0xFFFF
        return self.units


def method_code(p, ids, k, j, mname):
    """(registers, ins, outs, insns, tries bytes builder) of C_k.mname(I)I."""
    cls, nfields, methods = p.classes[k]
    a = Asm()
    # v0, v1 scratch, v2 = v3? registers: v0..v3, p0 = v4.
    p0 = 4
    sidx = ids.s["msg %d %s v%d" % (k, mname, 1 if j % 4 else p.build)]
    f = ids.f[(cls, "f%d" % (j % nfields), "I")]
    a.op(0x1A | 0 << 8, sidx)  # const-string v0
    a.op(0x60 | 1 << 8, f)  # sget v1
    a.branch(0x38 | p0 << 8, "skip", 1)  # if-eqz p0, :skip
    other = p.classes[(k + 1) % len(p.classes)]
    callee = ids.m[(other[0], other[2][j % len(other[2])], ("I", ("I",)))]
    a.label("try_start")
    a.op(0x71 | 1 << 12, callee, p0)  # invoke-static {p0}
    a.op(0x0A | 1 << 8)  # move-result v1
    a.label("try_end")
    a.branch(0x28, "skip", 0)  # goto :skip
    a.label("handler")
    a.op(0x0D | 0 << 8)  # move-exception v0
    a.label("skip")
    a.op(0x1C | 0 << 8, ids.t[other[0]])  # const-class v0
    a.op(0x1F | 0 << 8, ids.t["Ljava/lang/Object;"])  # check-cast v0
    if j % 2 == 0:
        a.op(0x1B | 0 << 8, sidx & 0xFFFF, sidx >> 16)  # const-string/jumbo v0
    a.op(0x12 | 3 << 8 | 4 << 12)  # const/4 v3, #4
    a.op(0x23 | 0 << 8 | 3 << 12, ids.t["[I"])  # new-array v0, v3, [I
    a.payload_ref(0x26 | 0 << 8, "array")  # fill-array-data v0
    a.payload_ref(0x2B | p0 << 8, "switch")  # packed-switch p0
    a.branch(0x29, "out", 1)  # goto/16 :out
    a.label("case0")
    a.op(0x67 | 1 << 8, f)  # sput v1
    a.branch(0x2A, "out", 2)  # goto/32 :out
    a.label("case1")
    a.branch(0x32 | 1 << 8 | 3 << 12, "out", 1)  # if-eq v1, v3, :out
    if p.version >= 39 and j == 0:
        a.op(0xFE | 0 << 8, k % 2)  # const-method-handle v0
        a.op(0xFF | 0 << 8, ids.p[("V", ())])  # const-method-type v0
        a.op(0xFC | 0 << 12, k % 2, 0)  # invoke-custom {}, call_site
        inv = ids.m[("Ljava/lang/invoke/MethodHandle;", "invoke",
                     ("Ljava/lang/Object;", ("[Ljava/lang/Object;",)))]
        a.op(0xFA | 1 << 12, inv, 0, ids.p[("V", ())])  # invoke-polymorphic {v0}
    a.label("out")
    a.op(0x0F | 1 << 8)  # return v1
    if a.here() % 2:
        a.op(0x0000)  # nop: payloads are 4-byte aligned
    a.label("switch")
    base = None
    a.op(0x0100, 2, 0, 0)
    # Targets relative to the switch instruction: fixed below.
    switch_at = len(a.units)
    a.op(0, 0, 0, 0)
    a.label("array")
    a.op(0x0300, 4, 4, 0)
    for v in range(4):
        a.op((k * 7 + v) & 0xFFFF, 0)
    units = a.resolve()
    sw = next(s for s, w, l, b in a.fixups if l == "switch")
    for n, case in enumerate(["case0", "case1"]):
        rel = a.labels[case] - sw
        units[switch_at + 2 * n] = rel & 0xFFFF
        units[switch_at + 2 * n + 1] = (rel >> 16) & 0xFFFF
    del base
    tries = (a.labels["try_start"], a.labels["try_end"] - a.labels["try_start"], a.labels["handler"])
    return 5, 1, 1, units, tries


def build(version, build_no, classes):
    p = Program(version, build_no, classes)
    for k, (cls, nf, methods) in enumerate(p.classes):
        for j, m in enumerate(methods):
            p.strings.add("msg %d %s v%d" % (k, m, 1 if j % 4 else build_no))
    ids = Ids(p)
    out = bytearray(0x70)
    sections = []  # (type code, count, offset)

    def align(n=4):
        while len(out) % n:
            out.append(0)

    def section(code, count, at):
        if count:
            sections.append((code, count, at))

    string_ids_off = len(out)
    out += bytes(4 * len(ids.strings))
    type_ids_off = len(out)
    for t in ids.types:
        out += struct.pack("<I", ids.s[t])
    proto_ids_off = len(out)
    proto_fix = []
    for ret, params in ids.protos:
        proto_fix.append(len(out) + 8)
        out += struct.pack("<III", ids.s[shorty_of(ret, params)], ids.t[ret], 0)
    field_ids_off = len(out)
    for c, n, t in ids.fields:
        out += struct.pack("<HHI", ids.t[c], ids.t[t], ids.s[n])
    method_ids_off = len(out)
    for c, n, pr in ids.methods:
        out += struct.pack("<HHI", ids.t[c], ids.p[pr], ids.s[n])
    class_defs_off = len(out)
    defs = [(p.iface, 0x601, None)] + [(c, 0x1, k) for k, (c, _, _) in enumerate(p.classes)]
    class_fix = []
    for c, flags, k in defs:
        class_fix.append(len(out))
        out += struct.pack("<8I", ids.t[c], flags, ids.t["Ljava/lang/Object;"], 0,
                           ids.s["value"] if k is not None and k % 2 else 0xFFFFFFFF, 0, 0, 0)
    call_site_ids_off = method_handles_off = None
    if version >= 39:
        call_site_ids_off = len(out)
        out += bytes(4 * 2)
        method_handles_off = len(out)
        bsm = ids.m[(p.bootstrap[0], p.bootstrap[1], p.bootstrap[2])]
        f0 = ids.f[(p.classes[0][0], "f0", "I")]
        out += struct.pack("<4H", 4, 0, bsm, 0)  # invoke-static: the bootstrap method
        out += struct.pack("<4H", 0, 0, f0, 0)  # static-put
    data_off = len(out)

    # Annotations: items, then sets, ref lists, directories.
    anno_items = []
    for k in range(len(p.classes) * 4):
        anno_items.append(len(out))
        out += bytes([1]) + uleb(ids.t[p.anno]) + uleb(1) + uleb(ids.s["value"]) + enc_int(0x04, k * 37 + build_no)
    section(0x2004, len(anno_items), anno_items[0])
    align()
    sets = []
    for a in anno_items:
        sets.append(len(out))
        out += struct.pack("<II", 1, a)
    section(0x1003, len(sets), sets[0])
    ref_lists = []
    for k in range(len(p.classes)):
        ref_lists.append(len(out))
        out += struct.pack("<II", 1, sets[4 * k + 3])
    section(0x1002, len(ref_lists), ref_lists[0])
    dirs = []
    for k, (c, nf, methods) in enumerate(p.classes):
        dirs.append(len(out))
        f0 = ids.f[(c, "f0", "I")]
        m0 = ids.m[(c, methods[0], ("I", ("I",)))]
        m1 = ids.m[(c, methods[1], ("I", ("I",)))]
        out += struct.pack("<4I", sets[4 * k], 1, 1, 1)
        out += struct.pack("<II", f0, sets[4 * k + 1])
        out += struct.pack("<II", m0, sets[4 * k + 2])
        out += struct.pack("<II", m1, ref_lists[k])
    section(0x2006, len(dirs), dirs[0])

    # Type lists: each proto's parameters, the classes' interface list.
    type_lists = {}
    for pr in sorted({pr[1] for pr in ids.protos if pr[1]} | {(p.iface,)}, key=lambda l: [ids.t[x] for x in l]):
        align()
        type_lists[pr] = len(out)
        out += struct.pack("<I", len(pr)) + b"".join(struct.pack("<H", ids.t[x]) for x in pr)
    section(0x1001, len(type_lists), min(type_lists.values()))
    for at, (ret, params) in zip(proto_fix, ids.protos):
        if params:
            struct.pack_into("<I", out, at, type_lists[params])

    # Code items.
    align()
    code_start = len(out)
    code = {}
    for k, (c, nf, methods) in enumerate(p.classes):
        for j, m in enumerate(methods):
            align()
            code[(c, m)] = len(out)
            regs, ins, outs, units, tries = method_code(p, ids, k, j, m)
            with_try = j % 3 != 2
            out += struct.pack("<4HII", regs, ins, outs, 1 if with_try else 0, 0, len(units))
            out += b"".join(struct.pack("<H", u) for u in units)
            if with_try:
                align()
                handlers = uleb(1) + sleb(1 if j % 2 else -1) + uleb(ids.t["Ljava/lang/Exception;"]) + uleb(tries[2])
                if j % 2 == 0:
                    handlers += uleb(tries[2])  # catch-all
                out += struct.pack("<IHH", tries[0], tries[1], 1) + handlers
    if version >= 39:
        align()
        bsm_code = len(out)
        units = [0x12 | 0 << 8, 0x11]  # const/4 v0, 0; return-object v0
        out += struct.pack("<4HII", 4, 3, 0, 0, 0, len(units)) + b"".join(struct.pack("<H", u) for u in units)
    ncode = sum(len(m) for _, _, m in p.classes) + (1 if version >= 39 else 0)
    section(0x2001, ncode, code_start)

    # String data.
    string_data = len(out)
    for i, s in enumerate(ids.strings):
        struct.pack_into("<I", out, string_ids_off + 4 * i, len(out))
        out += uleb(len(s)) + s.encode() + b"\0"
    section(0x2002, len(ids.strings), string_data)

    # Encoded arrays: static values, then call sites.
    arrays = []
    for k, (c, nf, methods) in enumerate(p.classes):
        arrays.append(len(out))
        out += uleb(nf) + b"".join(enc_int(0x04, k * 100 + f * (build_no if f == 1 else 1)) for f in range(nf))
    sites = []
    if version >= 39:
        for s in range(2):
            sites.append(len(out))
            out += uleb(3) + enc_int(0x16, 0, False) + enc_int(0x17, ids.s["site"], False) + enc_int(0x15, ids.p[("V", ())], False)
            struct.pack_into("<I", out, call_site_ids_off + 4 * s, sites[-1])
    section(0x2005, len(arrays) + len(sites), arrays[0])

    # Class data.
    class_data = len(out)
    for k, (c, nf, methods) in enumerate(p.classes):
        at = class_fix[k + 1]
        struct.pack_into("<I", out, at + 12, type_lists[(p.iface,)] if k % 2 == 0 else 0)
        struct.pack_into("<I", out, at + 20, dirs[k])
        struct.pack_into("<I", out, at + 24, len(out))
        struct.pack_into("<I", out, at + 28, arrays[k])
        direct = sorted((ids.m[(c, m, ("I", ("I",)))], code[(c, m)]) for m in methods)
        if version >= 39 and k == 0:
            direct = sorted(direct + [(ids.m[(p.bootstrap[0], p.bootstrap[1], p.bootstrap[2])], bsm_code)])
        fields = sorted(ids.f[(c, "f%d" % f, "I")] for f in range(nf))
        out += uleb(nf) + uleb(0) + uleb(len(direct)) + uleb(0)
        prev = 0
        for f in fields:
            out += uleb(f - prev) + uleb(0x9)
            prev = f
        prev = 0
        for m, off in direct:
            out += uleb(m - prev) + uleb(0x9) + uleb(off)
            prev = m
    section(0x2000, len(p.classes), class_data)

    align()
    map_off = len(out)
    section(0x1000, 1, map_off)
    ids_sections = [(0x0000, 1, 0), (0x0001, len(ids.strings), string_ids_off), (0x0002, len(ids.types), type_ids_off),
                    (0x0003, len(ids.protos), proto_ids_off), (0x0004, len(ids.fields), field_ids_off),
                    (0x0005, len(ids.methods), method_ids_off), (0x0006, len(defs), class_defs_off)]
    if version >= 39:
        ids_sections += [(0x0007, 2, call_site_ids_off), (0x0008, 2, method_handles_off)]
    items = sorted(ids_sections + sections, key=lambda s: s[2])
    out += struct.pack("<I", len(items))
    for code_, count, at in items:
        out += struct.pack("<HHII", code_, 0, count, at)

    struct.pack_into("<8s", out, 0, b"dex\n0%d\0" % version)
    struct.pack_into("<8I", out, 0x20, len(out), 0x70, 0x12345678, 0, 0, map_off, len(ids.strings), string_ids_off)
    struct.pack_into("<10I", out, 0x40, len(ids.types), type_ids_off, len(ids.protos), proto_ids_off,
                     len(ids.fields), field_ids_off, len(ids.methods), method_ids_off, len(defs), class_defs_off)
    struct.pack_into("<2I", out, 0x68, len(out) - data_off, data_off)
    out[12:32] = hashlib.sha1(out[32:]).digest()
    struct.pack_into("<I", out, 8, zlib.adler32(bytes(out[12:])))
    return bytes(out)


def embed(dexes, build_no):
    """A vdex-like container: a header with the DEX files' sizes, each DEX 4-aligned after
    it, then trailing data (a table that changes between builds)."""
    head = b"vdex027\0" + struct.pack("<II", len(dexes), build_no)
    head += b"".join(struct.pack("<I", len(d)) for d in dexes)
    body = b""
    for d in dexes:
        body += bytes(-(len(head) + len(body)) % 16) + d
    tail = b"".join(struct.pack("<I", (i * 2654435761 + build_no) & 0xFFFFFFFF) for i in range(512))
    return head + body + tail


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--version", type=int, default=35, choices=[35, 37, 38, 39])
    ap.add_argument("--build", type=int, default=1, choices=[1, 2])
    ap.add_argument("--classes", type=int, default=12)
    ap.add_argument("--embed", action="store_true")
    a = ap.parse_args()
    dex = build(a.version, a.build, a.classes)
    with open(a.out, "wb") as f:
        # One DEX: AOSP's ensemble matcher ignores every DEX element of a file holding more
        # than one ("Found 2 DEX: Ignoring all"), which then gets a raw patch.
        f.write(embed([dex], a.build) if a.embed else dex)


if __name__ == "__main__":
    main()
