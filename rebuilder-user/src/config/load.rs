//! Loading: from a TOML file's text to validated [`Settings`]. Every failure becomes a
//! [`ConfigError`] naming the file and, where there is one, the key (via serde_path_to_error),
//! because the operator has to find the line to fix. Flags are laid over the result by the CLI.

use std::path::Path;

use super::{ConfigError, Settings};

impl Settings {
    /// Reads a TOML file; errors name the file and the key.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml(&text, path)
    }

    pub fn from_toml(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let de = toml::Deserializer::parse(text).map_err(|e| ConfigError::Syntax {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let settings: Settings = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            // toml's message repeats the source excerpt; keep the first line, the cause.
            let inner = e.into_inner().to_string();
            let message = inner
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("")
                .trim()
                .to_string();
            ConfigError::Invalid {
                path: path.to_path_buf(),
                key,
                message,
            }
        })?;
        settings.validate()?;
        Ok(settings)
    }
}
