//! Chat templates: turn a conversation into the prompt text a model was trained on.
//!
//! Models ship a Jinja template (Hugging Face `chat_template`, GGUF
//! `tokenizer.chat_template`). It is rendered with minijinja set up like
//! transformers' environment: `trim_blocks` and `lstrip_blocks` on, Python
//! string methods, `raise_exception`, `strftime_now` and a `tojson` that
//! formats like Python's `json.dumps`.
#![cfg(feature = "chat-template")]

mod sandbox;

use std::fmt::Write as _;

use crate::tools::ToolFormat;
use minijinja::machinery::WhitespaceConfig;
use minijinja::value::{Kwargs, ValueKind};
use minijinja::{context, Environment, Error, ErrorKind, Value};
use serde::{Deserialize, Serialize};

/// One turn of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user`, `assistant`, `tool` or whatever else the template knows.
    pub role: String,
    pub content: String,
    /// The tools an assistant turn called, in OpenAI's shape (as templates read them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// The call whose result a `tool` turn carries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

impl ChatMessage {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        ChatMessage {
            role: role.into(),
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
        }
    }
}

/// A call of a tool: `{"id", "type": "function", "function": {"name", "arguments"}}`, the
/// arguments as a JSON value (templates write them with `tojson`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCall {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub function: FunctionCall,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionCall {
    pub name: String,
    pub arguments: serde_json::Value,
}

/// Why a chat template could not be compiled or rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChatTemplateError {
    /// The template source does not parse.
    #[error("chat template syntax error{}: {message}", at_line(.line))]
    Syntax {
        message: String,
        line: Option<usize>,
    },
    /// The template called `raise_exception(message)`, typically to reject a
    /// conversation it does not support (e.g. roles not alternating).
    #[error("chat template rejected the conversation: {0}")]
    Raised(String),
    /// Any other failure while rendering.
    #[error("chat template render error{}: {message}", at_line(.line))]
    Render {
        message: String,
        line: Option<usize>,
    },
}

fn at_line(line: &Option<usize>) -> String {
    line.map(|l| format!(" at line {l}")).unwrap_or_default()
}

const TEMPLATE_NAME: &str = "chat_template";
/// Most template instructions one render may run, a fraction of a second's work. Real
/// templates need a thousandth of it: Qwen2's, with two tools and a hundred messages,
/// runs under 10,000.
const TEMPLATE_FUEL: u64 = 10_000_000;
/// Most bytes a rendered conversation may take: more than any context holds (a token is a
/// few bytes), and far less than what a runaway template could write on its fuel.
const MAX_RENDERED_BYTES: usize = 64 << 20;

/// A compiled chat template.
#[derive(Debug, Clone)]
pub struct ChatTemplate {
    kind: Kind,
    tool_format: ToolFormat,
}

#[derive(Debug, Clone)]
enum Kind {
    Jinja {
        // Boxed: an Environment is large and ChatMl carries nothing.
        env: Box<Environment<'static>>,
        bos_token: String,
        eos_token: String,
    },
    /// Built-in ChatML, rendered without Jinja.
    ChatMl,
}

impl ChatTemplate {
    /// Compiles `source`. `bos_token` and `eos_token` are the tokenizer's special
    /// token texts, which templates insert themselves.
    pub fn new(source: &str, bos_token: &str, eos_token: &str) -> Result<Self, ChatTemplateError> {
        Self::compile(source, bos_token, eos_token, true)
    }

    /// `new`, or with `sandboxed` false the template as minijinja alone runs it (which
    /// the tests compare with).
    fn compile(
        source: &str,
        bos_token: &str,
        eos_token: &str,
        sandboxed: bool,
    ) -> Result<Self, ChatTemplateError> {
        let mut env = Environment::new();
        // transformers renders with these two on; templates rely on them for
        // their whitespace.
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        // A template is a program from whoever made the model file: one that loops for
        // ever (or for 10^10 steps) ends with an error instead of taking the process, and
        // so does one that builds runaway values in few steps (see `sandbox`).
        env.set_fuel(Some(TEMPLATE_FUEL));
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_filter("tojson", tojson);
        let compiled = if sandboxed {
            sandbox::install(&mut env);
            let whitespace = WhitespaceConfig {
                keep_trailing_newline: false,
                lstrip_blocks: true,
                trim_blocks: true,
            };
            sandbox::instrument(source, whitespace).map_err(syntax_error)?
        } else {
            env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
            source.to_owned()
        };
        env.add_template_owned(TEMPLATE_NAME, compiled)
            .map_err(syntax_error)?;
        Ok(ChatTemplate {
            kind: Kind::Jinja {
                env: Box::new(env),
                bos_token: bos_token.to_owned(),
                eos_token: eos_token.to_owned(),
            },
            tool_format: ToolFormat::of_template(source),
        })
    }

    /// A model's template: its own `source`, or ChatML when it has none.
    pub fn for_model(
        source: Option<&str>,
        bos_token: &str,
        eos_token: &str,
    ) -> Result<Self, ChatTemplateError> {
        match source {
            Some(source) => ChatTemplate::new(source, bos_token, eos_token),
            None => Ok(ChatTemplate::chatml()),
        }
    }

    /// Fixes the time `strftime_now` renders (seconds since the Unix epoch, UTC), or with
    /// `None` goes back to the clock. The clock is the system's, except on
    /// wasm32-unknown-unknown, which has none: there it reads as the epoch
    /// (1 January 1970) unless the time is set here. ChatML renders no date.
    pub fn set_time(&mut self, unix_secs: Option<u64>) {
        if let Kind::Jinja { env, .. } = &mut self.kind {
            match unix_secs {
                Some(secs) => env.add_function("strftime_now", move |format: String| {
                    format_utc(&format, secs)
                }),
                None => env.add_function("strftime_now", strftime_now),
            }
        }
    }

    /// The ChatML format (`<|im_start|>role\ncontent<|im_end|>\n`), for models
    /// without a template of their own.
    pub fn chatml() -> Self {
        ChatTemplate {
            kind: Kind::ChatMl,
            tool_format: ToolFormat::Generic,
        }
    }

    /// How a model with this template is offered tools and answers with calls.
    pub fn tool_format(&self) -> ToolFormat {
        self.tool_format
    }

    /// Renders the conversation. With `add_generation_prompt` the text ends with
    /// the header that opens the assistant's reply.
    pub fn render(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String, ChatTemplateError> {
        self.render_with_tools(messages, None, add_generation_prompt)
    }

    /// Renders the conversation with `tools` (a list of OpenAI tool definitions, passed
    /// to the template as transformers passes them; `None` renders as `none`).
    pub fn render_with_tools(
        &self,
        messages: &[ChatMessage],
        tools: Option<&serde_json::Value>,
        add_generation_prompt: bool,
    ) -> Result<String, ChatTemplateError> {
        match &self.kind {
            Kind::ChatMl => Ok(render_chatml(messages, add_generation_prompt)),
            Kind::Jinja {
                env,
                bos_token,
                eos_token,
            } => {
                let template = env.get_template(TEMPLATE_NAME).map_err(render_error)?;
                let mut out = BoundedOutput::default();
                let rendered = template.render_captured_to(
                    context! {
                        messages => Value::from_serialize(messages),
                        add_generation_prompt => add_generation_prompt,
                        bos_token => bos_token,
                        eos_token => eos_token,
                        // transformers passes `tools=None` when there are none.
                        tools => tools.map_or(Value::from(()), Value::from_serialize),
                    },
                    &mut out,
                );
                if out.overflowed {
                    return Err(ChatTemplateError::Render {
                        message: format!(
                            "the template wrote more than {} MiB",
                            MAX_RENDERED_BYTES >> 20
                        ),
                        line: None,
                    });
                }
                rendered.map_err(render_error)?;
                String::from_utf8(out.bytes).map_err(|_| ChatTemplateError::Render {
                    message: "the template wrote invalid UTF-8".into(),
                    line: None,
                })
            }
        }
    }
}

/// A rendering's output, refused past [`MAX_RENDERED_BYTES`].
#[derive(Default)]
struct BoundedOutput {
    bytes: Vec<u8>,
    overflowed: bool,
}

impl std::io::Write for BoundedOutput {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.bytes.len() + buf.len() > MAX_RENDERED_BYTES {
            self.overflowed = true;
            return Err(std::io::ErrorKind::OutOfMemory.into());
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn render_chatml(messages: &[ChatMessage], add_generation_prompt: bool) -> String {
    let mut out = String::new();
    for m in messages {
        out.push_str("<|im_start|>");
        out.push_str(&m.role);
        out.push('\n');
        out.push_str(&m.content);
        out.push_str("<|im_end|>\n");
    }
    if add_generation_prompt {
        out.push_str("<|im_start|>assistant\n");
    }
    out
}

/// Marks an error as coming from the template's `raise_exception`, so that
/// `render` can tell it apart from ordinary render failures.
#[derive(Debug)]
struct RaisedException(String);

impl std::fmt::Display for RaisedException {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RaisedException {}

fn render_error(err: Error) -> ChatTemplateError {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&err);
    while let Some(e) = cause {
        if let Some(raised) = e.downcast_ref::<RaisedException>() {
            return ChatTemplateError::Raised(raised.0.clone());
        }
        cause = e.source();
    }
    let message = match err.detail() {
        Some(detail) => format!("{}: {detail}", err.kind()),
        None => err.kind().to_string(),
    };
    ChatTemplateError::Render {
        message,
        line: err.line(),
    }
}

fn syntax_error(e: Error) -> ChatTemplateError {
    ChatTemplateError::Syntax {
        message: e
            .detail()
            .map_or_else(|| e.kind().to_string(), str::to_owned),
        line: e.line(),
    }
}

fn raise_exception(message: String) -> Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, message.clone())
        .with_source(RaisedException(message)))
}

fn strftime_now(format: String) -> String {
    format_utc(&format, unix_now())
}

/// Seconds since the Unix epoch by the system clock; wasm32-unknown-unknown has no
/// clock (`SystemTime::now` panics there) and reads as the epoch.
fn unix_now() -> u64 {
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    {
        0
    }
    #[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
    {
        // A clock before 1970 is a broken clock; render the epoch rather than fail.
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const WEEKDAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

/// A UTC calendar time broken into fields.
struct Civil {
    year: u64,
    /// 0-based.
    month: usize,
    day: u64,
    /// 0-based day of the year.
    yday: u64,
    /// 0 = Sunday.
    wday: usize,
    hour: u64,
    minute: u64,
    second: u64,
}

fn is_leap(year: u64) -> bool {
    (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400)
}

fn civil_from_unix(secs: u64) -> Civil {
    let mut days = secs / 86_400;
    let rem = secs % 86_400;
    // 1970-01-01 was a Thursday.
    let wday = ((days + 4) % 7) as usize;
    let mut year = 1970;
    loop {
        let len = if is_leap(year) { 366 } else { 365 };
        if days < len {
            break;
        }
        days -= len;
        year += 1;
    }
    let yday = days;
    let feb = if is_leap(year) { 29 } else { 28 };
    let month_lengths = [31, feb, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    let mut month = 0;
    while month < 11 && days >= month_lengths[month] {
        days -= month_lengths[month];
        month += 1;
    }
    Civil {
        year,
        month,
        day: days + 1,
        yday,
        wday,
        hour: rem / 3600,
        minute: rem % 3600 / 60,
        second: rem % 60,
    }
}

/// Python/C `strftime` for the directives chat templates use, in UTC.
/// A `-` after `%` drops zero padding (glibc's `%-d`). Unknown directives are
/// copied through unchanged, as glibc does.
fn format_utc(format: &str, unix_secs: u64) -> String {
    let t = civil_from_unix(unix_secs);
    let mut out = String::with_capacity(format.len() + 16);
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut spec = chars.next();
        let no_pad = spec == Some('-');
        if no_pad {
            spec = chars.next();
        }
        let number = |value: u64, width: usize| {
            if no_pad {
                value.to_string()
            } else {
                format!("{value:0width$}")
            }
        };
        let text = match spec {
            Some('d') => number(t.day, 2),
            Some('m') => number(t.month as u64 + 1, 2),
            Some('Y') => t.year.to_string(),
            Some('y') => number(t.year % 100, 2),
            Some('H') => number(t.hour, 2),
            Some('M') => number(t.minute, 2),
            Some('S') => number(t.second, 2),
            Some('j') => number(t.yday + 1, 3),
            Some('B') => MONTHS[t.month].to_owned(),
            Some('b') => MONTHS[t.month][..3].to_owned(),
            Some('A') => WEEKDAYS[t.wday].to_owned(),
            Some('a') => WEEKDAYS[t.wday][..3].to_owned(),
            Some('%') => "%".to_owned(),
            other => {
                out.push('%');
                if no_pad {
                    out.push('-');
                }
                if let Some(o) = other {
                    out.push(o);
                }
                continue;
            }
        };
        out.push_str(&text);
    }
    out
}

/// Python `json.dumps` output style, which transformers' `tojson` uses: `", "`
/// and `": "` separators (`","` between items when indenting), non-ASCII kept
/// unless `ensure_ascii`, no HTML escaping (unlike minijinja's own `tojson`).
struct JsonStyle {
    indent: Option<String>,
    item_sep: String,
    key_sep: String,
    sort_keys: bool,
    ensure_ascii: bool,
    /// Longest text to write: the render's remaining budget.
    max_len: usize,
}

fn tojson(state: &minijinja::State, value: Value, kwargs: Kwargs) -> Result<Value, Error> {
    let max_len = sandbox::remaining(state);
    let indent = match kwargs.get::<Option<Value>>("indent")? {
        None => None,
        Some(v) if v.is_none() => None,
        Some(v) => Some(match v.as_str() {
            Some(s) => s.to_owned(),
            None => {
                let width = v.as_usize().ok_or_else(|| {
                    Error::new(
                        ErrorKind::InvalidOperation,
                        "tojson: indent must be an int or string",
                    )
                })?;
                if width > max_len {
                    return Err(sandbox::over_budget());
                }
                " ".repeat(width)
            }
        }),
    };
    let default_item_sep = if indent.is_some() { "," } else { ", " };
    let (item_sep, key_sep) = match kwargs.get::<Option<Vec<String>>>("separators")? {
        Some(seps) if seps.len() == 2 => (seps[0].clone(), seps[1].clone()),
        Some(_) => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                "tojson: separators must be a pair of strings",
            ))
        }
        None => (default_item_sep.to_owned(), ": ".to_owned()),
    };
    let style = JsonStyle {
        indent,
        item_sep,
        key_sep,
        sort_keys: kwargs.get::<Option<bool>>("sort_keys")?.unwrap_or(false),
        ensure_ascii: kwargs.get::<Option<bool>>("ensure_ascii")?.unwrap_or(false),
        max_len,
    };
    kwargs.assert_all_used()?;
    let mut out = String::new();
    write_json(&mut out, &value, &style, 0)?;
    Ok(Value::from(out))
}

/// `value` as Python's `json.dumps` writes it (`", "` and `": "`), the way templates and
/// models trained on them write JSON.
pub(crate) fn python_json(value: &serde_json::Value) -> String {
    let style = JsonStyle {
        indent: None,
        item_sep: ", ".to_owned(),
        key_sep: ": ".to_owned(),
        sort_keys: false,
        ensure_ascii: false,
        max_len: usize::MAX,
    };
    let mut out = String::new();
    // A JSON value always converts.
    let _ = write_json(&mut out, &Value::from_serialize(value), &style, 0);
    out
}

fn write_json(
    out: &mut String,
    value: &Value,
    style: &JsonStyle,
    depth: usize,
) -> Result<(), Error> {
    match value.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if value.is_true() { "true" } else { "false" }),
        ValueKind::Number => {
            // serde_json writes integers and floats like Python does (1, 1.5, 1.0).
            let text = serde_json::to_string(value).map_err(json_error)?;
            out.push_str(&text);
        }
        ValueKind::String => write_json_str(out, value.as_str().unwrap_or_default(), style),
        ValueKind::Map => {
            let mut keys: Vec<Value> = value.try_iter()?.collect();
            if style.sort_keys {
                keys.sort_by_key(|k| k.to_string());
            }
            let mut entries = Vec::with_capacity(keys.len());
            for key in keys {
                let item = value.get_item(&key)?;
                entries.push((key, item));
            }
            write_container(out, ('{', '}'), &entries, style, depth, |out, (k, v)| {
                // JSON object keys are strings; Python converts other keys with str().
                write_json_str(out, &k.to_string(), style);
                out.push_str(&style.key_sep);
                write_json(out, v, style, depth + 1)
            })?;
        }
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = value.try_iter()?.collect();
            write_container(out, ('[', ']'), &items, style, depth, |out, v| {
                write_json(out, v, style, depth + 1)
            })?;
        }
        _ => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                format!("tojson: cannot serialize a value of type {}", value.kind()),
            ))
        }
    }
    Ok(())
}

fn write_container<T>(
    out: &mut String,
    (open, close): (char, char),
    items: &[T],
    style: &JsonStyle,
    depth: usize,
    mut write_item: impl FnMut(&mut String, &T) -> Result<(), Error>,
) -> Result<(), Error> {
    out.push(open);
    if items.is_empty() {
        out.push(close);
        return Ok(());
    }
    let newline = |out: &mut String, level: usize| {
        if let Some(indent) = &style.indent {
            if out.len() + level * indent.len() >= style.max_len {
                return Err(sandbox::over_budget());
            }
            out.push('\n');
            for _ in 0..level {
                out.push_str(indent);
            }
        }
        Ok(())
    };
    for (i, item) in items.iter().enumerate() {
        if out.len() > style.max_len {
            return Err(sandbox::over_budget());
        }
        if i > 0 {
            out.push_str(&style.item_sep);
        }
        newline(out, depth + 1)?;
        write_item(out, item)?;
    }
    newline(out, depth)?;
    out.push(close);
    Ok(())
}

fn write_json_str(out: &mut String, s: &str, style: &JsonStyle) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (style.ensure_ascii && !c.is_ascii()) => {
                // Python writes lowercase hex, astral chars as surrogate pairs.
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn json_error(err: serde_json::Error) -> Error {
    Error::new(ErrorKind::InvalidOperation, format!("tojson: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    // On wasm32 these tests run under Node: `#[test]` below is wasm-bindgen-test's.
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    /// SmolLM2-135M-Instruct's `tokenizer.chat_template`, verbatim from its GGUF.
    const SMOLLM2: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    pub(super) fn conversation() -> Vec<ChatMessage> {
        vec![
            ChatMessage::new("system", "You are terse."),
            ChatMessage::new("user", "Hi!"),
            ChatMessage::new("assistant", "Hello."),
            ChatMessage::new("user", "What is 2+2?"),
        ]
    }

    fn render(source: &str, messages: &[ChatMessage]) -> Result<String, ChatTemplateError> {
        ChatTemplate::new(source, "<s>", "</s>")?.render(messages, true)
    }

    #[test]
    fn smollm2_full_conversation() {
        let got = render(SMOLLM2, &conversation()).unwrap();
        assert_eq!(
            got,
            "<|im_start|>system\nYou are terse.<|im_end|>\n\
             <|im_start|>user\nHi!<|im_end|>\n\
             <|im_start|>assistant\nHello.<|im_end|>\n\
             <|im_start|>user\nWhat is 2+2?<|im_end|>\n\
             <|im_start|>assistant\n"
        );
        // The built-in ChatML gives the same text when a system prompt is present.
        assert_eq!(
            ChatTemplate::chatml()
                .render(&conversation(), true)
                .unwrap(),
            got
        );
    }

    #[test]
    fn smollm2_default_system_prompt() {
        let t = ChatTemplate::new(SMOLLM2, "", "<|im_end|>").unwrap();
        let got = t.render(&[ChatMessage::new("user", "Hi!")], false).unwrap();
        assert_eq!(
            got,
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n\
             <|im_start|>user\nHi!<|im_end|>\n"
        );
    }

    #[test]
    fn chatml_without_generation_prompt() {
        let got = ChatTemplate::chatml()
            .render(&[ChatMessage::new("user", "a")], false)
            .unwrap();
        assert_eq!(got, "<|im_start|>user\na<|im_end|>\n");
        assert_eq!(
            ChatTemplate::chatml().render(&[], true).unwrap(),
            "<|im_start|>assistant\n"
        );
    }

    #[test]
    fn raise_exception_becomes_typed_error() {
        let source = "{% for m in messages %}{% if m['role'] == 'system' %}\
                      {{ raise_exception('System role not supported') }}{% endif %}{% endfor %}";
        let err = render(source, &conversation()).unwrap_err();
        assert_eq!(
            err,
            ChatTemplateError::Raised("System role not supported".into())
        );
        // Inside a macro the marker survives too.
        let source = "{% macro check() %}{{ raise_exception('nope') }}{% endmacro %}{{ check() }}";
        assert_eq!(
            render(source, &[]).unwrap_err(),
            ChatTemplateError::Raised("nope".into())
        );
        // Without the call the same template renders.
        let ok = render("{% if false %}{{ raise_exception('x') }}{% endif %}ok", &[]).unwrap();
        assert_eq!(ok, "ok");
    }

    #[test]
    fn syntax_error_is_typed_with_line() {
        let err = ChatTemplate::new("line one\n{% for m in messages %}\n{{ m.content }", "", "")
            .unwrap_err();
        match &err {
            ChatTemplateError::Syntax { message, line } => {
                assert!(!message.is_empty());
                assert_eq!(*line, Some(3), "{err}");
            }
            other => panic!("expected a syntax error, got {other:?}"),
        }
        assert!(err.to_string().contains("line 3"), "{err}");
    }

    #[test]
    fn render_error_is_typed() {
        let err = render(
            "{{ messages[0]['content'].no_such_method() }}",
            &conversation(),
        )
        .unwrap_err();
        assert!(
            matches!(err, ChatTemplateError::Render { line: Some(1), .. }),
            "{err:?}"
        );
    }

    #[test]
    fn runaway_templates_end_with_an_error() {
        for (source, error) in [
            // 10^10 steps.
            (
                "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
                "ran out of fuel",
            ),
            // Unbounded recursion.
            (
                "{% macro m(n) %}{{ m(n + 1) }}{% endmacro %}{{ m(0) }}",
                "recursion limit",
            ),
            (
                "{% for x in [1] recursive %}{{ loop([x]) }}{% endfor %}",
                "recursion limit",
            ),
            // Output without end: 50 KB a step.
            (
                "{% set s = 'x' * 50000 %}{% for i in range(100000) %}{% for j in range(100000) %}{{ s }}{% endfor %}{% endfor %}",
                "wrote more than 64 MiB",
            ),
        ] {
            // Without the bounds this call would not return for hours (no clock here: the
            // test also runs on wasm32, which has none).
            let err = render(source, &conversation()).unwrap_err();
            assert!(
                matches!(&err, ChatTemplateError::Render { message, .. } if message.contains(error)),
                "{source}: {err:?}"
            );
        }
    }

    #[test]
    fn llama3_style_template_with_strftime_and_trim() {
        let source = r#"{{- bos_token }}
{%- if not date_string is defined %}
    {%- set date_string = strftime_now("%d %b %Y") %}
{%- endif %}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content'] | trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}
{{- "<|start_header_id|>system<|end_header_id|>\n\n" }}
{{- "Today Date: " + date_string + "\n\n" }}
{{- system_message }}
{{- "<|eot_id|>" }}
{%- for message in messages %}
    {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}
{%- endif %}
"#;
        let messages = [
            ChatMessage::new("system", "  Be brief.\n"),
            ChatMessage::new("user", "\nHello  "),
        ];
        let t = ChatTemplate::new(source, "<|begin_of_text|>", "<|eot_id|>").unwrap();
        let today = || strftime_now("%d %b %Y".into());
        let before = today();
        let got = t.render(&messages, true).unwrap();
        let after = today();
        let expected = |date: &str| {
            format!(
                "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n\
                 Today Date: {date}\n\nBe brief.<|eot_id|>\
                 <|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>\
                 <|start_header_id|>assistant<|end_header_id|>\n\n"
            )
        };
        assert!(
            got == expected(&before) || got == expected(&after),
            "{got:?}"
        );
        // wasm32-unknown-unknown has no clock: the date is the epoch's.
        #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
        assert_eq!(got, expected("01 Jan 1970"));
    }

    #[test]
    fn a_set_time_replaces_the_clock_until_unset() {
        let mut t = ChatTemplate::new("{{ strftime_now('%Y-%m-%d') }}", "", "").unwrap();
        t.set_time(Some(951_782_400));
        assert_eq!(t.render(&[], false).unwrap(), "2000-02-29");
        t.set_time(None);
        assert_eq!(
            t.render(&[], false).unwrap(),
            strftime_now("%Y-%m-%d".into())
        );
        // wasm32-unknown-unknown has no clock: the template reads the epoch.
        #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
        assert_eq!(t.render(&[], false).unwrap(), "1970-01-01");
    }

    #[test]
    fn trim_and_lstrip_blocks_are_on() {
        let source = "{% for m in messages %}\n    {% if m.role == 'user' %}\nUser: {{ m.content }}\n    {% endif %}\n{% endfor %}\n";
        assert_eq!(
            render(source, &conversation()).unwrap(),
            "User: Hi!\nUser: What is 2+2?\n"
        );
    }

    #[test]
    fn python_string_methods() {
        let source =
            "{% set c = messages[0]['content'] %}{{ c.strip() }}|{{ c.startswith('  a') }}|\
                      {{ c.split() | join(',') }}|{{ c.upper().strip() }}";
        let got = render(source, &[ChatMessage::new("user", "  a b c ")]).unwrap();
        // Jinja2 prints booleans the Python way.
        assert_eq!(got, "a b c|True|a,b,c|A B C");
    }

    #[test]
    fn special_tokens_and_tools() {
        let source =
            "{{ bos_token }}{% if tools is not none %}T{% endif %}{% if tools %}T{% endif %}\
                      {{ add_generation_prompt }}{{ eos_token }}";
        assert_eq!(render(source, &[]).unwrap(), "<s>True</s>");
    }

    #[test]
    fn tojson_like_python() {
        let got = render(
            "{{ {'a': 1, 'b': [1.5, 'x<y\"é', none, true]} | tojson }}|{{ messages | tojson }}",
            &[ChatMessage::new("user", "hi\n")],
        )
        .unwrap();
        assert_eq!(
            got,
            r#"{"a": 1, "b": [1.5, "x<y\"é", null, true]}|[{"role": "user", "content": "hi\n"}]"#
        );
        let got = render(
            "{{ {'b': [1, 2], 'a': {}} | tojson(indent=2, sort_keys=true) }}",
            &[],
        )
        .unwrap();
        assert_eq!(got, "{\n  \"a\": {},\n  \"b\": [\n    1,\n    2\n  ]\n}");
        let got = render("{{ 'é😀' | tojson(ensure_ascii=true) }}", &[]).unwrap();
        assert_eq!(got, r#""\u00e9\ud83d\ude00""#);
        assert!(matches!(
            render("{{ 1 | tojson(bogus=1) }}", &[]),
            Err(ChatTemplateError::Render { .. })
        ));
    }

    #[test]
    fn strftime_directives() {
        let f = "%d %m %Y %b %B %H %M %S %y %A %a %j";
        assert_eq!(
            format_utc(f, 0),
            "01 01 1970 Jan January 00 00 00 70 Thursday Thu 001"
        );
        assert_eq!(
            format_utc(f, 951_782_400),
            "29 02 2000 Feb February 00 00 00 00 Tuesday Tue 060"
        );
        assert_eq!(
            format_utc(f, 1_709_251_199),
            "29 02 2024 Feb February 23 59 59 24 Thursday Thu 060"
        );
        assert_eq!(
            format_utc(f, 1_735_689_599),
            "31 12 2024 Dec December 23 59 59 24 Tuesday Tue 366"
        );
        assert_eq!(
            format_utc(f, 4_107_542_400),
            "01 03 2100 Mar March 00 00 00 00 Monday Mon 060"
        );
        assert_eq!(format_utc("%-d/%-m %% %Q %", 0), "1/1 % %Q %");
    }
}
