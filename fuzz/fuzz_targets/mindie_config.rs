//! MindIE `config.json` → `Settings` → the validated `ServiceConfig` (what `qwen3vl serve
//! --config` does before it starts anything). Properties:
//! * nothing panics; every refusal is an error message;
//! * parsing is deterministic, and layering the result over or under empty settings is the
//!   identity (the CLI merge must not lose or invent fields);
//! * ports that pass are in [1024, 65535]; a note, when there is one, says what was ignored;
//! * a config that `finish` accepts is within MindIE's documented ranges.
#![no_main]

use std::path::Path;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use qwen3vl::service::{ServiceConfig, Settings};

const BASE: &str = "/srv/mindie";

fn accepted(c: &ServiceConfig) {
    assert!((1..=4096).contains(&c.max_link_num));
    assert!(((1 << 20)..=(100 << 20)).contains(&c.max_request_bytes));
    assert_eq!(c.media.max_item_bytes, c.max_request_bytes as u64);
    let secs = |d: Duration, hi: u64| (1..=hi).contains(&d.as_secs()) && d.subsec_nanos() == 0;
    assert!(secs(c.token_timeout, 3600));
    assert!(secs(c.e2e_timeout, 65535));
    assert!((1..=256).contains(&c.served_model_name.len()));
    assert!(c.port >= 1024);
    let s = &c.schedule;
    assert!(s.max_prefill_batch_size <= s.max_batch_size);
    assert!(c.media_caps.max_image_pixels != Some(0));
    assert!(c.media_caps.max_video_frames != Some(0));
    assert!(!c.extra_listeners.contains(&(c.host.clone(), c.port)));
    for d in [
        c.media.http_connect_timeout,
        c.media.http_read_timeout,
        c.media.http_timeout,
        c.media.media_deadline,
        c.request_read_timeout,
    ] {
        assert!(d > Duration::ZERO && d < Duration::from_secs(1_000_000));
    }
}

fuzz_target!(|data: &[u8]| {
    // `from_mindie_file` reads the file as UTF-8 text first.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let base = Path::new(BASE);
    let (settings, note) = match Settings::from_mindie_json(text, base) {
        Ok(r) => r,
        Err(e) => {
            assert!(!e.is_empty());
            return;
        }
    };
    let (again, _) = Settings::from_mindie_json(text, base).expect("parsing is deterministic");
    assert_eq!(again, settings);
    assert_eq!(settings.clone().over(Settings::default()), settings);
    assert_eq!(Settings::default().over(settings.clone()), settings);
    if let Some(n) = note {
        assert!(n.starts_with("config.json: accepted and ignored"));
    }
    for p in [
        settings.port,
        settings.management_port,
        settings.metrics_port,
    ]
    .into_iter()
    .flatten()
    {
        assert!(p >= 1024);
    }
    match settings.finish() {
        Ok(c) => accepted(&c),
        Err(e) => assert!(!e.is_empty()),
    }
});
