//! An operation file's description, and the text that is parsed and sent upstream.
//!
//! The September 2025 GraphQL specification lets an operation carry a description
//! string, as type definitions do, and the reference router turns it into the tool's
//! description. apollo-compiler 1.x does not parse it yet, so a description before
//! `query`/`mutation`/`subscription`/`fragment` is lifted out here and blanked in
//! the text (newlines kept, so diagnostics still point at the right line), which
//! also spares upstream servers on older GraphQL versions from seeing it.
//! Descriptions on variable definitions are not lifted and fail to parse.
//!
//! Without a description string, the file's leading `#` comment lines are the
//! description, the convention of hand-written operation folders.

use apollo_compiler::ast::{Definition, Document};
use apollo_parser::{Lexer, TokenKind};

/// What the rest of the load works on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Prepared {
    /// The file's text with executable descriptions blanked.
    pub text: String,
    pub description: Option<String>,
}

pub(super) fn prepare(text: &str) -> Prepared {
    let (tokens, errors) = Lexer::new(text).lex();
    if !errors.is_empty() {
        // The parser will report the problem with its position; nothing to lift.
        return Prepared {
            text: text.to_owned(),
            description: leading_comments(text),
        };
    }
    let significant: Vec<_> = tokens
        .iter()
        .filter(|t| {
            !matches!(
                t.kind(),
                TokenKind::Whitespace | TokenKind::Comment | TokenKind::Comma
            )
        })
        .collect();
    let mut blanked = text.to_owned();
    let mut description = None;
    let mut depth: usize = 0;
    for (position, token) in significant.iter().enumerate() {
        match token.kind() {
            TokenKind::LCurly | TokenKind::LParen | TokenKind::LBracket => depth += 1,
            TokenKind::RCurly | TokenKind::RParen | TokenKind::RBracket => {
                depth = depth.saturating_sub(1)
            }
            // Outside any brackets a string can only be a description.
            TokenKind::StringValue if depth == 0 => {
                let keyword = significant
                    .get(position + 1)
                    .filter(|next| next.kind() == TokenKind::Name)
                    .map(|next| next.data());
                let Some(keyword) = keyword else { continue };
                if !matches!(keyword, "query" | "mutation" | "subscription" | "fragment") {
                    continue;
                }
                blank(&mut blanked, token.index(), token.data());
                if keyword != "fragment" && description.is_none() {
                    description = decode(token.data());
                }
            }
            _ => {}
        }
    }
    Prepared {
        text: blanked,
        description: description.or_else(|| leading_comments(text)),
    }
}

/// Replaces a token with spaces of the same byte length, keeping its line breaks.
fn blank(text: &mut String, start: usize, token: &str) {
    let end = start + token.len();
    let spaces: String = token
        .bytes()
        .map(|b| {
            if b == b'\n' || b == b'\r' {
                b as char
            } else {
                ' '
            }
        })
        .collect();
    if text.is_char_boundary(start) && text.is_char_boundary(end) && end <= text.len() {
        text.replace_range(start..end, &spaces);
    }
}

/// The string's value, with escapes and block-string indentation handled by
/// apollo-compiler's own SDL description reading rather than a second copy of those
/// rules here.
fn decode(literal: &str) -> Option<String> {
    let sdl = format!("{literal}\nscalar Description\n");
    let document = Document::parse(sdl, "description.graphql").ok()?;
    document
        .definitions
        .iter()
        .find_map(|definition| match definition {
            Definition::ScalarTypeDefinition(scalar) => {
                scalar.description.as_deref().map(str::to_owned)
            }
            _ => None,
        })
        .filter(|text| !text.trim().is_empty())
}

/// The `#` lines at the top of the file (blank lines before them skipped), without
/// the `#` and one following space, joined by newlines.
fn leading_comments(text: &str) -> Option<String> {
    let lines: Vec<&str> = text
        .lines()
        .skip_while(|line| line.trim().is_empty())
        .map_while(|line| line.trim_start().strip_prefix('#'))
        .map(|line| line.strip_prefix(' ').unwrap_or(line).trim_end())
        .collect();
    let joined = lines.join("\n");
    let trimmed = joined.trim_matches('\n');
    (!trimmed.trim().is_empty()).then(|| trimmed.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leading_comment_lines_are_the_description() {
        let prepared =
            prepare("\n# Lists facts.\n#\n#   Indented line\nquery Facts { facts }\n# not this");
        assert_eq!(
            prepared.description.as_deref(),
            Some("Lists facts.\n\n  Indented line")
        );
        assert_eq!(
            prepared.text,
            "\n# Lists facts.\n#\n#   Indented line\nquery Facts { facts }\n# not this"
        );
        assert_eq!(prepare("query Facts { facts }").description, None);
        assert_eq!(prepare("#\n#\nquery Facts { facts }").description, None);
    }

    #[test]
    fn a_description_string_wins_and_is_blanked() {
        let text =
            "# comment\n\"\"\"\n  Lists facts.\n    Indented.\n\"\"\"\nquery Facts { facts }";
        let prepared = prepare(text);
        assert_eq!(
            prepared.description.as_deref(),
            Some("Lists facts.\n  Indented.")
        );
        assert_eq!(prepared.text.lines().count(), text.lines().count());
        assert!(
            prepared.text.starts_with("# comment\n"),
            "{}",
            prepared.text
        );
        assert!(
            prepared.text.ends_with("\nquery Facts { facts }"),
            "{}",
            prepared.text
        );
        assert!(!prepared.text.contains('"') && !prepared.text.contains("Lists"));
        let prepared = prepare("\"One line \\\"quoted\\\"\" query Facts { facts }");
        assert_eq!(prepared.description.as_deref(), Some("One line \"quoted\""));
    }

    #[test]
    fn fragment_descriptions_are_blanked_but_not_used() {
        let text = "\"A fragment\" fragment F on Fact { id }\nquery Facts { facts { ...F } }";
        let prepared = prepare(text);
        assert_eq!(prepared.description, None);
        let expected = format!(
            "{} fragment F on Fact {{ id }}\nquery Facts {{ facts {{ ...F }} }}",
            " ".repeat(12)
        );
        assert_eq!(prepared.text, expected);
    }

    #[test]
    fn strings_inside_the_operation_are_left_alone() {
        let text =
            "query Facts($q: String = \"query\") { search(q: \"mutation\") @x(a: [\"fragment\"]) }";
        let prepared = prepare(text);
        assert_eq!(prepared.text, text);
        assert_eq!(prepared.description, None);
    }

    #[test]
    fn text_that_does_not_lex_is_passed_on_unchanged() {
        let text = "# Broken\n\"unterminated query Facts { facts }";
        let prepared = prepare(text);
        assert_eq!(prepared.text, text);
        assert_eq!(prepared.description.as_deref(), Some("Broken"));
    }
}
