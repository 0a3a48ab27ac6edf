"""The code_execution sandbox against an attacker's program, end to end through google-genai: no secret of the
server is reachable from inside, nothing on the host is created or followed, and memory, disk, files and the
kernel's surface are bounded. The sandbox refuses to start rather than run weaker."""

from __future__ import annotations

import ast
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google import genai

from live import FIXTURES, LiveServer
from openinteractions.tools.cgroup import CgroupUnavailable, MemoryCgroups
from openinteractions.tools.sandbox import Sandbox, SandboxLimits, SandboxUnavailable

MODEL = "gemini-3-flash-preview"
MARKER = "oi-secret-7c1f"  # in every secret; the programs below never spell it in one piece
TENANT_KEYS = [f"tenant-a-{MARKER}-aaaa", f"tenant-b-{MARKER}-bbbb"]
SECRETS = {
    "OPENINTERACTIONS_AUTH__API_KEYS": json.dumps(TENANT_KEYS),
    "OPENINTERACTIONS_SIGNING_KEY": f"signing-{MARKER}-0123456789",
    "UPSTREAM_API_KEY": f"sk-upstream-{MARKER}",
}
DISK_MB = 8
OPEN_FILES = 32


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    workdir = tmp_path_factory.mktemp("sandbox")
    # The server's TMPDIR, standing for the shared /tmp: any local user may write there.
    shared_tmp = Path(tempfile.mkdtemp(prefix="oi-shared-tmp-"))
    shared_tmp.chmod(0o1777)
    sections = {
        f"models.{MODEL}": {"backend": "scripted", "inline": True, "script": FIXTURES / "seed.json"},
        "tools.code_execution": {
            "wall_seconds": 10, "cpu_seconds": 5, "memory_mb": 256, "max_output_bytes": 256 * 1024,
            "max_file_mb": 4, "disk_mb": DISK_MB, "max_open_files": OPEN_FILES,
        },
    }  # fmt: skip
    live = LiveServer(workdir, sections, env={**SECRETS, "TMPDIR": str(shared_tmp)})
    live.shared_tmp = shared_tmp  # type: ignore[attr-defined]
    live.start()
    yield live
    live.stop()
    shutil.rmtree(shared_tmp)


def run_code(server: LiveServer, code: str) -> str:
    """The output of ``code`` run by the server's code_execution tool."""
    client = genai.Client(api_key=TENANT_KEYS[0], http_options={"base_url": server.url})
    script = json.dumps({"rounds": [[{"call": {"name": "code_execution", "arguments": {"code": code}}}], []]})
    done = client.interactions.create(model=MODEL, input=script, tools=[{"type": "code_execution"}])
    outcome = done.steps[1]
    assert outcome.type == "code_execution_result"
    return str(outcome.result)


def run_json(server: LiveServer, code: str) -> dict[str, Any]:
    output = run_code(server, textwrap.dedent(code))
    assert output.startswith("{"), output
    return json.loads(output.splitlines()[0])


SEARCH = """
    import json, os
    marker = "oi-secret-" + "7c1f"  # never in one piece in this file
    me = str(os.getpid())
    found, files, regions = [], 0, 0

    def read(path, limit=1 << 20):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
        except OSError:
            return b""
        try:
            return os.read(fd, limit)
        except OSError:
            return b""
        finally:
            os.close(fd)

    def memory(pid):
        global regions
        try:
            maps = open(f"/proc/{pid}/maps").read().splitlines()
            mem = open(f"/proc/{pid}/mem", "rb", buffering=0)
        except OSError:
            return
        with mem:
            for line in maps:
                span, perms = line.split()[:2]
                start, end = (int(x, 16) for x in span.split("-"))
                if perms[0] == "r" and end - start < 1 << 26:
                    try:
                        mem.seek(start)
                        if marker.encode() in mem.read(end - start):
                            found.append(f"/proc/{pid}/mem@{span}")
                        regions += 1
                    except (OSError, ValueError, OverflowError):
                        pass

    for top in ["/proc", "/dev", "/scratch", "/usr/local", "/usr/src", "/"]:
        for folder, dirs, names in os.walk(top):
            if top == "/":
                dirs[:] = [d for d in dirs if folder != "/" or d not in ("proc", "usr", "dev", "scratch")]
            if folder.startswith("/proc/"):
                parts = folder.split("/")
                if parts[2] == me or parts[2] == "self" or parts[2] == "thread-self":
                    continue
            for name in names:
                path = os.path.join(folder, name)
                if path.endswith("/mem") or path.endswith("/pagemap") or path == "/proc/kmsg":
                    continue
                files += 1
                if marker.encode() in read(path):
                    found.append(path)
    for pid in filter(str.isdigit, os.listdir("/proc")):
        if pid != me:
            memory(pid)
    environ = {p: read(f"/proc/{p}/environ").decode(errors="replace")
               for p in os.listdir("/proc") if p.isdigit()}
    hidden = {top: [f for _, _, names in os.walk(top) for f in names] for top in ["/usr/local", "/usr/src"]}
    print(json.dumps({"found": found, "files": files, "regions": regions, "environ": environ, "hidden": hidden}))
"""


@pytest.fixture
def planted_in_usr_local() -> Iterator[None]:
    """A deployment's configuration in /usr/local/etc (the machine's own npmrc lives there), holding a secret."""
    folder = Path("/usr/local/etc")
    if os.geteuid() != 0 or not folder.is_dir():
        yield
        return
    planted = folder / f"oi-test-{os.getpid()}.conf"
    planted.write_text(f"token = {MARKER}\n")
    planted.chmod(0o644)
    try:
        yield
    finally:
        planted.unlink()


@pytest.mark.usefixtures("planted_in_usr_local")
def test_no_secret_of_the_server_is_reachable_from_the_sandbox(server: LiveServer) -> None:
    """Every environ, cmdline and other readable file of /proc, every file outside /usr, /usr/local and /usr/src
    (which are empty), and the readable memory of every other process in the sandbox: the server's keys are in
    none of them."""
    assert MARKER == "oi-secret-" + "7c1f" and MARKER not in SEARCH
    seen = run_json(server, SEARCH)
    assert seen["hidden"] == {"/usr/local": [], "/usr/src": []}, seen["hidden"]
    assert seen["files"] > 1000, seen["files"]  # /proc was walked, not skipped
    assert seen["found"] == [], seen["found"]
    assert seen["regions"] > 0  # the memory of the sandbox's PID 1 was read too
    assert "1" in seen["environ"]
    names = {entry.split("=", 1)[0] for environ in seen["environ"].values() for entry in environ.split("\0") if entry}
    assert names <= {"PATH", "HOME", "PWD", "PYTHONDONTWRITEBYTECODE", "PYTHONIOENCODING", "LC_CTYPE"}, names


def snapshot(folder: Path) -> dict[str, tuple[int, int, int]]:
    """Every entry under ``folder`` with its owner and mode, read without following links."""
    entries = {}
    for path in [folder, *folder.rglob("*")]:
        info = path.lstat()
        entries[str(path.relative_to(folder))] = (info.st_uid, info.st_gid, info.st_mode)
    return entries


def test_nothing_on_the_host_is_created_or_followed(server: LiveServer, tmp_path: Path) -> None:
    """The scratch path older versions used, planted by another local user, is neither followed nor changed,
    and runs leave nothing behind in the temp directory."""
    shared_tmp: Path = server.shared_tmp  # type: ignore[attr-defined]
    empty = snapshot(shared_tmp)
    assert list(empty) == ["."]  # the runs of the other tests left nothing here
    planted = shared_tmp / f"openinteractions-sandbox-{os.getuid()}"
    victim = tmp_path / "victim"
    victim.mkdir(mode=0o700)
    (victim / "keep").write_text("root's file")
    before_victim = snapshot(victim)
    planted.symlink_to(victim)
    before = snapshot(shared_tmp)
    output = run_code(server, "print('ran')")
    assert snapshot(victim) == before_victim
    assert snapshot(shared_tmp) == before
    assert output == "ran\n"
    planted.unlink()
    if os.geteuid() == 0:  # a folder that another user made, open to all
        planted.mkdir(mode=0o777)
        os.chmod(planted, 0o777)
        os.chown(planted, 4242, 4242)
        before = snapshot(shared_tmp)
        output = run_code(server, "print('ran')")
        assert snapshot(shared_tmp) == before
        assert output == "ran\n"
        planted.rmdir()
    before = snapshot(shared_tmp)
    assert run_code(server, "open('/tmp/left', 'w').write('x'); print('ran')") == "ran\n"
    assert snapshot(shared_tmp) == before == empty


SURFACE = """
    import ctypes, errno, json, os, socket
    libc = ctypes.CDLL(None, use_errno=True)
    CLONE_NEWUSER, SIGCHLD = 0x10000000, 17
    calls = {  # x86_64 numbers, and arguments that would succeed without a filter
        "unshare": (272, CLONE_NEWUSER), "setns": (308, 0, 0), "mount": (165, 0, 0, 0, 0, 0),
        "umount2": (166, 0, 0), "pivot_root": (155, 0, 0), "chroot": (161, 0), "memfd_create": (319, 0, 0),
        "memfd_secret": (447, 0), "userfaultfd": (323, 0), "bpf": (321, 0, 0, 0),
        "perf_event_open": (298, 0, 0, -1, -1, 0),
        "keyctl": (250, 0, 0), "add_key": (248, 0, 0, 0, 0, 0), "request_key": (249, 0, 0, 0, 0),
        "ptrace": (101, 0, 1), "process_vm_readv": (310, 1, 0, 0, 0, 0, 0), "kexec_load": (246, 0, 0, 0, 0),
        "init_module": (175, 0, 0, 0), "finit_module": (313, 0, 0, 0), "delete_module": (176, 0, 0),
        "open_by_handle_at": (304, 0, 0, 0), "io_uring_setup": (425, 1, 0), "io_setup": (206, 1, 0),
        "shmget": (29, 0, 1 << 20, 0o1600), "msgget": (68, 0, 0o1600), "semget": (64, 0, 1, 0o1600),
        "mq_open": (240, 0, 0, 0, 0), "clone(CLONE_NEWUSER)": (56, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0),
        "swapon": (167, 0, 0), "reboot": (169, 0, 0, 0, 0), "syslog": (103, 3, 0, 0),
    }
    denied = {}
    for name, (number, *args) in calls.items():
        ctypes.set_errno(0)
        result = libc.syscall(ctypes.c_long(number), *[ctypes.c_long(a) for a in args])
        if result == 0 and name.startswith("clone"):
            os._exit(0)  # the child of a clone that ran
        denied[name] = errno.errorcode.get(ctypes.get_errno(), str(ctypes.get_errno())) if result == -1 else "ran"
    families = {}
    kinds = {
        "AF_KEY": (15, 3, 0), "AF_PACKET": (17, 2, 0), "AF_BLUETOOTH": (31, 3, 0), "AF_ALG": (38, 5, 0),
        "AF_VSOCK": (40, 1, 0), "AF_INET tcp": (2, 1, 0), "AF_INET udp": (2, 2, 0), "AF_INET6 tcp": (10, 1, 0),
        "AF_INET6 udp": (10, 2, 0), "NETLINK_NETFILTER": (16, 3, 12), "NETLINK_AUDIT": (16, 3, 9),
        "NETLINK_XFRM": (16, 3, 6),
    }
    for family, (number, kind, protocol) in kinds.items():
        try:
            socket.socket(number, kind, protocol).close()
            families[family] = "ran"
        except OSError as exc:
            families[family] = errno.errorcode.get(exc.errno, str(exc.errno))

    def fill(folder, prefix):
        written, index = 0, 0
        chunk = b"x" * (1 << 20)
        while written < (256 << 20):
            try:
                with open(f"{folder}/{prefix}{index}", "wb") as f:
                    for _ in range(4):
                        f.write(chunk); f.flush()
                        written += len(chunk)
            except OSError as exc:
                return written >> 20, errno.errorcode[exc.errno]
            index += 1
        return written >> 20, "no limit"

    def read_only(path):
        try:
            open(path, "w").close()
            return "written"
        except OSError as exc:
            return errno.errorcode[exc.errno]

    opened = []
    try:
        while len(opened) < 100000:
            opened.append(os.open("/dev/null", os.O_RDONLY))
        files = "no limit"
    except OSError as exc:
        files = errno.errorcode[exc.errno]
    count = len(opened)
    for fd in opened:
        os.close(fd)
    status = dict(line.split(":\\t", 1) for line in open("/proc/self/status").read().splitlines() if ":\\t" in line)
    print(json.dumps({
        "denied": denied, "families": families,
        "scratch": fill("/scratch", "a"), "tmp": fill("/tmp", "b"), "shm": fill("/dev/shm", "c"),
        "root": read_only("/planted"), "dev": read_only("/dev/planted"),
        "open_files": [count, files],
        "no_new_privs": status["NoNewPrivs"].strip(), "seccomp": status["Seccomp"].strip(),
    }))
"""


def test_kernel_surface_memory_and_disk_are_bounded(server: LiveServer) -> None:
    seen = run_json(server, SURFACE)
    assert seen["denied"] == dict.fromkeys(seen["denied"], "EPERM"), seen["denied"]
    assert seen["families"] == dict.fromkeys(seen["families"], "EPERM"), seen["families"]
    assert seen["no_new_privs"] == "1" and seen["seccomp"] == "2"
    # /scratch (and /tmp, which points to it) and /dev/shm are tmpfs of disk_mb; / and /dev are read-only.
    assert seen["scratch"][1] == "ENOSPC" and DISK_MB - 1 <= seen["scratch"][0] <= DISK_MB, seen["scratch"]
    assert seen["tmp"] == [0, "ENOSPC"]  # the same file system, already full
    assert seen["shm"][1] == "ENOSPC" and DISK_MB - 1 <= seen["shm"][0] <= DISK_MB, seen["shm"]
    assert seen["root"] == "EROFS" and seen["dev"] == "EROFS"
    assert seen["open_files"][1] == "EMFILE" and seen["open_files"][0] < OPEN_FILES, seen["open_files"]


WORKS = """
    import asyncio, json, multiprocessing, os, socket, subprocess, sys, tempfile, threading
    child = subprocess.run([sys.executable, "-c", "print(6 * 7)"], capture_output=True, text=True).stdout.strip()
    with multiprocessing.Pool(2) as pool:
        squares = pool.map(abs, [-1, -2, -3])
    results = []
    workers = [threading.Thread(target=results.append, args=(n,)) for n in range(4)]
    for t in workers: t.start()
    for t in workers: t.join()
    with tempfile.NamedTemporaryFile("w", delete=False) as f:
        f.write("kept")
    echo, peer = socket.socketpair(); echo.sendall(b"ping")
    server = socket.create_server("unix.sock", family=socket.AF_UNIX)
    client = socket.socket(socket.AF_UNIX); client.connect("unix.sock"); accepted, _ = server.accept()

    async def talk():
        reader, writer = await asyncio.open_unix_connection("unix.sock")
        other, _ = server.accept(); other.sendall(b"pong")
        return (await reader.read(4)).decode()
    pid = os.fork()
    if pid == 0:
        os._exit(7)
    print(json.dumps({"child": child, "pool": squares, "threads": sorted(results), "tmp": open(f.name).read(),
                      "socketpair": peer.recv(4).decode(), "asyncio": asyncio.run(talk()),
                      "interfaces": [name for _, name in socket.if_nameindex()],
                      "fork": os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])}))
"""


def test_plain_python_still_works(server: LiveServer) -> None:
    seen = run_json(server, WORKS)
    assert seen == {
        "child": "42",
        "pool": [1, 2, 3],
        "threads": [0, 1, 2, 3],
        "tmp": "kept",
        "socketpair": "ping",
        "asyncio": "pong",
        "interfaces": ["lo"],  # netlink's NETLINK_ROUTE
        "fork": 7,
    }


def test_memfd_cannot_hold_memory_past_the_limits(server: LiveServer) -> None:
    output = run_code(server, "import os\nos.memfd_create('x')")
    assert "PermissionError" in output and "Operation not permitted" in output


ADOPTER = """
import asyncio, ctypes, os, sys
from openinteractions.tools.sandbox import Sandbox, SandboxLimits
ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER: orphans of the sandbox come here, not to init
sandbox = Sandbox(SandboxLimits())
sandbox.check()
async def main():
    return await asyncio.gather(*[sandbox.run_python("print(1)") for _ in range(20)])
ran = sum(done.stdout == "1\\n" for done in asyncio.run(main()))
def parent(pid):
    try:
        return int(open(f"/proc/{pid}/stat").read().rsplit(") ", 1)[1].split()[1])
    except (OSError, IndexError):
        return None
print(ran, sum(parent(p) == os.getpid() for p in os.listdir("/proc") if p.isdigit()))
"""


def test_runs_leave_no_orphan_to_reap() -> None:
    """bubblewrap's own pid 1 outlives it (containers/bubblewrap#697); left to an init that reaps late, or to a
    server that is pid 1 in a container and never does, each zombie counts against max_processes until runs fail.
    The sandbox has its own init (tini), which the outer bubblewrap waits for."""
    done = subprocess.run([sys.executable, "-c", ADOPTER], capture_output=True, text=True, timeout=60, check=False)
    assert done.stdout == "20 0\n", done.stderr  # every run ran, and nothing was left to this process


@pytest.mark.skipif(os.geteuid() != 0, reason="installs an interpreter under /usr/local, which needs root")
@pytest.mark.usefixtures("planted_in_usr_local")
def test_an_interpreter_under_usr_local_brings_only_its_own_files() -> None:
    folder = Path(f"/usr/local/lib/oi-test-python-{os.getpid()}")
    folder.mkdir()
    try:
        python = folder / "python3"
        shutil.copy2(os.path.realpath("/usr/bin/python3"), python)
        sandbox = Sandbox(SandboxLimits(), python=str(python))
        sandbox.check()
        code = "import os, sys\nprint(sys.executable, [f'{d}/{f}' for d, _, fs in os.walk('/usr/local') for f in fs])"
        done = asyncio.run(sandbox.run_python(code))
    finally:
        shutil.rmtree(folder)
    executable, files = done.stdout.split(" ", 1)
    assert executable == str(python), (done.stdout, done.stderr)
    seen = ast.literal_eval(files)
    # The interpreter and its library folders (its site-packages), nothing of /usr/local/etc or /usr/local/bin.
    assert str(python) in seen and all(path.startswith("/usr/local/lib/") for path in seen), seen


def memory_cgroups() -> MemoryCgroups | None:
    try:
        return MemoryCgroups.find()
    except (OSError, CgroupUnavailable):
        return None


FORK_MEMORY = """
import os, time
children = []
for _ in range(4):
    pid = os.fork()
    if pid == 0:
        held = bytearray(150 << 20)
        for at in range(0, len(held), 4096):
            held[at] = 1
        time.sleep(0.5)
        os._exit(0)
    children.append(pid)
print(sum(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0 for pid in children))
"""


@pytest.mark.skipif(memory_cgroups() is None, reason="no memory cgroup can be made here (cgroup v1 needs root)")
def test_memory_is_bounded_for_the_whole_sandbox() -> None:
    """Four processes of 150 MB, each within memory_mb, are 600 MB together: over sandbox_memory_mb, the kernel
    kills some of them, the run says why, and its cgroup is gone afterwards."""
    cgroups = memory_cgroups()
    assert cgroups is not None
    limits = SandboxLimits(memory_mb=256, sandbox_memory_mb=256, max_processes=16)
    sandbox = Sandbox(limits)
    sandbox.check()
    done = asyncio.run(sandbox.run_python(FORK_MEMORY))
    assert done.problem == "memory limit reached (256 MiB for the whole sandbox)", (done.stdout, done.stderr)
    assert int(done.stdout or 0) < 4
    again = asyncio.run(sandbox.run_python("print(bytearray(150 << 20).count(0) >> 20)"))
    assert again.ok and again.stdout == "150\n", (again.stdout, again.stderr)
    assert not list((cgroups.base / "openinteractions").glob(f"{os.getpid()}-*"))  # nothing left behind


def test_without_cgroups_the_sandbox_says_so_and_runs_fewer_processes(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def refuse() -> MemoryCgroups:
        raise CgroupUnavailable("not here")

    monkeypatch.setattr(MemoryCgroups, "find", refuse)
    sandbox = Sandbox(SandboxLimits())
    with caplog.at_level("WARNING"):
        sandbox.check()
    assert "no memory cgroup can be made here (not here)" in caplog.text and "4096 MiB per run" in caplog.text
    assert sandbox.max_processes == 8
    assert asyncio.run(sandbox.run_python("print(1)")).stdout == "1\n"


@pytest.mark.parametrize(
    "options, reason",
    [
        ({"bwrap": "/nonexistent/bwrap"}, "bubblewrap"),
        ({"init": "/nonexistent/tini"}, "tini, the sandbox's init"),
        ({"python": "/opt/python3"}, "no Python interpreter under /usr"),
    ],
)
def test_a_missing_piece_makes_the_tool_unavailable(options: dict[str, str], reason: str) -> None:
    with pytest.raises(SandboxUnavailable, match=reason):
        Sandbox(SandboxLimits(), **options).check()  # type: ignore[arg-type]


def test_missing_seccomp_bindings_make_the_tool_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "seccomp", None)
    with pytest.raises(SandboxUnavailable, match="libseccomp Python bindings are missing"):
        Sandbox(SandboxLimits()).check()


class AlteredSandbox(Sandbox):
    """The real sandbox with one option of bubblewrap's command line replaced (None: removed with its value)."""

    def __init__(self, option: str, replacement: str | None) -> None:
        super().__init__(SandboxLimits())
        self.option, self.replacement = option, replacement

    def _command(self, program: int, bpf: int, collect: tuple[int, tuple[str, ...]] | None = None) -> list[str]:
        command = super()._command(program, bpf, collect)
        at = command.index(self.option)
        if self.replacement is None:
            del command[at : at + 2]
        else:
            command[at] = self.replacement
        return command


def test_user_namespaces_are_disabled_beneath_the_filter() -> None:
    """Without the filter, bubblewrap's --disable-userns still stops the code from making a user namespace."""
    unfiltered = AlteredSandbox("--seccomp", None)
    code = "import os, ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
    code += "print(libc.unshare(0x10000000), os.strerror(ctypes.get_errno()))"
    done = asyncio.run(unfiltered.run_python(code))
    assert done.stdout == "-1 No space left on device\n", (done.stdout, done.stderr)


def test_the_network_namespace_is_empty_beneath_the_filter() -> None:
    """Without the filter, which refuses AF_INET sockets, the host's loopback is still out of reach."""
    with socket.create_server(("127.0.0.1", 0)) as listening:
        port = listening.getsockname()[1]
        code = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)"
        done = asyncio.run(AlteredSandbox("--seccomp", None).run_python(code))
    assert "ConnectionRefusedError" in done.stderr, (done.stdout, done.stderr)


def test_a_bwrap_without_an_option_makes_the_tool_unavailable() -> None:
    """As an older bubblewrap would answer: the server says why instead of running a weaker sandbox."""
    with pytest.raises(SandboxUnavailable, match=r"does not start here.*--no-such-option"):
        AlteredSandbox("--disable-userns", "--no-such-option").check()


def test_a_sandbox_without_its_filter_is_refused() -> None:
    """The probe run at start reads the filter's presence from inside; a sandbox started without it is refused."""
    with pytest.raises(SandboxUnavailable, match=r"does not start here \(status 3\)"):
        AlteredSandbox("--seccomp", None).check()


@pytest.mark.parametrize(
    "own, files, reason",
    [
        ("0::/svc\n", {"cgroup.controllers": "cpu memory", "svc/cgroup.controllers": "cpu"}, "not delegated"),
        ("4:cpu:/\n", {}, "no memory cgroup controller is mounted"),
    ],
)
def test_where_no_memory_cgroup_can_be_made_the_reason_is_given(
    tmp_path: Path, own: str, files: dict[str, str], reason: str
) -> None:
    (tmp_path / "self").write_text(own)
    for name, text in files.items():
        (tmp_path / "fs" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "fs" / name).write_text(text)
    with pytest.raises(CgroupUnavailable, match=reason):
        MemoryCgroups.find(root=tmp_path / "fs", own=tmp_path / "self")


def test_files_asked_for_come_back_and_only_from_a_run_that_succeeded() -> None:
    """What a program wrote comes back through a descriptor, not its output; a file it did not write is absent,
    one over max_file_mb cannot be written, and a failed run hands nothing back."""
    sandbox = Sandbox(SandboxLimits(max_file_mb=1))
    sandbox.check()
    code = "open('a.bin', 'wb').write(bytes(range(256)) * 3); print('done')"
    done = asyncio.run(sandbox.run_python(code, ("a.bin", "missing.png")))
    assert done.ok and done.stdout == "done\n" and done.files == {"a.bin": bytes(range(256)) * 3}
    assert asyncio.run(sandbox.run_python(code)).files == {}  # nothing asked for
    big = asyncio.run(sandbox.run_python("open('big', 'wb').write(bytes(2 << 20))", ("big",)))
    assert not big.ok and big.files == {}
    failed = asyncio.run(sandbox.run_python("open('a.bin', 'wb').write(b'x'); raise SystemExit(3)", ("a.bin",)))
    assert failed.exit_code == 3 and failed.files == {}
    chart = "import matplotlib; matplotlib.use('Agg'); import matplotlib.pyplot as plt; plt.plot([1, 2]);"
    drawn = asyncio.run(sandbox.run_python(chart + "plt.savefig('c.png')", ("c.png",)))
    assert drawn.ok and drawn.files["c.png"].startswith(b"\x89PNG\r\n\x1a\n"), drawn.stderr  # matplotlib is there


def test_of_etc_only_the_links_fonts_and_matplotlib_settings_are_shown() -> None:
    """The attack: read the host's configuration and secrets from /etc (shadow, passwd, hostname, ssh keys)
    now that /etc exists in the sandbox for matplotlib. Only ETC_SHOWN is there, read-only."""
    sandbox = Sandbox(SandboxLimits())
    sandbox.check()
    code = (
        "import os\n"
        "print(sorted(os.listdir('/etc')))\n"
        "for path in ('/etc/shadow', '/etc/passwd', '/etc/hostname', '/etc/ssh'):\n"
        "    print(path, os.path.exists(path))\n"
        "try:\n"
        "    open('/etc/fonts/planted', 'w')\n"
        "except OSError as exc:\n"
        "    print('write refused', exc.errno)\n"
    )
    done = asyncio.run(sandbox.run_python(code))
    assert done.ok, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "['alternatives', 'fonts', 'matplotlibrc']"
    assert lines[1:5] == [f"{p} False" for p in ("/etc/shadow", "/etc/passwd", "/etc/hostname", "/etc/ssh")]
    assert lines[5].startswith("write refused")
