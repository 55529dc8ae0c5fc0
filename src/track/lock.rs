//! One lock per run, so that two processes on one results directory (the same spec started
//! twice, or several workers) never train the same run at once.
//!
//! The lock is an advisory `flock` on `<run dir>/.lock`, which the kernel releases when its
//! holder dies, `kill -9` included, so a lock can never be left held by a dead process. While
//! held, the file names its holder (pid, host, start); a holder that exits normally empties it.
//! A non-empty file found unlocked is therefore the trace of a holder that died: it is taken over,
//! with a message naming it. The file is never deleted (deleting a lock file races with processes
//! that have it open). Linux maps `flock` on NFS to POSIX byte-range locks, which NFS servers
//! honour across hosts.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

pub struct RunLock {
    file: File,
    path: PathBuf,
}

pub enum Attempt {
    Acquired(RunLock),
    /// Held by a live process; who, as its lock file says.
    Busy(String),
}

const LOCK_FILE: &str = ".lock";

impl RunLock {
    /// Takes the lock of `run_dir` (created if missing) if no one holds it.
    pub fn try_acquire(run_dir: &Path) -> Result<Attempt> {
        let (mut file, path) = open(run_dir)?;
        if !flock(&file, false).with_context(|| format!("locking {}", path.display()))? {
            let holder = read_holder(&mut file);
            return Ok(Attempt::Busy(if holder.is_empty() {
                "another process".into()
            } else {
                holder
            }));
        }
        Ok(Attempt::Acquired(Self::claim(file, path)?))
    }

    /// Waits until the lock of `run_dir` is free, then takes it.
    pub fn acquire(run_dir: &Path) -> Result<Self> {
        let (file, path) = open(run_dir)?;
        flock(&file, true).with_context(|| format!("locking {}", path.display()))?;
        Self::claim(file, path)
    }

    fn claim(mut file: File, path: PathBuf) -> Result<Self> {
        let previous = read_holder(&mut file);
        if !previous.is_empty() {
            eprintln!(
                "{}: taking over a stale lock ({previous}, which is no longer running)",
                path.display()
            );
        }
        let holder = format!(
            "pid {} on {} since {}",
            std::process::id(),
            hostname(),
            crate::track::meta::now()
        );
        file.set_len(0)?;
        file.rewind()?;
        file.write_all(holder.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(Self { file, path })
    }
}

/// Who holds the lock of `run_dir` now, if anyone (for `opencarbon status`). Looks without
/// creating anything; a lock it finds free it takes for an instant and leaves as it was.
pub fn holder(run_dir: &Path) -> Option<String> {
    let path = run_dir.join(LOCK_FILE);
    let mut file = OpenOptions::new().read(true).write(true).open(&path).ok()?;
    match flock(&file, false) {
        Ok(false) => {
            let holder = read_holder(&mut file);
            Some(if holder.is_empty() {
                "another process".into()
            } else {
                holder
            })
        }
        // Free (released when `file` closes), or not lockable: no one to name.
        _ => None,
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // Emptied before the kernel unlocks it on close: an empty file means a clean release.
        if self.file.set_len(0).is_err() {
            eprintln!("warning: could not clear {}", self.path.display());
        }
    }
}

fn open(run_dir: &Path) -> Result<(File, PathBuf)> {
    std::fs::create_dir_all(run_dir)
        .with_context(|| format!("creating run directory {}", run_dir.display()))?;
    let path = run_dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    Ok((file, path))
}

fn read_holder(file: &mut File) -> String {
    let mut text = String::new();
    file.rewind().ok();
    file.read_to_string(&mut text).ok();
    text.trim().to_string()
}

/// `flock(LOCK_EX)`, waiting or not; Ok(false) when not waiting and someone else holds it.
#[cfg(unix)]
fn flock(file: &File, wait: bool) -> std::io::Result<bool> {
    use std::os::fd::AsRawFd;
    let op = libc::LOCK_EX | if wait { 0 } else { libc::LOCK_NB };
    loop {
        // SAFETY: flock on a file descriptor this function borrows for the call's duration.
        if unsafe { libc::flock(file.as_raw_fd(), op) } == 0 {
            return Ok(true);
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EWOULDBLOCK) if !wait => return Ok(false),
            _ => return Err(e),
        }
    }
}

/// Elsewhere runs are not locked (one process per results directory).
#[cfg(not(unix))]
fn flock(_file: &File, _wait: bool) -> std::io::Result<bool> {
    Ok(true)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown host".into())
}
