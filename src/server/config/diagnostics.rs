//! How a mistake in the configuration is reported: the file, the line and
//! column, what is wrong, and the line itself with a caret under the mistake.
//!
//! Why a module of its own: operators edit one TOML file, often over SSH,
//! and `--check-config` is their tool to find what is wrong before a reload.
//! Turning a byte span into that excerpt (on character boundaries, with a
//! gutter as wide as the line number) is its own small renderer, apart from
//! what the settings mean.

use std::fmt;
use std::ops::Range;

/// A configuration that cannot be used, with the position of the mistake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConfigError {
    /// The file, or "built-in default".
    pub(crate) origin: String,
    /// 1-based line and column, when the mistake has a position.
    pub(crate) position: Option<(usize, usize)>,
    pub(crate) message: String,
    /// The offending line with a caret under the mistake.
    excerpt: Option<String>,
    /// True when the file could not be read at all (as opposed to being wrong).
    pub(crate) unreadable: bool,
}

impl ConfigError {
    pub(super) fn at(
        origin: String,
        text: &str,
        span: Option<Range<usize>>,
        message: &str,
    ) -> ConfigError {
        let message = message.trim().to_string();
        let Some(span) = span.filter(|s| s.end > 0 || s.start > 0 || !text.is_empty()) else {
            return ConfigError {
                origin,
                position: None,
                message,
                excerpt: None,
                unreadable: false,
            };
        };
        // Spans are byte offsets; keep them on character boundaries.
        let mut start = span.start.min(text.len());
        while !text.is_char_boundary(start) {
            start -= 1;
        }
        let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
        let line_no = text[..start].matches('\n').count() + 1;
        let column = text[line_start..start].chars().count() + 1;
        let line = &text[line_start..line_end];
        let mut end = span.end.clamp(start, line_end);
        while !text.is_char_boundary(end) {
            end += 1;
        }
        let width = text[start..end].chars().count().max(1);
        let gutter = " ".repeat(line_no.to_string().len());
        let excerpt = format!(
            "{gutter} |\n{line_no} | {line}\n{gutter} | {}{}",
            " ".repeat(column - 1),
            "^".repeat(width)
        );
        ConfigError {
            origin,
            position: Some((line_no, column)),
            message,
            excerpt: Some(excerpt),
            unreadable: false,
        }
    }

    /// Points at the first byte that is not UTF-8, as TOML requires.
    pub(super) fn not_utf8(origin: String, error: &std::string::FromUtf8Error) -> ConfigError {
        // Everything before the bad byte is unchanged in the lossy copy.
        let valid = error.utf8_error().valid_up_to();
        let text = String::from_utf8_lossy(error.as_bytes());
        ConfigError::at(
            origin,
            &text,
            Some(valid..valid + 1),
            "the file is not valid UTF-8 here (save it as UTF-8)",
        )
    }

    pub(super) fn unreadable(origin: String, error: std::io::Error) -> ConfigError {
        let hint = match error.kind() {
            std::io::ErrorKind::NotFound => {
                " (check the path, or run without --config and $ECHO_SERVER_CONFIG to use the built-in default)"
            }
            std::io::ErrorKind::PermissionDenied => " (the daemon's user must be able to read it)",
            _ => "",
        };
        ConfigError {
            origin,
            position: None,
            message: format!("cannot read the config file: {error}{hint}"),
            excerpt: None,
            unreadable: true,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some((line, column)) => write!(
                f,
                "{}, line {line}, column {column}: {}",
                self.origin, self.message
            )?,
            None => write!(f, "{}: {}", self.origin, self.message)?,
        }
        if let Some(excerpt) = &self.excerpt {
            write!(f, "\n{excerpt}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}
