//! `synapse chat`: a conversation with the model's chat template, interactive on a
//! terminal; otherwise the conversation is read from stdin (one user message per line,
//! or a JSON array of {role, content} messages to which one reply is generated).

use crate::{ModelArgs, OnModel, SamplingArgs};
use clap::Args;
use std::io::{BufRead, IsTerminal, Read, Write};
use std::sync::Arc;
use synapse_inference::chat::ChatMessage;
use synapse_inference::conversation::Conversation;
use synapse_inference::generation::{GenerateOptions, StopReason};
use synapse_inference::model::backend::Backend;
use synapse_inference::Model;

#[derive(Args)]
pub struct ChatArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    sampling: SamplingArgs,
    /// System prompt
    #[arg(long, short = 's')]
    system: Option<String>,
    /// Most tokens per reply
    #[arg(long, short = 'n', default_value_t = 512)]
    max_tokens: usize,
}

pub fn chat(args: ChatArgs) -> Result<(), String> {
    args.model.run(ChatJob(&args))
}

struct ChatJob<'a>(&'a ChatArgs);

impl OnModel for ChatJob<'_> {
    type Output = ();
    fn run<B: Backend>(self, model: Arc<Model<B>>, _device: &str) -> Result<(), String> {
        chat_with(self.0, model)
    }
}

fn chat_with<B: Backend>(args: &ChatArgs, model: Arc<Model<B>>) -> Result<(), String> {
    let mut conversation = Conversation::new(
        model.clone(),
        args.model.session_options(),
        args.system.as_deref(),
    )
    .map_err(|e| e.to_string())?;
    let opts = GenerateOptions {
        max_tokens: args.max_tokens,
        sampler: args.sampling.sampler(&model),
        stop: args.sampling.stop.clone(),
        ..GenerateOptions::default()
    };
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        interactive(&mut conversation, &opts)
    } else {
        let mut input = String::new();
        stdin
            .lock()
            .read_to_string(&mut input)
            .map_err(|e| format!("cannot read stdin: {e}"))?;
        scripted(&mut conversation, &opts, &input)
    }
}

fn stream(text: &str) {
    let mut out = std::io::stdout();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// One reply (to `user`, else to the messages so far), streamed; Ctrl-C stops it and
/// keeps what it said.
fn reply<B: Backend>(
    conversation: &mut Conversation<B>,
    user: Option<&str>,
    opts: &GenerateOptions,
) -> Result<(), String> {
    let (cancel, _interrupt) = crate::interrupt::generation();
    let opts = GenerateOptions {
        cancel: Some(cancel),
        ..opts.clone()
    };
    let reply = match user {
        Some(text) => conversation.reply(text, &opts, stream),
        None => conversation.generate_reply(&opts, stream),
    }
    .map_err(|e| e.to_string())?;
    if reply.stop_reason == StopReason::Cancelled {
        eprint!(" [stopped]");
    }
    println!();
    Ok(())
}

fn interactive<B: Backend>(
    conversation: &mut Conversation<B>,
    opts: &GenerateOptions,
) -> Result<(), String> {
    eprintln!(
        "synapse chat: type a message; Ctrl-C stops a reply, /reset clears the \
         conversation, /exit or Ctrl-D quits."
    );
    let mut lines = std::io::stdin().lock().lines();
    loop {
        eprint!("> ");
        let Some(line) = lines.next() else { break };
        let line = line.map_err(|e| format!("cannot read stdin: {e}"))?;
        match line.trim() {
            "" => continue,
            "/exit" | "/quit" => break,
            "/reset" => conversation.reset(),
            text => reply(conversation, Some(text), opts)?,
        }
    }
    Ok(())
}

fn scripted<B: Backend>(
    conversation: &mut Conversation<B>,
    opts: &GenerateOptions,
    input: &str,
) -> Result<(), String> {
    if input.trim_start().starts_with('[') {
        let messages: Vec<ChatMessage> = serde_json::from_str(input).map_err(|e| {
            format!("stdin: expected a JSON array of {{\"role\", \"content\"}} messages: {e}")
        })?;
        for m in messages {
            conversation.push(m);
        }
        return reply(conversation, None, opts);
    }
    for line in input.lines().map(str::trim).filter(|l| !l.is_empty()) {
        println!("> {line}");
        reply(conversation, Some(line), opts)?;
    }
    Ok(())
}
