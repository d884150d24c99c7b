//! Chat template rendering with MiniJinja, configured like transformers' Jinja2 sandbox
//! (`trim_blocks`, `lstrip_blocks`, loop controls, Python string methods, Python-style `tojson`,
//! `raise_exception`).

use std::path::Path;

use minijinja::value::{Kwargs, Value};
use minijinja::{Environment, Error, ErrorKind};
use serde_json::Value as Json;

use super::PromptError;

/// The built-in Qwen3-VL Instruct chat template, used when a checkpoint ships none.
pub const BUILTIN_CHAT_TEMPLATE: &str = include_str!("chat_template.jinja");

/// A compiled chat template.
pub struct ChatTemplate {
    env: Environment<'static>,
    source: String,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("len", &self.source.len())
            .finish()
    }
}

/// Options for one rendering.
#[derive(Debug, Clone, Default)]
pub struct RenderOptions {
    /// OpenAI-style tool definitions (`{"type": "function", "function": {...}}`).
    pub tools: Option<Vec<Json>>,
    /// Append the assistant header (`<|im_start|>assistant\n`).
    pub add_generation_prompt: bool,
    /// Extra template variables (e.g. `add_vision_id`, `enable_thinking`).
    pub extra: serde_json::Map<String, Json>,
}

/// Writes `v` like Python's `json.dumps(v, ensure_ascii=False)` (separators `", "`, `": "`),
/// keeping the key order of maps.
fn py_json(v: &Json, indent: Option<usize>, level: usize, out: &mut String) {
    let newline = |out: &mut String, level: usize| {
        if let Some(n) = indent {
            out.push('\n');
            out.push_str(&" ".repeat(n * level));
        }
    };
    let item_sep = if indent.is_some() { "," } else { ", " };
    match v {
        Json::Array(a) if !a.is_empty() => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                newline(out, level + 1);
                py_json(x, indent, level + 1, out);
            }
            newline(out, level);
            out.push(']');
        }
        Json::Object(m) if !m.is_empty() => {
            out.push('{');
            for (i, (k, x)) in m.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                newline(out, level + 1);
                out.push_str(&serde_json::to_string(k).unwrap_or_default());
                out.push_str(": ");
                py_json(x, indent, level + 1, out);
            }
            newline(out, level);
            out.push('}');
        }
        Json::Number(n) if n.is_f64() => {
            let f = n.as_f64().unwrap_or(0.0);
            // Python prints integral floats with a trailing `.0`, as serde_json does.
            out.push_str(&serde_json::to_string(&f).unwrap_or_default());
        }
        other => out.push_str(&serde_json::to_string(other).unwrap_or_default()),
    }
}

fn tojson(value: &Value, kwargs: Kwargs) -> Result<Value, Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    // Accepted for compatibility; Python-style output ignores them.
    let _: Option<bool> = kwargs.get("ensure_ascii")?;
    let _: Option<bool> = kwargs.get("sort_keys")?;
    kwargs.assert_all_used()?;
    let json = serde_json::to_value(value)
        .map_err(|e| Error::new(ErrorKind::InvalidOperation, format!("tojson: {e}")))?;
    let mut out = String::new();
    py_json(&json, indent, 0, &mut out);
    Ok(Value::from_safe_string(out))
}

fn raise_exception(msg: String) -> Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, msg))
}

impl ChatTemplate {
    /// Compiles a template source.
    pub fn new(source: impl Into<String>) -> Result<Self, PromptError> {
        let source = source.into();
        let mut env = Environment::new();
        env.set_syntax(
            minijinja::syntax::SyntaxConfig::builder()
                .trim_blocks(true)
                .lstrip_blocks(true)
                .build()
                .map_err(|e| PromptError::Template(e.to_string()))?,
        );
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_filter("tojson", tojson);
        env.add_function("raise_exception", raise_exception);
        env.add_template_owned("chat", source.clone())
            .map_err(|e| PromptError::Template(format!("chat template does not compile: {e}")))?;
        Ok(Self { env, source })
    }

    /// The built-in Qwen3-VL Instruct template.
    pub fn builtin() -> Self {
        Self::new(BUILTIN_CHAT_TEMPLATE).expect("built-in template compiles")
    }

    /// Loads the checkpoint's template: `chat_template.jinja`, else `chat_template.json`, else
    /// the `chat_template` of `tokenizer_config.json`, else the built-in one.
    pub fn from_model_dir(dir: &Path) -> Result<Self, PromptError> {
        let read = |name: &str| -> Result<Option<String>, PromptError> {
            match std::fs::read_to_string(dir.join(name)) {
                Ok(s) => Ok(Some(s)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(PromptError::Io(format!(
                    "{}: {e}",
                    dir.join(name).display()
                ))),
            }
        };
        if let Some(src) = read("chat_template.jinja")? {
            return Self::new(src);
        }
        for name in ["chat_template.json", "tokenizer_config.json"] {
            if let Some(text) = read(name)? {
                let json: Json = serde_json::from_str(&text)
                    .map_err(|e| PromptError::Template(format!("{name}: {e}")))?;
                match json.get("chat_template") {
                    Some(Json::String(s)) => return Self::new(s.clone()),
                    // A list of named templates: use "default" like transformers.
                    Some(Json::Array(list)) => {
                        let default = list
                            .iter()
                            .find(|t| t.get("name") == Some(&Json::from("default")));
                        if let Some(Json::String(s)) = default.and_then(|t| t.get("template")) {
                            return Self::new(s.clone());
                        }
                    }
                    _ => {}
                }
            }
        }
        Ok(Self::builtin())
    }

    /// The template source.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Renders `messages` (already in template shape, see
    /// [`super::messages::template_messages`]).
    pub fn render(&self, messages: &[Json], opts: &RenderOptions) -> Result<String, PromptError> {
        let mut ctx = opts.extra.clone();
        ctx.insert("messages".into(), Json::Array(messages.to_vec()));
        ctx.insert(
            "tools".into(),
            opts.tools.clone().map(Json::Array).unwrap_or(Json::Null),
        );
        ctx.insert(
            "add_generation_prompt".into(),
            Json::Bool(opts.add_generation_prompt),
        );
        // transformers passes the tokenizer's special tokens too.
        for (k, v) in [("eos_token", "<|im_end|>"), ("pad_token", "<|endoftext|>")] {
            ctx.entry(k.to_string()).or_insert_with(|| Json::from(v));
        }
        let tmpl = self
            .env
            .get_template("chat")
            .map_err(|e| PromptError::Template(e.to_string()))?;
        tmpl.render(Value::from(minijinja::value::Serde(Json::Object(ctx))))
            .map_err(|e| PromptError::Template(render_error(&e)))
    }
}

fn render_error(e: &Error) -> String {
    // `raise_exception` messages are user-facing; show them without the engine's decoration.
    match e.detail() {
        Some(d) if e.kind() == ErrorKind::InvalidOperation => d.to_string(),
        _ => e.to_string(),
    }
}
