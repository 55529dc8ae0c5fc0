//! Parameters checked once (linfa's `ParamGuard` idea): a section of a spec is checked when it is
//! read, into a [`Checked`] value that only [`Checked::new`] makes. Code that takes a `Checked<T>`
//! relies on it and never checks again.

use std::ops::Deref;

use anyhow::{bail, Result};
use serde::Serialize;

/// A configuration section whose values can be checked without data.
pub trait Params: Sized {
    /// Every problem at once, each as `key.path: what is wrong`; empty when the values are valid.
    fn problems(&self) -> Vec<String>;

    /// The checked value, or an error listing every problem.
    fn checked(self) -> Result<Checked<Self>> {
        Checked::new(self)
    }
}

/// A value whose [`Params::problems`] were empty when it was made. Read it through `Deref`;
/// change it only by taking it apart ([`Checked::into_inner`]) and checking the result again.
#[repr(transparent)]
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(transparent)]
pub struct Checked<T>(T);

impl<T: Params> Checked<T> {
    pub fn new(value: T) -> Result<Self> {
        let problems = value.problems();
        if !problems.is_empty() {
            bail!("{}", problems.join("\n"));
        }
        Ok(Self(value))
    }
}

impl<T> Checked<T> {
    pub fn into_inner(self) -> T {
        self.0
    }

    /// A section of a checked whole, itself checked: `field` must return a part whose own
    /// problems the whole's check includes (as `RunSpec`'s includes its `model`'s).
    pub(crate) fn part<U>(&self, field: impl FnOnce(&T) -> &U) -> &Checked<U> {
        let part: &U = field(&self.0);
        // SAFETY: `Checked<U>` is `repr(transparent)` over `U`, so the two references have the
        // same layout and lifetime (the ref-cast pattern).
        unsafe { &*(part as *const U as *const Checked<U>) }
    }
}

impl<T> Deref for Checked<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq, Serialize)]
    struct Window {
        side: usize,
    }

    impl Params for Window {
        fn problems(&self) -> Vec<String> {
            if self.side % 2 == 1 {
                vec![]
            } else {
                vec![format!("side: {} must be odd", self.side)]
            }
        }
    }

    #[test]
    fn only_valid_values_become_checked_and_serialise_as_themselves() {
        let ok = Window { side: 3 }.checked().unwrap();
        assert_eq!(ok.side, 3);
        assert_eq!(serde_json::to_string(&ok).unwrap(), r#"{"side":3}"#);
        let e = Window { side: 4 }.checked().unwrap_err();
        assert_eq!(e.to_string(), "side: 4 must be odd");
    }

    #[test]
    fn a_part_of_a_checked_whole_reads_the_same_value() {
        let whole = (Window { side: 5 }, 1u8);
        struct Pair((Window, u8));
        impl Params for Pair {
            fn problems(&self) -> Vec<String> {
                self.0 .0.problems()
            }
        }
        let checked = Pair(whole).checked().unwrap();
        let part: &Checked<Window> = checked.part(|p| &p.0 .0);
        assert_eq!(part.side, 5);
    }
}
