//! Nothing a command started outlives its worker.
//!
//! Each command runs under a small supervisor process: the worker's direct
//! child, leader of the command's process group. It is forked from the
//! spawn's own child just before exec, so it needs no binary of its own and
//! works in any program that embeds the worker library. It waits for three
//! things and acts on the first:
//! - the command exits: the supervisor kills what the command left behind in
//!   its group, then exits with the command's status, which the worker reads
//!   as the command's own;
//! - the worker dies, by any signal, SIGKILL and the OOM killer included:
//!   the kernel closes the worker's end of the *lifeline* pipe, the
//!   supervisor reads end-of-file, and kills its whole process group;
//! - the lease's fencing deadline passes (fence.rs), even though the worker
//!   is alive but frozen or cut off from Redis: it kills the group too.
//!
//! It ignores SIGTERM, SIGINT, SIGHUP and SIGQUIT, which a group-wide signal
//! (a script's `kill 0`, a service manager) would otherwise deliver to it.
//! A process that leaves the group on purpose (setsid, setpgid) escapes it;
//! the command protocol asks commands not to.
//!
//! The supervisor runs in a child forked from a multi-threaded process: after
//! its fork it makes only plain system calls (prctl, signal, close_range,
//! poll, read, waitpid, setpgid, kill, _exit) and allocates nothing. Its cost
//! is a fork of the worker: pages the worker writes while a command runs are
//! copied for the supervisor.

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::OnceLock;

use crate::fence;

/// The lifeline's read end. Its write end is held only by the worker
/// (close-on-exec, and closed by every supervisor), so the read end reports
/// end-of-file exactly when the worker is gone.
static LIFELINE: OnceLock<RawFd> = OnceLock::new();

/// Creates the lifeline; called once when a worker starts, before any
/// command is spawned, so that a failure is an error at start.
pub fn init() -> std::io::Result<()> {
    if LIFELINE.get().is_some() {
        return Ok(());
    }
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills the array we own; fcntl and close act on the
    // descriptors it returned. Both ends stay open for the life of the process.
    #[allow(unsafe_code)]
    unsafe {
        if libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // A worker started with stdio closed gets descriptors below 3, which
        // a spawn overwrites with the command's stdio, and which the worker's
        // own output would go into: move both ends above them.
        for fd in fds.iter_mut() {
            if *fd < 3 {
                let moved = libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, 3);
                if moved < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                libc::close(*fd);
                *fd = moved;
            }
        }
    }
    let _ = LIFELINE.set(fds[0]);
    Ok(())
}

/// Makes `cmd` start under a supervisor that also kills it once `deadline`
/// (its lease's shared deadline) passes. `cmd` must be put in a process
/// group of its own (`process_group(0)`): the supervisor leads it.
pub fn install(cmd: &mut tokio::process::Command, deadline: Option<&'static AtomicI64>) {
    // Without init() (a library user's own setup), commands run unsupervised
    // as before: the worker still kills them on every path it lives through.
    let Some(&lifeline) = LIFELINE.get() else {
        return;
    };
    // SAFETY: the closure runs in the forked child before exec. It forks
    // once more; the new child returns to exec the command, and the first
    // becomes the supervisor, which never returns and makes only plain
    // system calls (see supervise).
    #[allow(unsafe_code)]
    unsafe {
        cmd.pre_exec(move || {
            let pid = libc::fork();
            if pid < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if pid == 0 {
                return Ok(());
            }
            supervise(pid, lifeline, deadline)
        });
    }
}

/// The supervisor's whole life. Never returns.
#[allow(unsafe_code)]
unsafe fn supervise(
    child: libc::pid_t,
    lifeline: RawFd,
    deadline: Option<&'static AtomicI64>,
) -> ! {
    // It holds a copy of the worker's memory (the Redis password, jobs'
    // args): no core dump, and a name of its own in ps.
    libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
    libc::prctl(libc::PR_SET_NAME, c"sluice-supervis".as_ptr(), 0, 0, 0);
    for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGQUIT] {
        libc::signal(sig, libc::SIG_IGN);
    }
    // The worker's handlers were inherited; SIGCHLD must not run one on a
    // copy of its state.
    libc::signal(libc::SIGCHLD, libc::SIG_DFL);
    libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    // Keep only the lifeline: stdio is the command's (the worker waits for
    // its end-of-file), and every other descriptor is a copy of the
    // worker's, among them the spawn's error pipe and other pipes' ends.
    close_all_but(lifeline);
    let pidfd = libc::syscall(libc::SYS_pidfd_open, child, 0) as libc::c_int;
    let mut status: libc::c_int = 0;
    loop {
        let now = fence::now_ns();
        let due = deadline.map_or(fence::NONE, |d| d.load(Ordering::SeqCst));
        if now >= due {
            kill_group();
        }
        // Sleep until the deadline (re-read then: renewals move it), at
        // most a second; without pidfd (Linux < 5.3) look at the child
        // every 50 ms.
        let mut wait_ms = ((due - now) / 1_000_000 + 1).min(1000) as libc::c_int;
        let mut fds = [
            libc::pollfd {
                fd: lifeline,
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: pidfd,
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        let nfds = if pidfd >= 0 {
            2
        } else {
            wait_ms = wait_ms.min(50);
            1
        };
        libc::poll(fds.as_mut_ptr(), nfds, wait_ms);
        if fds[0].revents != 0 {
            // The worker never writes: readable means end-of-file, an error
            // or a hang-up, and all three mean the worker is gone.
            let mut byte = 0u8;
            if libc::read(lifeline, (&mut byte as *mut u8).cast(), 1) <= 0 {
                kill_group();
            }
        }
        if libc::waitpid(child, &mut status, libc::WNOHANG) == child {
            break;
        }
    }
    // The command is gone; what it left in the group goes too. The
    // supervisor steps out of the group first (into the worker's), so that
    // it lives to pass the status on.
    let group = libc::getpid();
    if libc::setpgid(0, libc::getpgid(libc::getppid())) == 0 {
        libc::kill(-group, libc::SIGKILL);
    } else {
        kill_group();
    }
    if libc::WIFEXITED(status) {
        libc::_exit(libc::WEXITSTATUS(status));
    }
    // Killed by a signal: die by the same one, so the worker reads the same
    // status it would have read from the command itself.
    let sig = libc::WTERMSIG(status);
    libc::signal(sig, libc::SIG_DFL);
    let mut set: libc::sigset_t = std::mem::zeroed();
    libc::sigemptyset(&mut set);
    libc::sigaddset(&mut set, sig);
    libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
    libc::kill(libc::getpid(), sig);
    libc::_exit(128 + sig)
}

/// SIGKILL to the supervisor's process group: the command, all it started
/// that stayed in the group, and the supervisor itself.
#[allow(unsafe_code)]
unsafe fn kill_group() -> ! {
    libc::kill(0, libc::SIGKILL);
    libc::_exit(137)
}

#[allow(unsafe_code)]
unsafe fn close_all_but(keep: RawFd) {
    let ranges = [
        (0, keep as libc::c_uint - 1),
        (keep as libc::c_uint + 1, libc::c_uint::MAX),
    ];
    for (first, last) in ranges {
        if libc::syscall(libc::SYS_close_range, first, last, 0) != 0 {
            // Before Linux 5.9: one at a time, up to a generous bound.
            let last = last.min(65_535);
            let mut fd = first;
            while fd <= last {
                libc::close(fd as libc::c_int);
                fd += 1;
            }
        }
    }
}
