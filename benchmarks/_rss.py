"""Tiny launcher for bench.py: run a command, write "wall_s maxrss_kb exit_code" to a file.

    python -I -S benchmarks/_rss.py RESULT_FILE CMD [ARGS...]

Why a separate process: on Linux a child's ru_maxrss starts from the memory of the process
that spawned it (fork copies the parent's page counts; vfork/posix_spawn hand the parent's
high-water mark over at exec), so measuring straight from bench.py -- which holds NumPy,
pyarrow and the data generator -- would floor every number at bench.py's own peak.  This
launcher imports nothing beyond os/sys/time (~9 MB), below any Python child's own peak.
The wall time is taken here, around spawn + wait, so the launcher's start-up is not in it.
"""
import os
import sys
import time

result, argv = sys.argv[1], sys.argv[2:]
t0 = time.perf_counter()
pid = os.posix_spawnp(argv[0], argv, os.environ)
_, status, ru = os.wait4(pid, 0)
wall = time.perf_counter() - t0
code = os.waitstatus_to_exitcode(status)
maxrss = ru.ru_maxrss // (1024 if sys.platform == "darwin" else 1)  # KB (macOS reports bytes)
with open(result, "w") as f:
    f.write(f"{wall!r} {maxrss} {code}\n")
sys.exit(code if 0 <= code < 256 else 1)
