//! Nothing a command started outlives its worker.
//!
//! Each command runs under a small supervisor process: the worker's direct
//! child, leader of the command's process group. It is forked from the
//! spawn's own child just before exec, so it needs no binary of its own and
//! works for any program that embeds the worker library. It waits for three
//! things and acts on the first:
//! - the command exits: the supervisor exits with the same status, so the
//!   worker sees the command's own exit;
//! - the worker dies, by any signal, SIGKILL and the OOM killer included:
//!   the kernel closes the worker's end of the *lifeline* pipe, the
//!   supervisor reads end-of-file, and kills its whole process group;
//! - the worker's fencing deadline passes (fence.rs), even though the worker
//!   is alive but frozen or cut off from Redis: it kills the group too.
//!
//! A process that leaves the group on purpose (setsid, setpgid) escapes this;
//! the command protocol asks commands not to.
//!
//! The supervisor runs in a child forked from a multi-threaded process, so
//! it only makes async-signal-safe calls (poll, waitpid, kill, close,
//! clock_gettime, _exit) and allocates nothing.

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::OnceLock;

use crate::fence;

/// The pipe whose write end only the worker holds (close-on-exec, and closed
/// by every supervisor), so that its read end reports end-of-file exactly
/// when the worker is gone.
fn lifeline() -> RawFd {
    static READ_END: OnceLock<RawFd> = OnceLock::new();
    *READ_END.get_or_init(|| {
        let mut fds = [0; 2];
        // SAFETY: pipe2 fills the two-element array we own, and fcntl only
        // duplicates a descriptor we own. Both ends are kept open for the
        // life of the process on purpose.
        #[allow(unsafe_code)]
        unsafe {
            let rc = libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC);
            assert_eq!(rc, 0, "cannot create the supervisors' lifeline pipe");
            // A worker started with stdio closed gets descriptors below 3,
            // which the spawn overwrites with the command's stdio: move the
            // read end above them.
            if fds[0] < 3 {
                let moved = libc::fcntl(fds[0], libc::F_DUPFD_CLOEXEC, 3);
                assert!(moved >= 3, "cannot move the lifeline pipe");
                fds[0] = moved;
            }
        }
        fds[0]
    })
}

/// Makes `cmd` start under a supervisor. `cmd` must also be put in a process
/// group of its own (`process_group(0)`): the supervisor leads it.
pub fn install(cmd: &mut tokio::process::Command) {
    let lifeline = lifeline();
    let deadline = fence::shared();
    // SAFETY: the closure runs in the forked child before exec. It forks
    // once more; the new child returns to exec the command, and the first
    // becomes the supervisor, which never returns and makes only
    // async-signal-safe calls (see supervise).
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
unsafe fn supervise(child: libc::pid_t, lifeline: RawFd, deadline: &AtomicI64) -> ! {
    // The worker's signal handlers were inherited: a supervisor acts on
    // signals the default way (and SIGCHLD must not run the worker's
    // handler on a copy of its state).
    for sig in [
        libc::SIGTERM,
        libc::SIGINT,
        libc::SIGHUP,
        libc::SIGQUIT,
        libc::SIGCHLD,
        libc::SIGPIPE,
    ] {
        libc::signal(sig, libc::SIG_DFL);
    }
    // Keep only the lifeline: stdio is the command's (the worker waits for
    // its end-of-file), and every other descriptor is a copy of the
    // worker's, among them the spawn's error pipe and other pipes' ends.
    close_all_but(lifeline);
    let pidfd = libc::syscall(libc::SYS_pidfd_open, child, 0) as libc::c_int;
    let mut status: libc::c_int = 0;
    loop {
        let now = fence::now_ns();
        let due = deadline.load(Ordering::SeqCst);
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
            // End-of-file (or an error): the worker is gone.
            kill_group();
        }
        if libc::waitpid(child, &mut status, libc::WNOHANG) == child {
            break;
        }
    }
    if libc::WIFEXITED(status) {
        libc::_exit(libc::WEXITSTATUS(status));
    }
    // Killed by a signal: die by the same one, so the worker reads the same
    // status it would have read from the command itself.
    let sig = libc::WTERMSIG(status);
    libc::signal(sig, libc::SIG_DFL);
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
