"""Attacks on the real sandbox (root mode): each is what a hostile program sent to /code/run
would try. Every test here failed against the sandbox before the minimal root, the PID
namespace per run, the uid ranges, seccomp and the verdict witness."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from codegen_site import sandbox
from codegen_site.sandbox import run_python
from codegen_site.sandbox.verdict import SECCOMP_MESSAGE, TAMPERING
from tests.sandbox_helpers import run_concurrently, wait_until_gone

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(os.geteuid() != 0, reason="the namespace sandbox needs root; see test_sandbox.py"),
]

PROJECT_ROOT = Path(__file__).resolve().parent.parent
POSTGRES_SOCKET = "/var/run/postgresql/.s.PGSQL.5432"
SOCKET_DENIED = "sandbox: network sockets are not allowed"
WRONG_ADD = "def add(a, b):\n    return a - b\n"
ADD_TESTS = "def test_add():\n    assert add(1, 2) == 3\n\ndef test_add_zero():\n    assert add(0, 5) == 5\n"


def test_runs_are_fully_isolated():
    assert sandbox.isolation_mode() == "netns"
    assert sandbox.runner._get_zygote().hello["isolated"] is True


# ---------------------------------------------------------------- the host's sockets and disk

def test_postgres_unix_socket_is_absent():
    assert os.path.exists(POSTGRES_SOCKET), "PostgreSQL's socket is on this host: the attack is real"
    code = (
        "import os, socket\n"
        f"print('exists', os.path.exists({POSTGRES_SOCKET!r}))\n"
        "s = socket.socket(socket.AF_UNIX)\n"
        f"s.connect({POSTGRES_SOCKET!r})\n"
        "print('connected')\n"
    )
    result = run_python(code)
    assert "exists False" in result.output
    assert "connected" not in result.output and not result.success
    # even with AF_UNIX allowed by the filter, the socket is not in the run's filesystem
    with sandbox.override_limits(socket_families=["AF_UNIX"]):
        result = run_python(code)
    assert "exists False" in result.output
    assert "FileNotFoundError" in result.output and "connected" not in result.output


def test_run_lock_is_not_writable():
    marker = f"sbx-attack-{os.getpid()}"
    code = (
        "import os\n"
        "for path in ('/run/lock', '/var/run', '/run'):\n"
        "    print(path, os.path.exists(path))\n"
        f"open('/run/lock/{marker}', 'w').write('x' * 1024)\n"
        "print('written')\n"
    )
    result = run_python(code)
    assert "written" not in result.output and not result.success
    assert "/run/lock False" in result.output and "/run False" in result.output
    assert not os.path.exists(f"/run/lock/{marker}")


def test_filling_tmp_does_not_break_the_next_run():
    filler = (
        "import errno, os\n"
        "chunk, n = b'x' * (1 << 20), 0\n"
        "try:\n"
        "    while True:\n"
        "        with open(f'/tmp/fill-{n}', 'wb') as handle:\n"
        "            for _ in range(8):\n"
        "                handle.write(chunk)\n"
        "        n += 1\n"
        "except OSError as exc:\n"
        "    print('full', errno.errorcode[exc.errno], n)\n"
    )
    with sandbox.override_limits(disk_mb=32):
        full = run_python(filler, timeout=30)
        assert "full ENOSPC" in full.output, full.output
        after = run_python("def add(a, b):\n    return a + b\n", ADD_TESTS)
    assert after.success, after.output
    assert (after.tests_passed, after.tests_failed) == (2, 0)


def test_a_concurrent_runs_tmp_files_are_invisible():
    token = f"TOKEN-{os.getpid()}-{time.monotonic_ns()}"
    writer = (
        "import time\n"
        f"for path in ('/tmp/secret.txt', '/var/tmp/secret.txt', '/dev/shm/secret.txt'):\n"
        f"    open(path, 'w').write({token!r})\n"
        "print('written', flush=True)\n"
        "time.sleep(2)\n"
    )
    reader = (
        "import os, time\n"
        "time.sleep(0.7)\n"
        "found = []\n"
        "for top in ('/tmp', '/var/tmp', '/dev/shm', '/sandbox', '/'):\n"
        "    for root, dirs, files in os.walk(top):\n"
        "        dirs[:] = [d for d in dirs if os.path.join(root, d) not in ('/proc', '/usr', '/sys')]\n"
        "        for name in files:\n"
        "            try:\n"
        "                with open(os.path.join(root, name), 'rb') as handle:\n"
        # the token is assembled at run time so the reader's own source does not hold it
        f"                    if {token[:6].encode()!r} + {token[6:].encode()!r} in handle.read(65536):\n"
        "                        found.append(os.path.join(root, name))\n"
        "            except OSError:\n"
        "                pass\n"
        "        if top == '/':\n"
        "            break\n"
        "print('found', found)\n"
    )
    results = run_concurrently({"writer": writer, "reader": reader})
    assert results["writer"].success and "written" in results["writer"].output, results["writer"].output
    assert results["reader"].success, results["reader"].output
    assert "found []" in results["reader"].output


# ---------------------------------------------------------------- processes

HOPPER = "import os, time\nwhile True:\n    if os.fork():\n        os._exit(0)\n    time.sleep(0.002)\n"


@pytest.mark.parametrize("kind", ["sleeper", "fork-hopper"])
def test_background_processes_do_not_survive_the_run(kind):
    # a fork-hopper changes pid faster than a kill-everything-of-this-uid loop can follow
    marker = f"sbx-daemon-{os.getpid()}-{time.monotonic_ns()}"
    sleeper = (HOPPER if kind == "fork-hopper" else "import time; time.sleep(60)\n") + f"# {marker}"
    code = (
        "import os, subprocess, sys\n"
        f"sleeper = {sleeper!r}\n"
        "subprocess.Popen([sys.executable, '-c', sleeper], start_new_session=True)\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        "        os.execv(sys.executable, [sys.executable, '-c', sleeper])\n"
        "    os._exit(0)\n"
        "os.wait()\n"
        "print('daemonised')\n"
    )
    result = run_python(code, timeout=10)
    assert result.success and "daemonised" in result.output, result.output
    assert wait_until_gone(marker) == []


def test_proc_shows_only_the_runs_processes():
    code = (
        "import os, subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(5)'])\n"
        "time.sleep(0.2)\n"
        "print(sorted(int(p) for p in os.listdir('/proc') if p.isdigit()), os.getpid(), child.pid)\n"
        "child.kill()\n"
    )
    result = run_python(code, timeout=10)
    assert result.success, result.output
    listed, own, child = result.output.rsplit("]", 1)[0] + "]", *result.output.rsplit("]", 1)[1].split()
    assert json.loads(listed) == sorted([int(own), int(child)])
    assert int(own) == 1


def test_a_run_cannot_signal_other_runs_or_the_host():
    victim = "import time\ntime.sleep(1.5)\nprint('survived')\n"
    killer = (
        "import os, signal, time\n"
        "time.sleep(0.3)\n"
        "for target in (-1, 0, 2, 3, 100, 300):\n"
        "    try:\n"
        "        os.kill(target, signal.SIGKILL)\n"
        "    except OSError:\n"
        "        pass\n"
        "print('tried')\n"
    )
    results = run_concurrently({"victim": victim, "killer": killer})
    assert results["victim"].success and results["victim"].output == "survived\n", results["victim"]
    assert results["killer"].output == "tried\n", results["killer"]
    assert sandbox.runner._zygote.alive()


OTHER_SERVER = """
import json, sys
from codegen_site import sandbox
from codegen_site.sandbox import run_python
code = "import os, time\\nprint(os.getuid(), flush=True)\\ntime.sleep(3)\\nprint('done')\\n"
sandbox.warmup()
print("ready", flush=True)
result = run_python(code, timeout=20)
print(json.dumps({"success": result.success, "output": result.output, "error": result.error}))
"""


def test_two_servers_with_overlapping_runs_do_not_kill_each_other():
    # small uid ranges, so our runs cycle through every uid we own while theirs runs
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "codegen_site.settings_test", "CODEGEN_SANDBOX__UID_COUNT": "2"}
    with sandbox.override_limits(uid_count=2):
        sandbox.warmup()
        other = subprocess.Popen([sys.executable, "-c", OTHER_SERVER], cwd=PROJECT_ROOT, env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert other.stdout.readline().strip() == "ready", other.stderr.read()
            # runs of ours start and end (each leaving a process behind) for as long as the other's runs
            uids = set()
            while other.poll() is None:
                result = run_python("import os, subprocess, sys\n"
                                    "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)'])\n"
                                    "print(os.getuid())\n")
                assert result.success, (result.error, result.output)
                uids.add(int(result.output.split()[0]))
            out, err = other.communicate(timeout=40)
        finally:
            other.kill()
    assert other.returncode == 0, err
    theirs = json.loads(out.strip().splitlines()[-1])
    assert theirs["success"] is True and theirs["output"].endswith("done\n"), theirs
    assert int(theirs["output"].split()[0]) not in uids


# ---------------------------------------------------------------- what the run can see

def test_filesystem_holds_only_what_python_needs():
    code = (
        "import os, sys\n"
        "print('top', sorted(os.listdir('/')))\n"
        "print('etc', sorted(os.listdir('/etc')))\n"
        "print('dev', sorted(os.listdir('/dev')))\n"
        f"print('project', sorted(os.listdir({str(PROJECT_ROOT)!r})) if os.path.isdir({str(PROJECT_ROOT)!r}) else [])\n"
        f"for path in ('/home', {str(PROJECT_ROOT / 'manage.py')!r}, {str(PROJECT_ROOT / 'config')!r}, '/var/run', '/run',\n"
        "             '/root/.bashrc', '/etc/shadow', '/sys'):\n"
        "    print(path, os.path.exists(path))\n"
        "import ctypes, lzma, bz2, sqlite3, ssl, uuid, pytest\n"  # extension modules and their libraries load
        "ctypes.CDLL('libm.so.6').cos\n"
        "print('pytest ok')\n"
    )
    result = run_python(code)
    assert result.success, result.output
    lines = dict(line.split(" ", 1) for line in result.output.splitlines() if " " in line)
    prefixes = {Path(os.path.realpath(p)).parts[1] for p in (sys.prefix, sys.base_prefix)}
    top = set(eval(lines["top"]))  # noqa: S307 - our own printed list
    assert top <= {"bin", "sbin", "lib", "lib64", "lib32", "libx32", "usr", "etc", "dev", "proc", "tmp", "var",
                   "sandbox"} | prefixes
    assert "home" not in top and "run" not in top and "sys" not in top
    assert set(eval(lines["etc"])) == {"passwd", "group", "hosts"}  # noqa: S307 - all generated
    assert set(eval(lines["dev"])) == {"null", "zero", "full", "random", "urandom", "fd", "stdin",  # noqa: S307
                                       "stdout", "stderr", "shm"}
    # the checkout is not there; a virtualenv inside it is, alone (the interpreter runs from it)
    assert set(eval(lines["project"])) <= {".venv"}  # noqa: S307
    for path in ("/home", str(PROJECT_ROOT / "manage.py"), str(PROJECT_ROOT / "config"), "/var/run", "/run",
                 "/root/.bashrc", "/etc/shadow", "/sys"):
        assert lines[path] == "False", path
    assert "pytest ok" in result.output


def test_host_name_and_ipc_objects_are_private():
    code = (
        "import ctypes, socket\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "print(socket.gethostname())\n"
        "key = 23424\n"
        "print('segment', libc.shmget(key, 4096, 0o1600))\n"
        "print('sees', sorted(line.split()[0] for line in open('/proc/sysvipc/shm').readlines()[1:]))\n"
    )
    first = run_python(code)
    second = run_python(code)
    assert first.success and second.success, (first.output, second.output)
    assert first.output.splitlines()[0] == "sandbox" != socket.gethostname()
    # each run creates the same key afresh and sees only its own segment
    for result in (first, second):
        assert "segment -1" not in result.output
        assert result.output.splitlines()[2] == "sees ['23424']"


def test_interpreter_tree_is_read_only():
    code = (
        "import os, sys\n"
        "for path in (sys.prefix, '/usr', '/etc', '/'):\n"
        "    try:\n"
        "        open(os.path.join(path, 'sbx-probe'), 'w')\n"
        "        print(path, 'WRITABLE')\n"
        "    except OSError as exc:\n"
        "        print(path, type(exc).__name__)\n"
    )
    result = run_python(code)
    assert result.success and "WRITABLE" not in result.output, result.output


# ---------------------------------------------------------------- seccomp and privileges

@pytest.mark.parametrize("family", ["AF_INET", "AF_INET6", "AF_UNIX", "AF_NETLINK"])
def test_sockets_are_denied_with_a_clear_message(family):
    result = run_python(f"import socket\nsocket.socket(socket.{family})\nprint('opened')\n")
    assert not result.success and "opened" not in result.output
    assert f"PermissionError: {SOCKET_DENIED}" in result.output


def test_raw_socket_syscall_gets_eperm_and_socketpair_works():
    code = (
        "import ctypes, errno, socket\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "print('raw', libc.socket(2, 1, 0), errno.errorcode[ctypes.get_errno()])\n"
        "a, b = socket.socketpair()\n"
        "a.sendall(b'ping')\n"
        "print('pair', b.recv(4))\n"
    )
    result = run_python(code)
    assert result.success, result.output
    assert "raw -1 EPERM" in result.output and "pair b'ping'" in result.output


@pytest.mark.parametrize("call", [
    "libc.unshare(0x10000000)",                                  # CLONE_NEWUSER
    "libc.unshare(0x00020000)",                                  # CLONE_NEWNS
    "libc.ptrace(0, 0, None, None)",                             # PTRACE_TRACEME
    "libc.mount(b'none', b'/tmp', b'tmpfs', 0, None)",
    "libc.syscall(56, 0x10000000 | 17, 0, 0, 0, 0)",             # clone(CLONE_NEWUSER | SIGCHLD), x86_64
    "libc.syscall(250, 0, 0, 0, 0, 0)",                          # keyctl, x86_64
    "libc.syscall(321, 0, 0, 0)",                                # bpf, x86_64
], ids=["unshare-user", "unshare-mount", "ptrace", "mount", "clone-newuser", "keyctl", "bpf"])
def test_forbidden_system_calls_kill_the_run(call):
    if "syscall(" in call and sandbox.runner._get_zygote().hello["seccomp"] != "x86_64":
        pytest.skip("raw syscall numbers are x86_64's")
    result = run_python(f"import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\nprint('before', flush=True)\n"
                        f"print('returned', {call})\n")
    assert result.output.startswith("before") and "returned" not in result.output
    assert result.error == SECCOMP_MESSAGE and result.exit_code == -31


def test_user_namespaces_cannot_be_created():
    result = run_python("import subprocess\n"
                        "done = subprocess.run(['unshare', '--user', '--map-root-user', 'id', '-u'],"
                        " capture_output=True, text=True)\n"
                        "print('status', done.returncode, repr(done.stdout))\n")
    assert result.success, result.output
    assert "status 0" not in result.output and "'0\\n'" not in result.output
    assert "status -31" in result.output  # the unshare command was killed by SIGSYS


def test_threads_and_subprocesses_still_work_under_the_filter():
    code = (
        "import subprocess, sys, threading\n"
        "seen = []\n"
        "threads = [threading.Thread(target=seen.append, args=(i,)) for i in range(4)]\n"
        "[t.start() for t in threads]; [t.join() for t in threads]\n"
        "out = subprocess.run([sys.executable, '-c', 'print(6 * 7)'], capture_output=True, text=True).stdout\n"
        "print(sorted(seen), out.strip())\n"
    )
    result = run_python(code)
    assert result.success and result.output == "[0, 1, 2, 3] 42\n", result.output


def test_setuid_binaries_cannot_gain_privileges():
    code = (
        "import os, subprocess\n"
        "status = open('/proc/self/status').read()\n"
        "print([line for line in status.splitlines() if line.startswith('NoNewPrivs')])\n"
        "usr = [line for line in open('/proc/self/mountinfo') if line.split()[4] == '/usr'][0]\n"
        "print('usr nosuid', 'nosuid' in usr.split()[5])\n"
        "print('su setuid', bool(os.stat('/usr/bin/su').st_mode & 0o4000))\n"
        "done = subprocess.run(['/usr/bin/su', '-c', 'id -u', 'root'], input='', capture_output=True, text=True)\n"
        "print('su gave', repr(done.stdout))\n"
        "print('uid', os.getuid(), os.geteuid())\n"
    )
    result = run_python(code)
    assert result.success, result.output
    assert "['NoNewPrivs:\\t1']" in result.output
    assert "usr nosuid True" in result.output
    assert "su gave '0\\n'" not in result.output
    assert "uid 0" not in result.output


# ---------------------------------------------------------------- forged verdicts

CALL_AND_REPORT_FORGERY = WRONG_ADD + """
import _pytest.runner
_original = _pytest.runner.call_and_report
def call_and_report(item, when, log=True, **kwds):
    report = _original(item, when, log=False, **kwds)
    report.outcome = "passed"
    if log:
        item.ihook.pytest_runtest_logreport(report=report)
    return report
_pytest.runner.call_and_report = call_and_report
"""

LOGREPORT_FORGERY = WRONG_ADD + """
import _pytest.terminal
_original = _pytest.terminal.TerminalReporter.pytest_runtest_logreport
def pytest_runtest_logreport(self, report):
    report.outcome = "passed"
    return _original(self, report)
_pytest.terminal.TerminalReporter.pytest_runtest_logreport = pytest_runtest_logreport
"""

TESTREPORT_FORGERY = WRONG_ADD + """
import _pytest.reports
_original = _pytest.reports.TestReport.from_item_and_call.__func__
def from_item_and_call(cls, item, call):
    report = _original(cls, item, call)
    report.outcome = "passed"
    report.longrepr = None
    return report
_pytest.reports.TestReport.from_item_and_call = classmethod(from_item_and_call)
"""

RESTORING_FORGERY = WRONG_ADD + """
import _pytest.runner
_original = _pytest.runner.call_and_report
def call_and_report(item, when, log=True, **kwds):
    _pytest.runner.call_and_report = _original  # put the original back before anyone checks
    report = _original(item, when, log=False, **kwds)
    report.outcome = "passed"
    if log:
        item.ihook.pytest_runtest_logreport(report=report)
    _pytest.runner.call_and_report = call_and_report
    return report
_pytest.runner.call_and_report = call_and_report
"""

FAKE_MAIN_FORGERY = WRONG_ADD + """
import pytest
pytest.main = lambda *args, **kwargs: 0
"""

PLUGIN_FORGERY = WRONG_ADD + """
import gc, pytest
from _pytest.config import Config
class SkipTheCall:
    @pytest.hookimpl(tryfirst=True)
    def pytest_pyfunc_call(self, pyfuncitem):
        return True  # "called" without running the test
for candidate in gc.get_objects():
    if isinstance(candidate, Config):
        candidate.pluginmanager.register(SkipTheCall())
"""

STATUS_FD_FORGERY = WRONG_ADD + """
import json, os
def test_forge():
    os.write(3, (json.dumps({"done": 1, "pytest_exit": 0, "tests": {"passed": 3}}) + "\\n").encode())
    os._exit(0)
"""


@pytest.mark.parametrize("code", [
    CALL_AND_REPORT_FORGERY, LOGREPORT_FORGERY, TESTREPORT_FORGERY, RESTORING_FORGERY, FAKE_MAIN_FORGERY,
    PLUGIN_FORGERY, STATUS_FD_FORGERY,
], ids=["call_and_report", "terminal-logreport", "TestReport", "restoring-wrapper", "fake-pytest-main",
        "late-plugin", "status-fd"])
def test_forged_verdicts_are_detected(code):
    result = run_python(code, ADD_TESTS)
    assert result.success is False, result.output
    assert result.error.startswith(TAMPERING), (result.error, result.output)
    # a tampered run never looks like a near success to the workflow: no count, no test outcome
    assert result.tests_passed == 0 and result.tests == ()


def test_summary_stats_forgery_does_not_pass():
    # the terminal's counts say passed; the verdict does not read them
    code = WRONG_ADD + (
        "import _pytest.terminal\n"
        "_original = _pytest.terminal.TerminalReporter.summary_stats\n"
        "def summary_stats(self):\n"
        "    self.stats = {'passed': self.stats.get('failed', []) + self.stats.get('passed', [])}\n"
        "    return _original(self)\n"
        "_pytest.terminal.TerminalReporter.summary_stats = summary_stats\n"
    )
    result = run_python(code, ADD_TESTS)
    assert result.success is False
    assert result.error == "2 failed" or result.error.startswith(TAMPERING), result.error


@pytest.mark.parametrize("where", ["import", "test"])
@pytest.mark.parametrize("exit_call", ["os._exit(0)", "sys.exit(0)"])
def test_exit_tricks_do_not_pass(where, exit_call):
    if where == "import":
        code, tests = "import os, sys\nif __name__ != '__main__':\n    " + exit_call + "\n" + WRONG_ADD, ADD_TESTS
    else:
        code, tests = WRONG_ADD, "import os, sys\n\ndef test_exit():\n    " + exit_call + "\n\n" + ADD_TESTS
    result = run_python(code, tests)
    assert result.success is False, (result.error, result.output)


def test_honest_runs_are_not_flagged():
    tests = (
        "import pytest\n\n"
        "@pytest.fixture\ndef test_data():\n    return 2\n\n"
        "@pytest.mark.parametrize('x', [1, 2, 3])\ndef test_param(x):\n    assert add(x, 0) == x\n\n"
        "@pytest.mark.skip(reason='later')\ndef test_skipped():\n    assert False\n\n"
        "@pytest.mark.xfail(reason='known')\ndef test_known_bug():\n    assert add(1, 1) == 3\n\n"
        "class TestAdd:\n    def test_method(self, test_data):\n        assert add(test_data, 0) == 2\n"
    )
    result = run_python("def add(a, b):\n    return a + b\n", tests)
    assert result.success, (result.error, result.output)
    assert (result.tests_passed, result.tests_failed) == (4, 0)
