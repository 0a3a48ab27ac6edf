"""The seccomp filter of the code_execution sandbox, compiled to BPF by libseccomp for bubblewrap's ``--seccomp``.

An allowlist: every system call not named here fails with EPERM. It is Docker's default profile for a container
without capabilities (moby/profiles ``seccomp/default.json``), less what a Python program does not need and what
lets it hold memory outside its address-space limit or reach more of the kernel:

- memfd_create and memfd_secret, System V shared memory, semaphores and message queues, POSIX message queues and
  Linux AIO: memory or kernel objects that RLIMIT_AS does not count;
- ptrace, process_vm_readv and process_vm_writev (Docker allows them on kernels >= 4.8);
- clone with any namespace flag, and clone3, which answers ENOSYS so that the C library falls back to clone (whose
  flags a filter can read); unshare, setns, mount, pivot_root, chroot, bpf, perf_event_open, userfaultfd,
  keyctl, add_key, request_key, kexec_*, *_module, open_by_handle_at, io_uring_* and every other call that
  Docker grants only with a capability are not in the list;
- sockets other than AF_UNIX and AF_NETLINK's NETLINK_ROUTE (read by if_nameindex and the C library's getaddrinfo
  for the local addresses). No AF_INET or AF_INET6: the sandbox's network namespace has nothing but its own
  loopback, and the kernel's TCP buffers on it (hundreds of MiB for one process) are memory no limit counts.
  asyncio, multiprocessing, subprocess and socket.socketpair use AF_UNIX.

System calls outside the native architecture (x32, i386 through int 0x80) kill the process (libseccomp's default
for a foreign architecture).
"""

from __future__ import annotations

import errno
import os
import socket

# A word list reads better than 268 quoted names.
ALLOWED = """
accept accept4 access adjtimex alarm arch_prctl bind brk cachestat capget capset chdir chmod chown clock_adjtime
clock_getres clock_gettime clock_nanosleep close close_range connect copy_file_range creat dup dup2 dup3
epoll_create epoll_create1 epoll_ctl epoll_ctl_old epoll_pwait epoll_pwait2 epoll_wait epoll_wait_old eventfd
eventfd2 execve execveat exit exit_group faccessat faccessat2 fadvise64 fallocate fchdir fchmod fchmodat fchmodat2
fchown fchownat fcntl fdatasync fgetxattr flistxattr flock fork fremovexattr fsetxattr fstat fstatfs fsync ftruncate
futex futex_requeue futex_wait futex_waitv futex_wake futimesat get_robust_list get_thread_area getcpu getcwd
getdents getdents64 getegid geteuid getgid getgroups getitimer getpeername getpgid getpgrp getpid getppid
getpriority getrandom getresgid getresuid getrlimit getrusage getsid getsockname getsockopt gettid gettimeofday
getuid getxattr inotify_add_watch inotify_init inotify_init1 inotify_rm_watch ioctl ioprio_get ioprio_set kill
landlock_add_rule landlock_create_ruleset landlock_restrict_self lchown lgetxattr link linkat listen listxattr
llistxattr lremovexattr lseek lsetxattr lstat madvise map_shadow_stack membarrier mincore mkdir mkdirat mknod
mknodat mlock mlock2 mlockall mmap modify_ldt mprotect mremap mseal msync munlock munlockall munmap
name_to_handle_at nanosleep newfstatat open openat openat2 pause pidfd_open pidfd_send_signal pipe pipe2 pkey_alloc
pkey_free pkey_mprotect poll ppoll prctl pread64 preadv preadv2 prlimit64 process_mrelease pselect6 pwrite64 pwritev
pwritev2 read readahead readlink readlinkat readv recvfrom recvmmsg recvmsg remap_file_pages removexattr rename
renameat renameat2 restart_syscall rmdir rseq rt_sigaction rt_sigpending rt_sigprocmask rt_sigqueueinfo rt_sigreturn
rt_sigsuspend rt_sigtimedwait rt_tgsigqueueinfo sched_get_priority_max sched_get_priority_min sched_getaffinity
sched_getattr sched_getparam sched_getscheduler sched_rr_get_interval sched_setaffinity sched_setattr sched_setparam
sched_setscheduler sched_yield seccomp select sendfile sendmmsg sendmsg sendto set_robust_list set_thread_area
set_tid_address setfsgid setfsuid setgid setgroups setitimer setpgid setpriority setregid setresgid setresuid
setreuid setrlimit setsid setsockopt setuid setxattr shutdown sigaltstack signalfd signalfd4 socketpair splice stat
statfs statx symlink symlinkat sync sync_file_range syncfs sysinfo tee tgkill time timer_create timer_delete
timer_getoverrun timer_gettime timer_settime timerfd_create timerfd_gettime timerfd_settime times tkill truncate
umask uname unlink unlinkat utime utimensat utimes vfork vmsplice wait4 waitid write writev
""".split()  # noqa: SIM905

# clone's flags that create namespaces (CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET).
NAMESPACE_FLAGS = 0x7E020000
NETLINK_ROUTE = 0
# personality(2) values Docker allows: PER_LINUX, UNAME26, ADDR_NO_RANDOMIZE, both, and the query 0xffffffff.
PERSONALITIES = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)


def compile_filter() -> bytes:
    """The filter as the BPF program that bubblewrap loads; ImportError without libseccomp's Python bindings."""
    import seccomp  # type: ignore[import-not-found]  # Debian's python3-seccomp, no stubs

    arch = seccomp.Arch()
    rules = seccomp.SyscallFilter(defaction=seccomp.ERRNO(errno.EPERM))
    for name in ALLOWED:
        # A name this libseccomp or this architecture does not know stays denied.
        if seccomp.resolve_syscall(arch, name) >= 0:
            rules.add_rule(seccomp.ALLOW, name)
    rules.add_rule(seccomp.ALLOW, "clone", seccomp.Arg(0, seccomp.MASKED_EQ, NAMESPACE_FLAGS, 0))
    rules.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
    rules.add_rule(seccomp.ALLOW, "socket", seccomp.Arg(0, seccomp.EQ, socket.AF_UNIX))
    # Netlink's other protocols (netfilter, audit, xfrm, ...) reach far more of the kernel.
    netlink = seccomp.Arg(0, seccomp.EQ, socket.AF_NETLINK), seccomp.Arg(2, seccomp.EQ, NETLINK_ROUTE)
    rules.add_rule(seccomp.ALLOW, "socket", *netlink)
    for persona in PERSONALITIES:
        rules.add_rule(seccomp.ALLOW, "personality", seccomp.Arg(0, seccomp.EQ, persona))
    with os.fdopen(os.memfd_create("seccomp-bpf", os.MFD_CLOEXEC), "w+b") as program:
        rules.export_bpf(program)
        program.seek(0)
        return program.read()
