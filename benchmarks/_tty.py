"""Run a command with its stderr on a pseudo-terminal (so lossctl draws its progress bar), draining
the terminal until the command exits; exit with its exit code.  Used by bench.py's progress job.

    python -I -S benchmarks/_tty.py CMD [ARGS...]

Both rows of that job go through this launcher, so its own start-up cancels out of the comparison.
"""
import os
import pty
import sys

argv = sys.argv[1:]
master, slave = pty.openpty()
pid = os.fork()
if pid == 0:
    os.close(master)
    os.dup2(slave, 2)
    os.close(slave)
    os.environ.pop("CI", None)
    try:
        os.execvp(argv[0], argv)
    finally:
        os._exit(127)
os.close(slave)
while True:
    try:
        if not os.read(master, 65536):
            break
    except OSError:  # EIO: the child closed its side (exited)
        break
_, status = os.waitpid(pid, 0)
code = os.waitstatus_to_exitcode(status)
sys.exit(code if 0 <= code < 256 else 1)
