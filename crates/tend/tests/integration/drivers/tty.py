# Drives `tend run -t` from a real pseudo-terminal of 40x100: checks that
# the command has a terminal of its own, of that size, that typed keys reach
# it, and that a resize (SIGWINCH) follows. Prints what the terminal showed.
import os, sys, struct, fcntl, termios, time, select, signal, subprocess
tend = sys.argv[1]
script = "tty; stty size; read line; echo \"got:$line\"; trap 'stty size; exit 0' WINCH; sleep 5 & wait; echo no-winch"
master, slave = os.openpty()
fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 100, 0, 0))
p = subprocess.Popen([tend, "run", "-t", "--", "sh", "-c", script], stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
os.close(slave)
out = b""
def pump(until, secs):
    global out
    end = time.time() + secs
    while time.time() < end and until not in out:
        r, _, _ = select.select([master], [], [], 0.1)
        if r:
            try:
                out += os.read(master, 4096)
            except OSError:
                return
pump(b"40 100", 10)
os.write(master, b"hello\r")
pump(b"got:hello", 10)
time.sleep(0.3)
fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 120, 0, 0))
os.kill(p.pid, signal.SIGWINCH)
pump(b"50 120", 10)
rc = p.wait(timeout=20)
pump(b"\xff", 0.5)
sys.stdout.write(out.decode(errors="replace"))
print("\nrc=%d" % rc)
