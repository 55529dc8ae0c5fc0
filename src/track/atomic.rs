//! Atomic file writes: the bytes go to a scratch sibling, which is renamed over the target only
//! once complete, so a killed or failing writer never leaves a half-written file under the real
//! name. The scratch file is fsynced before the rename and the directory after it, so a published
//! file survives a power cut too (on file systems that honour fsync: docs/reliability.md).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::fault;

/// Writes `contents` to `target` atomically. Fault points: `write:<file name>` halfway through
/// the bytes, `rename:<file name>` before publishing (see [`crate::fault`]).
pub fn write(target: &Path, contents: &[u8]) -> Result<()> {
    let name = file_name(target)?;
    let tmp = scratch_path(target, &name);
    let written = (|| -> std::io::Result<()> {
        let mut file = fs::File::create(&tmp)?;
        let half = contents.len() / 2;
        file.write_all(&contents[..half])?;
        if let Some(e) = fault::write_error(&format!("write:{name}")) {
            return Err(e);
        }
        file.write_all(&contents[half..])?;
        file.sync_all()
    })();
    publish(written, &tmp, target, &name)
}

/// Like [`write`], for contents too large to hold at once: `fill` streams them into the
/// (buffered) scratch file. Fault points as for [`write`] (`write:` once `fill` is done).
pub fn write_with(
    target: &Path,
    fill: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<()> {
    let name = file_name(target)?;
    let tmp = scratch_path(target, &name);
    let written = (|| -> std::io::Result<()> {
        let mut file = std::io::BufWriter::new(fs::File::create(&tmp)?);
        fill(&mut file)?;
        if let Some(e) = fault::write_error(&format!("write:{name}")) {
            return Err(e);
        }
        file.into_inner().map_err(|e| e.into_error())?.sync_all()
    })();
    publish(written, &tmp, target, &name)
}

fn file_name(target: &Path) -> Result<String> {
    Ok(target
        .file_name()
        .with_context(|| format!("{}: not a file path", target.display()))?
        .to_string_lossy()
        .into_owned())
}

/// Renames the scratch file `tmp` over `target` if it was `written` whole; removes it otherwise.
fn publish(written: std::io::Result<()>, tmp: &Path, target: &Path, name: &str) -> Result<()> {
    if let Err(e) = written {
        fs::remove_file(tmp).ok();
        return Err(e).with_context(|| format!("writing {}", target.display()));
    }
    fault::at(&format!("rename:{name}"));
    if let Err(e) = fs::rename(tmp, target) {
        fs::remove_file(tmp).ok();
        return Err(e)
            .with_context(|| format!("renaming {} to {}", tmp.display(), target.display()));
    }
    sync_dir(target)
}

/// Makes a rename into `target`'s directory durable: fsync of the directory itself.
pub fn sync_dir(target: &Path) -> Result<()> {
    let dir = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    #[cfg(unix)]
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing directory {}", dir.display()))?;
    Ok(())
}

/// `.<name>.<pid>.tmp` beside the target: one per process, so concurrent writers of one file
/// never share a scratch file (the last rename wins, whole).
fn scratch_path(target: &Path, name: &str) -> PathBuf {
    target.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

/// Whether `name` is a scratch file [`write`] (or burn's own atomic save) left behind when its
/// writer was killed.
pub fn is_scratch(name: &str) -> bool {
    name.ends_with(".tmp")
}

/// Removes the scratch files of killed writers from `dir` (call only while no one else writes
/// there, e.g. under the run's lock). Returns how many were removed.
pub fn remove_scratch(dir: &Path) -> usize {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(|e| e.ok())
        .filter(|e| is_scratch(&e.file_name().to_string_lossy()) && e.path().is_file())
        .filter(|e| fs::remove_file(e.path()).is_ok())
        .count()
}

/// Removes the scratch files [`write`] left in `dir` when their writer (named by the pid in the
/// file name) was killed; those of live writers stay. For directories several processes share,
/// such as an experiment's, where the summaries are written.
pub fn remove_dead_scratch(dir: &Path) -> usize {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(|e| e.ok())
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let pid = name
                .strip_suffix(".tmp")
                .and_then(|n| n.rsplit_once('.'))
                .and_then(|(_, pid)| pid.parse::<u32>().ok());
            pid.is_some_and(|pid| !process_alive(pid))
        })
        .filter(|e| fs::remove_file(e.path()).is_ok())
        .count()
}

#[cfg(unix)]
fn process_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks that the process exists.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

#[cfg(not(unix))]
fn process_alive(_pid: u32) -> bool {
    true
}
