//! The priorities of the threads that must let the trading flow go first.
//!
//! Two levels, for two kinds of work:
//! - [`lower_priority`] (nice 10): market data, the snapshot thread beside an in-process
//!   reporting flow, tables faulted in ahead of use. When the CPUs are busy these threads run
//!   less often and do more each time (market data publishes in larger merged rounds and
//!   conflates slow readers) instead of delaying orders; unlike SCHED_IDLE (or even nice 19),
//!   they still progress on a machine that is never idle.
//! - [`idle_priority`] (SCHED_IDLE): the reporting flow, and the snapshot thread when no
//!   reporting flow runs in the process. Only on a CPU nothing else wants, preempted at once
//!   when an order thread wakes; on a busy machine it falls behind (the journal holds its
//!   input) rather than delaying orders.
//!
//! Both apply to the calling thread; `thread` names it in the log. A failure (another system,
//! no permission) leaves it at its priority.

/// Nice value of [`lower_priority`].
const NICE: i32 = 10;

/// Puts the calling thread at nice 10 (see the module's documentation).
pub fn lower_priority(thread: &str) {
    #[cfg(target_os = "linux")]
    // SAFETY: a plain system call on the calling thread (who 0) with valid arguments.
    unsafe {
        if libc::setpriority(libc::PRIO_PROCESS, 0, NICE) != 0 {
            tracing::debug!(thread, "could not lower the thread's priority");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = thread;
}

/// Puts the calling thread under SCHED_IDLE (see the module's documentation).
pub fn idle_priority(thread: &str) {
    #[cfg(target_os = "linux")]
    // SAFETY: a plain system call on the calling thread (pid 0) with a valid parameter.
    unsafe {
        let param = libc::sched_param { sched_priority: 0 };
        if libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) != 0 {
            tracing::debug!(thread, "could not lower the thread's priority");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = thread;
}
