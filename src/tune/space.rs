//! A search space over dotted spec keys, written as Hydra's Optuna sweeper writes one:
//! `choice(a, b)`, `interval(lo, hi)`, `int(interval(lo, hi))`, `log(interval(lo, hi))` (also
//! `int(log(interval(...)))`), and `range(start, stop[, step])` (stop excluded, as Python's).
//! Parsed once into [`Domain`]s that cannot be invalid: lo < hi, finite, log bounds positive,
//! choices non-empty and distinct.

use std::collections::BTreeMap;
use std::fmt;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

/// One value of a parameter, as it goes into the spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Value {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            // `{:?}` keeps a decimal point (1.0, not 1), so YAML reads a float back.
            Value::Float(x) => write!(f, "{x:?}"),
            Value::Str(s) => write!(f, "{s}"),
        }
    }
}

/// A numeric range: values in [lo, hi] (on a grid of `step` from lo when set), drawn uniformly
/// in ln space when `log`. Made only by [`parse`], which checks it.
#[derive(Debug, Clone, PartialEq)]
pub struct Numeric {
    lo: f64,
    hi: f64,
    step: Option<f64>,
    log: bool,
    int: bool,
    /// Written as `range(...)`: a grid enumerates it.
    range: bool,
}

impl Numeric {
    pub fn lo(&self) -> f64 {
        self.lo
    }
    pub fn hi(&self) -> f64 {
        self.hi
    }
    /// The grid spacing (1 for integers; `range`'s step); None for a continuous interval.
    pub fn step(&self) -> Option<f64> {
        self.step
    }
    pub fn log(&self) -> bool {
        self.log
    }
    pub fn int(&self) -> bool {
        self.int
    }

    /// The value a sampler's float stands for (rounded for integers).
    pub fn value(&self, x: f64) -> Value {
        if self.int {
            Value::Int(x.round() as i64)
        } else {
            Value::Float(x)
        }
    }

    /// Every value of a stepped range, lo first.
    fn steps(&self, step: f64) -> Vec<f64> {
        let n = ((self.hi - self.lo) / step + 1e-9).floor() as usize;
        (0..=n).map(|k| self.lo + k as f64 * step).collect()
    }
}

/// What a parameter ranges over.
#[derive(Debug, Clone, PartialEq)]
pub enum Domain {
    /// Unordered choices; samplers work with their index.
    Choice(Vec<Value>),
    Numeric(Numeric),
}

impl Domain {
    /// The values a grid search tries: every choice, every value of a stepped range, or `points`
    /// evenly spaced values of an interval (geometrically for `log`, rounded and distinct for
    /// integers). An interval without `points` is an error: a grid has no natural spacing there.
    pub fn grid(&self, points: Option<usize>) -> Result<Vec<Value>, String> {
        let n = match self {
            Domain::Choice(values) => return Ok(values.clone()),
            Domain::Numeric(r) if r.range => {
                let step = r.step.unwrap_or(1.0);
                return Ok(r.steps(step).into_iter().map(|x| r.value(x)).collect());
            }
            Domain::Numeric(_) => points
                .ok_or("an interval on a grid needs `sampler.points` (how many values to try)")?,
        };
        let Domain::Numeric(r) = self else {
            unreachable!("choices returned above")
        };
        if n < 2 {
            return Err(format!(
                "sampler.points: {n}; a grid over an interval needs at least 2"
            ));
        }
        let (lo, hi) = if r.log {
            (r.lo.ln(), r.hi.ln())
        } else {
            (r.lo, r.hi)
        };
        let mut out: Vec<Value> = Vec::new();
        for k in 0..n {
            let t = lo + (hi - lo) * k as f64 / (n - 1) as f64;
            let x = if r.log { t.exp() } else { t }.clamp(r.lo, r.hi);
            let v = r.value(x);
            if !out.contains(&v) {
                out.push(v);
            }
        }
        Ok(out)
    }
}

/// The whole space: parameters by dotted key, in key order (the order samplers draw them in).
#[derive(Debug, Clone, PartialEq)]
pub struct Space {
    params: BTreeMap<String, Domain>,
}

impl Space {
    /// Parses every `key: expression`; every bad one is reported, each as
    /// `search.space.<key>: <why> in `<text>``. An empty space is an error.
    pub fn parse(raw: &BTreeMap<String, String>) -> Result<Space> {
        let mut problems = Vec::new();
        let mut params = BTreeMap::new();
        if raw.is_empty() {
            bail!("search.space: empty; name at least one spec key to search over");
        }
        for (key, text) in raw {
            if !is_dotted_key(key) {
                problems.push(format!(
                    "search.space.{key}: not a dotted spec key (like `model.lr`)"
                ));
                continue;
            }
            match parse(text) {
                Ok(d) => {
                    params.insert(key.clone(), d);
                }
                Err(why) => problems.push(format!("search.space.{key}: {why} in `{text}`")),
            }
        }
        if !problems.is_empty() {
            bail!("{}", problems.join("\n"));
        }
        Ok(Space { params })
    }

    pub fn params(&self) -> impl Iterator<Item = (&str, &Domain)> {
        self.params.iter().map(|(k, d)| (k.as_str(), d))
    }

    pub fn get(&self, key: &str) -> Option<&Domain> {
        self.params.get(key)
    }

    pub fn len(&self) -> usize {
        self.params.len()
    }

    pub fn is_empty(&self) -> bool {
        self.params.is_empty()
    }

    /// Every key must be one of `valid` (the spec's dotted keys, which the caller knows; this
    /// module sits below the spec). The error names the unknown key and the nearest valid one.
    pub fn check_keys(&self, valid: &[&str]) -> Result<()> {
        let problems: Vec<String> = self
            .params
            .keys()
            .filter(|k| !valid.contains(&k.as_str()))
            .map(|k| match nearest(k, valid) {
                Some(best) => {
                    format!("search.space.{k}: not a key of the spec; did you mean `{best}`?")
                }
                None => format!("search.space.{k}: not a key of the spec"),
            })
            .collect();
        if problems.is_empty() {
            Ok(())
        } else {
            bail!("{}", problems.join("\n"))
        }
    }
}

fn is_dotted_key(key: &str) -> bool {
    !key.is_empty()
        && key.split('.').all(|part| {
            !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
}

/// The valid key closest in edit distance (None when nothing is within a third of its length
/// plus two edits: a suggestion that far off misleads).
pub fn nearest<'a>(key: &str, valid: &[&'a str]) -> Option<&'a str> {
    valid
        .iter()
        .map(|v| (crate::yaml::edit_distance(key, v), *v))
        .filter(|(d, _)| *d <= 2 + key.len() / 3)
        .min()
        .map(|(_, v)| v)
}

/// One expression into a checked [`Domain`]; the error says what is wrong (the caller adds the
/// key and the text).
pub fn parse(text: &str) -> Result<Domain, String> {
    let mut p = Parser { s: text, at: 0 };
    let expr = p.expr()?;
    p.skip_ws();
    if p.at != p.s.len() {
        return Err(format!(
            "unexpected `{}` after the expression",
            &p.s[p.at..]
        ));
    }
    check(expr)
}

/// The parsed form, before its bounds are checked.
enum Expr {
    Choice(Vec<Value>),
    Interval(f64, f64),
    Range(f64, f64, f64, bool),
    Int(Box<Expr>),
    Log(Box<Expr>),
}

fn check(expr: Expr) -> Result<Domain, String> {
    // Peel `int(...)` and `log(...)` in either order.
    let (mut int, mut log, mut e) = (false, false, expr);
    loop {
        e = match e {
            Expr::Int(inner) if !int => {
                int = true;
                *inner
            }
            Expr::Log(inner) if !log => {
                log = true;
                *inner
            }
            Expr::Int(_) => return Err("`int` twice".into()),
            Expr::Log(_) => return Err("`log` twice".into()),
            other => break check_base(other, int, log),
        }
    }
}

fn check_base(e: Expr, int: bool, log: bool) -> Result<Domain, String> {
    match e {
        Expr::Choice(values) => {
            if int || log {
                return Err("`int` and `log` apply to intervals, not to `choice`".into());
            }
            if values.is_empty() {
                return Err("`choice` needs at least one value".into());
            }
            for (i, v) in values.iter().enumerate() {
                if values[..i].contains(v) {
                    return Err(format!("`{v}` is listed twice"));
                }
            }
            Ok(Domain::Choice(values))
        }
        Expr::Interval(lo, hi) => {
            if !(lo.is_finite() && hi.is_finite()) {
                return Err("bounds must be finite".into());
            }
            if lo >= hi {
                return Err(format!("lo {lo} must be below hi {hi}"));
            }
            if log && lo <= 0.0 {
                return Err(format!("a log interval needs lo > 0 (lo is {lo})"));
            }
            if int && (lo.fract() != 0.0 || hi.fract() != 0.0) {
                return Err(format!(
                    "an integer interval needs integer bounds ({lo}, {hi})"
                ));
            }
            Ok(Domain::Numeric(Numeric {
                lo,
                hi,
                step: int.then_some(1.0),
                log,
                int,
                range: false,
            }))
        }
        Expr::Range(start, stop, step, all_int) => {
            if log {
                return Err("`range` is evenly stepped; `log` does not apply".into());
            }
            if !(start.is_finite() && stop.is_finite() && step.is_finite()) {
                return Err("bounds must be finite".into());
            }
            if step <= 0.0 {
                return Err(format!("step {step} must be positive"));
            }
            if start >= stop {
                return Err(format!("start {start} must be below stop {stop}"));
            }
            if int && !all_int {
                return Err("`int(range(...))` needs integer start, stop and step".into());
            }
            // Python's range: stop excluded.
            let n = ((stop - start) / step - 1e-9).ceil() as usize;
            let hi = start + (n.max(1) - 1) as f64 * step;
            if n < 2 {
                return Err("the range holds a single value; use `choice` for a constant".into());
            }
            Ok(Domain::Numeric(Numeric {
                lo: start,
                hi,
                step: Some(step),
                log: false,
                int: all_int,
                range: true,
            }))
        }
        Expr::Int(_) | Expr::Log(_) => unreachable!("peeled by check"),
    }
}

struct Parser<'a> {
    s: &'a str,
    at: usize,
}

impl Parser<'_> {
    fn skip_ws(&mut self) {
        while self.s[self.at..].starts_with(char::is_whitespace) {
            self.at += 1;
        }
    }

    fn eat(&mut self, c: char) -> bool {
        self.skip_ws();
        if self.s[self.at..].starts_with(c) {
            self.at += c.len_utf8();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: char) -> Result<(), String> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(format!("expected `{c}` at column {}", self.at + 1))
        }
    }

    /// A bare word: letters, digits, `_ . + - e`, as in a number or an unquoted string.
    fn word(&mut self) -> &str {
        self.skip_ws();
        let start = self.at;
        while let Some(c) = self.s[self.at..].chars().next() {
            if c.is_ascii_alphanumeric() || "_.+-".contains(c) {
                self.at += c.len_utf8();
            } else {
                break;
            }
        }
        &self.s[start..self.at]
    }

    fn expr(&mut self) -> Result<Expr, String> {
        let name = self.word().to_string();
        if name.is_empty() {
            return Err(
                "expected choice(...), interval(...), range(...), int(...) or log(...)".into(),
            );
        }
        if !self.eat('(') {
            return Err(format!(
                "`{name}` is not a search expression: write choice(...), interval(lo, hi), int(interval(lo, hi)), log(interval(lo, hi)) or range(start, stop[, step])"
            ));
        }
        let e = match name.as_str() {
            "choice" => {
                let mut values = Vec::new();
                if !self.eat(')') {
                    loop {
                        values.push(self.literal()?);
                        if self.eat(')') {
                            break;
                        }
                        self.expect(',')?;
                    }
                }
                return Ok(Expr::Choice(values));
            }
            "interval" => {
                let lo = self.number()?.0;
                self.expect(',')?;
                let hi = self.number()?.0;
                Expr::Interval(lo, hi)
            }
            "range" => {
                let (start, a) = self.number()?;
                self.expect(',')?;
                let (stop, b) = self.number()?;
                let (step, c) = if self.eat(',') {
                    self.number()?
                } else {
                    (1.0, true)
                };
                Expr::Range(start, stop, step, a && b && c)
            }
            "int" => Expr::Int(Box::new(self.expr()?)),
            "log" => Expr::Log(Box::new(self.expr()?)),
            other => {
                return Err(format!(
                    "unknown function `{other}`; one of choice, interval, range, int, log"
                ))
            }
        };
        self.expect(')')?;
        Ok(e)
    }

    /// A number and whether it is written as an integer.
    fn number(&mut self) -> Result<(f64, bool), String> {
        let w = self.word().to_string();
        if let Ok(i) = w.parse::<i64>() {
            return Ok((i as f64, true));
        }
        match w.parse::<f64>() {
            Ok(x) if x.is_finite() => Ok((x, false)),
            _ => Err(format!("`{w}` is not a finite number")),
        }
    }

    /// A choice: a number, true/false, a quoted string or a bare word.
    fn literal(&mut self) -> Result<Value, String> {
        self.skip_ws();
        if let Some(q) = self.s[self.at..]
            .chars()
            .next()
            .filter(|c| *c == '"' || *c == '\'')
        {
            let rest = &self.s[self.at + 1..];
            let Some(end) = rest.find(q) else {
                return Err(format!("unclosed quote {q}"));
            };
            self.at += end + 2;
            return Ok(Value::Str(rest[..end].to_string()));
        }
        let w = self.word().to_string();
        if w.is_empty() {
            return Err(format!("expected a value at column {}", self.at + 1));
        }
        Ok(match w.as_str() {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => match (w.parse::<i64>(), w.parse::<f64>()) {
                (Ok(i), _) => Value::Int(i),
                (_, Ok(x)) if x.is_finite() => Value::Float(x),
                (_, Ok(_)) => return Err(format!("`{w}` is not a finite number")),
                _ => Value::Str(w),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(text: &str) -> Numeric {
        match parse(text) {
            Ok(Domain::Numeric(n)) => n,
            other => panic!("{text}: {other:?}"),
        }
    }

    #[test]
    fn parses_every_form() {
        let lr = num("log(interval(1e-4, 1e-2))");
        assert_eq!(
            (lr.lo, lr.hi, lr.log, lr.int, lr.step),
            (1e-4, 1e-2, true, false, None)
        );
        let depth = num("int(interval(2, 8))");
        assert_eq!(
            (depth.lo, depth.hi, depth.step, depth.int),
            (2.0, 8.0, Some(1.0), true)
        );
        let both = num("int(log(interval(1, 64)))");
        assert!(both.int && both.log);
        assert_eq!(num("log(int(interval(1, 64)))"), both);
        let r = num("range(0.1, 0.5, 0.1)");
        assert_eq!((r.lo, r.step, r.int), (0.1, Some(0.1), false));
        assert!((r.hi - 0.4).abs() < 1e-12, "stop excluded: {}", r.hi);
        let w = num("range(3, 9, 2)");
        assert_eq!((w.lo, w.hi, w.int), (3.0, 7.0, true));
        assert_eq!(
            parse("choice(3, 0.5, adam, 'two words', true)"),
            Ok(Domain::Choice(vec![
                Value::Int(3),
                Value::Float(0.5),
                Value::Str("adam".into()),
                Value::Str("two words".into()),
                Value::Bool(true),
            ]))
        );
    }

    #[test]
    fn rejects_bad_expressions_saying_why() {
        for (text, why) in [
            ("interval(1, 1)", "lo 1 must be below hi 1"),
            ("log(interval(0, 1))", "needs lo > 0"),
            ("choice()", "at least one value"),
            ("choice(a, a)", "listed twice"),
            ("interval(0, inf)", "not a finite number"),
            ("int(interval(0.5, 3))", "integer bounds"),
            ("uniform(0, 1)", "unknown function `uniform`"),
            ("interval(0, 1) x", "unexpected `x`"),
            ("0.5", "not a search expression"),
            ("log(choice(1, 2))", "apply to intervals"),
            ("log(range(1, 5))", "`log` does not apply"),
            ("range(1, 2)", "single value"),
            ("int(int(interval(1, 4)))", "`int` twice"),
        ] {
            let e = parse(text).expect_err(text);
            assert!(e.contains(why), "{text}: {e}");
        }
    }

    #[test]
    fn space_errors_name_the_key_and_text() {
        let mut raw = BTreeMap::new();
        raw.insert("model.lr".to_string(), "log(interval(0, 1))".to_string());
        raw.insert(
            "train.epochs".to_string(),
            "int(interval(5, 50))".to_string(),
        );
        let e = Space::parse(&raw).unwrap_err().to_string();
        assert_eq!(
            e,
            "search.space.model.lr: a log interval needs lo > 0 (lo is 0) in `log(interval(0, 1))`"
        );
        let e = Space::parse(&BTreeMap::new()).unwrap_err().to_string();
        assert!(e.starts_with("search.space: empty"), "{e}");
    }

    #[test]
    fn unknown_keys_name_the_nearest() {
        let mut raw = BTreeMap::new();
        raw.insert("model.lrr".to_string(), "interval(0, 1)".to_string());
        let space = Space::parse(&raw).unwrap();
        let e = space
            .check_keys(&["model.lr", "train.epochs"])
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "search.space.model.lrr: not a key of the spec; did you mean `model.lr`?"
        );
        assert!(space.check_keys(&["model.lrr"]).is_ok());
        let e = space
            .check_keys(&["baseline.alpha"])
            .unwrap_err()
            .to_string();
        assert!(!e.contains("did you mean"), "{e}");
    }

    #[test]
    fn grids() {
        let g = |t: &str, p| parse(t).unwrap().grid(p);
        let floats: Vec<f64> = g("log(interval(1e-4, 1e-2))", Some(3))
            .unwrap()
            .into_iter()
            .map(|v| match v {
                Value::Float(x) => x,
                other => panic!("{other:?}"),
            })
            .collect();
        for (got, want) in floats.iter().zip([1e-4, 1e-3, 1e-2]) {
            assert!((got - want).abs() < 1e-15, "{floats:?}");
        }
        assert!(g("interval(0, 1)", None)
            .unwrap_err()
            .contains("sampler.points"));
        assert!(g("int(interval(1, 3))", None)
            .unwrap_err()
            .contains("sampler.points"));
        assert_eq!(
            g("int(interval(1, 3))", Some(5)).unwrap(),
            vec![Value::Int(1), Value::Int(2), Value::Int(3)],
            "rounded values kept once"
        );
        assert_eq!(
            g("range(3, 9, 2)", None).unwrap(),
            vec![Value::Int(3), Value::Int(5), Value::Int(7)]
        );
        assert_eq!(g("choice(a, b)", Some(7)).unwrap().len(), 2);
    }
}
