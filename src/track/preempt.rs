//! Preemption: SIGTERM or SIGUSR1 asks the run to stop *cleanly*. The first signal sets a flag
//! that the training loop reads after each optimiser step; it then writes a resumable checkpoint,
//! releases its lock and the process exits with [`EXIT_CODE`], which launchers read as
//! "preempted, not failed" (Slurm's `RequeueExit=75` requeues it). A second signal exits at
//! once with [`EXIT_CODE_FORCED`]: what was checkpointed before stays, nothing is torn (every
//! record is written atomically).

use std::sync::atomic::{AtomicI32, Ordering};

/// A run stopped by a signal after writing its resumable checkpoint (BSD's `EX_TEMPFAIL`).
pub const EXIT_CODE: i32 = 75;
/// A second signal arrived before the checkpoint was written: the process stopped at once.
pub const EXIT_CODE_FORCED: i32 = 76;

/// The first signal received (0: none).
static SIGNAL: AtomicI32 = AtomicI32::new(0);

/// The error a run returns when it stopped for a signal after checkpointing; the binary maps it
/// to [`EXIT_CODE`].
#[derive(Debug, thiserror::Error)]
#[error("preempted by {signal} {at}")]
pub struct Preempted {
    pub signal: &'static str,
    /// Where, and what the next start does (e.g. "at epoch 3, batch 2: checkpoint written, the
    /// run resumes from it").
    pub at: String,
}

impl Preempted {
    /// A stop between runs or where there was nothing to checkpoint.
    pub fn now(at: &str) -> Self {
        Self {
            signal: requested().unwrap_or("a signal"),
            at: at.to_string(),
        }
    }
}

/// Installs the handlers for SIGTERM and SIGUSR1 (idempotent). Called by the commands that
/// train; elsewhere the default action (exit) stays.
pub fn install() {
    #[cfg(unix)]
    unsafe {
        // SAFETY: the handler only touches an atomic and calls the async-signal-safe `_exit`.
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = handle as extern "C" fn(libc::c_int) as usize;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        for signal in [libc::SIGTERM, libc::SIGUSR1] {
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
    }
}

#[cfg(unix)]
extern "C" fn handle(signal: libc::c_int) {
    if SIGNAL
        .compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst)
        .is_err()
    {
        // SAFETY: `_exit` is async-signal-safe.
        unsafe { libc::_exit(EXIT_CODE_FORCED) };
    }
}

/// The signal that asked the process to stop, if one did.
pub fn requested() -> Option<&'static str> {
    match SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        #[cfg(unix)]
        libc::SIGUSR1 => Some("SIGUSR1"),
        _ => Some("SIGTERM"),
    }
}

/// Whether `error` (anywhere in its chain) is a clean preemption.
pub fn is_preempted(error: &anyhow::Error) -> bool {
    error.chain().any(|e| e.is::<Preempted>())
}

/// Under Slurm, after a SIGUSR1 (the `--signal=B:USR1@<grace>` warning before the time limit,
/// which Slurm follows by a kill, not a requeue), asks Slurm to requeue this task so that it
/// resumes from its checkpoint. SIGTERM comes from Slurm's own preemption or `scontrol requeue`,
/// which requeue by themselves (or `RequeueExit=75` does). Best effort: a warning on failure.
pub fn requeue_if_slurm() {
    if requested() != Some("SIGUSR1") {
        return;
    }
    let job = match (
        std::env::var("SLURM_ARRAY_JOB_ID"),
        std::env::var("SLURM_ARRAY_TASK_ID"),
        std::env::var("SLURM_JOB_ID"),
    ) {
        (Ok(array), Ok(task), _) => format!("{array}_{task}"),
        (_, _, Ok(job)) => job,
        _ => return,
    };
    let status = std::process::Command::new("timeout")
        .args(["60", "scontrol", "requeue", &job])
        .status();
    match status {
        Ok(s) if s.success() => {
            eprintln!("requeued Slurm job {job}: it resumes from its checkpoint")
        }
        Ok(s) => eprintln!(
            "warning: `scontrol requeue {job}` failed ({s}); submit the sweep again to resume"
        ),
        Err(e) => eprintln!("warning: could not run scontrol requeue {job}: {e}"),
    }
}
