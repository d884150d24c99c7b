//! Operator logs: with `--log-format json` every stderr line is a JSON object; each inference
//! request ends with one `qwen3vl::request` line in its request span (id, method, path) with
//! status, token counts and timings, and a refused request gets a warning with the reason.

mod service_support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use serde_json::{json, Value};
use service_support::*;

#[test]
fn json_logs_have_one_line_per_request_and_refusal_reasons() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_qwen3vl"))
        .arg("serve")
        .arg("--model")
        .arg(tiny_model())
        .args(["--port", "0", "--http-workers", "2", "--log-format", "json"])
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut log: Vec<String> = Vec::new();
    let addr = loop {
        let line = lines.next().expect("server exited early").unwrap();
        log.push(line.clone());
        if let Some(rest) = line.split("on http://").nth(1) {
            break rest
                .trim_end_matches(['"', '}', ','])
                .split('"')
                .next()
                .unwrap()
                .to_string();
        }
    };
    let drain = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = reqwest::Client::new();
        let chat = json!({"model": "qwen3vl", "max_tokens": 3, "ignore_eos": true,
                          "messages": [{"role": "user", "content": [
                              {"type": "image_url", "image_url": {"url": png_data_url(32, 32)}},
                              {"type": "text", "text": "hi"}]}]});
        let r = c
            .post(format!("http://{addr}/v1/chat/completions"))
            .json(&chat)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let mut stream = chat.clone();
        stream["stream"] = json!(true);
        let r = c
            .post(format!("http://{addr}/v1/chat/completions"))
            .json(&stream)
            .send()
            .await
            .unwrap();
        assert!(r.text().await.unwrap().contains("[DONE]"));
        let r = c
            .post(format!("http://{addr}/v1/chat/completions"))
            .json(&json!({"model": "nope", "messages": [{"role": "user", "content": "x"}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 422);
    });
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    child.wait().unwrap();
    log.extend(drain.join().unwrap());
    let objects: Vec<Value> = log
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let requests: Vec<&Value> = objects
        .iter()
        .filter(|o| o["target"] == "qwen3vl::request")
        .collect();
    assert_eq!(requests.len(), 2, "{requests:#?}");
    let mut ids = Vec::new();
    for r in &requests {
        assert_eq!(r["status"], 200, "{r}");
        assert_eq!(r["span"]["method"], "POST");
        assert_eq!(r["span"]["path"], "/v1/chat/completions");
        assert_eq!(r["generated_tokens"], 3);
        assert_eq!(r["finish"], "length");
        assert!(r["visual_tokens"].as_u64().unwrap() > 0, "{r}");
        assert!(r["prompt_tokens"].as_u64() > r["visual_tokens"].as_u64());
        for k in ["media_ms", "queue_ms", "ttft_ms", "e2e_ms"] {
            assert!(r[k].is_u64(), "{k}: {r}");
        }
        ids.push(r["span"]["id"].as_u64().unwrap());
    }
    assert_ne!(ids[0], ids[1], "each request has its own id");
    let refused = objects
        .iter()
        .find(|o| o["message"] == "request refused")
        .expect("a warning for the refused request");
    assert_eq!(refused["level"], "WARN");
    assert_eq!(refused["status"], 422);
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("Model not found"),
        "{refused}"
    );
}
