//! Loading and saving models as JSON (always) or TOML (feature `toml`).

use std::fmt;
use std::path::{Path, PathBuf};

use crate::model::Model;

/// A file format a model can be stored in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Format {
    /// JSON, through `serde_json`. Always available.
    Json,
    /// TOML, through the `toml` crate. Needs the `toml` feature; without it
    /// every operation in this format returns [`LoadError::FormatDisabled`]
    /// or [`SaveError::FormatDisabled`].
    Toml,
}

impl Format {
    /// The format named by a path's extension (`.json`, `.toml`, case
    /// insensitive), or `None`.
    pub fn from_path(path: &Path) -> Option<Format> {
        let ext = path.extension()?.to_str()?;
        if ext.eq_ignore_ascii_case("json") {
            Some(Format::Json)
        } else if ext.eq_ignore_ascii_case("toml") {
            Some(Format::Toml)
        } else {
            None
        }
    }

    /// Whether this build can read and write the format.
    pub fn is_enabled(self) -> bool {
        match self {
            Format::Json => true,
            Format::Toml => cfg!(feature = "toml"),
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Json => "JSON",
            Format::Toml => "TOML",
        })
    }
}

/// Why a model could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read model file {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The text is not a valid model: bad syntax, a wrong type, a missing or
    /// unknown field.
    #[error(
        "{}{line}:{column}: invalid {format} model: {message}",
        path.as_ref().map(|p| format!("{}:", p.display())).unwrap_or_default()
    )]
    Parse {
        /// The format that was parsed.
        format: Format,
        /// The file, when the text came from one.
        path: Option<PathBuf>,
        /// 1-based line of the error (1 when the parser gives no position).
        line: usize,
        /// 1-based column of the error (0 when the parser gives no column,
        /// e.g. at the end of the input).
        column: usize,
        /// What is wrong, without the position.
        message: String,
    },
    /// The path has no extension naming a known format.
    #[error("cannot tell the format of {}: use a .json or .toml extension", path.display())]
    UnknownFormat {
        /// The file.
        path: PathBuf,
    },
    /// The format is supported but this build does not include it.
    #[error("{format} models need the `{feature}` feature of aether-model")]
    FormatDisabled {
        /// The format asked for.
        format: Format,
        /// The cargo feature that enables it.
        feature: &'static str,
    },
}

/// Why a model could not be saved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SaveError {
    /// The file could not be written.
    #[error("cannot write model file {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The serializer refused the model.
    #[error("cannot write model as {format}: {message}")]
    Serialize {
        /// The format asked for.
        format: Format,
        /// The serializer's message.
        message: String,
    },
    /// The path has no extension naming a known format.
    #[error("cannot tell the format of {}: use a .json or .toml extension", path.display())]
    UnknownFormat {
        /// The file.
        path: PathBuf,
    },
    /// The format is supported but this build does not include it.
    #[error("{format} models need the `{feature}` feature of aether-model")]
    FormatDisabled {
        /// The format asked for.
        format: Format,
        /// The cargo feature that enables it.
        feature: &'static str,
    },
}

impl Model {
    /// Parses a model from text in `format`.
    ///
    /// # Errors
    /// [`LoadError::Parse`] with the line and column of the first problem
    /// (syntax, wrong type, missing or unknown field);
    /// [`LoadError::FormatDisabled`] for a format this build lacks. Never
    /// panics, whatever the input.
    pub fn from_str_as(text: &str, format: Format) -> Result<Model, LoadError> {
        match format {
            Format::Json => Model::from_json_str(text),
            Format::Toml => Model::from_toml_str(text),
        }
    }

    /// Parses a model from JSON text.
    ///
    /// # Errors
    /// [`LoadError::Parse`] with line and column, see [`Model::from_str_as`].
    pub fn from_json_str(text: &str) -> Result<Model, LoadError> {
        serde_json::from_str(text).map_err(|e| json_error(&e))
    }

    /// Parses a model from TOML text (feature `toml`).
    ///
    /// # Errors
    /// [`LoadError::Parse`] with line and column, or
    /// [`LoadError::FormatDisabled`] without the `toml` feature.
    pub fn from_toml_str(text: &str) -> Result<Model, LoadError> {
        #[cfg(feature = "toml")]
        {
            toml::from_str(text).map_err(|e| toml_error(&e, text))
        }
        #[cfg(not(feature = "toml"))]
        {
            let _ = text;
            Err(LoadError::FormatDisabled {
                format: Format::Toml,
                feature: "toml",
            })
        }
    }

    /// Reads a model from a file, choosing the format from its extension.
    ///
    /// # Errors
    /// [`LoadError::Io`] if the file cannot be read,
    /// [`LoadError::UnknownFormat`] for another extension, and the errors of
    /// [`Model::from_str_as`] (which then carry the path).
    pub fn load(path: impl AsRef<Path>) -> Result<Model, LoadError> {
        let path = path.as_ref();
        let format = Format::from_path(path).ok_or_else(|| LoadError::UnknownFormat {
            path: path.to_owned(),
        })?;
        if !format.is_enabled() {
            return Err(LoadError::FormatDisabled {
                format,
                feature: "toml",
            });
        }
        let text = std::fs::read_to_string(path).map_err(|source| LoadError::Io {
            path: path.to_owned(),
            source,
        })?;
        Model::from_str_as(&text, format).map_err(|mut e| {
            if let LoadError::Parse { path: at, .. } = &mut e {
                *at = Some(path.to_owned());
            }
            e
        })
    }

    /// Writes the model as text in `format`.
    ///
    /// JSON is pretty-printed with two-space indents; both formats leave out
    /// empty lists and absent descriptions, and write a one-element reference
    /// list as a plain string. Loading the text gives back an equal model.
    ///
    /// # Errors
    /// [`SaveError::FormatDisabled`] for a format this build lacks;
    /// [`SaveError::Serialize`] if the serializer refuses the model (not
    /// expected for these types).
    pub fn to_string_as(&self, format: Format) -> Result<String, SaveError> {
        match format {
            Format::Json => self.to_json_string(),
            Format::Toml => self.to_toml_string(),
        }
    }

    /// Writes the model as pretty JSON, ending with a newline.
    ///
    /// # Errors
    /// See [`Model::to_string_as`].
    pub fn to_json_string(&self) -> Result<String, SaveError> {
        let mut text = serde_json::to_string_pretty(self).map_err(|e| SaveError::Serialize {
            format: Format::Json,
            message: e.to_string(),
        })?;
        text.push('\n');
        Ok(text)
    }

    /// Writes the model as TOML (feature `toml`).
    ///
    /// # Errors
    /// See [`Model::to_string_as`].
    pub fn to_toml_string(&self) -> Result<String, SaveError> {
        #[cfg(feature = "toml")]
        {
            toml::to_string_pretty(self).map_err(|e| SaveError::Serialize {
                format: Format::Toml,
                message: e.to_string(),
            })
        }
        #[cfg(not(feature = "toml"))]
        {
            Err(SaveError::FormatDisabled {
                format: Format::Toml,
                feature: "toml",
            })
        }
    }

    /// Writes the model to a file, choosing the format from its extension.
    ///
    /// The file is replaced whole; it is not written atomically.
    ///
    /// # Errors
    /// [`SaveError::UnknownFormat`] for another extension,
    /// [`SaveError::Io`] if the file cannot be written, and the errors of
    /// [`Model::to_string_as`].
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), SaveError> {
        let path = path.as_ref();
        let format = Format::from_path(path).ok_or_else(|| SaveError::UnknownFormat {
            path: path.to_owned(),
        })?;
        let text = self.to_string_as(format)?;
        std::fs::write(path, text).map_err(|source| SaveError::Io {
            path: path.to_owned(),
            source,
        })
    }
}

fn json_error(e: &serde_json::Error) -> LoadError {
    let (line, column) = (e.line(), e.column());
    let full = e.to_string();
    let suffix = format!(" at line {line} column {column}");
    let message = full.strip_suffix(&suffix).unwrap_or(&full).to_owned();
    LoadError::Parse {
        format: Format::Json,
        path: None,
        line: line.max(1),
        column,
        message,
    }
}

#[cfg(feature = "toml")]
fn toml_error(e: &toml::de::Error, text: &str) -> LoadError {
    let (line, column) = match e.span() {
        Some(span) => line_column(text, span.start),
        None => (1, 0),
    };
    LoadError::Parse {
        format: Format::Toml,
        path: None,
        line,
        column,
        message: e.message().trim_end().to_owned(),
    }
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
#[cfg(feature = "toml")]
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}
