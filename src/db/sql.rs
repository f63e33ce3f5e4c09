//! Quoting for the SQL the engine writes itself. Table and column names come from the
//! catalog or the registry, never straight from a request, but they are still quoted
//! everywhere they are spliced into a statement: one type for identifiers (`Ident`)
//! and one for text literals (`Literal`), so no call site escapes by hand.

use std::fmt;

/// An SQL identifier, rendered double-quoted with inner quotes doubled:
/// `format!("SELECT * FROM {}", Ident("odd\"name"))` gives `"odd""name"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ident<'a>(pub &'a str);

impl fmt::Display for Ident<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"")?;
        f.write_str(&self.0.replace('"', "\"\""))?;
        f.write_str("\"")
    }
}

/// An SQL text literal, rendered single-quoted with inner quotes doubled. For names
/// compared as values inside generated statements (`WHEN 'forms' THEN ...`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Literal<'a>(pub &'a str);

impl fmt::Display for Literal<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("'")?;
        f.write_str(&self.0.replace('\'', "''"))?;
        f.write_str("'")
    }
}

/// `"a", "b", "c"`: identifiers joined for a column list; `prefix` qualifies each
/// (`r."a", r."b"`) when not empty.
pub fn ident_list<S: AsRef<str>>(prefix: &str, names: &[S]) -> String {
    names
        .iter()
        .map(|n| format!("{prefix}{}", Ident(n.as_ref())))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted_and_escaped() {
        assert_eq!(Ident("forms").to_string(), "\"forms\"");
        assert_eq!(Ident("a\"b").to_string(), "\"a\"\"b\"");
        assert_eq!(Ident("").to_string(), "\"\"");
    }

    #[test]
    fn literals_are_quoted_and_escaped() {
        assert_eq!(Literal("forms").to_string(), "'forms'");
        assert_eq!(Literal("o'neil").to_string(), "'o''neil'");
    }

    #[test]
    fn lists_join_and_qualify() {
        assert_eq!(ident_list("", &["a", "b"]), "\"a\", \"b\"");
        assert_eq!(ident_list("r.", &["a"]), "r.\"a\"");
        assert_eq!(ident_list::<&str>("", &[]), "");
    }
}
