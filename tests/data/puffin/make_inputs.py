#!/usr/bin/env python3
"""Deterministic old/new pairs holding deflate data, for tests/puffin_aosp.rs.

Writes into argv[1]: <name>.old.<ext> and <name>.new.<ext> for
  py6.zip, py9.zip, py1.zip  python zipfile (zlib) at levels 6, 9, 1; a member edited,
                             one binary member changed, one stored member, an APK-like
                             mix of small and large entries
  gz9.gz, gz1.gz             python gzip (zlib) at levels 9 and 1
and, when argv[2] is "infozip", infozip.zip made by the `zip` command (Info-ZIP).
"""
import gzip
import os
import random
import subprocess
import sys
import zipfile

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
P = lambda n: os.path.join(out, n)

rng = random.Random(4321)
words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz<>/=\"")
                 for _ in range(rng.randint(2, 10))) for _ in range(1500)]


def text(n, seed):
    r = random.Random(seed)
    return " ".join(r.choice(words) for _ in range(n)).encode()


def edited(data, at, what):
    b = bytearray(data)
    b[at:at + len(what)] = what
    return bytes(b)


manifest_old = text(3000, 1)
manifest_new = edited(manifest_old, 500, b"versionCode=\"43\"")
def noise(n, seed):
    r = random.Random(seed)
    return bytes(r.getrandbits(8) for _ in range(n))


dex_old = noise(20000, 2) + text(20000, 3)
dex_new = edited(dex_old, 25000, b"\x13\x37" * 8) + b"new method"
res = text(8000, 4)
icon = noise(3000, 5)
small = [(f"res/raw/s{i}.txt", text(20 + i, 100 + i)) for i in range(30)]


def zwrite(z, name, data, method=zipfile.ZIP_DEFLATED, level=None):
    zi = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
    zi.compress_type = method
    z.writestr(zi, data, compresslevel=level)


def apk(path, level, manifest, dex):
    with zipfile.ZipFile(path, "w") as z:
        zwrite(z, "AndroidManifest.xml", manifest, level=level)
        zwrite(z, "classes.dex", dex, level=level)
        zwrite(z, "resources.arsc", res, zipfile.ZIP_STORED)
        zwrite(z, "res/icon.png", icon, level=level)
        for name, data in small:
            zwrite(z, name, data, level=level)


for level in (6, 9, 1):
    apk(P(f"py{level}.old.zip"), level, manifest_old, dex_old)
    apk(P(f"py{level}.new.zip"), level, manifest_new, dex_new)

for level in (9, 1):
    with open(P(f"gz{level}.old.gz"), "wb") as f:
        f.write(gzip.compress(dex_old + manifest_old, level, mtime=0))
    with open(P(f"gz{level}.new.gz"), "wb") as f:
        f.write(gzip.compress(dex_new + manifest_new, level, mtime=0))

if len(sys.argv) > 2 and sys.argv[2] == "infozip":
    for side, (m, d) in (("old", (manifest_old, dex_old)), ("new", (manifest_new, dex_new))):
        tree = P(f"tree-{side}")
        os.makedirs(tree, exist_ok=True)
        for name, data in (("AndroidManifest.xml", m), ("classes.dex", d), ("icon.png", icon)):
            with open(os.path.join(tree, name), "wb") as f:
                f.write(data)
            os.utime(os.path.join(tree, name), (1577836800, 1577836800))
        target = os.path.abspath(P(f"infozip.{side}.zip"))
        subprocess.run(["zip", "-q", "-X", "-9", target, "AndroidManifest.xml",
                        "classes.dex", "icon.png"], cwd=tree, check=True)
