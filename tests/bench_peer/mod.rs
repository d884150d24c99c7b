//! A fixture peer for the bench client tests: a tiny HTTP/1.1 server on 127.0.0.1 that
//! speaks the exact wire formats of spec §1.4/§1.5/§1.7 (MindIE-style and vLLM-style OpenAI
//! SSE, `/generate` NUL-delimited JSON, `/infer` `data:` frames), with scripted delays.
//! It checks the client's parsers and timing; it is not the end-to-end proof.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How the OpenAI stream is shaped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChatStyle {
    /// MindIE: role chunk together with the first token; usage inside the last content chunk.
    Mindie,
    /// vLLM: a role chunk first, content chunks, then a `choices: []` usage chunk.
    Vllm,
}

#[derive(Clone)]
pub struct PeerConfig {
    pub style: ChatStyle,
    /// Delay before the first event (prefill).
    pub first_delay: Duration,
    /// Delay between later events (decode).
    pub step_delay: Duration,
    /// Reported `prompt_tokens`.
    pub prompt_tokens: u64,
    /// The answer for a question (the text part of the request); split on spaces into
    /// one chunk per word (each chunk = one token).
    pub answer: Arc<dyn Fn(&str) -> String + Send + Sync>,
}

impl Default for PeerConfig {
    fn default() -> Self {
        PeerConfig {
            style: ChatStyle::Mindie,
            first_delay: Duration::from_millis(30),
            step_delay: Duration::from_millis(5),
            prompt_tokens: 321,
            answer: Arc::new(|_| "Dakota Digital camera".to_string()),
        }
    }
}

/// One request the peer saw.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub body: Value,
}

pub struct Peer {
    pub base_url: String,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl Peer {
    pub fn requests(&self, path: &str) -> Vec<Seen> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.path == path)
            .cloned()
            .collect()
    }
}

/// Starts the peer on an ephemeral port.
pub async fn start(cfg: PeerConfig) -> Peer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else {
                return;
            };
            let cfg = cfg.clone();
            let seen = seen2.clone();
            tokio::spawn(async move {
                let _ = serve(sock, cfg, seen).await;
            });
        }
    });
    Peer {
        base_url: format!("http://{addr}"),
        seen,
    }
}

fn question(body: &Value) -> String {
    let parts = body
        .pointer("/messages/0/content")
        .or_else(|| body.get("prompt"))
        .or_else(|| body.get("inputs"));
    parts
        .and_then(Value::as_array)
        .and_then(|a| {
            a.iter()
                .find(|p| p["type"] == "text")
                .and_then(|p| p["text"].as_str())
        })
        .unwrap_or("")
        .to_string()
}

fn words(answer: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, w) in answer.split(' ').enumerate() {
        out.push(if i == 0 {
            w.to_string()
        } else {
            format!(" {w}")
        });
    }
    out
}

async fn serve(
    mut sock: TcpStream,
    cfg: PeerConfig,
    seen: Arc<Mutex<Vec<Seen>>>,
) -> std::io::Result<()> {
    // Request head.
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    let head_end = loop {
        let n = sock.read(&mut tmp).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&tmp[..n]);
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.lines();
    let first = lines.next().unwrap_or("");
    let mut it = first.split(' ');
    let method = it.next().unwrap_or("").to_string();
    let path = it.next().unwrap_or("").to_string();
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = sock.read(&mut tmp).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&tmp[..n]);
    }
    let body: Value = serde_json::from_slice(&buf[head_end..]).unwrap_or(Value::Null);
    seen.lock().unwrap().push(Seen {
        method: method.clone(),
        path: path.clone(),
        body: body.clone(),
    });

    if method == "GET" && path == "/v1/models" {
        return respond_json(
            &mut sock,
            200,
            &json!({"object": "list", "data": [{"id": "qwen3vl", "object": "model"}]}),
        )
        .await;
    }
    let q = question(&body);
    if q.contains("FAIL") {
        return respond_json(
            &mut sock,
            422,
            &json!({"error": "Model not found", "error_type": "Input Validation Error"}),
        )
        .await;
    }
    let answer = (cfg.answer)(&q);
    let chunks = words(&answer);
    let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let usage = json!({"prompt_tokens": cfg.prompt_tokens, "completion_tokens": chunks.len(), "total_tokens": cfg.prompt_tokens + chunks.len() as u64});
    match (path.as_str(), stream) {
        ("/v1/chat/completions", false) => {
            tokio::time::sleep(cfg.first_delay).await;
            let v = json!({"id": "endpoint_common_1", "object": "chat.completion", "created": 1, "model": "qwen3vl",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": answer, "tool_calls": []}, "logprobs": null, "finish_reason": "stop"}],
                "usage": usage});
            respond_json(&mut sock, 200, &v).await
        }
        ("/v1/chat/completions", true) => {
            start_stream(&mut sock).await?;
            let chunk = |delta: Value, finish: Value, usage: Option<&Value>| {
                let mut v = json!({"id": "endpoint_common_1", "object": "chat.completion.chunk", "created": 1, "model": "qwen3vl",
                    "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]});
                if let Some(u) = usage {
                    v["usage"] = u.clone();
                }
                format!("data: {v}\n\n")
            };
            tokio::time::sleep(cfg.first_delay).await;
            match cfg.style {
                ChatStyle::Mindie => {
                    sock.write_all(
                        chunk(
                            json!({"role": "assistant", "content": ""}),
                            Value::Null,
                            None,
                        )
                        .as_bytes(),
                    )
                    .await?;
                    for (i, c) in chunks.iter().enumerate() {
                        if i > 0 {
                            tokio::time::sleep(cfg.step_delay).await;
                        }
                        let last = i + 1 == chunks.len();
                        let ev = chunk(
                            json!({"role": "assistant", "content": c}),
                            if last { json!("stop") } else { Value::Null },
                            last.then_some(&usage),
                        );
                        sock.write_all(ev.as_bytes()).await?;
                    }
                }
                ChatStyle::Vllm => {
                    sock.write_all(
                        chunk(
                            json!({"role": "assistant", "content": ""}),
                            Value::Null,
                            None,
                        )
                        .as_bytes(),
                    )
                    .await?;
                    for (i, c) in chunks.iter().enumerate() {
                        tokio::time::sleep(cfg.step_delay).await;
                        let last = i + 1 == chunks.len();
                        let ev = chunk(
                            json!({"content": c}),
                            if last { json!("stop") } else { Value::Null },
                            None,
                        );
                        sock.write_all(ev.as_bytes()).await?;
                    }
                    tokio::time::sleep(cfg.step_delay).await;
                    let u = json!({"id": "endpoint_common_1", "object": "chat.completion.chunk", "created": 1, "model": "qwen3vl", "choices": [], "usage": usage});
                    sock.write_all(format!("data: {u}\n\n").as_bytes()).await?;
                }
            }
            sock.write_all(b"data: [DONE]\n\n").await?;
            sock.shutdown().await
        }
        ("/generate", false) => {
            tokio::time::sleep(cfg.first_delay).await;
            respond_json(&mut sock, 200, &json!({"text": [format!("{q} {answer}")]})).await
        }
        ("/generate", true) => {
            start_stream(&mut sock).await?;
            tokio::time::sleep(cfg.first_delay).await;
            for (i, c) in chunks.iter().enumerate() {
                if i > 0 {
                    tokio::time::sleep(cfg.step_delay).await;
                }
                let mut frame = serde_json::to_vec(&json!({"text": [c]})).unwrap();
                frame.push(0);
                sock.write_all(&frame).await?;
            }
            sock.shutdown().await
        }
        ("/infer", false) => {
            tokio::time::sleep(cfg.first_delay).await;
            respond_json(&mut sock, 200, &json!({"generated_text": answer, "details": {"finish_reason": "eos_token", "generated_tokens": chunks.len(), "seed": 1}})).await
        }
        ("/infer", true) => {
            start_stream(&mut sock).await?;
            tokio::time::sleep(cfg.first_delay).await;
            for (i, c) in chunks.iter().enumerate() {
                if i > 0 {
                    tokio::time::sleep(cfg.step_delay).await;
                }
                let last = i + 1 == chunks.len();
                let v = if last {
                    json!({"prefill_time": null, "decode_time": 5, "generated_text": answer,
                        "details": {"finish_reason": "eos_token", "generated_tokens": chunks.len(), "seed": 1},
                        "token": {"id": [7], "text": null}})
                } else {
                    json!({"prefill_time": if i == 0 { json!(30) } else { Value::Null }, "decode_time": null, "token": {"id": [i], "text": c}})
                };
                sock.write_all(format!("data: {v}\n\n").as_bytes()).await?;
            }
            sock.shutdown().await
        }
        _ => {
            respond_json(
                &mut sock,
                404,
                &json!({"error": "not found", "error_type": "NotFoundError"}),
            )
            .await
        }
    }
}

async fn start_stream(sock: &mut TcpStream) -> std::io::Result<()> {
    sock.write_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n",
    )
    .await
}

async fn respond_json(sock: &mut TcpStream, status: u16, v: &Value) -> std::io::Result<()> {
    let body = v.to_string();
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        422 => "Unprocessable Entity",
        _ => "Error",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    sock.write_all(head.as_bytes()).await?;
    sock.write_all(body.as_bytes()).await?;
    sock.shutdown().await
}
