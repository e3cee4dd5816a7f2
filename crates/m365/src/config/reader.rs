//! Reads typed values out of the parsed TOML tree while keeping every value's position, so a
//! wrong value is reported as `file:line:column: [section] key: what is wrong`, and remembers
//! which keys were read so the ones left over can be reported as unknown.
//!
//! Reading never stops at the first problem: each accessor records what is wrong and returns
//! `None`, the caller keeps its default, and the user sees every problem of the file at once.

use super::error::{KeyPath, Problem, Warning};
use super::location::SourceMap;
use std::cell::RefCell;
use std::ops::Range;
use std::time::Duration;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// Problems and warnings collected while reading one file.
#[derive(Debug, Default)]
pub(crate) struct Diagnostics {
    problems: RefCell<Vec<Problem>>,
    warnings: RefCell<Vec<Warning>>,
}

impl Diagnostics {
    pub(crate) fn problem(&self, problem: Problem) {
        self.problems.borrow_mut().push(problem);
    }

    pub(crate) fn into_parts(self) -> (Vec<Problem>, Vec<Warning>) {
        (self.problems.into_inner(), self.warnings.into_inner())
    }
}

/// A value together with the byte range it was written at.
#[derive(Debug, Clone)]
pub(crate) struct Located<T> {
    pub(crate) value: T,
    pub(crate) span: Range<usize>,
}

/// Why a value was refused, before the position and key are attached.
pub(crate) enum Refusal {
    /// The value has the wrong shape: "expected {0}, found {value}".
    Expected(&'static str),
    /// The value has the right shape but is not acceptable.
    Invalid(String),
}

/// One TOML table being read (`[mqtt]`, `[mqtt.tls]`, or the top level).
///
/// When it is dropped, every key that no accessor asked for becomes an unknown-key warning.
pub(crate) struct Section<'a, 'i> {
    diag: &'a Diagnostics,
    source: SourceMap<'a>,
    name: String,
    table: Option<&'a DeTable<'i>>,
    span: Option<Range<usize>>,
    known: &'static [&'static str],
    used: Vec<String>,
}

impl<'a, 'i> Section<'a, 'i> {
    /// A section over `table` (or an absent one), whose accepted keys are `known`.
    pub(crate) fn new(
        diag: &'a Diagnostics,
        source: SourceMap<'a>,
        name: &str,
        table: Option<&'a DeTable<'i>>,
        known: &'static [&'static str],
    ) -> Self {
        Self {
            diag,
            source,
            name: name.to_owned(),
            table,
            span: None,
            known,
            used: Vec::new(),
        }
    }

    fn with_span(mut self, span: Range<usize>) -> Self {
        self.span = Some(span);
        self
    }

    /// Where `key`'s value was written, if it was.
    pub(crate) fn span_of(&self, key: &str) -> Option<Range<usize>> {
        self.table?.get(key).map(Spanned::span)
    }

    /// Records a problem about `key`, placed at its value if written, else at the section header.
    pub(crate) fn problem_here(&self, key: &str, message: impl Into<String>) {
        let span = self
            .span_of(key)
            .or_else(|| self.span.clone())
            .unwrap_or(0..0);
        self.problem(key, &span, message);
    }

    /// Whether the section was written in the file at all.
    pub(crate) fn is_present(&self) -> bool {
        self.table.is_some()
    }

    /// Whether `key` was written in this section.
    pub(crate) fn has(&self, key: &str) -> bool {
        self.table.is_some_and(|t| t.get(key).is_some())
    }

    /// Whether `key` was written as an array (`[[scooter]]` rather than `[scooter]`).
    pub(crate) fn is_array(&self, key: &str) -> bool {
        self.table
            .and_then(|t| t.get(key))
            .is_some_and(|v| matches!(v.get_ref(), DeValue::Array(_)))
    }

    /// The sub-table `key` as its own section (e.g. `tls` inside `[mqtt]`).
    pub(crate) fn table(&mut self, key: &str, known: &'static [&'static str]) -> Section<'a, 'i> {
        let name = if self.name.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.name)
        };
        let raw = self.raw(key);
        let table = raw.and_then(|value| match value.get_ref() {
            DeValue::Table(table) => Some(table),
            other => {
                self.refuse(key, value.span(), other, Refusal::Expected("a table"));
                None
            }
        });
        let section = Section::new(self.diag, self.source, &name, table, known);
        match raw {
            Some(value) => section.with_span(value.span()),
            None => section,
        }
    }

    /// The array of tables `key` (`[[mqtt.mirror]]`), each as its own section.
    pub(crate) fn tables(
        &mut self,
        key: &str,
        known: &'static [&'static str],
    ) -> Vec<Section<'a, 'i>> {
        let name = if self.name.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.name)
        };
        let Some(value) = self.raw(key) else {
            return Vec::new();
        };
        let DeValue::Array(items) = value.get_ref() else {
            let found = value.get_ref();
            self.refuse(
                key,
                value.span(),
                found,
                Refusal::Expected("an array of tables"),
            );
            return Vec::new();
        };
        let mut sections = Vec::new();
        for item in items.iter() {
            match item.get_ref() {
                DeValue::Table(table) => {
                    sections.push(
                        Section::new(self.diag, self.source, &name, Some(table), known)
                            .with_span(item.span()),
                    );
                }
                other => self.refuse(key, item.span(), other, Refusal::Expected("a table")),
            }
        }
        sections
    }

    /// Reads `key` with `parse`; on refusal records a located problem and returns `None`.
    pub(crate) fn value<T>(
        &mut self,
        key: &str,
        parse: impl FnOnce(&DeValue<'i>) -> Result<T, Refusal>,
    ) -> Option<Located<T>> {
        let raw = self.raw(key)?;
        match parse(raw.get_ref()) {
            Ok(value) => Some(Located {
                value,
                span: raw.span(),
            }),
            Err(refusal) => {
                self.refuse(key, raw.span(), raw.get_ref(), refusal);
                None
            }
        }
    }

    /// A string.
    pub(crate) fn string(&mut self, key: &str) -> Option<Located<String>> {
        self.value(key, |v| match v {
            DeValue::String(s) => Ok(s.to_string()),
            _ => Err(Refusal::Expected("a string")),
        })
    }

    /// A string that must not be empty.
    pub(crate) fn non_empty_string(&mut self, key: &str) -> Option<Located<String>> {
        self.value(key, |v| match v {
            DeValue::String(s) if s.trim().is_empty() => {
                Err(Refusal::Invalid("must not be empty".to_owned()))
            }
            DeValue::String(s) => Ok(s.to_string()),
            _ => Err(Refusal::Expected("a string")),
        })
    }

    /// `true` or `false`.
    pub(crate) fn bool(&mut self, key: &str) -> Option<Located<bool>> {
        self.value(key, |v| match v {
            DeValue::Boolean(b) => Ok(*b),
            _ => Err(Refusal::Expected("true or false")),
        })
    }

    /// An integer within `range`.
    pub(crate) fn integer(
        &mut self,
        key: &str,
        range: std::ops::RangeInclusive<u64>,
    ) -> Option<Located<u64>> {
        self.value(key, |v| {
            let n = integer(v).ok_or(Refusal::Expected("a whole number"))?;
            u64::try_from(n)
                .ok()
                .filter(|n| range.contains(n))
                .ok_or_else(|| {
                    Refusal::Invalid(format!(
                        "must be between {} and {}, found {n}",
                        range.start(),
                        range.end()
                    ))
                })
        })
    }

    /// A number (whole or not) within `range`.
    pub(crate) fn number(
        &mut self,
        key: &str,
        range: std::ops::RangeInclusive<f64>,
    ) -> Option<Located<f64>> {
        self.value(key, |v| {
            let n = match v {
                DeValue::Float(f) => f.as_str().parse::<f64>().ok(),
                other => integer(other).map(|i| i as f64),
            }
            .ok_or(Refusal::Expected("a number"))?;
            if range.contains(&n) {
                Ok(n)
            } else {
                Err(Refusal::Invalid(format!(
                    "must be between {} and {}, found {n}",
                    range.start(),
                    range.end()
                )))
            }
        })
    }

    /// One of the listed words (`"auto"`, `"miauth"`, …), returned as written.
    pub(crate) fn choice(
        &mut self,
        key: &str,
        choices: &'static [&'static str],
    ) -> Option<Located<&'static str>> {
        self.value(key, |v| {
            let DeValue::String(s) = v else {
                return Err(Refusal::Invalid(format!(
                    "expected one of {}, found {}",
                    quoted_list(choices),
                    describe(v)
                )));
            };
            choices
                .iter()
                .find(|c| c.eq_ignore_ascii_case(s))
                .copied()
                .ok_or_else(|| {
                    Refusal::Invalid(format!(
                        "expected one of {}, found {}",
                        quoted_list(choices),
                        describe(v)
                    ))
                })
        })
    }

    /// A duration within `range`: a number of seconds (fractions allowed) or a string such as
    /// `"500ms"`, `"5s"`, `"2m"`, `"7d"`.
    pub(crate) fn duration(
        &mut self,
        key: &str,
        range: std::ops::RangeInclusive<Duration>,
    ) -> Option<Located<Duration>> {
        self.value(key, |v| {
            let d = duration(v).ok_or(Refusal::Expected("a duration"))?;
            if range.contains(&d) {
                Ok(d)
            } else {
                Err(Refusal::Invalid(format!(
                    "must be between {} and {}, found {}",
                    super::units::format_duration(*range.start()),
                    super::units::format_duration(*range.end()),
                    super::units::format_duration(d)
                )))
            }
        })
    }

    /// A size in bytes within `range`: a whole number of bytes or a string such as `"64MiB"`.
    pub(crate) fn size(
        &mut self,
        key: &str,
        range: std::ops::RangeInclusive<u64>,
    ) -> Option<Located<u64>> {
        self.value(key, |v| {
            let n = match v {
                DeValue::String(s) => s
                    .parse::<bytesize::ByteSize>()
                    .map_err(|_| Refusal::Expected("a size such as \"64MiB\""))?
                    .as_u64(),
                _ => integer(v)
                    .and_then(|n| u64::try_from(n).ok())
                    .ok_or(Refusal::Expected("a size such as \"64MiB\""))?,
            };
            if range.contains(&n) {
                Ok(n)
            } else {
                Err(Refusal::Invalid(format!(
                    "must be between {} and {}, found {}",
                    super::units::format_size(*range.start()),
                    super::units::format_size(*range.end()),
                    super::units::format_size(n)
                )))
            }
        })
    }

    /// Records a problem about `key` at `span` (for checks that involve several keys).
    pub(crate) fn problem(&self, key: &str, span: &Range<usize>, message: impl Into<String>) {
        self.diag.problem(Problem {
            location: self.source.locate(span),
            key: KeyPath::new(&self.name, Some(key)),
            message: message.into(),
        });
    }

    fn raw(&mut self, key: &str) -> Option<&'a Spanned<DeValue<'i>>> {
        debug_assert!(
            self.known.contains(&key),
            "{key} missing from the known keys"
        );
        self.used.push(key.to_owned());
        self.table?.get(key)
    }

    fn refuse(&self, key: &str, span: Range<usize>, found: &DeValue<'_>, refusal: Refusal) {
        let message = match refusal {
            Refusal::Expected(what) => format!("expected {what}, found {}", describe(found)),
            Refusal::Invalid(message) => message,
        };
        self.problem(key, &span, message);
    }
}

impl Drop for Section<'_, '_> {
    /// Reports the keys of this table that nothing read.
    fn drop(&mut self) {
        let Some(table) = self.table else {
            return;
        };
        for (key, _) in table.iter() {
            let name = key.get_ref();
            if self.used.iter().any(|u| u == name.as_ref()) {
                continue;
            }
            let is_table = table
                .get(name.as_ref())
                .is_some_and(|v| matches!(v.get_ref(), DeValue::Table(_)));
            let path = if self.name.is_empty() && is_table {
                KeyPath::new(name, None)
            } else {
                KeyPath::new(&self.name, Some(name))
            };
            self.diag.warnings.borrow_mut().push(Warning {
                location: self.source.locate(&key.span()),
                key: path,
                suggestion: suggest(name, self.known),
            });
        }
    }
}

/// The closest known key, if it is close enough to be a likely typo.
fn suggest(unknown: &str, known: &[&str]) -> Option<String> {
    let unknown = unknown.to_ascii_lowercase();
    known
        .iter()
        .map(|k| (strsim::damerau_levenshtein(&unknown, k), *k))
        // Allow one edit for short keys, up to three for long ones.
        .filter(|(distance, k)| *distance <= (k.len() / 4).clamp(1, 3))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, k)| k.to_owned())
}

/// A TOML integer as i128 (so both i64 and u64 fit), whatever radix it was written in.
pub(crate) fn integer(value: &DeValue<'_>) -> Option<i128> {
    match value {
        DeValue::Integer(i) => i128::from_str_radix(i.as_str(), i.radix()).ok(),
        _ => None,
    }
}

/// A TOML value as a duration: seconds as a number, or a humantime string.
pub(crate) fn duration(value: &DeValue<'_>) -> Option<Duration> {
    match value {
        DeValue::Integer(_) => integer(value)
            .and_then(|n| u64::try_from(n).ok())
            .map(Duration::from_secs),
        DeValue::Float(f) => f
            .as_str()
            .parse::<f64>()
            .ok()
            .and_then(|secs| Duration::try_from_secs_f64(secs).ok()),
        DeValue::String(s) => super::units::parse_duration(s),
        _ => None,
    }
}

/// How a value is shown after "found": strings quoted, numbers as written, others by kind.
pub(crate) fn describe(value: &DeValue<'_>) -> String {
    match value {
        DeValue::String(s) => format!("{:?}", s.as_ref()),
        DeValue::Integer(i) => i.to_string(),
        DeValue::Float(f) => f.to_string(),
        DeValue::Boolean(b) => b.to_string(),
        DeValue::Datetime(d) => format!("the date {d}"),
        DeValue::Array(_) => "an array".to_owned(),
        DeValue::Table(_) => "a table".to_owned(),
    }
}

fn quoted_list(choices: &[&str]) -> String {
    choices
        .iter()
        .map(|c| format!("\"{c}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_catch_typos_but_not_unrelated_words() {
        let known = ["keep_alive", "broker", "topic"];
        assert_eq!(suggest("keepalive", &known).as_deref(), Some("keep_alive"));
        assert_eq!(suggest("Keep_Alive", &known).as_deref(), Some("keep_alive"));
        assert_eq!(suggest("brokr", &known).as_deref(), Some("broker"));
        assert_eq!(suggest("colour", &known), None);
    }
}
