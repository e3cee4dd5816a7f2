//! Turns the byte offsets that the TOML parser reports into the `file:line:column` positions that
//! every configuration message starts with, so a user can jump straight to the offending value.

use std::fmt;
use std::ops::Range;

/// A position in a configuration file: 1-based line and column (columns count characters, not
/// bytes, so a name with accents does not shift the caret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file as the user named it (or as it was found), for display.
    pub file: String,
    /// Line, starting at 1.
    pub line: usize,
    /// Column, starting at 1.
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// The text of one configuration file together with its display name.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SourceMap<'a> {
    file: &'a str,
    text: &'a str,
}

impl<'a> SourceMap<'a> {
    pub(crate) fn new(file: &'a str, text: &'a str) -> Self {
        Self { file, text }
    }

    /// The location of the first byte of `span`.
    pub(crate) fn locate(&self, span: &Range<usize>) -> Location {
        self.locate_offset(span.start)
    }

    /// The location of byte `offset`; offsets past the end (or inside a multi-byte character)
    /// are clamped rather than trusted, since they come from parsing user input.
    pub(crate) fn locate_offset(&self, offset: usize) -> Location {
        let mut end = offset.min(self.text.len());
        while !self.text.is_char_boundary(end) {
            end -= 1;
        }
        let before = self.text.get(..end).unwrap_or_default();
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let line = before.matches('\n').count() + 1;
        let column = before.get(line_start..).unwrap_or_default().chars().count() + 1;
        Location {
            file: self.file.to_owned(),
            line,
            column,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_columns_are_one_based_and_count_characters() {
        let map = SourceMap::new("f.toml", "a = 1\nnombre = \"é\" # x\n");
        assert_eq!(map.locate_offset(0).to_string(), "f.toml:1:1");
        assert_eq!(map.locate_offset(6).to_string(), "f.toml:2:1");
        // After the two-byte 'é' the column advances by one character only.
        let after = "a = 1\nnombre = \"é".len();
        assert_eq!(map.locate_offset(after).to_string(), "f.toml:2:12");
    }

    #[test]
    fn offsets_past_the_end_or_inside_a_character_are_clamped() {
        let map = SourceMap::new("f.toml", "é");
        assert_eq!(map.locate_offset(1).column, 1);
        assert_eq!(map.locate_offset(99).column, 2);
    }
}
