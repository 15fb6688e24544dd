//! The parts of a Jupyter notebook (nbformat 4) that validation reads. Unknown fields are
//! ignored; `source` and stream `text` may be a string or a list of strings, as nbformat allows.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// Papermill's marker cells (the error banners it inserts) carry this tag.
pub const PAPERMILL_ERROR_TAG: &str = "papermill-error-cell-tag";
/// The cell papermill inserts with the parameters it was given carries this tag.
pub const PAPERMILL_PARAMETERS_TAG: &str = "injected-parameters";

fn multiline<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::String(s) => s,
        Value::Array(parts) => parts.iter().filter_map(Value::as_str).collect(),
        _ => String::new(),
    })
}

#[derive(Debug, Clone, Deserialize)]
pub struct Notebook {
    #[serde(default)]
    pub cells: Vec<Cell>,
    #[serde(default)]
    pub nbformat: i64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Cell {
    pub cell_type: String,
    #[serde(default, deserialize_with = "multiline")]
    pub source: String,
    #[serde(default)]
    pub outputs: Vec<Output>,
    #[serde(default)]
    pub execution_count: Option<i64>,
    #[serde(default)]
    pub metadata: CellMetadata,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct CellMetadata {
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub papermill: Option<PapermillCell>,
}

/// Papermill's per-cell execution record.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PapermillCell {
    /// `completed`, `failed`, `pending` or `running`.
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub duration: Option<f64>,
    #[serde(default)]
    pub exception: Option<bool>,
    /// Set when papermill started the cell; papermill marks cells it never started `completed`
    /// when the kernel dies before them.
    #[serde(default)]
    pub start_time: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "output_type", rename_all = "snake_case")]
pub enum Output {
    Stream {
        #[serde(default)]
        name: String,
        #[serde(default, deserialize_with = "multiline")]
        text: String,
    },
    ExecuteResult {
        #[serde(default)]
        data: BTreeMap<String, Value>,
        #[serde(default)]
        execution_count: Option<i64>,
    },
    DisplayData {
        #[serde(default)]
        data: BTreeMap<String, Value>,
    },
    UpdateDisplayData {
        #[serde(default)]
        data: BTreeMap<String, Value>,
    },
    Error {
        #[serde(default)]
        ename: String,
        #[serde(default)]
        evalue: String,
        #[serde(default)]
        traceback: Vec<String>,
    },
}

impl Output {
    /// The nbformat output type name.
    pub fn type_name(&self) -> &'static str {
        match self {
            Output::Stream { .. } => "stream",
            Output::ExecuteResult { .. } => "execute_result",
            Output::DisplayData { .. } => "display_data",
            Output::UpdateDisplayData { .. } => "update_display_data",
            Output::Error { .. } => "error",
        }
    }

    /// The output as text: stream text, `text/plain` of results, `ename: evalue` of errors.
    pub fn text(&self) -> String {
        match self {
            Output::Stream { text, .. } => text.clone(),
            Output::ExecuteResult { data, .. }
            | Output::DisplayData { data }
            | Output::UpdateDisplayData { data } => match data.get("text/plain") {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Array(parts)) => parts.iter().filter_map(Value::as_str).collect(),
                _ => data
                    .keys()
                    .map(|k| format!("<{k}>"))
                    .collect::<Vec<_>>()
                    .join(" "),
            },
            Output::Error { ename, evalue, .. } => format!("{ename}: {evalue}"),
        }
    }
}

/// Why a file is not a notebook we can read.
#[derive(Debug, thiserror::Error)]
pub enum NotebookError {
    #[error("{path} is not a Jupyter notebook (invalid JSON: {source})")]
    Json {
        path: String,
        source: serde_json::Error,
    },
    #[error("{path} is nbformat {found}; only nbformat 4 is supported")]
    Version { path: String, found: i64 },
}

impl Notebook {
    pub fn parse(path: &str, text: &str) -> Result<Self, NotebookError> {
        let nb: Notebook = serde_json::from_str(text).map_err(|source| NotebookError::Json {
            path: path.into(),
            source,
        })?;
        if nb.nbformat != 4 {
            return Err(NotebookError::Version {
                path: path.into(),
                found: nb.nbformat,
            });
        }
        Ok(nb)
    }

    /// The notebook's own cells, without the cells papermill inserts (error banners, the
    /// injected parameters), so indices match the notebook in git.
    pub fn own_cells(&self) -> impl Iterator<Item = &Cell> {
        self.cells.iter().filter(|c| {
            !c.metadata
                .tags
                .iter()
                .any(|t| t == PAPERMILL_ERROR_TAG || t == PAPERMILL_PARAMETERS_TAG)
        })
    }
}

/// Removes ANSI colour codes (tracebacks are coloured).
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
