#!/bin/bash
# Measures hammer2 send/receive (issue 25's acceptance, docs/PERFORMANCE.md): 2.3 GB in
# 100,000 files on a one-device filesystem, sent whole to a two-device filesystem with two
# copies, then 1% of it changed (1,000 files rewritten, 1% of the big files' bytes
# overwritten) and sent incrementally; the trees are compared with diff -r.
# Run as root from anywhere after a release build; uses /tmp/sendbench (about 10 GB).
set -e
T=$(cd "$(dirname "$0")/.." && pwd)/target/release
H=$T/hammer2
M=$T/mkfs-hammer2
mkdir -p /tmp/sendbench
cd /tmp/sendbench
rm -f a.img b0.img b1.img
$M --size 7G --copies 1 a.img >/dev/null
$M --size 7G --copies 2 b0.img b1.img >/dev/null
mkdir -p a b
$H mount a.img /tmp/sendbench/a
$H mount b0.img b1.img /tmp/sendbench/b
python3 - <<'PY'
import os, random
r = random.Random(1)
root = "/tmp/sendbench/a"
for d in range(200):
    os.mkdir(f"{root}/d{d}")
    for f in range(500):
        with open(f"{root}/d{d}/f{f}", "wb") as fh:
            fh.write(os.urandom(r.randint(1000, 20000)))
os.mkdir(f"{root}/big")
for i in range(24):
    with open(f"{root}/big/b{i}", "wb") as fh:
        for _ in range(50):
            fh.write(os.urandom(1 << 20))
PY
sync
du -sb a | cut -f1 > sizes
find a -type f | wc -l >> sizes
$H snapshot a s1 >/dev/null
/usr/bin/time -f "send full %e s" $H send --json a s1 2>send-full.json > full.stream
/usr/bin/time -f "receive full %e s" $H receive --json b < full.stream > recv-full.json 2>recv-full.time
python3 - <<'PY'
import os, random
r = random.Random(2)
root = "/tmp/sendbench/a"
# 1% of the files rewritten, 1% of the big files' bytes overwritten.
for d in range(200):
    for f in r.sample(range(500), 5):
        with open(f"{root}/d{d}/f{f}", "wb") as fh:
            fh.write(os.urandom(r.randint(1000, 20000)))
for i in range(24):
    with open(f"{root}/big/b{i}", "r+b") as fh:
        for _ in range(8):
            fh.seek(r.randrange(0, 50 << 20))
            fh.write(os.urandom(64 << 10))
PY
sync
$H snapshot a s2 >/dev/null
/usr/bin/time -f "send incremental %e s" $H send --json --from s1 a s2 2>send-inc.json > inc.stream
/usr/bin/time -f "receive incremental %e s" $H receive --json b < inc.stream > recv-inc.json 2>recv-inc.time
ls -l full.stream inc.stream
diff -r -q a b && echo TREES-EQUAL
fusermount3 -u /tmp/sendbench/a; fusermount3 -u /tmp/sendbench/b
rm -f full.stream inc.stream a.img b0.img b1.img
