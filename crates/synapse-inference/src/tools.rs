//! Tool calling. A request offers tools (OpenAI's `{"type": "function", "function":
//! {"name", "description", "parameters"}}`) and a choice (none, auto, required or one
//! named function); the model sees them through its chat template, and its reply is read
//! back as calls by [`Tools::parse`]. Every door (server, C, Python) goes through here.
//!
//! Two formats, after what the template knows ([`ToolFormat`]):
//! - **Hermes**: templates that render `tools` themselves and whose models call in
//!   `<tool_call>{"name": …, "arguments": …}</tool_call>` tags (Qwen2.5, Qwen3, Hermes,
//!   SmolLM3). The template gets the tools. A required or named call is constrained to
//!   the tags around the functions' schemas; an `auto` reply is left free and parsed.
//! - **Generic**: every other template (SmolLM2's, ChatML). A system message lists the
//!   tools and asks for one JSON object, `{"tool_call": {"name", "arguments"}}` or
//!   `{"response": "…"}`, and the reply is constrained to exactly that (llama.cpp's
//!   generic format), so that even a small model's calls parse and fit their schema.

use crate::chat::{python_json, ChatMessage, ChatTemplate, ChatTemplateError, FunctionCall};
use serde_json::{json, Map, Value};

/// How a template offers tools and how its model answers with calls (see the module).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolFormat {
    Hermes,
    Generic,
}

impl ToolFormat {
    pub(crate) fn of_template(source: &str) -> ToolFormat {
        match source.contains("tools") && source.contains("<tool_call>") {
            true => ToolFormat::Hermes,
            false => ToolFormat::Generic,
        }
    }
}

/// A function the model may call.
#[derive(Debug, Clone, PartialEq)]
pub struct Tool {
    pub name: String,
    pub description: Option<String>,
    /// The JSON schema of its arguments (an object).
    pub parameters: Value,
}

/// Whether and what the model is to call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice {
    /// Answer in text; the tools are not shown.
    None,
    /// Call tools or answer, as the model sees fit.
    Auto,
    /// Call at least one tool.
    Required,
    /// Call this one.
    Function(String),
}

/// A tool definition or choice that cannot be used, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ToolError {
    /// The request field at fault, e.g. `tools[1].function.name`.
    pub field: String,
    pub reason: String,
}

fn tool_error(field: impl Into<String>, reason: impl Into<String>) -> ToolError {
    ToolError {
        field: field.into(),
        reason: reason.into(),
    }
}

impl Tool {
    /// Reads OpenAI's `{"type": "function", "function": {...}}`; a function without
    /// `parameters` takes none.
    pub fn from_openai(value: &Value, index: usize) -> Result<Tool, ToolError> {
        let at = |field: &str| format!("tools[{index}]{field}");
        if value.get("type").and_then(Value::as_str) != Some("function") {
            return Err(tool_error(at(".type"), "only \"function\" tools exist"));
        }
        let function = value
            .get("function")
            .filter(|f| f.is_object())
            .ok_or_else(|| tool_error(at(".function"), "an object is needed"))?;
        let name = match function.get("name").and_then(Value::as_str) {
            Some(name) if !name.is_empty() => name.to_owned(),
            _ => return Err(tool_error(at(".function.name"), "a name is needed")),
        };
        let description = match function.get("description") {
            None | Some(Value::Null) => None,
            Some(Value::String(text)) => Some(text.clone()),
            Some(_) => return Err(tool_error(at(".function.description"), "not a string")),
        };
        let parameters = match function.get("parameters") {
            None | Some(Value::Null) => json!({"type": "object", "properties": {}}),
            Some(schema @ Value::Object(_)) => schema.clone(),
            Some(_) => {
                return Err(tool_error(
                    at(".function.parameters"),
                    "a JSON schema object is needed",
                ))
            }
        };
        Ok(Tool {
            name,
            description,
            parameters,
        })
    }

    /// OpenAI's shape, as templates read it.
    fn to_openai(&self) -> Value {
        let mut function = json!({"name": self.name});
        if let Some(description) = &self.description {
            function["description"] = json!(description);
        }
        function["parameters"] = self.parameters.clone();
        json!({"type": "function", "function": function})
    }

    /// The schema of a call of this tool: its name, then arguments that fit, with no
    /// properties beyond those the schema names unless it allows them (as OpenAI's strict
    /// mode and llama.cpp's grammars do: small models otherwise invent fields).
    fn call_schema(&self) -> Value {
        let mut arguments = self.parameters.clone();
        close_objects(&mut arguments);
        json!({
            "type": "object",
            "properties": {"name": {"const": self.name}, "arguments": arguments},
            "required": ["name", "arguments"],
            "additionalProperties": false,
        })
    }
}

impl ToolChoice {
    /// Reads OpenAI's `tool_choice`: `"none"`, `"auto"`, `"required"` or
    /// `{"type": "function", "function": {"name": …}}`; absent means `auto`.
    pub fn from_openai(value: Option<&Value>) -> Result<ToolChoice, ToolError> {
        let bad = || {
            tool_error(
                "tool_choice",
                "\"none\", \"auto\", \"required\" or {\"type\": \"function\", \"function\": {\"name\": ...}}",
            )
        };
        Ok(match value {
            None | Some(Value::Null) => ToolChoice::Auto,
            Some(Value::String(s)) => match s.as_str() {
                "none" => ToolChoice::None,
                "auto" => ToolChoice::Auto,
                "required" => ToolChoice::Required,
                _ => return Err(bad()),
            },
            Some(v) => match v.pointer("/function/name").and_then(Value::as_str) {
                Some(name) if v.get("type").and_then(Value::as_str) == Some("function") => {
                    ToolChoice::Function(name.to_owned())
                }
                _ => return Err(bad()),
            },
        })
    }
}

/// What a reply says: text for the user, calls, or both.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ToolReply {
    pub content: Option<String>,
    pub calls: Vec<FunctionCall>,
}

/// The tools one request offers, in its template's format.
#[derive(Debug, Clone)]
pub struct Tools {
    tools: Vec<Tool>,
    choice: ToolChoice,
    format: ToolFormat,
}

impl Tools {
    /// The tools of a request to a model with `template`, or `None` when the model is to
    /// answer without them (none offered, or `tool_choice` none).
    pub fn new(
        tools: Vec<Tool>,
        choice: ToolChoice,
        template: &ChatTemplate,
    ) -> Result<Option<Tools>, ToolError> {
        if let ToolChoice::Function(name) = &choice {
            if !tools.iter().any(|t| &t.name == name) {
                return Err(tool_error(
                    "tool_choice",
                    format!("names {name:?}, which is not among the tools"),
                ));
            }
        }
        if tools.is_empty() || choice == ToolChoice::None {
            return Ok(None);
        }
        Ok(Some(Tools {
            tools,
            choice,
            format: template.tool_format(),
        }))
    }

    pub fn format(&self) -> ToolFormat {
        self.format
    }

    /// The tools the model may call now: all of them, or the one named.
    fn callable(&self) -> impl Iterator<Item = &Tool> {
        self.tools.iter().filter(|t| match &self.choice {
            ToolChoice::Function(name) => &t.name == name,
            _ => true,
        })
    }

    /// The prompt of `messages`, ending with the assistant's turn, with the tools offered.
    pub fn render(
        &self,
        template: &ChatTemplate,
        messages: &[ChatMessage],
    ) -> Result<String, ChatTemplateError> {
        match self.format {
            ToolFormat::Hermes => {
                let tools = Value::Array(self.tools.iter().map(Tool::to_openai).collect());
                template.render_with_tools(messages, Some(&tools), true)
            }
            ToolFormat::Generic => template.render(&self.generic_messages(messages), true),
        }
    }

    /// The conversation as a template without tools sees it: the tools and the reply
    /// format in the system message, earlier replies and calls written in that format,
    /// and tool results as user turns.
    fn generic_messages(&self, messages: &[ChatMessage]) -> Vec<ChatMessage> {
        let list: Vec<Value> = self
            .tools
            .iter()
            .map(|t| {
                json!({"name": t.name, "description": t.description.as_deref().unwrap_or(""),
                       "parameters": t.parameters})
            })
            .collect();
        let call = r#"{"tool_call": {"name": "<tool name>", "arguments": {<its arguments>}}}"#;
        let ask = match &self.choice {
            ToolChoice::Function(name) => format!(
                "Call the tool {name:?}: answer with one JSON object, {}.",
                call.replace("<tool name>", name)
            ),
            ToolChoice::Required => {
                format!("Call one of them: answer with one JSON object, {call}.")
            }
            _ => format!(
                "Answer with one JSON object: {call} to call a tool, or \
                 {{\"response\": \"<your answer>\"}} to answer directly."
            ),
        };
        let instructions = format!(
            "You can call these tools:\n{}\n{ask}",
            python_json(&Value::Array(list))
        );
        let (system, rest) = match messages.split_first() {
            Some((first, rest)) if first.role == "system" => {
                (format!("{}\n\n{instructions}", first.content), rest)
            }
            _ => (instructions, messages),
        };
        let mut out = vec![ChatMessage::new("system", system)];
        for m in rest {
            out.push(match (m.role.as_str(), m.tool_calls.is_empty()) {
                ("assistant", false) => {
                    let calls: Vec<String> = (m.tool_calls.iter())
                        .map(|c| {
                            let call =
                                json!({"name": c.function.name, "arguments": c.function.arguments});
                            python_json(&json!({"tool_call": call}))
                        })
                        .collect();
                    ChatMessage::new("assistant", calls.join("\n"))
                }
                ("assistant", true) => {
                    ChatMessage::new("assistant", python_json(&json!({"response": m.content})))
                }
                ("tool", _) => {
                    let result = json!({"tool_call_id": m.tool_call_id, "content": m.content});
                    ChatMessage::new("user", python_json(&json!({"tool_response": result})))
                }
                _ => m.clone(),
            });
        }
        out
    }

    /// What the reply must look like, for [`crate::generation::constraint`]: a JSON
    /// schema (generic format) or a Lark grammar (Hermes tags); `None` when it is free.
    pub fn grammar(&self) -> Option<ToolGrammar> {
        let calls: Vec<Value> = self.callable().map(Tool::call_schema).collect();
        let call = match calls.len() {
            1 => calls.into_iter().next().unwrap_or_default(),
            _ => json!({"anyOf": calls}),
        };
        match (self.format, &self.choice) {
            (ToolFormat::Hermes, ToolChoice::Auto) => None,
            (ToolFormat::Hermes, _) => Some(ToolGrammar::Tagged { call }),
            (ToolFormat::Generic, ToolChoice::Auto) => {
                let reply = json!({"anyOf": [
                    keyed("tool_call", call),
                    keyed("response", json!({"type": "string"})),
                ]});
                Some(ToolGrammar::Json(reply))
            }
            (ToolFormat::Generic, _) => Some(ToolGrammar::Json(keyed("tool_call", call))),
        }
    }

    /// Reads a reply: its calls, and the text around them.
    pub fn parse(&self, text: &str) -> ToolReply {
        match self.format {
            ToolFormat::Generic => parse_generic(text),
            ToolFormat::Hermes => parse_hermes(text),
        }
    }
}

/// A grammar for [`Tools::grammar`].
#[derive(Debug, Clone, PartialEq)]
pub enum ToolGrammar {
    /// The whole reply is JSON valid against this schema.
    Json(Value),
    /// One or more `<tool_call>\n{call}\n</tool_call>`, each call valid against `call`.
    Tagged { call: Value },
}

/// Gives every object schema that lists `properties` and says nothing of others
/// `"additionalProperties": false`.
fn close_objects(schema: &mut Value) {
    each_schema(schema, &mut |map| {
        if map.contains_key("properties") && !map.contains_key("additionalProperties") {
            map.insert("additionalProperties".into(), Value::Bool(false));
        }
    });
}

/// Calls `visit` on every object of a JSON schema, outermost first. Values (`enum`,
/// `const`, `default`, `examples`) are data, not schemas, and are left.
pub(crate) fn each_schema(schema: &mut Value, visit: &mut impl FnMut(&mut Map<String, Value>)) {
    match schema {
        Value::Object(map) => {
            visit(map);
            for (key, value) in map.iter_mut() {
                if !matches!(key.as_str(), "enum" | "const" | "default" | "examples") {
                    each_schema(value, visit);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| each_schema(item, visit)),
        _ => {}
    }
}

/// The schema of an object with one required key.
fn keyed(key: &str, schema: Value) -> Value {
    json!({"type": "object", "properties": {key: schema}, "required": [key],
           "additionalProperties": false})
}

/// A call object `{"name": …, "arguments": …}` (arguments may come as a JSON string).
fn function_call(value: &Value) -> Option<FunctionCall> {
    let name = value.get("name")?.as_str()?.to_owned();
    let arguments = match value.get("arguments").or_else(|| value.get("parameters")) {
        Some(Value::String(s)) => serde_json::from_str(s).unwrap_or(Value::String(s.clone())),
        Some(v) => v.clone(),
        None => json!({}),
    };
    Some(FunctionCall { name, arguments })
}

fn parse_generic(text: &str) -> ToolReply {
    let whole = || ToolReply {
        content: Some(text.to_owned()),
        calls: Vec::new(),
    };
    let Ok(value) = serde_json::from_str::<Value>(text.trim()) else {
        return whole();
    };
    if let Some(call) = value.get("tool_call").and_then(function_call) {
        return ToolReply {
            content: None,
            calls: vec![call],
        };
    }
    match value.get("response") {
        Some(Value::String(reply)) => ToolReply {
            content: Some(reply.clone()),
            calls: Vec::new(),
        },
        _ => whole(),
    }
}

const OPEN: &str = "<tool_call>";
const CLOSE: &str = "</tool_call>";

fn parse_hermes(text: &str) -> ToolReply {
    let mut reply = ToolReply::default();
    let mut rest = text;
    let mut content = String::new();
    while let Some(start) = rest.find(OPEN) {
        content.push_str(&rest[..start]);
        let body = &rest[start + OPEN.len()..];
        // A reply cut off at the end of generation may lack the closing tag.
        let (inner, after) = match body.find(CLOSE) {
            Some(end) => (&body[..end], &body[end + CLOSE.len()..]),
            None => (body, ""),
        };
        let call = serde_json::from_str::<Value>(inner.trim())
            .ok()
            .and_then(|v| function_call(&v));
        match call {
            Some(call) => reply.calls.push(call),
            // Not a call after all: it stays text.
            None => content.push_str(&rest[start..rest.len() - after.len()]),
        }
        rest = after;
    }
    content.push_str(rest);
    let content = content.trim();
    reply.content = (!content.is_empty()).then(|| content.to_owned());
    reply
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weather() -> Tool {
        Tool::from_openai(
            &json!({"type": "function", "function": {"name": "get_weather",
                "description": "Weather in a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                               "required": ["city"]}}}),
            0,
        )
        .unwrap()
    }

    fn time() -> Tool {
        Tool::from_openai(
            &json!({"type": "function", "function": {"name": "time"}}),
            1,
        )
        .unwrap()
    }

    const HERMES: &str =
        "{% if tools %}<tools>{% for t in tools %}{{ t.function.name }};{% endfor %}</tools>\
        {% endif %}{% for m in messages %}<{{ m.role }}>{{ m.content }}\
        {% for c in m.tool_calls %}<tool_call>{{ c.function | tojson }}</tool_call>{% endfor %}\
        {% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}";

    fn conversation() -> Vec<ChatMessage> {
        let mut call = ChatMessage::new("assistant", "");
        call.tool_calls.push(crate::chat::ToolCall {
            id: "call_1".into(),
            kind: "function".into(),
            function: FunctionCall {
                name: "get_weather".into(),
                arguments: json!({"city": "Paris"}),
            },
        });
        let mut result = ChatMessage::new("tool", "sunny");
        result.tool_call_id = Some("call_1".into());
        vec![ChatMessage::new("user", "Weather in Paris?"), call, result]
    }

    #[test]
    fn bad_definitions_and_choices_name_the_field() {
        let err = Tool::from_openai(&json!({"type": "function", "function": {}}), 2).unwrap_err();
        assert_eq!(err.field, "tools[2].function.name");
        let err = Tool::from_openai(&json!({"type": "retrieval"}), 0).unwrap_err();
        assert_eq!(err.field, "tools[0].type");
        let bad = json!({"type": "function", "function": {"name": "f", "parameters": 3}});
        assert_eq!(
            Tool::from_openai(&bad, 0).unwrap_err().field,
            "tools[0].function.parameters"
        );
        assert!(ToolChoice::from_openai(Some(&json!("sometimes"))).is_err());
        let named = json!({"type": "function", "function": {"name": "time"}});
        assert_eq!(
            ToolChoice::from_openai(Some(&named)).unwrap(),
            ToolChoice::Function("time".into())
        );
        let template = ChatTemplate::chatml();
        let unknown = ToolChoice::Function("nope".into());
        assert_eq!(
            Tools::new(vec![weather()], unknown, &template)
                .unwrap_err()
                .field,
            "tool_choice"
        );
        assert!(Tools::new(vec![weather()], ToolChoice::None, &template)
            .unwrap()
            .is_none());
        assert!(Tools::new(vec![], ToolChoice::Auto, &template)
            .unwrap()
            .is_none());
    }

    #[test]
    fn a_template_without_tools_gets_them_in_the_system_message() {
        let template = ChatTemplate::chatml();
        let tools = Tools::new(vec![weather(), time()], ToolChoice::Auto, &template)
            .unwrap()
            .unwrap();
        assert_eq!(tools.format(), ToolFormat::Generic);
        let prompt = tools.render(&template, &conversation()).unwrap();
        assert!(
            prompt.starts_with(
                "<|im_start|>system\nYou can call these tools:\n[{\"name\": \"get_weather\""
            ),
            "{prompt}"
        );
        assert!(
            prompt.contains("{\"response\": \"<your answer>\"}"),
            "{prompt}"
        );
        assert!(prompt.contains("<|im_start|>assistant\n{\"tool_call\": {\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}}<|im_end|>"), "{prompt}");
        assert!(prompt.contains("<|im_start|>user\n{\"tool_response\": {\"tool_call_id\": \"call_1\", \"content\": \"sunny\"}}<|im_end|>"), "{prompt}");
        assert!(prompt.ends_with("<|im_start|>assistant\n"));
        // A system message of the user's comes first, the tools after it.
        let mut messages = vec![ChatMessage::new("system", "Be brief.")];
        messages.extend(conversation());
        let prompt = tools.render(&template, &messages).unwrap();
        assert!(
            prompt.starts_with("<|im_start|>system\nBe brief.\n\nYou can call these tools:"),
            "{prompt}"
        );
        assert_eq!(prompt.matches("<|im_start|>system").count(), 1);
    }

    #[test]
    fn generic_grammar_follows_the_choice() {
        let template = ChatTemplate::chatml();
        let make = |choice| {
            Tools::new(vec![weather(), time()], choice, &template)
                .unwrap()
                .unwrap()
        };
        let Some(ToolGrammar::Json(auto)) = make(ToolChoice::Auto).grammar() else {
            panic!()
        };
        assert_eq!(
            auto["anyOf"][1]["properties"]["response"],
            json!({"type": "string"})
        );
        assert_eq!(
            auto["anyOf"][0]["properties"]["tool_call"]["anyOf"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
        let Some(ToolGrammar::Json(one)) = make(ToolChoice::Function("time".into())).grammar()
        else {
            panic!()
        };
        assert_eq!(one["required"], json!(["tool_call"]));
        let call = &one["properties"]["tool_call"];
        assert_eq!(call["properties"]["name"], json!({"const": "time"}));
        // Arguments get no fields beyond those named, unless the schema allows them.
        assert_eq!(
            call["properties"]["arguments"]["additionalProperties"],
            json!(false)
        );
        let mut open = json!({"type": "object", "properties": {"a": {"type": "object", "properties": {},
            "additionalProperties": true}, "b": {"const": {"properties": {}}}}});
        close_objects(&mut open);
        assert_eq!(open["additionalProperties"], json!(false));
        assert_eq!(open["properties"]["a"]["additionalProperties"], json!(true));
        assert_eq!(
            open["properties"]["b"],
            json!({"const": {"properties": {}}})
        );
    }

    #[test]
    fn generic_replies_parse() {
        let call = parse_generic(
            r#"{"tool_call": {"name": "get_weather", "arguments": {"city": "Oslo"}}}"#,
        );
        assert_eq!(call.content, None);
        assert_eq!(
            call.calls,
            vec![FunctionCall {
                name: "get_weather".into(),
                arguments: json!({"city": "Oslo"})
            }]
        );
        let answer = parse_generic(r#"{"response": "It is 3 pm."}"#);
        assert_eq!(
            answer,
            ToolReply {
                content: Some("It is 3 pm.".into()),
                calls: vec![]
            }
        );
        // Cut off by max_tokens: the text as it is.
        let cut = parse_generic(r#"{"tool_call": {"name": "get_we"#);
        assert_eq!(
            cut.content.as_deref(),
            Some(r#"{"tool_call": {"name": "get_we"#)
        );
    }

    #[test]
    fn a_hermes_template_renders_the_tools_itself() {
        let template = ChatTemplate::new(HERMES, "<s>", "</s>").unwrap();
        assert_eq!(template.tool_format(), ToolFormat::Hermes);
        let tools = Tools::new(vec![weather(), time()], ToolChoice::Required, &template)
            .unwrap()
            .unwrap();
        let prompt = tools.render(&template, &conversation()).unwrap();
        assert_eq!(
            prompt,
            "<tools>get_weather;time;</tools><user>Weather in Paris?<assistant>\
             <tool_call>{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}</tool_call>\
             <tool>sunny<assistant>"
        );
        let Some(ToolGrammar::Tagged { call }) = tools.grammar() else {
            panic!()
        };
        assert_eq!(call["anyOf"].as_array().unwrap().len(), 2);
        let auto = Tools::new(vec![weather()], ToolChoice::Auto, &template)
            .unwrap()
            .unwrap();
        assert_eq!(auto.grammar(), None);
    }

    #[test]
    fn hermes_replies_parse() {
        let text = "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n</tool_call>\n\
                    <tool_call>\n{\"name\": \"time\", \"arguments\": \"{}\"}\n</tool_call>";
        let reply = parse_hermes(text);
        assert_eq!(reply.content.as_deref(), Some("Let me check."));
        assert_eq!(reply.calls.len(), 2);
        assert_eq!(reply.calls[0].arguments, json!({"city": "Oslo"}));
        assert_eq!(
            reply.calls[1],
            FunctionCall {
                name: "time".into(),
                arguments: json!({})
            }
        );
        // No closing tag at the end of generation; and a tag around no call is text.
        let cut = parse_hermes("<tool_call>{\"name\": \"time\", \"arguments\": {}}");
        assert_eq!((cut.content, cut.calls.len()), (None, 1));
        let odd = parse_hermes("a <tool_call>oops</tool_call> b");
        assert_eq!(
            (odd.content.as_deref(), odd.calls.len()),
            (Some("a <tool_call>oops</tool_call> b"), 0)
        );
    }
}
