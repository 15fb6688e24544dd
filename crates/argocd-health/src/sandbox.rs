//! A Lua VM equal to Argo CD's default health-check sandbox: Lua 5.1 with the base, table and
//! package libraries and an `os` table holding only `time` and `date`. No `string`, `math`,
//! `io` or `debug`: a script that uses them fails here as it would in Argo CD.

use mlua::{Lua, LuaOptions, StdLib, Value as LuaValue};
use serde_json::Value;

/// The health statuses Argo CD knows.
pub const STATUSES: [&str; 6] = [
    "Healthy",
    "Progressing",
    "Degraded",
    "Suspended",
    "Missing",
    "Unknown",
];

/// What a health check returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub status: String,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    #[error("the Lua sandbox could not be created: {0}")]
    Sandbox(String),
    #[error("the health script failed: {0}")]
    Script(String),
    #[error("the health script returned {0}, not a table with a status")]
    NotATable(String),
    #[error("the health script returned status {0:?}, which Argo CD does not know")]
    UnknownStatus(String),
}

/// Argo CD's default sandbox.
pub struct Sandbox {
    lua: Lua,
}

fn sandbox_err(e: mlua::Error) -> HealthError {
    HealthError::Sandbox(e.to_string())
}

impl Sandbox {
    pub fn new() -> Result<Self, HealthError> {
        // mlua always opens the base library; we add table, package and os, then cut os down.
        let lua = Lua::new_with(
            StdLib::TABLE | StdLib::PACKAGE | StdLib::OS,
            LuaOptions::default(),
        )
        .map_err(sandbox_err)?;
        lua.load(
            r#"
            local time, date = os.time, os.date
            os = { time = time, date = date }
            package.loaded.os = os
            "#,
        )
        .exec()
        .map_err(sandbox_err)?;
        Ok(Self { lua })
    }

    /// Runs a script with the global `obj` set to `object`, as Argo CD does.
    pub fn evaluate(&self, script: &str, object: &Value) -> Result<Health, HealthError> {
        let obj = to_lua(&self.lua, object).map_err(|e| HealthError::Script(e.to_string()))?;
        self.lua.globals().set("obj", obj).map_err(sandbox_err)?;
        let returned: LuaValue = self
            .lua
            .load(script)
            .set_name("health.lua")
            .eval()
            .map_err(|e| HealthError::Script(e.to_string()))?;
        let LuaValue::Table(table) = returned else {
            return Err(HealthError::NotATable(returned.type_name().to_string()));
        };
        let status: Option<String> = table
            .get("status")
            .map_err(|e| HealthError::Script(e.to_string()))?;
        let message: Option<String> = table
            .get("message")
            .map_err(|e| HealthError::Script(e.to_string()))?;
        let status = status.unwrap_or_default();
        if !STATUSES.contains(&status.as_str()) {
            return Err(HealthError::UnknownStatus(status));
        }
        Ok(Health {
            status,
            message: message.unwrap_or_default(),
        })
    }

    /// Runs a Lua chunk and returns its value as text (for tests of the sandbox itself).
    pub fn eval_to_string(&self, chunk: &str) -> Result<String, HealthError> {
        let v: LuaValue = self
            .lua
            .load(chunk)
            .eval()
            .map_err(|e| HealthError::Script(e.to_string()))?;
        Ok(match v {
            LuaValue::Nil => "nil".into(),
            LuaValue::Boolean(b) => b.to_string(),
            LuaValue::String(s) => s.to_string_lossy(),
            other => other.type_name().to_string(),
        })
    }
}

/// JSON to Lua as Argo CD converts objects: null becomes nil (absent), arrays become
/// 1-based tables, numbers become Lua numbers.
fn to_lua(lua: &Lua, value: &Value) -> mlua::Result<LuaValue> {
    Ok(match value {
        Value::Null => LuaValue::Nil,
        Value::Bool(b) => LuaValue::Boolean(*b),
        Value::Number(n) => LuaValue::Number(n.as_f64().unwrap_or(0.0)),
        Value::String(s) => LuaValue::String(lua.create_string(s)?),
        Value::Array(items) => {
            let t = lua.create_table()?;
            for (i, item) in items.iter().enumerate() {
                t.set(i + 1, to_lua(lua, item)?)?;
            }
            LuaValue::Table(t)
        }
        Value::Object(map) => {
            let t = lua.create_table()?;
            for (k, v) in map {
                t.set(k.as_str(), to_lua(lua, v)?)?;
            }
            LuaValue::Table(t)
        }
    })
}
