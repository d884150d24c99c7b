//! Media sources: http(s) with timeout and size cap (against a loopback server), data URLs,
//! file:// URLs, and the processor files written for generated checkpoints.

mod preprocess_support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use preprocess_support::*;
use qwen3vl::media::{
    ImageProcessorConfig, ImageProcessorKind, MediaError, MediaFetcher, MediaLimits, MediaSource,
    VideoProcessorConfig,
};
use qwen3vl::prompt::{ChatTemplate, Processor, BUILTIN_CHAT_TEMPLATE};

/// Serves `responses` (raw HTTP bytes, or `None` to hang) to successive connections on loopback.
fn serve(responses: Vec<Option<Vec<u8>>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for resp in responses {
            let Ok((mut sock, _)) = listener.accept() else {
                return;
            };
            let mut buf = [0u8; 4096];
            let _ = sock.read(&mut buf);
            match resp {
                Some(bytes) => {
                    let _ = sock.write_all(&bytes);
                }
                // Hold the connection open without answering, for longer than the client waits.
                None => std::thread::sleep(Duration::from_secs(3)),
            }
        }
    });
    format!("http://{addr}")
}

fn http_ok(body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

fn fetcher(limits: MediaLimits) -> MediaFetcher {
    MediaFetcher::new(limits)
}

#[test]
fn http_fetch_size_cap_timeout_and_status() {
    let png = std::fs::read(fixtures().join("inputs/tiny.png")).unwrap();
    let big = vec![7u8; 5000];
    let chunked_big = {
        // No Content-Length: the cap must apply while reading.
        let mut r = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".to_vec();
        r.extend_from_slice(&big);
        r
    };
    let base = serve(vec![
        Some(http_ok(&png)),
        Some(http_ok(&big)),
        Some(chunked_big),
        Some(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec()),
        None,
    ]);
    let limits = MediaLimits {
        max_item_bytes: 4096,
        http_timeout: Duration::from_millis(700),
        // The test server is on loopback, which the SSRF policy refuses unless allow-listed.
        allowed_media_domains: vec!["127.0.0.1".into()],
        ..Default::default()
    };
    let f = fetcher(limits.clone());
    let src = MediaSource::parse(&format!("{base}/tiny.png")).unwrap();
    assert_eq!(f.fetch(&src).unwrap(), png);
    let e = f.fetch(&src).unwrap_err();
    assert!(
        matches!(
            e,
            MediaError::TooLarge {
                size: 5000,
                limit: 4096
            }
        ),
        "{e}"
    );
    let e = f.fetch(&src).unwrap_err();
    assert!(matches!(e, MediaError::TooLarge { limit: 4096, .. }), "{e}");
    let e = f.fetch(&src).unwrap_err();
    assert!(matches!(e, MediaError::Http { .. }), "{e}");
    let t0 = Instant::now();
    let e = f.fetch(&src).unwrap_err();
    assert!(matches!(e, MediaError::Http { .. }), "{e}");
    assert!(
        t0.elapsed() < Duration::from_secs(3),
        "timeout not applied: {:?}",
        t0.elapsed()
    );
    let off = fetcher(MediaLimits {
        allow_http: false,
        ..limits
    });
    assert!(matches!(off.fetch(&src), Err(MediaError::RemoteDisabled)));
}

#[test]
fn source_parsing() {
    assert_eq!(
        MediaSource::parse("file:///tmp/a%20b.png").unwrap(),
        MediaSource::File("/tmp/a b.png".into())
    );
    assert_eq!(
        MediaSource::parse("file://localhost/tmp/x.png").unwrap(),
        MediaSource::File("/tmp/x.png".into())
    );
    assert_eq!(
        MediaSource::parse("rel/x.png").unwrap(),
        MediaSource::File("rel/x.png".into())
    );
    assert_eq!(
        MediaSource::parse("HTTPS://example.com/x").unwrap(),
        MediaSource::Http("HTTPS://example.com/x".into())
    );
    assert!(matches!(
        MediaSource::parse("data:image/jpeg;base64,QUJD").unwrap(),
        MediaSource::DataUrl { ref mime, .. } if mime == "image/jpeg"
    ));
    assert!(MediaSource::parse("  ").is_err());
}

#[test]
fn default_processor_files_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    qwen3vl::prompt::write_default_processor_files(dir.path(), &tokenizer_json()).unwrap();
    for f in [
        "tokenizer.json",
        "tokenizer_config.json",
        "chat_template.jinja",
        "preprocessor_config.json",
        "video_preprocessor_config.json",
    ] {
        assert!(dir.path().join(f).is_file(), "{f}");
    }
    assert_eq!(
        std::fs::read_to_string(dir.path().join("chat_template.jinja")).unwrap(),
        BUILTIN_CHAT_TEMPLATE
    );
    // Writing over itself (tokenizer.json already in place) must not truncate it.
    let tok = dir.path().join("tokenizer.json");
    qwen3vl::prompt::write_default_processor_files(dir.path(), &tok).unwrap();
    assert!(std::fs::metadata(&tok).unwrap().len() > 1_000_000);
    let p = Processor::from_model_dir(dir.path(), MediaLimits::default()).unwrap();
    assert_eq!(p.template.source(), BUILTIN_CHAT_TEMPLATE);
    // The checkpoint's `size` is the budget, as transformers' default (fast) processor has it.
    assert_eq!(p.image_config, ImageProcessorConfig::default());
    assert_eq!(
        (
            p.image_config.vision.min_pixels,
            p.image_config.vision.max_pixels
        ),
        (65_536, 16_777_216)
    );
    assert_eq!(p.image_config.kind, ImageProcessorKind::Fast);
    assert_eq!(p.video_config, VideoProcessorConfig::default());
    assert_eq!(
        (
            p.video_config.vision.min_pixels,
            p.video_config.vision.max_pixels
        ),
        (4096, 25_165_824)
    );
    assert_eq!(p.image_config.vision.patch_dim(), 1536);
    // Opt-in only: the slow PIL processor of transformers 4.57 ignores `size` and falls back to
    // Qwen2-VL's class defaults [3136, 1003520].
    let slow = ImageProcessorConfig::from_json_slow_processor_parity(
        qwen3vl::media::config::DEFAULT_PREPROCESSOR_CONFIG,
    )
    .unwrap();
    assert_eq!(
        (slow.vision.min_pixels, slow.vision.max_pixels),
        (3136, 1_003_520)
    );
    assert_eq!(slow.kind, ImageProcessorKind::SlowPilParity);
    // Explicit min/max_pixels keys win over `size` in both.
    let explicit =
        r#"{"size": {"shortest_edge": 65536, "longest_edge": 16777216}, "max_pixels": 200000}"#;
    assert_eq!(
        ImageProcessorConfig::from_json(explicit)
            .unwrap()
            .vision
            .max_pixels,
        200_000
    );
    // No `size` and no keys: the class defaults.
    let bare_cfg = ImageProcessorConfig::from_json(r#"{"patch_size": 16}"#).unwrap();
    assert_eq!(
        (bare_cfg.vision.min_pixels, bare_cfg.vision.max_pixels),
        (3136, 1_003_520)
    );
    // A folder with no processor files at all still works with the built-in defaults.
    let bare = tempfile::tempdir().unwrap();
    std::fs::copy(tokenizer_json(), bare.path().join("tokenizer.json")).unwrap();
    let p = Processor::from_model_dir(bare.path(), MediaLimits::default()).unwrap();
    assert_eq!(p.template.source(), ChatTemplate::builtin().source());
}
