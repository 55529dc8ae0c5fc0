//! Fault injection for the reliability tests and the fault campaign (`scripts/fault-campaign.py`).
//! Inert unless the environment variable `OPENCARBON_FAULT` is set to `<action>:<point>[#n]`:
//!
//! - `kill:<point>`: the process SIGKILLs itself there (as `kill -9` would, at an exact moment);
//! - `enospc:<point>`: the write there fails with "No space left on device";
//! - `nan:batch`: that training batch gets NaN targets, so its loss and gradients are NaN.
//!
//! Points: `write:<file name>` (halfway through writing the file's bytes), `rename:<file name>`
//! (written, before the rename that publishes it) and `batch` (each training batch, counted over
//! the whole process). A point ending in `*` matches by prefix (`write:*`). `#n` fires at the n-th
//! matching hit (default the first); later hits pass.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

pub const VAR: &str = "OPENCARBON_FAULT";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Kill,
    NoSpace,
    NaN,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub action: Action,
    pub point: String,
    pub nth: usize,
}

/// Parses `<action>:<point>[#n]`.
pub fn parse(text: &str) -> Result<Plan, String> {
    let bad = |why: &str| format!("{VAR}=`{text}`: {why} (expected <kill|enospc|nan>:<point>[#n])");
    let (action, rest) = text.split_once(':').ok_or_else(|| bad("no `:`"))?;
    let action = match action {
        "kill" => Action::Kill,
        "enospc" => Action::NoSpace,
        "nan" => Action::NaN,
        other => return Err(bad(&format!("unknown action `{other}`"))),
    };
    let (point, nth) = match rest.rsplit_once('#') {
        Some((p, n)) => (
            p,
            n.parse::<usize>()
                .ok()
                .filter(|&n| n >= 1)
                .ok_or_else(|| bad("`#n` must be a count from 1"))?,
        ),
        None => (rest, 1),
    };
    if point.is_empty() {
        return Err(bad("empty point"));
    }
    Ok(Plan {
        action,
        point: point.to_string(),
        nth,
    })
}

fn plan() -> Option<&'static Plan> {
    static PLAN: OnceLock<Option<Plan>> = OnceLock::new();
    PLAN.get_or_init(|| {
        let text = std::env::var(VAR).ok()?;
        match parse(&text) {
            Ok(plan) => Some(plan),
            Err(e) => {
                eprintln!("warning: {e}; no fault injected");
                None
            }
        }
    })
    .as_ref()
}

fn matches(pattern: &str, point: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => point.starts_with(prefix),
        None => pattern == point,
    }
}

/// Called when the program reaches `point`: the action injected here, if any. A kill does not
/// return.
pub fn at(point: &str) -> Option<Action> {
    static HITS: AtomicUsize = AtomicUsize::new(0);
    let plan = plan()?;
    if !matches(&plan.point, point) {
        return None;
    }
    if HITS.fetch_add(1, Ordering::SeqCst) + 1 != plan.nth {
        return None;
    }
    if plan.action == Action::Kill {
        eprintln!("fault injection: SIGKILL at {point}");
        kill_self();
    }
    Some(plan.action)
}

/// The injected I/O error at a write point, if one is planned there.
pub fn write_error(point: &str) -> Option<std::io::Error> {
    (at(point) == Some(Action::NoSpace)).then(|| {
        std::io::Error::new(
            std::io::ErrorKind::StorageFull,
            "No space left on device (injected by OPENCARBON_FAULT)",
        )
    })
}

fn kill_self() -> ! {
    #[cfg(unix)]
    // SAFETY: sending a signal to our own pid has no memory-safety preconditions.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGKILL);
    }
    std::process::abort()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plans_and_rejects_bad_ones() {
        assert_eq!(
            parse("kill:write:best.safetensors#3").unwrap(),
            Plan {
                action: Action::Kill,
                point: "write:best.safetensors".into(),
                nth: 3
            }
        );
        assert_eq!(parse("nan:batch").unwrap().nth, 1);
        for bad in [
            "",
            "kill",
            "boom:batch",
            "kill:",
            "nan:batch#0",
            "nan:batch#x",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert!(matches("write:*", "write:summary.csv"));
        assert!(!matches("write:a", "write:ab"));
    }
}
