//! Request bodies → the typed, validated request of every POST endpoint.
//!
//! The first byte picks the endpoint, the rest is the body. Each body goes through the
//! route's own `validate` function, the code its actix handler calls before touching the
//! server (`service::routes::*::validate*`). Properties:
//! * nothing panics, and every refusal is a 422 with MindIE's error body;
//! * any JSON that serde_json accepts is accepted by `parse_json` with the same value;
//! * what validation accepts meets the documented ranges (MindIE's `infer_param.cpp`);
//! * an accepted request re-serialised and validated again gives the same request;
//! * an accepted chat request's media references resolve or fail typed, and its messages
//!   always render through the built-in chat template.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use qwen3vl::pipeline::SamplingParams;
use qwen3vl::prompt::messages::{collect_visual_refs, template_messages};
use qwen3vl::prompt::{ChatMessage, ChatTemplate, ContentPart, RenderOptions};
use qwen3vl::service::errors::ApiError;
use qwen3vl::service::params::{parse_json, TextOrParts};
use qwen3vl::service::routes::generate::{self, GenerateCall, TgiCall, TgiRoute};
use qwen3vl::service::routes::{completions, infer, openai_chat, tokenizer, triton};
use qwen3vl::service::state::{check_model_name, PromptInput};
use serde_json::{json, Value};

const SERVED: &str = "qwen3vl";

fn template() -> &'static ChatTemplate {
    static T: OnceLock<ChatTemplate> = OnceLock::new();
    T.get_or_init(ChatTemplate::builtin)
}

/// A refusal must be a client error with a message, as the handler would answer it.
fn refused(e: &ApiError) {
    assert_eq!(e.status.as_u16(), 422, "non-422 refusal: {e:?}");
    assert!(!e.message.is_empty());
    assert_eq!(e.body()["error_type"], "Input Validation Error");
}

fn in_unit(p: Option<f32>, zero_ok: bool) -> bool {
    p.is_none_or(|p| (if zero_ok { p >= 0.0 } else { p > 0.0 }) && p <= 1.0)
}

/// Post-conditions of `VllmSampling::to_params` (chat, completions, vLLM `/generate`).
fn vllm_params(p: &SamplingParams, openai: bool) {
    assert!(p.temperature.is_none_or(|t| t >= 0.0 && t.is_finite()));
    assert!(p.top_k.is_none_or(|k| k >= 0));
    assert!(in_unit(p.top_p, false) && in_unit(p.min_p, true));
    if openai {
        assert!(p.repetition_penalty.is_none_or(|r| r > 0.0 && r <= 2.0));
    } else {
        assert!(p.repetition_penalty.is_none_or(|r| r > 0.0));
    }
    for x in [p.presence_penalty, p.frequency_penalty]
        .into_iter()
        .flatten()
    {
        assert!((-2.0..=2.0).contains(&x));
    }
    assert!(p
        .max_tokens
        .is_none_or(|m| (1..=i32::MAX as usize).contains(&m)));
    assert!(p.n.is_none_or(|n| (1..=128).contains(&n)));
    stops(p);
}

/// Post-conditions of `TgiParameters::to_params` (TGI, `/infer`, Triton).
fn tgi_params(p: &SamplingParams) {
    assert!(p.temperature.is_none_or(|t| t >= 0.0 && t.is_finite()));
    assert!(p.top_k.is_none_or(|k| k > 0));
    assert!(in_unit(p.top_p, false));
    assert!(p
        .repetition_penalty
        .is_none_or(|r| r > 0.0 && r.is_finite()));
    assert!(p
        .max_tokens
        .is_some_and(|m| (1..=i32::MAX as usize).contains(&m)));
    assert!(p.stop.len() <= 1024);
    stops(p);
}

fn stops(p: &SamplingParams) {
    let mut total = 0;
    for s in &p.stop {
        let n = s.chars().count();
        assert!((1..=1024).contains(&n));
        total += n;
    }
    assert!(total <= 32 * 1024);
    assert!(p.seed.is_none_or(|s| s <= i64::MAX as u64));
    assert!(p.top_logprobs <= 20);
}

/// What the server does next with accepted chat messages, minus the model.
fn chat_messages(messages: &[ChatMessage]) {
    let _ = collect_visual_refs(messages);
    let rendered = template()
        .render(
            &template_messages(messages),
            &RenderOptions {
                add_generation_prompt: true,
                ..Default::default()
            },
        )
        .unwrap_or_else(|e| panic!("validated messages do not render: {e}"));
    assert!(rendered.ends_with("<|im_start|>assistant\n"));
}

fn text_or_parts_json(t: &TextOrParts) -> Value {
    match t {
        TextOrParts::Text(s) => Value::String(s.clone()),
        TextOrParts::Parts(p) => serde_json::to_value(p).expect("parts serialise"),
    }
}

fn body(v: Value) -> Vec<u8> {
    serde_json::to_vec(&v).expect("serialises")
}

fn model(m: Option<&str>) -> Result<(), ApiError> {
    check_model_name(SERVED, m, true)
}

fn chat(data: &[u8]) {
    let call = match openai_chat::validate(data, model) {
        Ok(c) => c,
        Err(e) => return refused(&e),
    };
    vllm_params(&call.params, true);
    assert!(!call.messages.is_empty());
    // Re-serialised messages (serde's untagged and flattened shapes) must read back the same.
    let again = body(json!({"model": SERVED, "messages": call.messages}));
    let back = openai_chat::validate(&again, model).expect("re-serialised chat validates");
    assert_eq!(back.messages, call.messages);
    chat_messages(&call.messages);
}

fn completion(data: &[u8]) {
    let call = match completions::validate(data, model) {
        Ok(c) => c,
        Err(e) => return refused(&e),
    };
    vllm_params(&call.params, true);
    let prompt = match &call.prompt {
        PromptInput::Text(t) => json!(t),
        PromptInput::Tokens(ids) => json!(ids),
        PromptInput::Chat(..) => panic!("completions never build a chat prompt"),
    };
    let back = completions::validate(&body(json!({"model": SERVED, "prompt": prompt})), model)
        .expect("re-serialised completion validates");
    assert_eq!(format!("{:?}", back.prompt), format!("{:?}", call.prompt));
}

/// TGI requests: parameters in range, inputs read back the same.
fn tgi_call(call: &TgiCall, route: TgiRoute) {
    tgi_params(&call.params);
    assert!(call.truncate.is_none_or(|t| t > 0));
    if route == TgiRoute::GenerateStream {
        assert!(call.streaming);
    }
    let inputs = text_or_parts_json(&call.inputs);
    let back = generate::validate_tgi(&body(json!({"inputs": inputs})), route)
        .expect("re-serialised TGI inputs validate");
    assert_eq!(text_or_parts_json(&back.inputs), inputs);
    if let TextOrParts::Parts(p) = &call.inputs {
        chat_messages(&user_message(p.clone()));
    }
}

fn user_message(parts: Vec<ContentPart>) -> Vec<ChatMessage> {
    match PromptInput::from_parts(parts, Default::default()) {
        PromptInput::Chat(m, _) => m,
        other => panic!("from_parts built {other:?}"),
    }
}

fn generate(data: &[u8]) {
    let lenient = |m: Option<&str>| check_model_name(SERVED, m, false);
    match generate::validate_generate(data, lenient) {
        Err(e) => refused(&e),
        Ok(GenerateCall::Tgi(call)) => tgi_call(&call, TgiRoute::Generate),
        Ok(GenerateCall::Vllm(call)) => {
            vllm_params(&call.params, false);
            match &call.prompt {
                PromptInput::Text(t) => assert_eq!(&call.head, t),
                PromptInput::Chat(m, _) => {
                    assert_eq!(m.len(), 1);
                    assert_eq!(m[0].role, "user");
                    chat_messages(m);
                }
                PromptInput::Tokens(_) => panic!("vLLM /generate never builds token prompts"),
            }
        }
    }
}

fn tgi(data: &[u8], route: TgiRoute) {
    match generate::validate_tgi(data, route) {
        Ok(call) => tgi_call(&call, route),
        Err(e) => refused(&e),
    }
}

fn infer(data: &[u8]) {
    let call = match infer::validate(data) {
        Ok(c) => c,
        Err(e) => return refused(&e),
    };
    tgi_params(&call.params);
    let again = match &call.prompt {
        infer::InferPrompt::Inputs(i) => json!({"inputs": text_or_parts_json(i)}),
        infer::InferPrompt::Ids(ids) => json!({"input_id": ids}),
    };
    let back = infer::validate(&body(again)).expect("re-serialised /infer validates");
    assert_eq!(format!("{:?}", back.prompt), format!("{:?}", call.prompt));
}

fn triton(data: &[u8]) {
    let call = match triton::validate(data) {
        Ok(c) => c,
        Err(e) => return refused(&e),
    };
    tgi_params(&call.params);
    if let Some(id) = &call.id {
        assert!((1..=256).contains(&id.len()));
        assert!(id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'));
    }
}

fn tokenize(data: &[u8]) {
    let call = match tokenizer::validate(data) {
        Ok(c) => c,
        Err(e) => return refused(&e),
    };
    let again = body(json!({"inputs": call.inputs, "do_decode": call.do_decode}));
    let back = tokenizer::validate(&again).expect("re-serialised tokenizer body validates");
    assert_eq!((back.inputs, back.do_decode), (call.inputs, call.do_decode));
}

/// `parse_json` is strict JSON plus a courtesy: it must accept every document serde_json does.
fn json_agrees(data: &[u8]) {
    let Ok(strict) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let parsed = parse_json(data).expect("valid JSON is accepted");
    assert_eq!(parsed, strict);
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    json_agrees(rest);
    match which % 8 {
        0 => chat(rest),
        1 => completion(rest),
        2 => generate(rest),
        3 => tgi(rest, TgiRoute::GenerateStream),
        4 => tgi(rest, TgiRoute::Root),
        5 => infer(rest),
        6 => triton(rest),
        _ => tokenize(rest),
    }
});
