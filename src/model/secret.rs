//! Secrets such as API keys: the one type that holds them, and the guarantee that they never print.
//!
//! A key is read from the environment into a [`Secret`] and leaves it only through
//! [`Secret::expose`], at the moment a request header is built. Its `Debug` and `Display` print `***`,
//! so a key cannot reach a log line, an error, a label or a `{:?}` of a config by accident.

use std::fmt;

/// A secret string (an API key or token). Prints as `***`; read it with [`Secret::expose`].
///
/// There is deliberately no `Serialize` and no `Deref<Target = str>`: either would let the key slip
/// into a log entry or a format string without anyone writing `expose`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

/// What a secret prints as, wherever it is printed.
const REDACTED: &str = "***";

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself, for building a request header and nothing else.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `text` with every occurrence of the secret replaced by `***`.
    ///
    /// Error bodies from some servers quote the key they were sent (OpenAI's 401 names part of it), so
    /// every message that came from the outside passes through this before it is shown or logged.
    pub fn redact(&self, text: &str) -> String {
        // An empty secret would match between every two characters; it also has nothing to hide.
        if self.0.is_empty() {
            text.to_owned()
        } else {
            text.replace(&self.0, REDACTED)
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_never_prints_itself() {
        let secret = Secret::new("sk-ant-very-secret");
        assert_eq!(format!("{secret}"), "***");
        assert_eq!(format!("{secret:?}"), "***");
        assert_eq!(format!("{:?}", Some(secret.clone())), "Some(***)");
        assert_eq!(secret.expose(), "sk-ant-very-secret");
    }

    #[test]
    fn redact_removes_every_occurrence_and_an_empty_secret_changes_nothing() {
        let secret = Secret::new("sk-123");
        assert_eq!(
            secret.redact("bad key sk-123 (was sk-123)"),
            "bad key *** (was ***)"
        );
        assert_eq!(Secret::new("").redact("abc"), "abc");
    }
}
